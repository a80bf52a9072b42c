"""Grade submissions one by one, each in its own sandbox, with the verdict computed out here.

For one submission:

1. read the notebook defensively (size, JSON, nbformat); a notebook that cannot be read still
   gets a result, "needs attention", with the reason;
2. build the program to run from the *released* notebook: its set-up cells, then the student's
   code cells (check cells and demonstration cells are never run; released cells a student
   edited are put back as released);
3. scan that code for things a human should see (:mod:`.suspicious`);
4. draw each exercise's inputs from a seed the student never sees, run the student's code and
   functions in the sandbox (:mod:`.harness`), read back the raw outputs (JSON, never pickle),
   and compare them here with the reference, with the same specs the notebooks use;
5. a cell that hangs or kills its process costs that cell: the grader starts a fresh sandbox,
   replays the cells that worked, and goes on without it.

The result (points per exercise, a plain-words message for each, notes and flags) is a plain
dict; :mod:`.batch` writes it atomically and records it in the gradebook.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

import solutions
from solutions.checks import SPECS
from solutions.checks import wire
from solutions.checks.core import Case, CheckFailure, compare, exact_math, run
from solutions.grading import sandbox
from solutions.grading.suspicious import scan
from solutions.notebooks import DEMO_TAG, chapter_module_name, notebook_chapter

RESULT_VERSION = 1


@dataclass
class Settings:
    cell_timeout_s: float = 30.0  # one cell of the student's code
    exercise_timeout_s: float = 20.0  # one exercise's calls on all its hidden inputs
    startup_s: float = 60.0  # python, torch and IPython start-up inside the sandbox
    notebook_budget_s: float = 240.0  # everything for one submission, retries included
    max_attempts: int = 5  # sandboxes started for one submission
    max_notebook_bytes: int = 20 * 2**20
    memory_bytes: int = 6 * 2**30  # address space per process (torch alone maps ~2-3 GiB)
    method: str | None = None  # sandbox method; default: the strongest available


# --------------------------------------------------------------------------------------------
# the released notebook: what a submission is graded against


@dataclass
class Exercise:
    name: str  # the function name (= the check spec)
    answer_id: str  # grade_id of the answer cell
    check_id: str  # grade_id of the check cell (where the points live in the gradebook)
    points: float


@dataclass
class Released:
    assignment: str
    prelude: list[str]  # released code cells before the first answer (set-up, imports)
    cells_by_id: dict[str, Any]  # every released cell, by id
    sources: set[str]  # sources of released code cells that are not answers
    exercises: list[Exercise]


def load_released(path: Path, assignment: str) -> Released:
    nb = nbformat.read(path, as_version=4)
    prelude, exercises, sources, answers = [], [], set(), {}
    seen_answer = False
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            seen_answer = True
            answers[meta["grade_id"]] = cell
            continue
        if meta.get("grade"):
            name = cell.source.strip().removeprefix("check.").split("(")[0]
            exercises.append(Exercise(name, name, meta["grade_id"], float(meta.get("points", 0))))
            continue
        sources.add(cell.source.strip())
        if not seen_answer and DEMO_TAG not in cell.metadata.get("tags", []):
            prelude.append(cell.source)
    for exercise in exercises:
        if exercise.name not in SPECS:
            raise ValueError(f"the released notebook checks {exercise.name}, which has no spec")
        # the answer cell of an exercise carries the exercise name as its grade id
        if exercise.answer_id not in answers:
            raise ValueError(f"the released notebook has no answer cell {exercise.answer_id}")
    return Released(assignment, prelude, {c.id: c for c in nb.cells if "id" in c}, sources, exercises)


# --------------------------------------------------------------------------------------------
# reading a submission


class Unreadable(Exception):
    """The submission cannot be graded at all; the message says why, in plain words."""


def read_submission(path: Path, settings: Settings) -> nbformat.NotebookNode:
    size = path.stat().st_size
    if size > settings.max_notebook_bytes:
        raise Unreadable(f"the notebook is {size / 2**20:.1f} MB, more than the {settings.max_notebook_bytes / 2**20:.0f} MB allowed (clear the outputs and hand it in again)")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Unreadable("the file is not text (UTF-8): it is not a notebook") from None
    except ValueError as exc:
        raise Unreadable(f"the file is not valid JSON, so not a notebook ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", []), list):
        raise Unreadable("the file is JSON but not a notebook (no list of cells)")
    major = data.get("nbformat")
    if major not in (3, 4):
        raise Unreadable(f"unsupported notebook format version {major!r} (expected 4)")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:
        raise Unreadable(f"the notebook's structure is damaged ({type(exc).__name__}: {str(exc)[:200]})") from None
    return nb


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else ""


def build_program(released: Released, nb: nbformat.NotebookNode) -> tuple[list[dict], list[str]]:
    """(cells to run, notes for the feedback). Check cells are never run."""
    cells = [{"index": -1 - i, "source": source, "released": True} for i, source in enumerate(released.prelude)]
    notes: list[str] = []
    answers_seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        source = _text(cell.get("source"))
        meta = cell.get("metadata", {}) if isinstance(cell.get("metadata"), dict) else {}
        nbgrader_meta = meta.get("nbgrader", {}) if isinstance(meta.get("nbgrader"), dict) else {}
        tags = meta.get("tags", []) if isinstance(meta.get("tags"), list) else []
        cell_id = cell.get("id") or meta.get("id")
        if nbgrader_meta.get("grade") and not nbgrader_meta.get("solution"):
            continue  # a check cell: the grader checks, not the notebook
        if DEMO_TAG in tags or source.strip() in released.sources:
            continue  # a demonstration, or a released cell as released (ran in the prelude)
        original = released.cells_by_id.get(cell_id)
        is_answer = bool(nbgrader_meta.get("solution"))
        course_cell = original is not None and not original.get("metadata", {}).get("nbgrader", {}).get("solution")
        if not is_answer and (course_cell or _resembles(source, released.sources)):
            # a course cell (set-up, imports, demonstration) that was edited, or comes from another
            # release of the notebook: the released version is what runs
            notes.append(f"cell {index + 1} is a course cell that was changed; it was restored as released")
            continue
        if is_answer:
            grade_id = str(nbgrader_meta.get("grade_id"))
            if grade_id in answers_seen:
                notes.append(f"answer cell {grade_id} appears twice (cells {answers_seen[grade_id] + 1} and {index + 1}); both ran, in order")
            answers_seen.setdefault(grade_id, index)
        cells.append({"index": index, "source": source, "released": False})
    missing = [e.answer_id for e in released.exercises if e.answer_id not in answers_seen]
    for answer in missing:
        notes.append(f"the answer cell of {answer} is missing (deleted?); its function may still be defined elsewhere")
    return cells, notes


def _resembles(source: str, course_sources: set[str], threshold: float = 0.75) -> bool:
    """Whether a cell is mostly one of the course's own cells (its ids may have been lost)."""
    text = source.strip()
    if not text:
        return False
    for course in course_sources:
        matcher = difflib.SequenceMatcher(None, text, course, autojunk=False)
        if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold:
            return True
    return False


# --------------------------------------------------------------------------------------------
# hidden inputs


def hidden_seed(secret: bytes, assignment: str, student: str, exercise: str) -> int:
    """A seed per student and exercise that only the grader can compute; the same on a re-grade."""
    digest = hmac.new(secret, f"{assignment}/{student}/{exercise}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:6], "big")


def encode_cases(cases: list[Case]) -> list[dict]:
    return [{"args": wire.encode(list(c.args)), "kwargs": wire.encode(dict(c.kwargs))} for c in cases]


# --------------------------------------------------------------------------------------------
# running in the sandbox, with retries


def _sandbox_paths() -> tuple[list[Path], str]:
    """Paths the sandbox may read (the interpreter, its packages, the course package) and the
    folder to put on sys.path so that `solutions` is importable."""
    package = Path(solutions.__file__).resolve().parent
    return sorted(set(sandbox.python_paths()) | {package}, key=str), str(package.parent)


LAUNCH = (
    "import sys; sys.path.insert(0, {path!r}); "
    "from solutions.grading.harness import main; main({progress!r})"
)


MAX_PROGRESS_BYTES = 64 * 2**20


class ProgressFile:
    """The harness's progress records, read through a descriptor opened before the run.

    The scratch folder is the student's: by the time the run ends, the path may be a symlink to
    the gradebook, a FIFO that blocks a reader forever, or huge. Reading the inode the harness
    writes to, through our own descriptor, with a size cap, sidesteps all three."""

    def __init__(self, path: Path) -> None:
        path.touch(mode=0o600)
        self.fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        self.offset = 0  # how far read_new() has got

    def _read(self, start: int) -> bytes:
        size = min(os.fstat(self.fd).st_size, MAX_PROGRESS_BYTES)
        return os.pread(self.fd, max(0, size - start), start) if size > start else b""

    def read_new(self) -> list[dict]:
        """Complete records written since the last call."""
        chunk = self._read(self.offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return _parse(complete)

    def read_all(self) -> list[dict]:
        return _parse(self._read(0))

    def close(self) -> None:
        os.close(self.fd)


def _parse(data: bytes) -> list[dict]:
    events = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line, or bytes a student wrote: ignored
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            events.append(record)
    return events


def execute(cells: list[dict], exercises: list[dict], settings: Settings, deadline: float) -> dict:
    """Run the program and the exercises, surviving cells that hang or kill the process.

    Returns {"cells": {index: end-record}, "exercises": {name: end-record}, "attempts": n,
    "method": ..., "failures": [...]}.
    """
    readable, package_parent = _sandbox_paths()
    done_cells: dict[int, dict] = {}
    done_exercises: dict[str, dict] = {}
    skipped: set[int] = set()
    attempts, method, failures = 0, None, []
    while attempts < settings.max_attempts:
        todo_cells = [c for c in cells if c["index"] not in skipped]
        # replay the cells that worked so far (their definitions are needed), skip bad ones
        todo_exercises = [e for e in exercises if e["name"] not in done_exercises]
        remaining = deadline - time.monotonic()
        if remaining <= 1:
            failures.append("the time budget for this notebook ran out")
            break
        attempts += 1
        with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
            scratch = Path(tmp) / "scratch"
            scratch.mkdir()
            os.chmod(tmp, 0o755)
            path = scratch / ".progress.jsonl"
            progress = ProgressFile(path)
            job = {
                "cells": [{"index": c["index"], "source": c["source"]} for c in todo_cells],
                "exercises": todo_exercises,
                "cell_timeout_s": settings.cell_timeout_s,
                "exercise_timeout_s": settings.exercise_timeout_s,
            }
            watch = _Watchdog(progress, settings)
            result = sandbox.run_sandboxed(
                [sys.executable, "-I", "-c", LAUNCH.format(path=package_parent, progress=str(path))],
                scratch,
                sandbox.Limits(
                    wall_s=remaining,
                    cpu_s=remaining,
                    memory_bytes=settings.memory_bytes,
                    output_bytes=64 * 1024,
                ),
                readable=readable,
                stdin=json.dumps(job).encode(),
                method=settings.method,
                watchdog=watch,
            )
            method = result.method
            events = progress.read_all()
            progress.close()
        open_step = None
        for event in events:
            if event["event"] == "start":
                open_step = event
            elif event["event"] == "end":
                if event.get("step") == "cell" and isinstance(event.get("index"), int):
                    done_cells[event["index"]] = event
                elif event.get("step") == "exercise" and isinstance(event.get("name"), str):
                    done_exercises[event["name"]] = event
                open_step = None
        finished = any(e["event"] == "done" for e in events)
        if finished and result.returncode == 0:
            break
        # the process died or was killed: blame the step that started and never ended
        why = _death_reason(result, watch)
        if open_step is None:
            ready = any(e["event"] == "ready" for e in events)
            failures.append(f"the grading process {'failed' if ready else 'could not start'}: {why}")
            if not ready:
                detail = result.stderr.decode("utf-8", "replace")[-800:]
                failures.append(f"start-up error: {detail}")
                break
            continue
        if open_step.get("step") == "cell":
            skipped.add(open_step["index"])
            done_cells[open_step["index"]] = {"ok": False, "error": ["Killed", why], "output": ""}
        else:
            done_exercises[open_step["name"]] = {"killed": why}
        # cells that worked are replayed next time; their results are already recorded
    return {"cells": done_cells, "exercises": done_exercises, "attempts": attempts, "method": method, "failures": failures}


class _Watchdog:
    """Called by the sandbox while it waits: kills the run when one step overstays its limit.

    The harness's own alarm stops ordinary slow code; this catches code that ignores it."""

    GRACE_S = 5.0

    def __init__(self, progress: ProgressFile, settings: Settings) -> None:
        self.progress, self.settings = progress, settings
        self.started = time.monotonic()
        self.step_started: float | None = None
        self.step: dict | None = None
        self.fired: str | None = None

    def __call__(self) -> bool:
        now = time.monotonic()
        for record in self.progress.read_new():
            if record["event"] == "start":
                self.step, self.step_started = record, now
            elif record["event"] in ("end", "ready"):
                self.step, self.step_started = None, now
        if self.step is None:
            limit = self.settings.startup_s if self.step_started is None else self.settings.cell_timeout_s
            since = self.started if self.step_started is None else self.step_started
            if now - since > limit + self.GRACE_S:
                self.fired = f"no progress for {limit:g} s"
                return True
            return False
        limit = self.settings.cell_timeout_s if self.step.get("step") == "cell" else self.settings.exercise_timeout_s
        if now - self.step_started > limit + self.GRACE_S:
            self.fired = f"it ran for more than {limit:g} s and did not stop when interrupted"
            return True
        return False


def _death_reason(result: sandbox.SandboxResult, watch: _Watchdog) -> str:
    if watch.fired:
        return watch.fired
    if result.timed_out:
        return "the notebook's time budget ran out"
    if result.oom_suspected:
        return "it ran out of memory"
    if result.killed_by_signal:
        return f"the process was killed by signal {result.killed_by_signal}"
    return f"the process exited (status {result.returncode})"


# --------------------------------------------------------------------------------------------
# one submission


@dataclass
class Submission:
    assignment: str
    student: str
    path: Path


def grade(submission: Submission, released: Released, secret: bytes, settings: Settings | None = None) -> dict:
    """Grade one submission; always returns a result, whatever the notebook contains."""
    settings = settings or Settings()
    start = time.monotonic()
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
        return result

    chapter = notebook_chapter(nb)
    if chapter not in (None, submission.assignment):
        result["flags"].append(f"the notebook's metadata says chapter {chapter!r}, but it was handed in for {submission.assignment}")
    cells, notes = build_program(released, nb)
    result["notes"].extend(notes)

    graded_modules = {f"solutions.{chapter_module_name(submission.assignment)}", "solutions.checks", "solutions.grading"}
    for cell in cells:
        if not cell["released"]:
            result["flags"].extend(str(f) for f in scan(cell["source"], cell["index"], reference_modules=graded_modules))

    # hidden inputs and the reference's outputs, computed here, never in the sandbox
    plans = []
    for exercise in released.exercises:
        spec = SPECS[exercise.name]
        cases = spec.make_cases(hidden_seed(secret, submission.assignment, submission.student, exercise.name))
        with exact_math():
            expected = wire.round_trip(run(spec.reference, cases))
        plans.append((exercise, spec, cases, expected))
    job_exercises = [{"name": e.name, "cases": encode_cases(cases)} for e, _, cases, _ in plans]

    ran = execute(cells, job_exercises, settings, start + settings.notebook_budget_s)
    result["attempts"], result["sandbox"] = ran["attempts"], ran["method"]
    for failure in ran["failures"]:
        result["reasons"].append(failure)
    for cell in cells:
        record = ran["cells"].get(cell["index"])
        if record is not None and not record.get("ok", True):
            ename, evalue = (record.get("error") or ["Error", ""])[:2]
            where = "a set-up cell" if cell["released"] else f"cell {cell['index'] + 1}"
            if ename == "Killed":
                result["notes"].append(f"{where} was stopped and skipped: {evalue}")
            elif ename == "Timeout":
                result["notes"].append(f"{where} was interrupted: {evalue}")
            else:
                result["notes"].append(f"{where} raised {ename}: {str(evalue)[:300]}")

    score = 0.0
    for exercise, spec, cases, expected in plans:
        record = ran["exercises"].get(exercise.name)
        points, verdict, message = _verdict(exercise, spec, cases, expected, record)
        if record and record.get("origin") not in (None, "notebook"):
            result["flags"].append(f"{exercise.name} is not defined in the notebook: it comes from {record['origin']}")
        score += points
        result["exercises"].append(_exercise_result(exercise, points, verdict, message))
    result["score"], result["max_score"] = score, max_score
    if result["flags"] or result["reasons"]:
        result["status"] = "needs_attention"
        result["reasons"].extend(["suspicious code, see flags"] if result["flags"] else [])
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def _exercise_result(exercise: Exercise, points: float, verdict: str, message: str) -> dict:
    return {
        "name": exercise.name,
        "grade_id": exercise.check_id,
        "points": points,
        "max_points": exercise.points,
        "verdict": verdict,
        "message": message,
    }


def _verdict(exercise, spec, cases, expected, record) -> tuple[float, str, str]:
    if record is None:
        return 0.0, "not run", "not graded: the notebook stopped before this exercise could run"
    if "killed" in record:
        return 0.0, "killed", f"{exercise.name} stopped the grading process: {record['killed']}"
    if record.get("missing"):
        return 0.0, "missing", f"there is no function called {exercise.name} in the notebook (renamed, or its cell failed?)"
    if record.get("timeout"):
        return 0.0, "too slow", f"{exercise.name} did not finish its hidden tests within the time limit: look for an endless loop or a much slower method"
    if "harness_error" in record:
        return 0.0, "error", f"{exercise.name} could not be run: {record['harness_error']}"
    try:
        outcomes = [wire.outcome_from_wire(o) for o in record["outcomes"]]
    except Exception:
        return 0.0, "error", f"{exercise.name} returned results the grader could not read"
    if len(outcomes) != len(cases):
        return 0.0, "error", f"{exercise.name} returned results for {len(outcomes)} of {len(cases)} hidden inputs"
    try:
        compare(spec, cases, outcomes, expected, hidden=True)
    except CheckFailure as failure:
        return 0.0, "failed", str(failure)
    return exercise.points, "passed", "correct on all hidden test inputs"
