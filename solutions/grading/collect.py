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

from solutions.notebooks import notebook_chapter


def _load(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def notebook_chapter_of(path: str) -> Optional[str]:
    """The course chapter a notebook file belongs to, or None if it is not a course notebook."""
    return notebook_chapter(_load(path) or {})


def _check_cells(data: dict) -> set[str]:
    """Grade ids and sources of a notebook's check cells: what survives an editor that drops metadata."""
    found = set()
    for cell in data.get("cells", []) if isinstance(data.get("cells"), list) else []:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if source.strip().startswith("check."):
            found.add(source.strip())
        meta = cell.get("metadata", {})
        grade = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
        if isinstance(grade, dict) and grade.get("grade") and isinstance(grade.get("grade_id"), str):
            found.add(grade["grade_id"])
    return found


def looks_like(path: str, released_path: str) -> bool:
    """Whether a notebook without course metadata holds most of a released notebook's check cells."""
    data, released = _load(path), _load(released_path)
    if not data or not released:
        return False
    wanted = _check_cells(released)
    return bool(wanted) and len(wanted & _check_cells(data)) >= len(wanted) / 2


class CourseCollector(FileNameCollectorPlugin):
    """Student id from the file name (``named_regexp``), file id from the notebook's chapter."""

    def collect(self, submitted_file: str) -> Optional[dict]:
        if os.path.splitext(submitted_file)[1] not in self.valid_ext:
            return None
        assignment = self.parent.coursedir.assignment_id
        chapter = notebook_chapter_of(submitted_file)
        released = self.parent.coursedir.format_path(self.parent.coursedir.release_directory, ".", assignment)
        if chapter is None and looks_like(submitted_file, os.path.join(released, f"{assignment}.ipynb")):
            chapter = assignment  # an editor dropped the notebook's metadata; its check cells say which
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
