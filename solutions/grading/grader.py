"""Grade submissions one by one, each in its own sandbox, with the verdict computed out here.

For one submission (:func:`grade`):

1. read the notebook defensively (size, JSON, nbformat, number of cells); a notebook that cannot
   be read still gets a result, "needs attention", with the reason (:mod:`.reading`);
2. build the program to run: the *released* set-up cells, then the student's code cells in
   notebook order (check cells and demonstration cells are never run; a course cell the student
   changed runs as released first, then as changed, so an import added to it still counts)
   (:mod:`.program`);
3. scan the student's code for things a human should see (:mod:`.suspicious`);
4. draw each exercise's hidden inputs from a seed the student never sees and compute the
   reference's outputs here (:mod:`.planning`);
5. run the program in a sandbox whose copy of the course package *withholds* the graded
   exercises' references (:mod:`.withhold`), then ask it for one exercise at a time, over pipes
   this process owns: only then are that exercise's hidden inputs and the references it may use
   (``Spec.uses``) handed over, and only a reply to the request in hand counts; a cell that
   hangs, kills its process or disturbs the protocol costs that cell: the grader starts a fresh
   sandbox, replays the cells that worked, and goes on without it (:mod:`.execution`);
6. compare the outputs, which come back as JSON (never pickle), here with the reference, by the
   same specs the notebooks use (:mod:`.verdicts`).

The trusted work per submission is bounded (bytes, cells, comparisons) and counted in the
notebook's time budget. The result (points per exercise, a plain-words message for each, notes
and flags) is a plain dict of clean strings; :mod:`.batch` writes it atomically and records it in
the gradebook.

The modules, and which of them touch student data in this (trusted) process:

=================  ====================================================  =====================
module             job                                                   student data
=================  ====================================================  =====================
:mod:`.reading`    released notebook, submission file, :func:`clean`     the file's bytes
:mod:`.program`    the cells to run                                      cell text, metadata
:mod:`.planning`   hidden inputs, expected outputs, order of requests    none
:mod:`.execution`  the sandbox and the pipes to the harness              the replies (raw)
:mod:`.verdicts`   points and messages from the replies                  the replies (decoded)
this module        :func:`grade`: the steps above, the result            cell errors (as text)
=================  ====================================================  =====================

Imports go one way: ``reading`` uses no other of these; ``program``, ``planning`` and ``verdicts``
use ``reading``; ``execution`` uses ``reading`` and ``planning``; this module uses them all.
:mod:`.batch` and the command use this module, :mod:`.report` only ``reading`` and ``verdicts``.
The names other code uses are importable from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import solutions
from solutions.grading.execution import execute
from solutions.grading.planning import order_exercises, plan_exercises
from solutions.grading.program import build_program
from solutions.grading.reading import Exercise, Released, Settings, Unreadable, clean, load_released, read_submission
from solutions.grading.suspicious import scan
from solutions.grading.verdicts import _exercise_result, _verdict
from solutions.notebooks import chapter_module_name, notebook_chapter

# what other code imports from here (batch, the command, the tests); the rest lives in the modules
__all__ = [
    "RESULT_VERSION", "Submission", "grade",
    "Exercise", "Released", "Settings", "Unreadable", "clean", "load_released", "read_submission",
    "build_program", "order_exercises", "execute",
]

RESULT_VERSION = 3  # 3: each exercise also has "outcome" and "mistake" (for the class report)


@dataclass
class Submission:
    assignment: str
    student: str
    path: Path


def grade(submission: Submission, released: Released, secret: bytes, settings: Settings | None = None) -> dict:
    """Grade one submission; always returns a result, whatever the notebook contains."""
    settings = settings or Settings()
    start = time.monotonic()
    deadline = start + settings.notebook_budget_s
    result: dict[str, Any] = {
        "version": RESULT_VERSION,
        "course_version": solutions.__version__,
        "assignment": submission.assignment,
        "student": submission.student,
        "file": submission.path.name,
        "status": "graded",
        "reasons": [],
        "notes": [],
        "flags": [],
        "exercises": [],
    }
    max_score = sum(e.points for e in released.exercises)
    try:
        nb = read_submission(submission.path, settings)
    except (Unreadable, OSError) as exc:
        result.update(status="needs_attention", reasons=[f"not graded: {exc}"], score=0.0, max_score=max_score)
        result["exercises"] = [_exercise_result(e, 0.0, "not graded", str(exc)) for e in released.exercises]
        result["seconds"] = round(time.monotonic() - start, 2)
        return clean(result)

    chapter = notebook_chapter(nb)
    if chapter not in (None, submission.assignment):
        result["flags"].append(f"the notebook's metadata says chapter {chapter!r}, but it was handed in for {submission.assignment}")
    cells, notes = build_program(released, nb, settings, deadline)
    result["notes"].extend(notes)

    graded_modules = {f"solutions.{chapter_module_name(submission.assignment)}", "solutions.checks", "solutions.grading"}
    for cell in cells:
        if not cell["released"] and time.monotonic() < deadline:
            findings = scan(cell["source"], cell["index"], reference_modules=graded_modules)
            if cell.get("course") is not None:
                # a changed course cell: what the course cell itself does is not news
                known = {f.reason for f in scan(cell["course"], cell["index"], reference_modules=graded_modules)}
                findings = [f for f in findings if f.reason not in known]
            result["flags"].extend(str(f) for f in findings)

    # hidden inputs and the reference's outputs, computed here, never in the sandbox
    plans = plan_exercises(released, secret, submission.assignment, submission.student)


    ran = execute(cells, order_exercises(plans), settings, deadline, released)
    result["attempts"], result["sandbox"] = ran["attempts"], ran["method"]
    result["reasons"].extend(ran["failures"])
    result["flags"].extend(ran["violations"])
    if ran["memory"]:
        result["notes"].append(f"memory limit: the notebook's processes together used more than "
                               f"{settings.total_memory_bytes / 2**30:g} GiB; the step that did it was stopped")
    disk_noted = False
    for cell in cells:
        record = ran["cells"].get(cell["index"])
        if record is None or record.get("ok", True):
            continue
        error = record.get("error") if isinstance(record.get("error"), list) else ["Error", ""]
        ename, evalue = (list(map(str, error)) + ["", ""])[:2]
        where = "a set-up cell" if cell["released"] else f"cell {cell['index'] + 1}"
        if ename == "Killed":
            result["notes"].append(f"{where} was stopped and skipped: {evalue}")
        elif ename == "Timeout":
            result["notes"].append(f"{where} was interrupted: {evalue}")
        else:
            result["notes"].append(f"{where} raised {ename}: {evalue[:300]}")
            if ename in ("ImportError", "ModuleNotFoundError") and "solutions" in evalue:
                result["notes"].append(
                    "(the grader runs your code without this chapter's reference code: only what the "
                    "notebook's set-up cells import from it is there, and earlier chapters' modules)")
        disk_noted = _disk_note(result, evalue, settings, disk_noted)

    score = 0.0
    for plan in plans:
        exercise = plan.exercise
        record = ran["exercises"].get(exercise.name)
        detail: dict = {}
        try:
            points, verdict, message = _verdict(exercise, plan.spec, plan.cases, plan.expected, record, detail)
        except Exception as exc:  # RecursionError, MemoryError, anything a crafted reply causes
            points, verdict, message = 0.0, "error", f"{exercise.name} returned results the grader could not read ({type(exc).__name__})"
            detail = {}
        if isinstance(record, dict) and record.get("origin") not in (None, "notebook"):
            result["flags"].append(f"{exercise.name} is not defined in the notebook: it comes from {str(record['origin'])[:200]}")
        disk_noted = _disk_note(result, message, settings, disk_noted)
        score += points
        result["exercises"].append(_exercise_result(exercise, points, verdict, message, **detail))
    result["score"], result["max_score"] = score, max_score
    if result["flags"] or result["reasons"]:
        result["status"] = "needs_attention"
        result["reasons"].extend(["suspicious code, see flags"] if result["flags"] else [])
    result["seconds"] = round(time.monotonic() - start, 2)
    return clean(result)


def _disk_note(result: dict, text: str, settings: Settings, already: bool) -> bool:
    if already or not isinstance(text, str):
        return already
    if "No space left on device" in text or "Disk quota exceeded" in text:
        result["notes"].append(f"disk limit: the notebook wrote more than its {settings.disk_bytes / 2**20:g} MB of "
                               f"working space ({settings.tmp_bytes / 2**20:g} MB in /tmp)")
        return True
    if "File too large" in text:
        result["notes"].append("file size limit: the notebook wrote a file larger than allowed")
        return True
    return False
