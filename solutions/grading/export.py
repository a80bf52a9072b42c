"""nbgrader ``export`` plugin: grades.csv without rows for chapters nobody has handed in yet.

Stock nbgrader writes a row, score 0, for every student and every assignment in the gradebook,
and ``release`` puts every chapter there: before anyone hands in chapter 4, grades.csv already
says that every student scored 0 on it. This exporter leaves out the chapters without a single
submission (unless ``--assignment`` names them); a student who missed a chapter that others
handed in still gets the usual 0 row.
"""

from __future__ import annotations

from nbgrader.api import Gradebook
from nbgrader.plugins.export import CsvExportPlugin


class CourseCsvExport(CsvExportPlugin):
    """:class:`CsvExportPlugin` over the chapters with at least one submission."""

    def export(self, gradebook: Gradebook) -> None:
        if not self.assignment:
            handed_in = [a.name for a in gradebook.assignments if a.num_submissions > 0]
            if not handed_in:
                self.log.warning("No chapter has a submission yet: grades.csv gets its header only")
                handed_in = [""]  # a name no assignment has: the header, no rows
            self.assignment = handed_in
        super().export(gradebook)
