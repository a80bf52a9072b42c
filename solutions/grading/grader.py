"""Grade submissions one by one, each in its own sandbox, with the verdict computed out here.

For one submission:

1. read the notebook defensively (size, JSON, nbformat, number of cells); a notebook that cannot
   be read still gets a result, "needs attention", with the reason;
2. build the program to run: the *released* set-up cells, then the student's code cells in
   notebook order (check cells and demonstration cells are never run; a course cell the student
   changed runs as released first, then as changed, so an import added to it still counts);
3. scan the student's code for things a human should see (:mod:`.suspicious`);
4. run the program in a sandbox whose copy of the course package *withholds* the graded
   exercises' references (:mod:`.withhold`), then ask it for one exercise at a time, over pipes
   this process owns: only then are that exercise's hidden inputs (drawn from a seed the student
   never sees) and the references it may use (``Spec.uses``) handed over, and only a reply to
   the request in hand counts. The outputs come back as JSON (never pickle) and are compared
   here with the reference, by the same specs the notebooks use;
5. a cell that hangs, kills its process or disturbs the protocol costs that cell: the grader
   starts a fresh sandbox, replays the cells that worked, and goes on without it.

The trusted work per submission is bounded (bytes, cells, comparisons) and counted in the
notebook's time budget. The result (points per exercise, a plain-words message for each, notes
and flags) is a plain dict of clean strings; :mod:`.batch` writes it atomically and records it in
the gradebook.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import hmac
import importlib.util
import json
import os
import secrets
import select
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

import solutions
from solutions.checks import SPECS
from solutions.checks import core as checks_core
from solutions.checks import wire
from solutions.checks.core import Case, CheckFailure, compare, exact_math, run
from solutions.checks.outcome import NotImplementedYet
from solutions.grading import sandbox, withhold
from solutions.grading.suspicious import scan
from solutions.notebooks import DEMO_TAG, chapter_module_name, notebook_chapter

RESULT_VERSION = 3  # 3: each exercise also has "outcome" and "mistake" (for the class report)

# What happened to one exercise, in the class report's words (an exercise result's "outcome")
OUTCOMES = ("passed", "failed", "unfinished", "timed_out", "not_run", "needs_attention")


@dataclass
class Settings:
    cell_timeout_s: float = 30.0  # one cell of the student's code
    exercise_timeout_s: float = 20.0  # one exercise's calls on all its hidden inputs
    startup_s: float = 60.0  # python, torch and IPython start-up inside the sandbox
    notebook_budget_s: float = 240.0  # everything for one submission, retries and our own work included
    max_attempts: int = 5  # sandboxes started for one submission after a failure
    max_notebook_bytes: int = 20 * 2**20
    max_cells: int = 2000  # cells of one notebook; more is refused before any work
    max_cell_bytes: int = 16 * 2**10  # a code cell larger than this is not compared with course cells
    compare_budget: int = 20_000  # cell comparisons (cheap filters included) per notebook
    compare_s: float = 10.0  # and at most this long (part of notebook_budget_s)
    memory_bytes: int = 6 * 2**30  # address space per process (torch alone maps ~2-3 GiB)
    total_memory_bytes: int = 4 * 2**30  # resident memory of all the submission's processes together
    disk_bytes: int = 256 * 2**20  # the writable scratch folder (a private tmpfs)
    tmp_bytes: int = 64 * 2**20  # /tmp and /dev/shm, each
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
    _package: Path | None = field(default=None, repr=False)

    def package(self) -> Path:
        """The withholding copy of the course package for this assignment (built once)."""
        if self._package is None or not self._package.is_dir():
            specs = [SPECS[e.name] for e in self.exercises]
            self._package = withhold.package_copy(self.assignment, specs, self.prelude)
        return self._package


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
    with open(path, "rb") as f:
        raw = f.read(settings.max_notebook_bytes + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(
            f"the file is not valid UTF-8 text (byte {exc.start}: {exc.reason}), so it is not a notebook as "
            "Jupyter or Colab saves it; save it again from Jupyter or Colab and hand it in again"
        ) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise Unreadable("the file's JSON is nested too deeply to be a notebook") from None
    except ValueError as exc:
        raise Unreadable(f"the file is not valid JSON, so not a notebook ({_clean(str(exc))[:200]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", []), list):
        raise Unreadable("the file is JSON but not a notebook (no list of cells)")
    if len(data.get("cells", [])) > settings.max_cells:
        raise Unreadable(f"the notebook has {len(data['cells'])} cells, more than the {settings.max_cells} allowed")
    major = data.get("nbformat")
    if major not in (3, 4):
        raise Unreadable(f"unsupported notebook format version {_clean(repr(major))[:40]} (expected 4)")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:  # RecursionError and MemoryError included
        raise Unreadable(f"the notebook's structure is damaged ({type(exc).__name__}: {_clean(str(exc))[:200]})") from None
    if not isinstance(nb.get("cells"), list) or len(nb.cells) > settings.max_cells:
        raise Unreadable("the notebook's structure is damaged (no usable list of cells)")
    return nb


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


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


# --------------------------------------------------------------------------------------------
# hidden inputs, and the order exercises are asked in


def hidden_seed(secret: bytes, assignment: str, student: str, exercise: str) -> int:
    """A seed per student and exercise that only the grader can compute; the same on a re-grade."""
    digest = hmac.new(secret, f"{assignment}/{student}/{exercise}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:6], "big")


def encode_cases(cases: list[Case]) -> list[dict]:
    """What the sandbox needs of each case (never its label, which may describe it)."""
    return [
        {"args": wire.encode(list(c.args)), "kwargs": wire.encode(dict(c.kwargs)),
         "seed": getattr(c, "seed", None), "device": getattr(c, "device", None)}
        for c in cases
    ]


def expected_outcomes(spec, cases: list[Case]) -> list:
    """The reference's outcomes, computed here on the CPU, as the notebooks' checks compute them."""
    with exact_math():
        helper = getattr(checks_core, "expected_outcomes", None)
        if helper is not None:
            return helper(spec, cases, "cpu")
        prepare = getattr(checks_core, "prepare", None)
        fn = prepare(spec, spec.reference) if prepare is not None else spec.reference
        return wire.round_trip(run(fn, cases))


def driver_path(spec) -> str | None:
    """Where the sandbox finds the spec's driver: a reference-free module of the checks."""
    driver = getattr(spec, "driver", None)
    if driver is None:
        return None
    return f"{driver.__module__}:{driver.__qualname__}"


@dataclass
class _Plan:
    exercise: Exercise
    spec: Any
    cases: list
    expected: list
    request: dict  # what the sandbox gets, when it is this exercise's turn
    own: tuple[str, str] | None  # (module, name) of its reference
    exposes: set  # (module, name) pairs its `uses` bring into the sandbox


def order_exercises(plans: list[_Plan]) -> list[_Plan]:
    """Notebook order, except that an exercise whose reference another one uses is asked first:
    once that reference is in the sandbox, the exercise can no longer be graded there."""
    placed: list[_Plan] = []
    todo = list(plans)
    while todo:
        for plan in todo:
            blockers = [p for p in todo if p is not plan and p.own in plan.exposes]
            if not blockers:
                break
        else:
            plan = todo[0]  # a cycle: the grader starts a fresh sandbox where needed
        placed.append(plan)
        todo.remove(plan)
    return placed


# --------------------------------------------------------------------------------------------
# running in the sandbox: the protocol, with retries


LAUNCH = (
    "import sys; sys.path.insert(0, {path!r}); "
    "from solutions.grading.harness import main; main({request_fd}, {reply_fd})"
)
MAX_RECORD_BYTES = 64 * 2**20  # one reply; the outputs of one exercise
PIPE_BYTES = 1 << 20


class _Driver(threading.Thread):
    """The grader's end of the pipes: sends one request at a time and accepts only the reply to
    it. A record nobody asked for, a malformed one or a step that overstays its limit stops the
    run (the sandbox polls ``kill``); the open step is then blamed."""

    GRACE_S = 5.0

    def __init__(self, steps: list[dict], settings: Settings) -> None:
        super().__init__(daemon=True)
        self.steps, self.settings = steps, settings
        self.request_r, self.request_w = os.pipe()
        self.reply_r, self.reply_w = os.pipe()
        for fd in (self.request_w, self.reply_w):
            try:
                fcntl.fcntl(fd, 1031, PIPE_BYTES)  # F_SETPIPE_SZ
            except OSError:
                pass
        os.set_blocking(self.request_w, False)
        os.set_blocking(self.reply_r, False)
        self.position = -1  # the step whose reply is awaited; len(steps) = the final "finish"
        self.replies: dict[int, dict] = {}
        self.ready = self.done = False
        self.violation: str | None = None
        self.fired: str | None = None
        self.kill = False
        self.started = self.since = time.monotonic()
        self.outbox = b""
        self.inbox = b""
        self.nonce: str | None = None
        self.stopping = threading.Event()

    def child_fds(self) -> tuple[int, int]:
        return self.request_r, self.reply_w

    # -- the thread

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.reply_r, select.POLLIN)
        while not self.stopping.is_set() and not self.kill:
            poller.register(self.request_w, select.POLLOUT) if self.outbox else None
            for fd, event in poller.poll(50):
                if fd == self.reply_r:
                    self._read()
                elif fd == self.request_w and self.outbox:
                    self._write()
            if self.outbox:
                self._write()
            else:
                try:
                    poller.unregister(self.request_w)
                except KeyError:
                    pass
            self._check_time()

    def finish(self) -> None:
        """After the run: stop the thread and read what the harness wrote before it ended."""
        self.stopping.set()
        self.join(timeout=5)
        if not self.kill:
            self._read()
        for fd in (self.request_r, self.request_w, self.reply_r, self.reply_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- records

    def _read(self) -> None:
        while not self.kill:
            try:
                chunk = os.read(self.reply_r, 1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not chunk:
                return
            self.inbox += chunk
            while b"\n" in self.inbox and not self.kill:
                line, _, self.inbox = self.inbox.partition(b"\n")
                self._record(line)
            if len(self.inbox) > MAX_RECORD_BYTES:
                self._violate("a reply larger than the grader accepts")

    def _record(self, line: bytes) -> None:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            return self._violate("a reply that is not the harness's (malformed)")
        if not isinstance(record, dict):
            return self._violate("a reply that is not the harness's (not a record)")
        event = record.get("event")
        if not self.ready:
            if event == "ready":
                self.ready = True
                return self._advance()
            return self._violate("a record before the harness was ready")
        if self.done:
            return self._violate("a record after the harness finished")
        if record.get("nonce") != self.nonce:
            return self._violate("a record the grader did not ask for")
        if self.position >= len(self.steps):
            if event == "done":
                self.done = True
                return
            return self._violate("a record the grader did not ask for")
        step = self.steps[self.position]
        key = "index" if step["op"] == "cell" else "name"
        if event == "end" and record.get("step") == step["op"] and record.get(key) == step[key]:
            self.replies[self.position] = record
            return self._advance()
        return self._violate("a record the grader did not ask for")

    def _advance(self) -> None:
        self.position += 1
        self.since = time.monotonic()
        message = self.steps[self.position] if self.position < len(self.steps) else {"op": "finish"}
        self.nonce = secrets.token_hex(16)  # the reply must repeat it: nothing written earlier can
        self.outbox += json.dumps({**message, "nonce": self.nonce}, ensure_ascii=True).encode("ascii") + b"\n"
        self._write()

    def _write(self) -> None:
        try:
            written = os.write(self.request_w, self.outbox)
            self.outbox = self.outbox[written:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.outbox = b""

    def _violate(self, reason: str) -> None:
        self.violation, self.kill = reason, True

    def _check_time(self) -> None:
        now = time.monotonic()
        if not self.ready:
            limit, what = self.settings.startup_s, "start"
        elif self.position < len(self.steps):
            op = self.steps[self.position]["op"]
            limit = self.settings.cell_timeout_s if op == "cell" else self.settings.exercise_timeout_s
            what = "step"
        else:
            limit, what = 10.0, "finish"
        if now - self.since > limit + self.GRACE_S:
            self.fired = (f"it ran for more than {limit:g} s and did not stop when interrupted" if what == "step"
                          else f"no progress for {limit:g} s")
            self.kill = True

    def open_step(self) -> dict | None:
        if self.ready and not self.done and self.position < len(self.steps):
            return self.steps[self.position]
        return None


def _sandbox_paths(released: Released) -> tuple[list[Path], list[tuple[Path, Path]], str]:
    """Paths the sandbox may read (the interpreter, its packages, the withholding copy of the
    course package), mounts that hide any installed copy of the real package, and the folder to
    put first on sys.path."""
    copy = released.package()
    readable = sorted(set(sandbox.python_paths()) | {copy}, key=str)
    mounts = []
    spec = importlib.util.find_spec("solutions")
    for location in (spec.submodule_search_locations or []) if spec else []:
        real = Path(location).resolve()
        if any(r == real or r in real.parents for r in readable):
            mounts.append((copy / "solutions", real))  # an installed copy: covered by ours
    return readable, mounts, str(copy)


def execute(cells: list[dict], plans: list[_Plan], settings: Settings, deadline: float, released: Released) -> dict:
    """Run the program, then ask for the exercises one at a time, surviving cells that hang,
    kill the process or disturb the protocol.

    Returns {"cells": {index: reply}, "exercises": {name: reply}, "attempts": n, "method": ...,
    "failures": [...], "violations": [...], "memory": bool}.
    """
    readable, mounts, package_root = _sandbox_paths(released)
    done_cells: dict[int, dict] = {}
    done_exercises: dict[str, dict] = {}
    skipped: set[int] = set()
    disturbed: set[str] = set()  # steps during which the protocol was disturbed once already
    attempts = failed = 0
    method, failures, violations, memory = None, [], [], False
    while failed < settings.max_attempts and attempts < settings.max_attempts + len(plans):
        todo = [p for p in plans if p.exercise.name not in done_exercises]
        if attempts and not todo:
            break
        batch, exposed = [], set()
        for plan in todo:  # an exercise whose reference is already in this sandbox waits for the next
            if plan.own in exposed:
                break
            batch.append(plan)
            exposed |= plan.exposes
        remaining = deadline - time.monotonic()
        if remaining <= 1:
            failures.append("the time budget for this notebook ran out")
            break
        attempts += 1
        steps = [{"op": "cell", "index": c["index"], "source": c["source"], "timeout": settings.cell_timeout_s}
                 for c in cells if c["index"] not in skipped]
        steps += [{**p.request, "timeout": settings.exercise_timeout_s} for p in batch]
        driver = _Driver(steps, settings)
        with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
            scratch = Path(tmp) / "scratch"
            scratch.mkdir()
            os.chmod(tmp, 0o755)
            request_fd, reply_fd = driver.child_fds()
            driver.start()
            try:
                result = sandbox.run_sandboxed(
                    [sys.executable, "-I", "-c",
                     LAUNCH.format(path=package_root, request_fd=request_fd, reply_fd=reply_fd)],
                    scratch,
                    sandbox.Limits(
                        wall_s=remaining,
                        cpu_s=remaining,
                        memory_bytes=settings.memory_bytes,
                        total_memory_bytes=settings.total_memory_bytes,
                        disk_bytes=settings.disk_bytes,
                        tmp_bytes=settings.tmp_bytes,
                        output_bytes=64 * 1024,
                    ),
                    readable=readable,
                    mounts=mounts,
                    method=settings.method,
                    watchdog=lambda: driver.kill,
                    pass_fds=(request_fd, reply_fd),
                )
            finally:
                driver.finish()
        method = result.method
        memory = memory or result.memory_exceeded
        for position, reply in driver.replies.items():
            step = steps[position]
            if step["op"] == "cell":
                done_cells[step["index"]] = reply
            else:
                done_exercises[step["name"]] = reply
        if driver.done and result.returncode == 0 and not driver.violation:
            continue  # the batch is answered; the next attempt (if any) asks for the rest
        failed += 1
        why = _death_reason(result, driver, settings)
        step = driver.open_step()
        if driver.violation:
            where = _step_name(step)
            violations.append(f"while running {where}, the sandbox sent {driver.violation}")
            if step is not None and where not in disturbed:
                # the record may have been written by an earlier step: run this one again, in a
                # fresh sandbox, before it takes the blame
                disturbed.add(where)
                continue
        if step is None:
            if driver.ready and driver.position >= len(steps):
                continue  # everything was answered; only the goodbye went wrong
            failures.append(f"the grading process {'failed' if driver.ready else 'could not start'}: {why}")
            if not driver.ready:
                detail = _clean(result.stderr.decode("utf-8", "replace")[-800:])
                failures.append(f"start-up error: {detail}")
                break
            continue
        if step["op"] == "cell":
            skipped.add(step["index"])
            done_cells[step["index"]] = {"ok": False, "error": ["Killed", why], "output": ""}
        else:
            done_exercises[step["name"]] = {"killed": why}
        # cells that worked are replayed next time; their results are already recorded
    return {"cells": done_cells, "exercises": done_exercises, "attempts": attempts, "method": method,
            "failures": failures, "violations": violations, "memory": memory}


def _step_name(step: dict | None) -> str:
    if step is None:
        return "no step"
    return f"cell {step['index'] + 1}" if step["op"] == "cell" and step["index"] >= 0 else (
        "a set-up cell" if step["op"] == "cell" else f"exercise {step['name']}")


def _death_reason(result: sandbox.SandboxResult, driver: _Driver, settings: Settings) -> str:
    if driver.violation:
        return f"it disturbed the grader ({driver.violation})"
    if driver.fired:
        return driver.fired
    if result.memory_exceeded:
        return (f"memory limit: its processes together used more than "
                f"{settings.total_memory_bytes / 2**30:g} GiB")
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


def _clean(text: Any) -> str:
    """A string that can go anywhere (UTF-8 files, HTML, sqlite, a terminal): lone surrogates
    and control characters other than newline and tab are written as escapes."""
    if not isinstance(text, str):
        text = str(text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) < 0xA0 for c in text):
        text = "".join(c if (ord(c) >= 32 or c in "\n\t") and not 0x7F <= ord(c) < 0xA0 else f"\\x{ord(c):02x}"
                       for c in text)
    return text


def clean(value: Any) -> Any:
    """:func:`_clean` applied to every string of a result (keys included)."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


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
    plans = []
    for exercise in released.exercises:
        spec = SPECS[exercise.name]
        cases = spec.make_cases(hidden_seed(secret, submission.assignment, submission.student, exercise.name))
        expected = expected_outcomes(spec, cases)
        uses, exposes = withhold.uses_payload(spec)
        request = {"op": "exercise", "name": exercise.name, "cases": encode_cases(cases), "uses": uses,
                   "driver": driver_path(spec)}
        own = withhold._top_name(spec.reference)
        plans.append(_Plan(exercise, spec, cases, expected, request, own, exposes))

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


def _exercise_result(exercise: Exercise, points: float, verdict: str, message: str, *,
                     outcome: str | None = None, mistake: dict | None = None) -> dict:
    return {
        "name": exercise.name,
        "grade_id": exercise.check_id,
        "points": points,
        "max_points": exercise.points,
        "verdict": verdict,
        "message": message,
        "outcome": outcome or exercise_outcome(verdict, message),
        "mistake": mistake,  # the known mistake that explains a failure (see known_mistake), or None
    }


def exercise_outcome(verdict: str, message: str = "") -> str:
    """One of OUTCOMES for a verdict ("unfinished" needs the failure itself: see _verdict)."""
    if verdict == "passed":
        return "passed"
    if verdict == "too slow" or verdict == "killed" and any(
            words in str(message) for words in ("ran for more than", "time budget", "no progress for")):
        return "timed_out"
    if verdict == "not run":
        return "not_run"
    if verdict == "not graded":
        return "needs_attention"
    return "failed"


def known_mistake(spec, hint: str | None) -> dict | None:
    """The known mistake a check's hint belongs to: {"kind", "name", "hint"}, or None for no hint.

    kind "mistake": one of ``spec.mistakes`` (name = its name); "error": an error hint (name = the
    error it matches); "diagnosis": a sentence the spec's ``diagnose`` wrote about one case.
    """
    if not hint:
        return None
    for mistake in spec.mistakes:
        if mistake.hint == hint:
            return {"kind": "mistake", "name": mistake.name, "hint": hint}
    for key, text in {**spec.error_hints, **getattr(checks_core, "DEFAULT_ERROR_HINTS", {})}.items():
        if text == hint:
            return {"kind": "error", "name": key, "hint": hint}
    return {"kind": "diagnosis", "name": "", "hint": hint}


def _failure_hint(spec, cases, outcomes, expected) -> str | None:
    """The hint compare gave for the first failing case, computed again here (never parsed from
    the message, which holds text the student's code wrote). None when there is none."""
    first_problem = getattr(checks_core, "_first_problem", None)
    if first_problem is None:
        return None
    for index in range(len(cases)):
        problem, hint, _ = first_problem(spec, cases, outcomes, expected, index, "")
        if problem is not None:
            return hint
    return None


def _verdict(exercise, spec, cases, expected, record, detail: dict | None = None) -> tuple[float, str, str]:
    """(points, verdict, message); ``detail`` gets "outcome" and "mistake" where _exercise_result
    cannot tell them from the verdict (an unfinished stub; the known mistake behind a failure)."""
    if record is None:
        return 0.0, "not run", "not graded: the notebook stopped before this exercise could run"
    if not isinstance(record, dict):
        return 0.0, "error", f"{exercise.name} returned results the grader could not read"
    if "killed" in record:
        return 0.0, "killed", f"{exercise.name} stopped the grading process: {record['killed']}"
    if record.get("missing"):
        return 0.0, "missing", f"there is no function called {exercise.name} in the notebook (renamed, or its cell failed?)"
    if record.get("timeout"):
        return 0.0, "too slow", f"{exercise.name} did not finish its hidden tests within the time limit: look for an endless loop or a much slower method"
    if "harness_error" in record:
        return 0.0, "error", f"{exercise.name} could not be run: {str(record['harness_error'])[:500]}"
    try:
        outcomes = [wire.outcome_from_wire(o) for o in record["outcomes"]]
    except Exception:
        return 0.0, "error", f"{exercise.name} returned results the grader could not read"
    if len(outcomes) != len(cases):
        return 0.0, "error", f"{exercise.name} returned results for {len(outcomes)} of {len(cases)} hidden inputs"
    try:
        compare(spec, cases, outcomes, expected, hidden=True)
    except NotImplementedYet as failure:
        if detail is not None:
            detail["outcome"] = "unfinished"
        return 0.0, "failed", str(failure)
    except CheckFailure as failure:
        message = str(failure)
        if detail is not None and "\nHint: " in message:  # no hint, no known mistake: skip the work
            try:
                detail["mistake"] = known_mistake(spec, _failure_hint(spec, cases, outcomes, expected))
            except Exception:  # attribution is for the class report; it never costs a verdict
                pass
        return 0.0, "failed", message
    return exercise.points, "passed", "correct on all hidden test inputs"
