"""The plan for one submission: hidden inputs, the reference's outputs, the order of requests.

Its job: for each exercise, draw the hidden inputs from a seed only the grader can compute
(:func:`hidden_seed`), compute the reference's outcomes here on the CPU
(:func:`expected_outcomes`), and prepare the request the sandbox gets when it is that
exercise's turn (:func:`encode_cases`: never a case's label); then order the exercises so that
one whose reference another exercise uses is asked first (:func:`order_exercises`).

Everything here is trusted: it reads the course's specs and runs the course's references, and
it never sees the student's notebook or anything the sandbox sent. The secret and the expected
outcomes stay in this process; only the requests cross into the sandbox.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from solutions.checks import SPECS
from solutions.checks import core as checks_core
from solutions.checks import wire
from solutions.checks.core import Case, exact_math, run
from solutions.checks.outcome import SANDBOX_FIELDS
from solutions.grading import withhold
from solutions.grading.reading import Exercise, Released


def hidden_seed(secret: bytes, assignment: str, student: str, exercise: str) -> int:
    """A seed per student and exercise that only the grader can compute; the same on a re-grade."""
    digest = hmac.new(secret, f"{assignment}/{student}/{exercise}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:6], "big")


def encode_cases(cases: list[Case]) -> list[dict]:
    """What the sandbox needs of each case (never its label, which may describe it)."""
    return [
        {"args": wire.encode(list(c.args)), "kwargs": wire.encode(dict(c.kwargs)),
         **{k: wire.encode(getattr(c, k, None)) for k in SANDBOX_FIELDS}}
        for c in cases
    ]


# The references run here one at a time, each on one intra-op thread (as the answers do in the
# sandbox). One at a time: `run` seeds torch's and Python's global generators before a seeded case,
# so two grading threads computing at once could draw from each other's seed. One thread: with
# more, every small tensor op waits for all of them, and on a busy machine (two workers and their
# sandboxes on two cores) that made module exercises about ten times slower (Attention's hidden
# inputs: 2.5 s instead of 0.25 s at a load of 5 on 2 cores).
_REFERENCES = threading.Lock()


@contextmanager
def _one_at_a_time() -> Iterator[None]:
    with _REFERENCES:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def expected_outcomes(spec, cases: list[Case]) -> list:
    """The reference's outcomes, computed here on the CPU, as the notebooks' checks compute them."""
    with _one_at_a_time(), exact_math():
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



def plan_exercises(released: Released, secret: bytes, assignment: str, student: str) -> list[_Plan]:
    """One plan per exercise, in notebook order: hidden inputs and the reference's outputs are
    computed here, never in the sandbox."""
    plans = []
    for exercise in released.exercises:
        spec = SPECS[exercise.name]
        cases = spec.make_cases(hidden_seed(secret, assignment, student, exercise.name))
        expected = expected_outcomes(spec, cases)
        uses, exposes = withhold.uses_payload(spec)
        request = {"op": "exercise", "name": exercise.name, "cases": encode_cases(cases), "uses": uses,
                   "driver": driver_path(spec)}
        own = withhold._top_name(spec.reference)
        plans.append(_Plan(exercise, spec, cases, expected, request, own, exposes))
    return plans
