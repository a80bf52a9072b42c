"""Running the program in the sandbox and driving the harness over pipes, with retries.

Its job: start the harness (:mod:`.harness`) in a sandbox (:mod:`.sandbox`) that can read only
the interpreter and the withholding copy of the course package (:mod:`.withhold`), send it one
request at a time (the program's cells, then one exercise at a time) and collect the replies.
A cell that hangs, kills its process or disturbs the protocol costs that cell: :func:`execute`
starts a fresh sandbox, replays the cells that worked, and goes on without it.

Nothing that comes back is trusted. Student code runs in the sandbox's process and may write
to the pipes too, so :class:`_Driver` accepts only one bounded JSON line (never pickle) per
request, the reply to the request in hand (it must repeat that request's fresh nonce), and
stops the run at anything else or at a step that overstays its limit. Replies are returned
raw; their contents are judged by :mod:`.verdicts`. The scratch folder is never read.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import secrets
import select
import sys
import tempfile
import threading
import time
from pathlib import Path

from solutions.grading import sandbox
from solutions.grading.planning import _Plan
from solutions.grading.reading import Released, Settings, _clean


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
