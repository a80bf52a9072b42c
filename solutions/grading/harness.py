"""The grader's side inside the sandbox: run a submission's cells, then call its functions.

Started by :mod:`solutions.grading.execution` inside the sandbox, with two pipes the grader owns:
it reads one request at a time from REQUEST_FD and answers each with one JSON line on
REPLY_FD. Requests (JSON lines)::

    {"op": "cell", "index": 3, "source": "def merge(...): ...", "timeout": 30}
    {"op": "exercise", "name": "merge", "cases": [{"args": <wire>, "kwargs": <wire>, "seed": ..., "device": ...}],
     "uses": [{"module": "solutions.x", "source": "...", "bind": {"name": "qualname"}}],
     "driver": "solutions.checks.modules:module_driver" or null, "timeout": 20}
    {"op": "finish"}

Each request carries a fresh nonce that its reply repeats: a reply is accepted only for the
request in hand, so nothing written in advance can answer a later one.

It computes no verdict and holds no secret beyond the request in hand: the hidden inputs of an
exercise arrive only when that exercise is run, the graded exercise's reference is not in this
process (the package here is a withholding copy, see :mod:`.withhold`), and the trusted grader
compares the raw outputs with the reference outside. Student code runs in this process and can
tamper with anything in it, the harness included; by design that can at most change what
this process answers, which the grader checks against requests it made.

A per-step alarm stops ordinary slow code; code that ignores it is killed by the grader, which
knows which request was open and retries without that step.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import types

# Everything the harness needs is bound now, before any student code runs.
import dataclasses
import importlib

from solutions.checks import core as _core
from solutions.checks import wire as _wire
from solutions.checks.core import Case as _Case
from solutions.checks.core import run as _run
from solutions.checks.core import with_references as _with_references
from solutions.checks.outcome import SANDBOX_FIELDS as _SANDBOX_FIELDS

# torch is imported only by what a notebook or an exercise needs: a chapter-1 notebook, plain
# Python, never pays for `import torch`.
_references_bound = _core.references_bound

_on_device = getattr(_core, "on_device", None)  # cases that name their own device (e.g. "meta")
_CASE_FIELDS = {f.name for f in dataclasses.fields(_Case)}

_dumps, _loads, _decode = json.dumps, json.loads, _wire.decode
_outcome_to_wire = _wire.outcome_to_wire
_write, _read = os.write, os.read

MAX_CAPTURE = 64 * 1024  # characters of a cell's printed output kept for feedback


class _DeferredDynamo(types.ModuleType):
    """Stands in for ``torch._dynamo`` (the compiler) until something really needs it.

    In torch 2.x every Python-implemented operation (every operation on the ``meta`` device,
    which the checks use to find tensors made without ``device=``; an optimiser's step) is
    wrapped in ``torch._disable_dynamo``, which imports ``torch._dynamo`` on its first call
    only to ask for ``disable(fn)``; optimisers also call ``graph_break()``. Outside a
    compilation both change nothing, so this stand-in answers them itself (``fn`` unchanged, no
    break), and the import, measured at 2.5 s of CPU beside 3.4 s for ``import torch`` (torch
    2.13, this project's CPU), is not paid. Any other use (``torch.compile``,
    ``torch._dynamo.is_compiling()``) puts the real module in place first and gets its answer.
    What the stand-in answered stays answered: a function it let through is not hidden from a
    compilation started later in the same sandbox, which grading never does.
    """

    def disable(self, fn=None, recursive=True, wrapping=True, **kwargs):
        if fn is None:  # used as a decorator factory: a decorator that leaves functions alone
            return lambda f: f
        return fn

    def graph_break(self, *args, **kwargs):  # a no-op outside a compilation (optimisers call it)
        return None

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get("torch._dynamo") is self:
            del sys.modules["torch._dynamo"]
        torch = sys.modules["torch"]
        if torch.__dict__.get("_dynamo") is self:
            del torch._dynamo
        return getattr(importlib.import_module("torch._dynamo"), name)


def _defer_dynamo() -> None:
    if "torch" in sys.modules and "torch._dynamo" not in sys.modules:
        sys.modules["torch._dynamo"] = _DeferredDynamo("torch._dynamo")


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


class Channel:
    """Requests in, replies out, one JSON line each, on descriptors the grader passed in."""

    def __init__(self, request_fd: int, reply_fd: int) -> None:
        self.request_fd, self.reply_fd = request_fd, reply_fd
        self.buffer = b""

    def receive(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = _read(self.request_fd, 1 << 20)
            if not chunk:
                return {"op": "finish"}
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return _loads(line)

    def send(self, **record) -> None:
        data = (_dumps(record, ensure_ascii=True) + "\n").encode("ascii")
        while data:
            data = data[_write(self.reply_fd, data):]


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


def stop_children() -> int:
    """Kill every process this one started (and theirs), then reap them; returns how many.

    Called after each step: a step that timed out, or that started a process without waiting
    for it, must not leave work running into the next step, where its memory or CPU would be
    charged to another exercise (a cell interrupted at its time limit while its four children
    were still starting got train_bpe blamed for their memory). Nothing a course notebook does
    needs a process to outlive its cell."""
    killed = 0
    for _ in range(3):  # a child may fork while the list is read: look again until none is left
        found = _kill_descendants(os.getpid())
        killed += found
        if not found:
            break
    with contextlib.suppress(ChildProcessError, OSError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    return killed


def _kill_descendants(me: int) -> int:
    parents = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the fields follow the last ")"
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents[int(entry)] = int(fields[1])
    mine = set()
    for pid in parents:
        chain, p = [], pid
        while p in parents and p not in mine and p != me and p > 1 and len(chain) < 4096:
            chain.append(p)
            p = parents[p]
        if p == me or p in mine:
            mine.update(chain)
    for pid in mine:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(mine)


def _references(uses: list[dict]) -> dict:
    """The references this exercise may use: each module slice runs in a fresh namespace."""
    bound = {}
    for part in uses:
        module = types.ModuleType(part["module"])
        exec(compile(part["source"], f"<{part['module']} (part)>", "exec"), module.__dict__)  # noqa: S102
        for name, qualname in part["bind"].items():
            obj = module
            for attr in qualname.split("."):
                obj = getattr(obj, attr)
            bound[name] = obj
    return bound


def _case(data: dict):
    extra = {k: _decode(data[k]) for k in _SANDBOX_FIELDS if k in _CASE_FIELDS and data.get(k) is not None}
    case = _Case(tuple(_decode(data["args"])), dict(_decode(data["kwargs"])), **extra)
    return _on_device(case, "cpu") if _on_device is not None else case


def _driver(path: str | None):
    """The spec's driver (e.g. the one that builds, loads and runs an nn.Module class)."""
    if not path:
        return None
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for attr in qualname.split("."):
        obj = getattr(obj, attr)
    return obj


def run_exercise(shell, request: dict) -> dict:
    name = request["name"]
    answer = shell.user_ns.get(name)
    if answer is None:
        return {"missing": True}
    where = getattr(answer, "__module__", None) or ""
    origin = "notebook" if where in ("__main__", "builtins", "") else str(where)
    cases = [_case(c) for c in request["cases"]]
    uses = _references(request.get("uses", []))
    fn = answer if isinstance(answer, type) else _with_references(answer, uses)
    driver = _driver(request.get("driver"))
    if driver is not None:
        fn = driver(fn)
    out = _Capped(MAX_CAPTURE)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    signal.setitimer(signal.ITIMER_REAL, request["timeout"])
    # earlier references are bound in the answer's own namespace too, so that a helper of the
    # student's that the answer calls uses them as well (then put back)
    bound = _references_bound(answer, uses) if uses else contextlib.nullcontext()
    try:
        with bound:
            outcomes = _run(fn, cases)
        timed_out = False
    except StepTimeout:
        outcomes, timed_out = [], True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout, sys.stderr = saved
    if timed_out:
        return {"timeout": True}
    return {"outcomes": [_outcome_to_wire(o) for o in outcomes], "origin": origin}


def main(request_fd: int, reply_fd: int) -> int:
    channel = Channel(request_fd, reply_fd)
    sys.stdin = io.StringIO("")  # nothing for student code to read
    signal.signal(signal.SIGALRM, _alarm)
    shell = _shell()
    channel.send(event="ready")
    while True:
        request = channel.receive()
        _defer_dynamo()  # as soon as torch is imported (by a cell; the harness itself does not)
        op = request.get("op")
        if op == "cell":
            ok, error, output = run_cell(shell, request["source"], request["timeout"])
            stop_children()
            channel.send(event="end", step="cell", index=request["index"], nonce=request.get("nonce"),
                         ok=ok, error=error, output=output)
        elif op == "exercise":
            try:
                result = run_exercise(shell, request)
            except BaseException as exc:  # the harness itself must always answer
                result = {"harness_error": f"{type(exc).__name__}: {exc}"[:2000]}
            stop_children()
            channel.send(event="end", step="exercise", name=request["name"], nonce=request.get("nonce"), **result)
        else:
            channel.send(event="done", nonce=request.get("nonce"))
            sys.stdout.flush()
            os._exit(0)  # skip interpreter teardown: student atexit hooks and threads get no say
