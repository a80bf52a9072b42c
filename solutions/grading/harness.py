"""The grader's side inside the sandbox: run a submission's cells, then call its functions.

Started by :mod:`solutions.grading.grader` as ``python -I -m solutions.grading.harness
PROGRESS_FILE`` inside the sandbox. It reads one job (JSON) from stdin::

    {"cells": [{"index": 3, "source": "def merge(...): ..."}, ...],
     "exercises": [{"name": "merge", "cases": [<wire-encoded (args, kwargs)>, ...]}, ...],
     "cell_timeout_s": 30, "exercise_timeout_s": 20}

and appends one JSON line per event to PROGRESS_FILE: ``start``/``end`` of every step, then the
raw outcomes of each exercise (wire format). It computes no verdict: the trusted grader compares
the outcomes with the reference. Steps the grader lists as already done (a retry after a crash)
are skipped by the grader itself, which simply sends fewer cells.

A per-step alarm stops ordinary slow code; code that ignores it is killed by the grader, which
sees a ``start`` with no ``end`` and retries without that step.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
import traceback

# Everything the harness needs is bound now, before any student code runs: rebinding these
# names or module attributes later cannot change what the harness calls.
from solutions.checks import SPECS as _SPECS
from solutions.checks.core import Case as _Case
from solutions.checks.core import run as _run
from solutions.checks.core import with_references as _with_references
from solutions.checks import wire as _wire

_dumps, _loads, _decode = json.dumps, json.loads, _wire.decode
_outcome_to_wire = _wire.outcome_to_wire
_monotonic, _write, _fsync = time.monotonic, os.write, os.fsync

MAX_CAPTURE = 64 * 1024  # characters of a cell's printed output kept for feedback


class StepTimeout(BaseException):
    """Raised by the alarm; a BaseException so that `except Exception` in student code misses it."""


def _alarm(signum, frame):
    raise StepTimeout()


class _Capped(io.TextIOBase):
    """Collects printed text up to a limit and drops the rest (huge outputs cost nothing)."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def value(self) -> str:
        return "".join(self.parts) + (f"\n[... {self.dropped} more characters dropped]" if self.dropped else "")


class Progress:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def emit(self, **record) -> None:
        _write(self.fd, (_dumps(record) + "\n").encode("utf-8"))
        _fsync(self.fd)


def _shell():
    """An IPython shell without a kernel: cells get magics and `display`, and no ZMQ start-up."""
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance()


def run_cell(shell, source: str, timeout: float) -> tuple[bool, list | None, str]:
    out = _Capped(MAX_CAPTURE)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    error = None
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = shell.run_cell(source, store_history=False, silent=False)
        exc = result.error_in_exec or result.error_before_exec
        if exc is not None:
            error = [type(exc).__name__, str(exc)[:2000]]
    except StepTimeout:
        error = ["Timeout", f"the cell ran for more than {timeout:g} s"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout, sys.stderr = saved
    if error and error[0] == "StepTimeout":  # raised inside IPython's own handling
        error = ["Timeout", f"the cell ran for more than {timeout:g} s"]
    return error is None, error, out.value()


def run_exercise(shell, name: str, cases_data: list, timeout: float) -> dict:
    fn = shell.user_ns.get(name)
    if fn is None:
        return {"missing": True}
    where = getattr(fn, "__module__", None) or ""
    origin = "notebook" if where in ("__main__", "builtins", "") else where
    spec = _SPECS.get(name)
    cases = [_Case(tuple(_decode(c["args"])), dict(_decode(c["kwargs"]))) for c in cases_data]
    isolated = _with_references(fn, spec.uses if spec is not None else {})
    out = _Capped(MAX_CAPTURE)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        outcomes = _run(isolated, cases)
        timed_out = False
    except StepTimeout:
        outcomes, timed_out = [], True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout, sys.stderr = saved
    if timed_out:
        return {"timeout": True}
    return {"outcomes": [_outcome_to_wire(o) for o in outcomes], "origin": origin}


def main(progress_path: str) -> int:
    progress = Progress(progress_path)
    job = _loads(sys.stdin.read())
    sys.stdin = io.StringIO("")  # nothing for student code to read
    signal.signal(signal.SIGALRM, _alarm)
    started = _monotonic()
    shell = _shell()
    progress.emit(event="ready", seconds=round(_monotonic() - started, 3))
    for cell in job["cells"]:
        progress.emit(event="start", step="cell", index=cell["index"])
        ok, error, output = run_cell(shell, cell["source"], job["cell_timeout_s"])
        progress.emit(event="end", step="cell", index=cell["index"], ok=ok, error=error, output=output)
    for exercise in job["exercises"]:
        progress.emit(event="start", step="exercise", name=exercise["name"])
        try:
            result = run_exercise(shell, exercise["name"], exercise["cases"], job["exercise_timeout_s"])
        except BaseException as exc:  # the harness itself must always report
            result = {"harness_error": f"{type(exc).__name__}: {exc}"[:2000]}
        progress.emit(event="end", step="exercise", name=exercise["name"], **result)
    progress.emit(event="done")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: student atexit hooks and threads get no say


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception:
        traceback.print_exc()
        sys.exit(3)
