"""nbgrader ``zip_collect`` plugin: recognise a submission by its metadata, not its file name.

Colab saves a copy as "Copy of 01_tokenization.ipynb", and an LMS prefixes downloads with the
student's name and numbers. Every course notebook carries ``metadata.course.chapter``, so the
plugin files each download under its chapter's canonical name, whatever it was renamed to.
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional

from nbgrader.plugins.zipcollect import FileNameCollectorPlugin


def notebook_chapter_of(path: str) -> Optional[str]:
    """The course chapter a notebook file belongs to, or None if it is not a course notebook."""
    try:
        with open(path, encoding="utf-8") as f:
            course = json.load(f).get("metadata", {}).get("course", {})
    except (OSError, ValueError, AttributeError):
        return None
    chapter = course.get("chapter") if isinstance(course, dict) else None
    return chapter if isinstance(chapter, str) else None


class CourseCollector(FileNameCollectorPlugin):
    """Student id from the file name (``named_regexp``), file id from the notebook's chapter."""

    def collect(self, submitted_file: str) -> Optional[dict]:
        if os.path.splitext(submitted_file)[1] not in self.valid_ext:
            return None
        assignment = self.parent.coursedir.assignment_id
        chapter = notebook_chapter_of(submitted_file)
        if chapter is None:
            self.log.warning("Skipped %s: not a course notebook (no metadata.course.chapter)", submitted_file)
            return None
        if chapter != assignment:
            self.log.warning("Skipped %s: it is chapter %s, not %s", submitted_file, chapter, assignment)
            return None
        name = os.path.basename(submitted_file)
        match = re.match(self.named_regexp, name) if self.named_regexp else None
        student = match.group("student_id") if match else None
        if student is None:
            # downloads sorted into one folder per student: .../extracted/<student>/<file>
            parent = os.path.basename(os.path.dirname(submitted_file))
            student = parent if parent != "extracted" else None
        if not student:
            self.log.warning("Skipped %s: no student id in its name (named_regexp %r)", name, self.named_regexp)
            return None
        return {"student_id": student, "file_id": f"{chapter}.ipynb"}
