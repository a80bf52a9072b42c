"""Verdicts: the points and the plain-words message of one exercise, from the sandbox's reply.

Its job: compare the raw outcomes the harness sent for an exercise with the reference's
outcomes computed in the trusted process (:mod:`.planning`), by the same specs and the same
``compare`` the notebooks use, and name the known mistake behind a failure for the class
report (:func:`known_mistake`, :func:`exercise_outcome`).

It runs in the trusted process on student data: a reply is untrusted JSON of any shape, decoded
only by the wire format (:func:`solutions.checks.wire.outcome_from_wire`, never pickle) and
checked for shape before anything is compared. The hint behind a failure is computed again here,
never parsed from the message, which holds text the student's code wrote. Nothing in the
reply is executed.
"""

from __future__ import annotations

from solutions.checks import core as checks_core
from solutions.checks import wire
from solutions.checks.core import CheckFailure, compare
from solutions.checks.outcome import NotImplementedYet
from solutions.grading.reading import Exercise

# What happened to one exercise, in the class report's words (an exercise result's "outcome")
OUTCOMES = ("passed", "failed", "unfinished", "timed_out", "not_run", "needs_attention")
# ... and how the feedback pages and the class report write them (one vocabulary for both)
LABELS = {
    "passed": "passed",
    "failed": "failed",
    "unfinished": "unfinished",
    "timed_out": "timed out",
    "not_run": "not run",
    "needs_attention": "needs attention",
}


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
