"""nbgrader ``zip_collect`` plugin: recognise a submission by its metadata, not its file name.

Colab saves a copy as "Copy of 01_tokenization.ipynb", and an LMS prefixes downloads with the
student's name and numbers. Every course notebook carries ``metadata.course.chapter``, so the
plugin files each download under its chapter's canonical name, whatever it was renamed to.

Who handed a file in comes from the *upload*, never from names inside it:

* a file in ``archive/`` (or a folder of it): the first part of its own name (``named_regexp``),
  as the LMS wrote it; a file in a per-student folder without such a name: that folder;
* a file inside a zip: the zip's name when it names a student (one student's upload; a member
  whose name claims someone else is filed as the uploader's, with a warning), else (an LMS bulk
  download, e.g. ``submissions.zip``) the member's own name.

Two files for one student and chapter (a download and a later "Copy of ... (1)") are resolved
by one rule, stated in the log with both names: the newest file wins (the time the download
recorded: the file's own time in ``archive/``, a zip member's date), and on a tie the one that
comes last in path order. A file that is not clean UTF-8 JSON is still collected (the grader
gives it a "needs attention" result with the real reason), unless its name says it belongs to
another chapter. No single file can stop the collection of the others.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Optional

from nbgrader.plugins.zipcollect import FileNameCollectorPlugin

import solutions
from solutions.notebooks import notebook_chapter

MAX_BYTES = 64 * 2**20  # larger files are not parsed here (the grader reports them)


def _load(path: str) -> Optional[dict]:
    """The notebook's JSON, or None if the file is not clean UTF-8 JSON (whatever it holds)."""
    try:
        if os.path.getsize(path) > MAX_BYTES:
            return None
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError, MemoryError):
        return None
    return data if isinstance(data, dict) else None


def _load_lenient(path: str) -> Optional[dict]:
    """Like :func:`_load`, but bytes that are not UTF-8 are replaced: enough to read the
    chapter of a notebook that a tool saved in another encoding."""
    try:
        if os.path.getsize(path) > MAX_BYTES:
            return None
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8", "replace"))
    except (OSError, ValueError, RecursionError, MemoryError):
        return None
    return data if isinstance(data, dict) else None


def notebook_chapter_of(path: str) -> Optional[str]:
    """The course chapter a notebook file belongs to, or None if it is not a course notebook."""
    try:
        return notebook_chapter(_load(path) or {})
    except Exception:
        return None


def _check_cells(data: dict) -> set[str]:
    """Grade ids and sources of a notebook's check cells: what survives an editor that drops metadata."""
    found = set()
    for cell in data.get("cells", []) if isinstance(data.get("cells"), list) else []:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        source = "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else str(source)
        if source.strip().startswith("check."):
            found.add(source.strip())
        meta = cell.get("metadata", {})
        grade = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
        if isinstance(grade, dict) and grade.get("grade") and isinstance(grade.get("grade_id"), str):
            found.add(grade["grade_id"])
    return found


def looks_like(path: str, released_path: str, data: Optional[dict] = None) -> bool:
    """Whether a notebook without course metadata holds most of a released notebook's check cells."""
    data, released = data if data is not None else _load(path), _load(released_path)
    if not data or not released:
        return False
    wanted = _check_cells(released)
    return bool(wanted) and len(wanted & _check_cells(data)) >= len(wanted) / 2


class CourseCollector(FileNameCollectorPlugin):
    """Student id from the upload (``named_regexp``), file id from the notebook's chapter."""

    _plan: Optional[dict] = None  # path -> {"student_id", "file_id"} or None, for every file

    def collect(self, submitted_file: str) -> Optional[dict]:
        try:
            if self._plan is None:
                self._quiet_generic_skips()
                self._plan = self._make_plan()
            if submitted_file not in self._plan:
                self._plan[submitted_file] = self._identify(submitted_file)
            return self._plan[submitted_file]
        except Exception as exc:  # one strange file never stops the others
            self.log.warning("Skipped %s: %s: %s", submitted_file, type(exc).__name__, exc)
            return None

    def _quiet_generic_skips(self) -> None:
        """Every file this plugin skips has its own line in the log saying why (a duplicate, not a
        notebook, another chapter); nbgrader then adds "Skipped submission with no match
        information provided", which reads like a naming problem: that line is left out."""
        class _Filter(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                return not str(record.msg).startswith("Skipped submission with no match information provided")

        if not any(isinstance(f, logging.Filter) and type(f).__name__ == "_Filter" for f in self.log.filters):
            self.log.addFilter(_Filter())

    # -- the whole download at once: identities, then duplicates

    def _extracted(self) -> Optional[str]:
        app = self.parent
        try:
            return app._format_collect_path(app.extracted_directory)
        except Exception:
            return None

    def _make_plan(self) -> dict:
        plan: dict[str, Optional[dict]] = {}
        root = self._extracted()
        if not root or not os.path.isdir(root):
            return plan
        files = sorted(os.path.join(r, f) for r, _, names in os.walk(root) for f in names)
        for path in files:
            try:
                plan[path] = self._identify(path)
            except Exception as exc:
                self.log.warning("Skipped %s: %s: %s", path, type(exc).__name__, exc)
                plan[path] = None
        chosen: dict[tuple[str, str], str] = {}
        for path in files:
            info = plan[path]
            if not info:
                continue
            key = (info["student_id"], info["file_id"])
            if key not in chosen:
                chosen[key] = path
                continue
            other = chosen[key]
            keep, drop = (path, other) if self._order(path) > self._order(other) else (other, path)
            chosen[key] = keep
            plan[drop] = None
            self.log.warning(
                "Student %s handed in %s twice: kept %s (the newest; on a tie the last in path order), "
                "skipped %s", key[0], key[1], os.path.relpath(keep, root), os.path.relpath(drop, root))
        return plan

    # -- one file

    def _identify(self, submitted_file: str) -> Optional[dict]:
        if os.path.splitext(submitted_file)[1] not in self.valid_ext:
            self.log.info("Skipped %s: not a notebook", submitted_file)
            return None
        assignment = self.parent.coursedir.assignment_id
        name = os.path.basename(submitted_file)
        data = _load(submitted_file)
        chapter = notebook_chapter(data or {})
        released = self.parent.coursedir.format_path(self.parent.coursedir.release_directory, ".", assignment)
        if chapter is None and data is not None and looks_like(submitted_file, os.path.join(released, f"{assignment}.ipynb"), data):
            chapter = assignment  # an editor dropped the notebook's metadata; its check cells say which
        if chapter is None and data is None:
            # not clean UTF-8 JSON: the grader must see it and say why; which chapter is it?
            chapter = notebook_chapter(_load_lenient(submitted_file) or {})
            if chapter is None:
                others = [c for c in solutions.CHAPTERS if c != assignment and c in name]
                chapter = None if others else assignment
            if chapter == assignment:
                self.log.warning("%s is not a clean UTF-8 notebook; collected for %s, the grader will report it", name, assignment)
        if chapter is None:
            self.log.warning("Skipped %s: not a course notebook (no metadata.course.chapter)", submitted_file)
            return None
        if chapter != assignment:
            self.log.warning("Skipped %s: it is chapter %s, not %s", submitted_file, chapter, assignment)
            return None
        student = self._student(submitted_file)
        if not student:
            self.log.warning("Skipped %s: no student id in its name (named_regexp %r)", name, self.named_regexp)
            return None
        return {"student_id": student, "file_id": f"{chapter}.ipynb"}

    def _student_in(self, name: str) -> Optional[str]:
        """The student a file name names, or None. A course notebook's own name (``04_mlp.ipynb``,
        ``Copy of 04_mlp (1).ipynb``) names nobody, though ``04_`` fits the student-id pattern."""
        plain = re.sub(r"^(Copy of )+", "", name)
        if any(plain.startswith(chapter) for chapter in solutions.CHAPTERS):
            return None
        match = re.match(self.named_regexp, name) if self.named_regexp else None
        return match.group("student_id") if match else None

    def _student(self, path: str) -> Optional[str]:
        """Who uploaded the file: see the module docstring."""
        root = self._extracted()
        parts = os.path.relpath(path, root).split(os.sep) if root else [os.path.basename(path)]
        own = self._student_in(parts[-1])
        if len(parts) == 1:
            return own
        top = parts[0]
        archive = self._archive_of(top)
        if archive is not None:
            uploader = self._student_in(archive)
            if uploader:  # one student's upload: the upload says who
                if own and own != uploader:
                    self.log.warning(
                        "%s inside %s (uploaded by %s) is named for student %s: filed as %s's; check it",
                        parts[-1], archive, uploader, own, uploader)
                return uploader
            return own  # a bulk download of the LMS: each member's own name
        # a folder in archive/: the file's own name, else the folder per student
        return own or (parts[-2] if parts[-2] != os.path.basename(root or "") else None)

    def _order(self, path: str) -> tuple:
        """When the file was handed in (as the download recorded it), then its path."""
        root = self._extracted()
        when = 0.0
        try:
            rel = os.path.relpath(path, root)
            archive_dir = self.parent._format_collect_path(self.parent.archive_directory)
            original = os.path.join(archive_dir, rel)
            parts = rel.split(os.sep)
            archive = self._archive_of(parts[0]) if len(parts) > 1 else None
            if os.path.isfile(original):
                when = os.stat(original).st_mtime
            elif archive is not None and archive.endswith(".zip"):
                import calendar
                import zipfile

                with zipfile.ZipFile(os.path.join(archive_dir, archive)) as z:
                    member = "/".join(parts[1:])
                    info = next((i for i in z.infolist() if i.filename.rstrip("/") == member), None)
                    if info is not None:
                        when = float(calendar.timegm(info.date_time + (0, 0, -1)))
        except Exception:
            pass
        return when, path

    def _archive_of(self, folder: str) -> Optional[str]:
        """The archive file a top-level extracted folder came from, if it came from one."""
        try:
            archive_dir = self.parent._format_collect_path(self.parent.archive_directory)
            names = os.listdir(archive_dir)
        except Exception:
            return None
        for name in names:
            stem = name
            for ext in sorted(getattr(self.parent.extractor_plugin_inst, "zip_ext", [".zip", ".gz"]), key=len, reverse=True):
                if stem.endswith(ext):
                    stem = stem[: -len(ext)]
                    if stem.endswith(".tar"):
                        stem = stem[:-4]
                    if stem == folder:
                        return name
        return None

