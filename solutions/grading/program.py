"""Building the program to run from a student's notebook (no execution here).

Its job: the list of cells the sandbox will run, in order: the *released* set-up cells first,
then the student's code cells in notebook order. Check cells and demonstration cells are never
run; a course cell the student changed runs as released first (in the prelude), then as changed,
so that what they added to it still counts.

It runs in the trusted process on student data (the cells' text and metadata), so it treats
both as hostile: metadata of any type is tolerated, and the comparison of cells with the
course's (:func:`_resembles`) is bounded by :class:`_Budget` in count and in time. It only
reads strings; nothing of the notebook is executed or imported here.
"""

from __future__ import annotations

import difflib
import time

import nbformat

from solutions.grading.reading import Released, Settings, _text
from solutions.notebooks import DEMO_TAG


class _Budget:
    """The trusted side's work on one notebook: comparisons counted, time checked."""

    def __init__(self, settings: Settings, deadline: float) -> None:
        self.left, self.deadline = settings.compare_budget, min(deadline, time.monotonic() + settings.compare_s)
        self.max_cell_bytes = settings.max_cell_bytes

    def spend(self) -> bool:
        self.left -= 1
        return self.left >= 0 and time.monotonic() < self.deadline


def build_program(released: Released, nb: nbformat.NotebookNode, settings: Settings | None = None,
                  deadline: float | None = None) -> tuple[list[dict], list[str]]:
    """(cells to run, notes for the feedback). Check cells are never run."""
    settings = settings or Settings()
    budget = _Budget(settings, deadline if deadline is not None else time.monotonic() + settings.notebook_budget_s)
    cells = [{"index": -1 - i, "source": source, "released": True} for i, source in enumerate(released.prelude)]
    notes: list[str] = []
    answers_seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = _text(cell.get("source"))
        meta = cell.get("metadata", {}) if isinstance(cell.get("metadata"), dict) else {}
        nbgrader_meta = meta.get("nbgrader", {}) if isinstance(meta.get("nbgrader"), dict) else {}
        tags = meta.get("tags", []) if isinstance(meta.get("tags"), list) else []
        cell_id = cell.get("id") or meta.get("id")
        cell_id = cell_id if isinstance(cell_id, str) else None
        if nbgrader_meta.get("grade") and not nbgrader_meta.get("solution"):
            continue  # a check cell: the grader checks, not the notebook
        if DEMO_TAG in tags or source.strip() in released.sources:
            continue  # a demonstration, or a released cell as released (ran in the prelude)
        original = released.cells_by_id.get(cell_id) if cell_id else None
        is_answer = bool(nbgrader_meta.get("solution"))
        course = None
        if not is_answer:
            if original is not None and not original.get("metadata", {}).get("nbgrader", {}).get("solution"):
                course = original.source
            else:
                course = _resembles(source, released.sources, budget)
        if course is not None:
            # a course cell (set-up, imports) that was changed, or comes from another release:
            # the released version ran in the prelude; the student's version runs too, in place,
            # so that what they added (an import, a helper) is there as it was for them
            notes.append(f"cell {index + 1} is a course cell that was changed: the released version ran first (restored), then yours")
            cells.append({"index": index, "source": source, "released": False, "course": course})
            continue
        if is_answer:
            grade_id = str(nbgrader_meta.get("grade_id"))[:200]
            if grade_id in answers_seen:
                notes.append(f"answer cell {grade_id} appears twice (cells {answers_seen[grade_id] + 1} and {index + 1}); both ran, in order")
            answers_seen.setdefault(grade_id, index)
        cells.append({"index": index, "source": source, "released": False})
    missing = [e.answer_id for e in released.exercises if e.answer_id not in answers_seen]
    for answer in missing:
        notes.append(f"the answer cell of {answer} is missing (deleted?); its function may still be defined elsewhere")
    if budget.left < 0 or time.monotonic() >= budget.deadline:
        notes.append("the notebook has many or large cells: only part of it was compared with the course's cells")
    return cells, notes


def _resembles(source: str, course_sources: set[str], budget: _Budget, threshold: float = 0.75) -> str | None:
    """The course cell this cell mostly is (its ids may have been lost), or None. Bounded work."""
    text = source.strip()
    if not text or len(text) > budget.max_cell_bytes:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for course in course_sources:
        if not budget.spend():
            return None
        if len(lines) >= 5:  # most of its lines are the course cell's (an older release of it)
            course_lines = {line.strip() for line in course.splitlines()}
            if sum(line in course_lines for line in lines) >= 0.6 * len(lines):
                return course
        shorter, longer = sorted((len(text), len(course)))
        if longer == 0 or 2 * shorter / (shorter + longer) < threshold:
            continue  # the ratio can never reach the threshold
        matcher = difflib.SequenceMatcher(None, text, course, autojunk=False)
        if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold:
            return course
    return None
