"""The check framework: compare a learner's function with the reference, and explain the difference.

Every exercise has a :class:`Spec` with three parts, so that one spec serves both the notebook and
the autograder (see DESIGN.md, "Checks"):

* ``make_cases(seed)`` draws the inputs from a private generator, on the CPU, so every device sees
  the same numbers;
* :func:`run` calls a function on copies of those inputs and returns plain outcomes (values or
  the exception raised), noting any input the function changed in place;
* :func:`compare` checks type, dtype, shape and device before values, each with its own sentence,
  and looks for the likely mistake among the spec's known wrong variants.

In a notebook all three run in the learner's kernel (:func:`check_function`). The autograder runs
only :func:`run` next to the student's code and does the rest in a trusted process.
"""

from __future__ import annotations

import copy
import math
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch

# Tolerances, written once: (rtol, atol) per dtype. CUDA kernels may sum in another order than
# the CPU, so the GPU gets a little more room; the same answer then passes on both.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}
CUDA_SLACK = 10.0  # multiply both tolerances on accelerators
FLOAT_TOLERANCE = (1e-6, 1e-9)  # (rtol, atol) for plain Python floats

PUBLIC_SEED = 0  # the seed of the check cells in notebooks; the grader draws its own


class Unsupported:
    """Stands for a returned value of a type a check cannot compare (see ``wire``)."""

    def __init__(self, type_name: str, text: str = "") -> None:
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unsupported) and self.type_name == other.type_name


class CheckFailure(AssertionError):
    """A check failed: the message is the sentence the learner reads."""


class NotImplementedYet(CheckFailure):
    """The exercise still raises NotImplementedError (an untouched stub)."""


@dataclass
class Case:
    """One call: positional and keyword arguments, and a short label shown in messages."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""


@dataclass
class Mistake:
    """A known wrong way to solve an exercise, and the hint that explains it.

    ``variant`` is a deliberately wrong implementation. When the learner's output differs from
    the reference but equals the variant's, the learner most likely made this mistake. Tests use
    the same variants to prove that the check catches them with this hint.
    """

    name: str
    hint: str
    variant: Callable


@dataclass
class Outcome:
    """What one call produced: a value, or the exception's type and message."""

    value: Any = None
    error: Optional[tuple[str, str]] = None  # (exception type name, message)
    mutated: list[str] = field(default_factory=list)  # names of arguments changed in place
    seconds: float = 0.0
    # the exception itself, in-process only: chained to the failure so the learner sees where
    # their code raised (the grader gets only the type and message)
    exception: Optional[BaseException] = field(default=None, repr=False, compare=False)


@dataclass
class Spec:
    """Everything needed to check one exercise."""

    name: str  # the exercise's function name, identical in the stub and the reference
    chapter: str
    reference: Callable
    make_cases: Callable[[int], list[Case]]
    mistakes: list[Mistake] = field(default_factory=list)
    # diagnose(case, actual, expected) -> hint or None: for mistakes a variant cannot express
    diagnose: Optional[Callable[[Case, Any, Any], Optional[str]]] = None
    # exception type name -> hint, for errors that point at one mistake
    error_hints: dict[str, str] = field(default_factory=dict)
    points: int = 1
    # whether the function may legitimately change its inputs (rare; default: it must not)
    may_mutate: bool = False
    # earlier exercises this one may call, by name -> reference: the learner's function is run
    # with these names bound to the references, so an earlier mistake is not counted twice and
    # an unfinished earlier exercise does not block this one
    uses: dict[str, Callable] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# devices and numerics


def default_device() -> torch.device:
    """The device a learner's code most likely runs on: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextmanager
def exact_math() -> Iterator[None]:
    """Turn off TF32 and other fast-math modes while checking, then restore them."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def to_device(value: Any, device: torch.device | str) -> Any:
    """Move every tensor inside a (nested) value to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    """Exact structural equality that also works for tensors (used to detect in-place changes)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(a.cpu(), b.cpu()))
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return False


def with_references(fn: Callable, uses: dict[str, Callable]) -> Callable:
    """A copy of ``fn`` whose global names in ``uses`` are bound to the reference functions.

    The learner's namespace is not touched: the copy gets its own copy of the globals.
    """
    if not uses or not isinstance(fn, types.FunctionType):
        return fn
    isolated = types.FunctionType(
        fn.__code__, {**fn.__globals__, **uses}, fn.__name__, fn.__defaults__, fn.__closure__
    )
    isolated.__kwdefaults__ = fn.__kwdefaults__
    return isolated


# --------------------------------------------------------------------------------------------
# run: call a function on copies of the inputs


def run(fn: Callable, cases: list[Case]) -> list[Outcome]:
    """Call ``fn`` on a deep copy of every case; never raises for the function's own errors.

    ``NotImplementedError`` is recorded like any other exception; the caller decides.
    """
    __tracebackhide__ = True  # a learner's traceback starts at their own code
    outcomes = []
    for case in cases:
        args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
        start = time.perf_counter()
        try:
            value = fn(*args, **kwargs)
            outcome = Outcome(value=value)
        except Exception as exc:  # the learner's bug, reported as a sentence by compare()
            outcome = Outcome(error=(type(exc).__name__, str(exc)), exception=exc)
        outcome.seconds = time.perf_counter() - start
        outcome.mutated = [
            f"argument {i + 1}" for i, (a, b) in enumerate(zip(args, case.args)) if not _same(a, b)
        ] + [f"argument {k!r}" for k in kwargs if not _same(kwargs[k], case.kwargs[k])]
        outcomes.append(outcome)
    return outcomes


# --------------------------------------------------------------------------------------------
# compare: explain the first difference in plain words


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "a tensor"
    if isinstance(value, Unsupported):
        return f"an object of type {value.type_name}"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def difference(actual: Any, expected: Any, where: str = "the result") -> Optional[str]:
    """The first difference between two values as a sentence, or None if they match.

    Order matters: type, then (for tensors) dtype, shape and device, then values.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            return f"{where} should be a tensor, but it is {_type_name(actual)}."
        if actual.dtype != expected.dtype:
            return f"{where} has dtype {actual.dtype}, expected {expected.dtype}."
        if actual.shape != expected.shape:
            return f"{where} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}."
        if actual.device.type != expected.device.type:
            return f"{where} is on device {actual.device.type}, expected {expected.device.type}."
        return _tensor_values_differ(actual, expected, where)
    if isinstance(expected, bool) or expected is None:
        if actual is not expected and actual != expected:
            return f"{where} is {_short(actual)}, expected {_short(expected)}."
        return None
    if isinstance(expected, float):
        if not isinstance(actual, (int, float)) or isinstance(actual, bool):
            return f"{where} should be a number, but it is {_type_name(actual)}: {_short(actual)}."
        rtol, atol = FLOAT_TOLERANCE
        if math.isnan(expected) != math.isnan(actual) or not (
            math.isnan(expected) or math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol)
        ):
            return f"{where} is {actual!r}, expected {expected!r}."
        return None
    if isinstance(expected, int):
        # bool is an int in Python, and a torch scalar is not an int: be strict on both.
        if not isinstance(actual, int) or isinstance(actual, bool):
            return f"{where} should be an int, but it is {_type_name(actual)}: {_short(actual)}."
        return None if actual == expected else f"{where} is {actual!r}, expected {expected!r}."
    if isinstance(expected, (list, tuple)):
        if type(actual) is not type(expected):
            return f"{where} should be {_type_name(expected)}, but it is {_type_name(actual)}."
        if len(actual) != len(expected):
            return f"{where} has {len(actual)} items, expected {len(expected)}."
        for i, (a, e) in enumerate(zip(actual, expected)):
            found = difference(a, e, f"item {i} of {where}" if where != "the result" else f"item {i}")
            if found:
                return found
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where} should be a dict, but it is {_type_name(actual)}."
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing:
            return f"{where} is missing the key {missing[0]!r} ({len(missing)} missing in all)."
        if extra:
            return f"{where} has an unexpected key {extra[0]!r} ({len(extra)} extra in all)."
        for k in expected:
            found = difference(actual[k], expected[k], f"the value for key {k!r}")
            if found:
                return found
        return None
    if type(actual) is not type(expected):
        return f"{where} should be {_type_name(expected)}, but it is {_type_name(actual)}: {_short(actual)}."
    return None if actual == expected else f"{where} is {_short(actual)}, expected {_short(expected)}."


def _tensor_values_differ(actual: torch.Tensor, expected: torch.Tensor, where: str) -> Optional[str]:
    a, e = actual.detach().cpu(), expected.detach().cpu()
    if not e.is_floating_point():
        wrong = (a != e).nonzero()
    else:
        rtol, atol = TOLERANCES.get(e.dtype, (1e-5, 1e-8))
        if actual.device.type != "cpu":
            rtol, atol = rtol * CUDA_SLACK, atol * CUDA_SLACK
        try:
            torch.testing.assert_close(a, e, rtol=rtol, atol=atol, equal_nan=True)
            return None
        except AssertionError:
            close = torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
            wrong = (~close).nonzero()
    if len(wrong) == 0:
        return None
    index = tuple(wrong[0].tolist())
    share = 100.0 * len(wrong) / max(e.numel(), 1)
    return (
        f"{where} differs at index {list(index)}: {a[index].item():.6g} instead of "
        f"{e[index].item():.6g} ({share:.3g}% of the values are wrong)."
    )


def compare(
    spec: Spec, cases: list[Case], outcomes: list[Outcome], expected: list[Outcome], *, hidden: bool = False
) -> None:
    """Raise :class:`CheckFailure` with a plain sentence at the first case that does not match.

    ``hidden``: the inputs are the grader's secret ones, so messages do not show them.
    """
    for case, got, want in zip(cases, outcomes, expected):
        on = " on a hidden test input" if hidden else f" on {case.label}" if case.label else ""
        if got.error is not None and got.error[0] == "NotImplementedError":
            raise NotImplementedYet(
                f"{spec.name} is not implemented yet: replace `raise NotImplementedError()` "
                f"with your code."
            )
        if want.error is not None and got.error is not None and got.error[0] == want.error[0]:
            continue  # the reference refuses this input too, with the same kind of error
        if got.error is not None:
            kind, message = got.error
            hint = spec.error_hints.get(kind)
            raise CheckFailure(
                f"{spec.name} raised {kind}{on}: {message}" + (f"\nHint: {hint}" if hint else "")
            ) from got.exception
        if want.error is not None:  # the reference refuses this input: the learner must refuse too
            raise CheckFailure(
                f"{spec.name}{on} should raise {want.error[0]} ({want.error[1]}), "
                f"but it returned {_short(got.value)}."
            )
        if got.mutated and not spec.may_mutate:
            raise CheckFailure(
                f"{spec.name} changed its input in place ({', '.join(got.mutated)}){on}; "
                f"work on a copy instead."
            )
        problem = difference(got.value, want.value)
        if problem is None:
            continue
        hint = _likely_mistake(spec, case, got.value, want.value)
        message = f"{spec.name}{on}: {problem}"
        if hint:
            message += f"\nHint: {hint}"
        raise CheckFailure(message)


def _likely_mistake(spec: Spec, case: Case, actual: Any, expected: Any) -> Optional[str]:
    if spec.diagnose is not None:
        hint = spec.diagnose(case, actual, expected)
        if hint:
            return hint
    for mistake in spec.mistakes:
        (variant,) = run(mistake.variant, [case])
        if variant.error is None and difference(actual, variant.value) is None:
            return mistake.hint
    return None


# --------------------------------------------------------------------------------------------
# the notebook entry point


def check_function(
    spec: Spec, fn: Callable, *, seed: int = PUBLIC_SEED, device: torch.device | str | None = None
) -> None:
    """Check ``fn`` against ``spec`` in this process; print one line on success, raise on failure.

    Returns None on purpose: nbgrader would read a returned number as partial credit.
    """
    __tracebackhide__ = True  # IPython then shows the learner's cell and the failure, not our internals
    if not callable(fn):
        raise CheckFailure(f"check.{spec.name} needs your function, but got {_type_name(fn)}.")
    device = torch.device(device) if device is not None else default_device()
    cases = spec.make_cases(seed)
    from solutions.checks import wire  # wire builds on this module

    with exact_math():
        expected = wire.round_trip(run(spec.reference, cases))  # the reference runs on the CPU
        for want in expected:
            want.value = to_device(want.value, device)
        learner_cases = [Case(to_device(c.args, device), to_device(c.kwargs, device), c.label) for c in cases]
        # the same round trip as in the grader, so both give the same verdict
        outcomes = wire.round_trip(run(with_references(fn, spec.uses), learner_cases))
    try:
        compare(spec, learner_cases, outcomes, expected)
    except CheckFailure:
        _record(spec, False)
        raise
    _record(spec, True)
    print(f"✔ {spec.name}: correct on all {len(cases)} test inputs.")


# What this kernel has checked so far, for summary(): spec name -> (spec, passed)
_RESULTS: dict[str, tuple[Spec, bool]] = {}


def _record(spec: Spec, passed: bool) -> None:
    _RESULTS[spec.name] = (spec, passed)
