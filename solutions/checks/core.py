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

A spec also declares its exercise's contract, and the framework enforces it for every chapter
(wrong code that passes a check is the worst defect a course can have, so these are mechanisms,
not one more case per exercise):

* ``gradients``: a result that depends differentiably on its floating-point inputs is judged with
  its gradient too (a second call with inputs that require grad, a fixed cotangent, see
  :func:`run` and :func:`gradient_problem`); a result cut from the graph gets its own sentence;
* ``forbids``: the torch functions the exercise asks the learner not to call are observed while
  the answer runs (a ``TorchFunctionMode``, in the grader's sandbox too: the record travels back
  with the outcome) and an answer that calls one is refused with the exercise's reason;
* ``families``: special values the contract admits (zeros, infinities, huge and tiny values,
  ties, other dtypes) are derived from the spec's own cases (:mod:`.families`);
* ``uses``: earlier exercises are the references while this one is judged, also where the answer
  reaches them through a helper of its own (:func:`references_bound`);
* module exercises: promised attributes, a forward on inputs without grad, gradients of every
  parameter and input (:mod:`.modules`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import random
import re
import sys
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from solutions.checks import wire
from solutions.checks.lazy import imported as _torch_imported
from solutions.checks.lazy import is_tensor as _is_tensor
from solutions.checks.lazy import torch
from solutions.checks.outcome import Case, CheckFailure, NotImplementedYet, Outcome, Unsupported

# Tolerances, written once: (rtol, atol) per dtype. The same on every device, so that one answer
# gets one verdict on the CPU, on CUDA and in the grader (which has no GPU); checks run with TF32
# off (see exact_math), which keeps CUDA's float32 results within these.
# Keyed by the dtype's name (str(dtype) without "torch."): chapter 1 checks without torch.
TOLERANCES: dict[str, tuple[float, float]] = {
    # float64 answers are float64 computations: 1e-9 is far above the rounding of any fair order
    # of operations, and far below what computing in float32 and converting back leaves (1e-8
    # and more)
    "float64": (1e-9, 1e-11),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}


def tolerance_of(dtype: Any) -> tuple[float, float]:
    """(rtol, atol) for a torch dtype."""
    return TOLERANCES.get(str(dtype).replace("torch.", ""), (1e-5, 1e-8))
FLOAT_TOLERANCE = (1e-6, 1e-9)  # (rtol, atol) for plain Python floats

PUBLIC_SEED = 0  # the seed of the check cells in notebooks; the grader draws its own

RETURNED_ITSELF = " (returned as the result)"  # marks an aliased argument in Outcome.mutated

# an input is shown whole in a failure message when its call is at most this long
SHOW_INPUT_CHARS = 600


@dataclass
class Mistake:
    """A known wrong way to solve an exercise, and the hint that explains it.

    ``variant`` is a deliberately wrong implementation. Its hint is given only when the learner's
    outputs agree with the variant's on every case where the variant and the reference differ
    (the cases that tell this mistake apart), never on one coincidental case. Tests use the same
    variants to prove that the check catches them with this hint.
    """

    name: str
    hint: str
    variant: Callable


@dataclass
class Spec:
    """Everything needed to check one exercise."""

    name: str  # the exercise's function name, identical in the stub and the reference
    chapter: str
    reference: Callable
    make_cases: Callable[[int], list[Case]]
    mistakes: list[Mistake] = field(default_factory=list)
    # diagnose(case, actual, expected) -> hint or None: for mistakes a variant cannot express;
    # it must only state facts about this case (it sees no other case)
    diagnose: Optional[Callable[[Case, Any, Any], Optional[str]]] = None
    # hints for errors: "TypeName" or "TypeName: regex" (searched in the message) -> hint
    error_hints: dict[str, str] = field(default_factory=dict)
    points: int = 1
    # whether the function may legitimately change its inputs (rare; default: it must not)
    may_mutate: bool = False
    # earlier exercises this one may call, by name -> reference: the learner's function is run
    # with these names bound to the references, so an earlier mistake is not counted twice and
    # an unfinished earlier exercise does not block this one
    uses: dict[str, Callable] = field(default_factory=dict)
    # the order of a returned dict's keys is part of the answer (e.g. merges in learned order)
    ordered: bool = False
    # the statement promises a Python float: an int is refused (elsewhere an int is a float)
    float_not_int: bool = False
    # (rtol, atol) for this exercise's floats and float32 (and half) tensors, instead of the
    # defaults; float64 tensors keep float64's own unless ``tolerance64`` says otherwise (a
    # tolerance widened for float32's rounding would let float32 computations pass as float64)
    tolerance: Optional[tuple[float, float]] = None
    tolerance64: Optional[tuple[float, float]] = None
    # turns the answer into the function a case calls: None for a plain function;
    # modules.module_driver for an nn.Module class (build, load weights, forward, backward)
    driver: Optional[Callable[[Any], Callable]] = None
    # names of the result tensor's dimensions (for a module: its output's), for shape messages
    dims: Optional[tuple[str, ...]] = None
    # what each item of a returned tuple or list means ("the inputs x", "the targets y"), so that
    # a message names it instead of saying "item 1"
    result_names: Optional[tuple[str, ...]] = None
    # the most elements (tensor elements included) one case's result may hold; a test keeps
    # every spec's reference results within it, so results always fit through the wire
    max_output_items: int = 100_000
    # Whether the result's gradient is part of the answer (a function exercise; a module's driver
    # compares gradients itself). Every case with a floating-point tensor argument is then run a
    # second time with those arguments requiring grad, and the gradient of a fixed random cotangent
    # is compared with the reference's (where the reference's result carries a graph). False for a
    # contract that is not differentiable (ids, counts, an optimiser step), or a function
    # ``case -> bool`` that leaves out the cases where right answers may differ (a kink at 0).
    gradients: Any = True
    # Torch functions the exercise forbids, by the name torch calls them ("relu" covers F.relu,
    # torch.relu, Tensor.relu and nn.ReLU) -> why the exercise asks for it by hand. The check
    # records which of them the answer called (in the grader too) and refuses the answer if any.
    forbids: dict[str, str] = field(default_factory=dict)
    # Special-value families (solutions.checks.families) the contract admits, per argument:
    # {argument index: (family name, ...)}; each adds cases derived from the spec's own.
    families: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # every caller (notebook, grader, tests, benchmarks) draws the cases through make_cases, so
        # the declared contract (gradients, forbidden calls, families) is applied here, once
        base = getattr(self.make_cases, "declared_cases", self.make_cases)

        def make_cases(seed: int) -> list[Case]:
            cases = list(base(seed))
            if self.families:
                from solutions.checks import families

                cases += families.derive(self.families, cases, seed)
            return [_declare(self, case) for case in cases]

        make_cases.declared_cases = base  # type: ignore[attr-defined]
        make_cases.__name__ = getattr(base, "__name__", "make_cases")
        self.make_cases = make_cases


def _tensors_in(value: Any, depth: int = 0) -> list:
    """The tensors inside a value, in order: itself, or inside (nested) lists, tuples and dict
    values (a few levels deep: cases and results are shallow)."""
    if _is_tensor(value):
        return [value]
    if depth < 4 and isinstance(value, (list, tuple, dict)):
        items = value.values() if isinstance(value, dict) else value
        return [t for v in items for t in _tensors_in(v, depth + 1)]
    return []


def _declare(spec: Spec, case: Case) -> Case:
    """The case with the spec's contract on it: whether to compare gradients, which calls to watch."""
    if spec.forbids and not case.forbid:
        case.forbid = tuple(spec.forbids)
    wanted = spec.gradients(case) if callable(spec.gradients) else bool(spec.gradients)
    tensors = _tensors_in((case.args, case.kwargs))
    # float16 and bfloat16 gradients are mostly rounding (two right formulas differ by more than
    # any fair tolerance): such cases compare values only
    if (wanted and spec.driver is None and case.device != "meta"
            and any(t.is_floating_point() for t in tensors)
            and not any(t.dtype in (torch.float16, torch.bfloat16) for t in tensors)):
        case.gradient = True
    return case


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
    """Turn off TF32 and other fast-math modes while checking, then restore them.

    The CPU computes with one thread meanwhile: a check's tensors are small, and on a busy machine
    several threads spend more time waiting for each other than computing (a module check took
    several times longer at a load of 8 on 2 cores)."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
        torch.get_num_threads(),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])
        torch.set_num_threads(saved[3])


def to_device(value: Any, device: torch.device | str) -> Any:
    """Move every tensor inside a (nested) value to ``device``."""
    if _is_tensor(value):
        return value.to(device)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def _equal_values(a: "torch.Tensor", b: "torch.Tensor") -> bool:
    """torch.equal, except that nan equals nan (an input holding nan is not "changed")."""
    if bool(torch.equal(a, b)):
        return True
    if a.is_floating_point() or a.is_complex():
        return bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())
    return False


def _same(a: Any, b: Any) -> bool:
    """Exact structural equality that also works for tensors (used to detect in-place changes)."""
    if _is_tensor(a) or _is_tensor(b):
        return (
            _is_tensor(a)
            and _is_tensor(b)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and (a.device.type == "meta" or b.device.type == "meta" or _equal_values(a.cpu(), b.cpu()))
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
        fn.__code__, {**fn.__globals__, **{k: _unwatched(v) for k, v in uses.items()}}, fn.__name__,
        fn.__defaults__, fn.__closure__,
    )
    isolated.__kwdefaults__ = fn.__kwdefaults__
    return isolated


def _namespace_of(answer: Any) -> Optional[dict]:
    """The global namespace the answer's code reads its names from (a notebook's ``__main__``)."""
    if isinstance(answer, types.FunctionType):
        return answer.__globals__
    if isinstance(answer, type):
        for value in vars(answer).values():
            function = getattr(value, "__func__", value)  # staticmethod, classmethod
            if isinstance(function, types.FunctionType):
                return function.__globals__
    module = sys.modules.get(getattr(answer, "__module__", "") or "")
    return vars(module) if module is not None else None


@contextmanager
def references_bound(answer: Any, uses: dict[str, Any]) -> Iterator[None]:
    """Bind ``uses`` (name -> reference) in the namespace where ``answer`` was defined, then restore.

    An exercise that builds on earlier ones is judged alone: its earlier parts are the references,
    also where the answer reaches them through a helper of its own (``def nll(...)`` calling
    ``log_softmax``), so that two mistakes that cancel out do not earn the point. A class keeps its
    methods' globals (copying it with other globals would break ``super()``), so this is the only
    binding a class gets. The names are put back afterwards, whatever happens.
    """
    namespace = _namespace_of(answer) if uses else None
    if namespace is None:
        yield
        return
    saved = {k: namespace[k] for k in uses if k in namespace}
    namespace.update({k: _unwatched(v) for k, v in uses.items()})
    try:
        yield
    finally:
        for k in uses:
            if k in saved:
                namespace[k] = saved[k]
            else:
                namespace.pop(k, None)


def prepare(spec: Spec, answer: Any) -> Callable:
    """The function the cases call: the answer with earlier references bound, through the driver.

    Around the run, :func:`references_bound` also binds them in the answer's namespace (the only
    binding a class gets: it cannot be copied with other globals).
    """
    fn = answer if isinstance(answer, type) else with_references(answer, spec.uses)
    return spec.driver(fn) if spec.driver is not None else fn


# --------------------------------------------------------------------------------------------
# run: call a function on copies of the inputs


def run(fn: Callable, cases: list[Case]) -> list[Outcome]:
    """Call ``fn`` on a deep copy of every case; never raises for the function's own errors.

    ``NotImplementedError`` is recorded like any other exception; the caller decides. A case
    with a ``seed`` seeds torch's and Python's generators just before the call. A case with
    ``gradient`` is called a second time with its floating-point tensor arguments requiring grad,
    and the gradient of a fixed cotangent is recorded; a case with ``forbid`` records which of
    those torch functions the answer called (in either call).
    """
    __tracebackhide__ = True  # a learner's traceback starts at their own code
    outcomes = []
    for case in cases:
        args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
        versions = [_versions(a) for a in args]
        with _watching(case.forbid) as seen:
            outcome = _call(fn, case, args, kwargs)
            outcome.mutated = [
                f"argument {i + 1}" for i, (a, b) in enumerate(zip(args, case.args)) if not _same(a, b)
            ] + [f"argument {k!r}" for k in kwargs if not _same(kwargs[k], case.kwargs[k])]
            # changed in place and put back: the values are the same, but a graph that saved the
            # tensor can no longer be differentiated (its version counter moved), and an error
            # between the two would have left it changed
            outcome.mutated += [
                f"argument {i + 1}, changed and then put back" for i, (a, before) in enumerate(zip(args, versions))
                if f"argument {i + 1}" not in outcome.mutated and _versions(a) != before
            ]
            # returning a (mutable) argument itself, or a tensor of one inside the result (a list of
            # the input gradients): the caller's object and the result would be one
            outcome.mutated += [
                f"argument {i + 1}{RETURNED_ITSELF}" for i, a in enumerate(args)
                if outcome.error is None and _returns_itself(outcome.value, a)
            ]
            if case.gradient and outcome.error is None and _torch_imported():
                _gradient_call(fn, case, outcome)
        outcome.calls = list(seen)
        outcomes.append(outcome)
    return outcomes


def _versions(value: Any) -> list[int]:
    """The autograd version counters of the tensors in ``value`` (each in-place change adds 1)."""
    if not _torch_imported():
        return []
    versions = []
    for t in _tensors_in(value):
        try:
            versions.append(t._version)
        except RuntimeError:  # an inference tensor keeps no version counter
            versions.append(-1)
    return versions


def _returns_itself(value: Any, argument: Any) -> bool:
    mutable = isinstance(argument, (list, dict, bytearray)) or _is_tensor(argument)
    if value is argument and mutable:
        return True
    if not isinstance(value, (list, tuple)):
        return False
    if mutable and any(item is argument for item in value):  # (decay, no_decay) with names itself
        return True
    # the argument, or the tensors of a list or tuple of them
    inside = [] if isinstance(argument, dict) else _tensors_in(argument, depth=3)
    return any(v is a for v in _tensors_in(value) for a in inside)


def _call(fn: Callable, case: Case, args: tuple, kwargs: dict) -> Outcome:
    __tracebackhide__ = True
    if case.seed is not None:
        if _torch_imported():  # code that has not imported torch cannot draw from it
            torch.manual_seed(case.seed)
        random.seed(case.seed)
    start = time.perf_counter()
    try:
        outcome = Outcome(value=fn(*args, **kwargs))
    except Exception as exc:  # the learner's bug, reported as a sentence by compare()
        outcome = Outcome(error=(type(exc).__name__, str(exc)), exception=exc)
    outcome.seconds = time.perf_counter() - start
    return outcome


def cotangent(output: torch.Tensor, index: int = 0) -> torch.Tensor:
    """The fixed random direction the check backpropagates from a result: the same numbers on
    every device (drawn on the CPU in float64), so every answer is judged on the same gradient."""
    g = torch.Generator().manual_seed(7919 + index)
    values = torch.randn(tuple(output.shape), generator=g, dtype=torch.float64)
    return values.to(dtype=output.dtype, device=output.device)


def _gradient_call(fn: Callable, case: Case, outcome: Outcome) -> None:
    """The second call of a gradient case: inputs that require grad, as they do in training."""
    __tracebackhide__ = True
    args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
    leaves, names = [], []

    def leaf(value: Any, name: str) -> Any:
        if _is_tensor(value) and value.is_floating_point():
            value = value.detach().clone().requires_grad_()
            leaves.append(value)
            names.append(name)
        return value

    args = tuple(leaf(a, str(i + 1)) for i, a in enumerate(args))
    kwargs = {k: leaf(v, k) for k, v in kwargs.items()}
    second = _call(fn, case, args, kwargs)
    if second.error is not None:
        outcome.grad_error, outcome.exception = second.error, second.exception
        return
    outputs = [t for t in _tensors_in(second.value) if t.is_floating_point()]
    outcome.grad_value = second.value
    outcome.has_graph = [bool(t.requires_grad) for t in outputs]
    outcome.grad_of = names
    differentiable = [t for t in outputs if t.requires_grad]
    if not differentiable:
        return
    try:
        grads = torch.autograd.grad(
            differentiable, leaves, [cotangent(t, i) for i, t in enumerate(differentiable)], allow_unused=True
        )
    except Exception as exc:  # a graph that cannot be differentiated: the answer's doing
        outcome.grad_error, outcome.exception = (type(exc).__name__, f"in backward: {exc}"), exc
        return
    outcome.grads = [g.detach() if g is not None else None for g in grads]


# Torch functions a check must not count as the answer's: calls made inside the references an
# exercise is given (its earlier parts) are the reference's, not the learner's.
_UNWATCHED = [0]


def forbidden_name(called: str, names: tuple[str, ...]) -> Optional[str]:
    """Which of the forbidden ``names`` the torch function ``called`` is a form of, or None.

    The same operation goes by several names: an operator overload ("relu.default"), the private
    kernel behind it ("_log_softmax", "_scaled_dot_product_attention_math"), the in-place form
    ("relu_", "gelu_") and the variants ("cross_entropy_loss", "nll_loss_nd", "nll_loss2d"). So
    leading underscores and the overload are dropped, and a name counts when it is a forbidden
    one, begins with it followed by "_" or a digit ("relu6" is a form of relu as well), or holds
    it as a whole part after a prefix ("_fused_rms_norm", "native_layer_norm").
    """
    base = called.split(".", 1)[0].lstrip("_")
    parts = f"_{base}_"
    for name in names:
        if base == name or (base.startswith(name) and base[len(name)] in "_0123456789") or f"_{name}_" in parts:
            return name
    return None


@contextmanager
def _watching(names: tuple[str, ...]) -> Iterator[list[str]]:
    """Record, in order and once each, which of the torch functions ``names`` are called inside."""
    seen: list[str] = []
    if not names or not _torch_imported():  # no torch, no torch call to see
        yield seen
        return
    wanted = tuple(names)

    class Watch(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if not _UNWATCHED[0]:
                found = forbidden_name(getattr(func, "__name__", ""), wanted)
                if found is not None and found not in seen:
                    seen.append(found)
            return func(*args, **(kwargs or {}))

    with Watch():
        yield seen


def _unwatched(reference: Any) -> Any:
    """A reference function whose own torch calls the forbidden-call watch does not count."""
    if not isinstance(reference, types.FunctionType):
        return reference

    @functools.wraps(reference)
    def call(*args: Any, **kwargs: Any) -> Any:
        _UNWATCHED[0] += 1
        try:
            return reference(*args, **kwargs)
        finally:
            _UNWATCHED[0] -= 1

    return call


# --------------------------------------------------------------------------------------------
# compare: explain the first difference in plain words


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    if _is_tensor(value):
        return "a tensor"
    if isinstance(value, Unsupported):
        return f"an object of type {value.type_name}"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _shape_text(shape: tuple, dims: Optional[tuple[str, ...]]) -> str:
    if dims is None or len(dims) != len(shape):
        return str(tuple(shape))
    return "(" + ", ".join(f"{d}={n}" for d, n in zip(dims, shape)) + ")"


def _shape_problem(actual: tuple, expected: tuple, where: str, dims: Optional[tuple[str, ...]]) -> str:
    message = f"{where} has shape {tuple(actual)}, expected {_shape_text(expected, dims)}."
    if sorted(actual) == sorted(expected) and len(set(expected)) == len(expected):
        # every size is distinct (the checks draw them so), so the permutation is known
        order = [list(expected).index(n) for n in actual]
        names = [dims[i] if dims and len(dims) == len(expected) else f"dim {i}" for i in order]
        message += f" The axes are in another order: yours look like ({', '.join(names)})."
    return message


def difference(
    actual: Any,
    expected: Any,
    where: str = "the result",
    *,
    ordered: bool = False,
    tolerance: Optional[tuple[float, float]] = None,
    dims: Optional[tuple[str, ...]] = None,
    names: Optional[tuple[str, ...]] = None,
    float_not_int: bool = False,
) -> Optional[str]:
    """The first difference between two values as a sentence, or None if they match.

    Order matters: type, then (for tensors) dtype, shape and device, then values. ``ordered``:
    a dict's key order must match too. ``tolerance``: (rtol, atol) for floats and float tensors
    instead of the defaults. ``dims``: names of the result tensor's dimensions (or of a module
    result's "output"), used in shape messages. ``names``: what the items of a returned tuple or
    list mean, used instead of "item i" at the top level.
    """
    again = dict(ordered=ordered, tolerance=tolerance, float_not_int=float_not_int)
    if isinstance(expected, Unsupported):
        raise TypeError(f"the reference returned {expected!r}, which a check cannot compare: a bug in the spec")
    if _is_tensor(expected):
        if actual is None and where.startswith("the gradient of"):
            return (
                f"{where} is None: no gradient reaches it. Use the parameter itself in forward "
                f"(not a copy, not .detach(), not under torch.no_grad()), and keep it trainable "
                f"(requires_grad=True, as nn.Parameter makes it)."
            )
        if not _is_tensor(actual):
            return f"{where} should be a tensor, but it is {_type_name(actual)}."
        if actual.dtype != expected.dtype:
            return f"{where} has dtype {actual.dtype}, expected {expected.dtype}."
        if actual.shape != expected.shape:
            return _shape_problem(tuple(actual.shape), tuple(expected.shape), where, dims)
        if actual.device.type != expected.device.type:
            if expected.device.type == "meta":
                return (
                    f"{where} is on device {actual.device.type}, not on the device of the inputs: "
                    f"some tensor is made without device= (or kept as a plain attribute instead of "
                    f"a parameter or buffer), so on a GPU it would be on the wrong device."
                )
            return f"{where} is on device {actual.device.type}, expected {expected.device.type}."
        if expected.device.type == "meta":
            return None  # shapes and dtypes only: meta tensors hold no values
        return _tensor_values_differ(actual, expected, where, tolerance)
    if isinstance(expected, bool) or expected is None:
        if actual is not expected and actual != expected:
            return f"{where} is {_short(actual)}, expected {_short(expected)}."
        return None
    if isinstance(expected, float):
        if not isinstance(actual, (int, float)) or isinstance(actual, bool):
            return f"{where} should be a number, but it is {_type_name(actual)}: {_short(actual)}."
        if isinstance(actual, int) and float_not_int:
            # an int where the exercise promises a Python float (lr_at returning min_lr = 0 as
            # given); elsewhere an int is a float (PEP 484's numeric tower)
            return f"{where} should be a Python float, but it is the int {actual!r}: convert it with float(...)."
        rtol, atol = (tolerance.get("*") if isinstance(tolerance, dict) else tolerance) or FLOAT_TOLERANCE
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
            if names is not None and i < len(names) and where == "the result":
                inner = names[i]
            else:
                inner = f"item {i} of {where}" if where != "the result" else f"item {i}"
            found = difference(a, e, inner, **again)
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
            inner_dims = dims if k == "output" else None
            found = difference(actual[k], expected[k], _key_where(where, k), **again, dims=inner_dims)
            if found:
                return found
        if ordered and list(actual) != list(expected):
            i = next(i for i, (a, e) in enumerate(zip(actual, expected)) if a != e)
            return (
                f"{where} has the right keys in the wrong order: key number {i} is "
                f"{list(actual)[i]!r}, expected {list(expected)[i]!r} (the order is part of the answer)."
            )
        return None
    if type(actual) is not type(expected):
        return f"{where} should be {_type_name(expected)}, but it is {_type_name(actual)}: {_short(actual)}."
    return None if actual == expected else f"{where} is {_short(actual)}, expected {_short(expected)}."


# how the parts of a module result (modules.module_driver) are named in messages
_MODULE_PARTS = {
    "output": "the output of forward",
    "grads": "the gradients",
    "input_grads": "the gradients with respect to forward's inputs",
    "again": "the output of a second call of forward (on other inputs)",
    "copies": "which initial parameters repeat another one's values",
    "init": "the initial parameters",
    "changes_with_seed": "whether the initial parameters are random",
    "calls": "which torch functions forward called",
    "no_grad_output": "the output of forward on inputs that do not require grad",
    "changes_its_input": "whether forward changes its input in place when the input does not require grad",
    "attributes": "the module's attributes",
}


def _key_where(where: str, key: Any) -> str:
    if where == "the result" and key in _MODULE_PARTS:
        return _MODULE_PARTS[key]
    if where == "the gradients":
        return f"the gradient of {key}"
    if where == "the initial parameters":
        return f"the initial {key}"
    if where.startswith("the initial ") and not where.startswith("the initial parameters"):
        return f"{where}'s {key} (rounded)"
    if where == "the module's attributes":
        return f"the attribute {key!r}"
    if where == "which torch functions forward called":
        return f"whether forward called torch's {key}"
    if where.startswith("which initial parameters repeat"):
        return f"whether the initial {key} repeats the values of another parameter (a copy)"
    if where.startswith("whether the initial"):
        return f"whether the initial {key} is random"
    return f"the value for key {key!r}"


def _tensor_values_differ(
    actual: torch.Tensor, expected: torch.Tensor, where: str, tolerance: Optional[tuple[float, float]] = None
) -> Optional[str]:
    a, e = actual.detach().cpu(), expected.detach().cpu()
    if not e.is_floating_point():
        wrong = (a != e).nonzero()
    else:
        rtol, atol = _tolerance_for(tolerance, e.dtype) or tolerance_of(e.dtype)
        if e.dtype in (torch.float16, torch.bfloat16):  # a spec's tolerance is for float32/64
            rtol, atol = (max(a, b) for a, b in zip((rtol, atol), tolerance_of(e.dtype)))
        close = torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
        wrong = (~close).nonzero()
    if len(wrong) == 0:
        return None
    index = tuple(wrong[0].tolist())
    share = 100.0 * len(wrong) / max(e.numel(), 1)
    got, want = a[index].item(), e[index].item()
    if e.dtype == torch.bool:
        return (f"{where} differs at index {list(index)}: {got} instead of {want} "
                f"({share:.3g}% of the values are wrong).")
    digits = 6
    while digits < 17 and f"{got:.{digits}g}" == f"{want:.{digits}g}":
        digits += 2  # enough digits to show the difference (float64's last ones, say)
    return (
        f"{where} differs at index {list(index)}: {got:.{digits}g} instead of "
        f"{want:.{digits}g} ({share:.3g}% of the values are wrong)."
    )


def _tolerance_for(tolerance: Any, dtype: Any) -> Optional[tuple[float, float]]:
    """The (rtol, atol) a tolerance gives tensors of ``dtype``: a plain pair is float32's (and the
    halves'), so float64 gets its own; a dict maps dtype names (and "*" for the rest) to pairs."""
    name = str(dtype).replace("torch.", "")
    if isinstance(tolerance, dict):
        return tolerance.get(name, None if name == "float64" else tolerance.get("*"))
    return None if name == "float64" else tolerance


def _spec_tolerance(spec: Spec) -> Any:
    """The spec's tolerances as :func:`difference` takes them."""
    if spec.tolerance64 is None:
        return spec.tolerance
    return {"*": spec.tolerance, "float64": spec.tolerance64}


def _spec_difference(spec: Spec, actual: Any, expected: Any) -> Optional[str]:
    """:func:`difference` of two results of ``spec``'s exercise, with its settings."""
    return difference(actual, expected, ordered=spec.ordered, tolerance=_spec_tolerance(spec), dims=spec.dims,
                      float_not_int=spec.float_not_int,
                      names=spec.result_names)


def _argument_names(spec: Spec) -> list[str]:
    try:
        return [p.name for p in inspect.signature(spec.reference).parameters.values()]
    except (TypeError, ValueError):
        return []


def _argument_label(spec: Spec, label: str) -> str:
    """"argument 3, ..." as the learner's signature names it: "`x`, ...". A driver
    that passes the answer fewer arguments than a case holds (a probe's kind and weights become
    one module) says so with ``argument_offset``."""
    match = re.match(r"argument (\d+)(.*)", label)
    if match is None:
        return label
    number = int(match.group(1)) - getattr(spec.driver, "argument_offset", 0)
    names = _argument_names(spec)
    if 1 <= number <= len(names):
        return f"`{names[number - 1]}`{match.group(2)}"
    return f"argument {number}{match.group(2)}"


def _gradient_name(spec: Spec, label: str) -> str:
    """An argument named as the exercise names it: "1" -> "W_E" (from the reference's signature)."""
    if label.isdigit():
        names = _argument_names(spec)
        number = int(label)
        return f"`{names[number - 1]}`" if number <= len(names) else f"argument {number}"
    return f"`{label}`"


def gradient_problem(spec: Spec, got: Outcome, want: Outcome) -> Optional[str]:
    """What is wrong with the answer's gradient (as a sentence to follow the exercise's name and
    " on <case>"), or None. Compared only where the reference's result carries a graph."""
    if want.has_graph is None or not any(want.has_graph):
        return None
    if got.grad_error is not None:
        kind, text = got.grad_error
        return f", called with inputs that require grad (as in training), raised {kind}: {text}"
    values = _spec_difference(spec, got.grad_value, want.grad_value)
    if values is not None:
        return (f", called with inputs that require grad (as in training), gives another result "
                f"than without: {values}")
    if not any(got.has_graph or []):
        return (
            ": the result carries no gradient (its requires_grad is False although the inputs require "
            "grad), so training through it would learn nothing. It was cut from the graph: computed "
            "under torch.no_grad(), from a .detach()ed tensor, or rebuilt from numbers (.item(), "
            ".tolist(), torch.tensor(...)). Compute it from the inputs with torch operations."
        )
    if got.has_graph != want.has_graph:
        return (f": part of the result carries no gradient (which parts require grad: {got.has_graph}, "
                f"expected {want.has_graph}); keep every part connected to the inputs.")
    for label, g, w in zip(want.grad_of, got.grads or [], want.grads or []):
        name = _gradient_name(spec, label)
        if w is not None and g is None:
            return (f": no gradient reaches {name} through the result: the path from {name} is cut "
                    f"(.detach(), torch.no_grad(), or a value rebuilt from numbers).")
        if w is None:
            continue
        found = difference(g, w, f"the gradient with respect to {name}", tolerance=_spec_tolerance(spec))
        if found:
            return (f": the values are right, but {found} The function computes them in a way whose "
                    f"derivative differs (a value that should flow back is treated as a constant, or "
                    f"the other way round).")
    return None


def _same_outcome(spec: Spec, a: Outcome, b: Outcome) -> bool:
    """Whether two calls agree: the same kind of error, or values without a difference."""
    if a.error is not None or b.error is not None:
        if a.error is None or b.error is None or a.error[0] != b.error[0]:
            return False
        # the check's own sentence about parameters is deterministic: it must match word for word
        return a.error[0] != "ParameterMismatch" or a.error[1] == b.error[1]
    try:
        return _spec_difference(spec, a.value, b.value) is None and _same_gradient(spec, a, b)
    except TypeError:  # an uncomparable value: they do not agree
        return False


def _same_gradient(spec: Spec, a: Outcome, b: Outcome) -> bool:
    """Whether two calls agree on what a gradient case adds (either may be the wrong one)."""
    if (a.grad_error is None) != (b.grad_error is None):
        return False
    if any(a.has_graph or []) != any(b.has_graph or []):
        return False
    return not any(b.has_graph or []) or gradient_problem(spec, a, b) is None


def _call_text(spec: Spec, case: Case) -> str:
    """The failing call written out, as the learner would type it (a driver may say it better)."""
    describe = getattr(spec.driver, "describe", None)
    if describe is not None:
        return describe(spec.name, case, _argument_text)
    parts = [_argument_text(a) for a in case.args] + [f"{k}={_argument_text(v)}" for k, v in case.kwargs.items()]
    return f"{spec.name}({', '.join(parts)})"


def _argument_text(value: Any) -> str:
    if _is_tensor(value) and (value.is_floating_point() or value.numel() > 24):
        # float values print rounded, and big tensors are cut: name the tensor, check.inputs has it
        return f"<{value.dtype} tensor of shape {tuple(value.shape)}>".replace("torch.", "")
    return repr(value)


# Errors that mean the same mistake in every exercise; a spec's own error_hints come first.
DEFAULT_ERROR_HINTS = {
    "NotImplementedError: meta tensor": (
        "some tensor left the inputs' device (.cpu(), .numpy(), .item() or a tensor made without "
        "device=): the check ran this case on the `meta` device, where that shows as on a GPU."
    ),
    "RuntimeError: a leaf Variable that requires grad is being used in an in-place operation": (
        "forward changes its input in place (x += ..., x[...] = ...): the check needs the input's gradient, "
        "so compute a new tensor instead (x = x + ...)."
    ),
    "RuntimeError: (not on the expected device|same device)": (
        "some tensor is on another device than the inputs: create tensors with device= the inputs' "
        "device, and keep fixed tensors of a module as registered buffers."
    ),
}


def _error_hint(spec: Spec, kind: str, message: str) -> Optional[str]:
    for key, hint in {**spec.error_hints, **DEFAULT_ERROR_HINTS}.items():
        name, _, pattern = key.partition(":")
        if name.strip() == kind and (not pattern.strip() or re.search(pattern.strip(), message)):
            return hint
    return None


def compare(
    spec: Spec, cases: list[Case], outcomes: list[Outcome], expected: list[Outcome], *, hidden: bool = False
) -> None:
    """Raise :class:`CheckFailure` with a plain sentence at the first case that does not match.

    ``hidden``: the inputs are the grader's secret ones, so messages do not show them. Otherwise
    the message shows the failing call whole (when it is short) and how to get its arguments.
    """
    for index, (case, got, want) in enumerate(zip(cases, outcomes, expected)):
        on = " on a hidden test input" if hidden else f" on {case.label}" if case.label else ""
        problem, hint, cause = _first_problem(spec, cases, outcomes, expected, index, on)
        if problem is None:
            continue
        if isinstance(problem, NotImplementedYet):
            raise problem
        message = problem
        if not hidden:
            message += _reproduce(spec, case, index, len(cases))
        if hint:
            message += f"\nHint: {hint}"
        raise CheckFailure(message) from cause


def _first_problem(
    spec: Spec, cases: list[Case], outcomes: list[Outcome], expected: list[Outcome], index: int, on: str
) -> tuple[Any, Optional[str], Optional[BaseException]]:
    """(sentence or NotImplementedYet, hint, exception to chain) for case ``index``, or Nones.

    ``on`` names the case in the sentence (" on <label>").
    """
    case, got, want = cases[index], outcomes[index], expected[index]
    if got.error is not None and got.error[0] == "NotImplementedError" and not got.error[1]:
        # a stub's bare `raise NotImplementedError()`; torch's own NotImplementedErrors have a message
        return (
            NotImplementedYet(
                f"{spec.name} is not implemented yet: replace `raise NotImplementedError()` with your code."
            ),
            None,
            None,
        )
    forbidden = [c for c in got.calls if c in spec.forbids]
    if forbidden:  # a rule of the exercise, whatever the values: said first
        return (
            f"{spec.name}{on} calls torch's `{forbidden[0]}`, which this exercise asks you not to use: "
            f"{spec.forbids[forbidden[0]]}",
            None,
            None,
        )
    if want.error is not None and got.error is not None and got.error[0] == want.error[0]:
        # the reference refuses this input too, with the same kind of error; where the exercise
        # says what the message names (an id, a limit), the message must name it
        missing = [m for m in case.mentions if m not in got.error[1]]
        if missing:
            return (
                f"{spec.name}{on} rightly raised {got.error[0]}, but its message should name "
                f"{' and '.join(repr(m) for m in case.mentions)}; it says: {got.error[1]!r}",
                None,
                None,
            )
        return None, None, None
    if got.error is not None and got.error[0] == "ParameterMismatch":
        return f"{spec.name}{on}: {got.error[1]}", _likely_mistake(spec, cases, outcomes, expected, index), None
    if got.error is not None:
        kind, text = got.error
        hint = _likely_mistake(spec, cases, outcomes, expected, index) or _error_hint(spec, kind, text)
        if want.error is not None:  # refused, but with another kind of error than the exercise asks for
            return f"{spec.name} raised {kind}{on}, where it should raise {want.error[0]}: {text}", hint, got.exception
        return f"{spec.name} raised {kind}{on}: {text}", hint, got.exception
    if want.error is not None:  # the reference refuses this input: the learner must refuse too
        hint = _likely_mistake(spec, cases, outcomes, expected, index)
        # a module's result is the driver's record (output, gradients): not worth showing
        result = "ran without an error" if getattr(spec.driver, "wants_class", False) else f"returned {_short(got.value)}"
        return (
            f"{spec.name}{on} should raise {want.error[0]} ({want.error[1]}), but it {result}.",
            hint,
            None,
        )
    returned = [_argument_label(spec, m[: -len(RETURNED_ITSELF)]) for m in got.mutated if m.endswith(RETURNED_ITSELF)]
    changed = [_argument_label(spec, m) for m in got.mutated if not m.endswith(RETURNED_ITSELF)]
    if changed and not spec.may_mutate:
        return (
            f"{spec.name} changed its input in place ({', '.join(changed)}){on}; work on a copy instead.",
            None,
            None,
        )
    if returned and not spec.may_mutate:
        return (
            f"{spec.name}{on} returned its input ({returned[0]}) itself instead of a new object: "
            f"whatever the caller later does to one changes the other. Return a new one.",
            None,
            None,
        )
    problem = _spec_difference(spec, got.value, want.value)
    if problem is None:
        problem = gradient_problem(spec, got, want)
        if problem is None:
            return None, None, None
        return f"{spec.name}{on}{problem}", _likely_mistake(spec, cases, outcomes, expected, index), got.exception
    hint = None
    if spec.diagnose is not None:
        hint = spec.diagnose(case, got.value, want.value)
    return f"{spec.name}{on}: {problem}", hint or _likely_mistake(spec, cases, outcomes, expected, index), None


def _reproduce(spec: Spec, case: Case, index: int, total: int) -> str:
    call = _call_text(spec, case)
    number = index + 1
    text = f"\nTest input {number} of {total}"
    if len(call) <= SHOW_INPUT_CHARS:
        text += f": {call}"
    else:
        text += f" (too long to show: {len(call):,} characters)"
    how = getattr(spec.driver, "reproduce", None)
    if how is not None:
        text += f"\nTo try it yourself: {how(spec.name, number, case)}"
    elif not case.kwargs:
        text += f"\nTo try it yourself: {spec.name}(*check.inputs({spec.name!r}, {number}))"
    else:
        text += f"\nTo try it yourself: args, kwargs = check.inputs({spec.name!r}, {number}, with_kwargs=True)"
    return text


_HINTS = [True]  # switched off by without_hints()


@contextmanager
def without_hints() -> Iterator[None]:
    """Only the verdict, no search for the likely mistake: for tools that check many wrong
    answers and need no explanation (mutation testing). The verdict is the same."""
    _HINTS.append(False)
    try:
        yield
    finally:
        _HINTS.pop()


def _likely_mistake(
    spec: Spec, cases: list[Case], outcomes: list[Outcome], expected: list[Outcome], index: int
) -> Optional[str]:
    """The hint of the known mistake the learner's outputs agree with, or None.

    A mistake is named only when the learner agrees with it on every case that tells it apart
    from the reference, and case ``index`` is one of them.
    """
    if not _HINTS[-1]:
        return None
    for mistake in spec.mistakes:
        variant = wire.round_trip(run(prepare(spec, mistake.variant), cases))
        telling = [i for i in range(len(cases)) if not _same_outcome(spec, variant[i], expected[i])]
        if index in telling and all(_same_outcome(spec, outcomes[i], variant[i]) for i in telling):
            return mistake.hint
    return None


def case_inputs(spec: Spec, number: int, *, seed: int = PUBLIC_SEED, device: torch.device | str | None = None) -> Case:
    """Test input ``number`` (counted from 1, as failure messages count) of a check, on ``device``."""
    cases = spec.make_cases(seed)
    if not 1 <= number <= len(cases):
        raise ValueError(f"check {spec.name} has test inputs 1 to {len(cases)}, not {number}")
    return on_device(cases[number - 1], torch.device(device) if device is not None else default_device())


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
    if getattr(spec.driver, "wants_class", False) and not isinstance(fn, type):
        raise CheckFailure(f"check.{spec.name} needs your class {spec.name} itself, not {_type_name(fn)}.")
    device = torch.device(device) if device is not None else default_device()
    cases = spec.make_cases(seed)
    with exact_math():
        expected = _cached_expected(spec, seed, cases, device)
        learner_cases = [on_device(c, device) for c in cases]
        # the same round trip as in the grader, so both give the same verdict
        with references_bound(fn, spec.uses):
            outcomes = wire.round_trip(run(prepare(spec, fn), learner_cases))
        try:
            compare(spec, learner_cases, outcomes, expected)
        except CheckFailure:
            _record(spec, False)
            raise
    _record(spec, True)
    print(f"✔ {spec.name}: correct on all {len(cases)} test inputs.")


def on_device(case: Case, device: torch.device | str) -> Case:
    """The case with its tensors on ``device`` (or on the case's own device, e.g. "meta")."""
    target = case.device or device
    return dataclasses.replace(case, args=to_device(case.args, target), kwargs=to_device(case.kwargs, target))


def expected_outcomes(spec: Spec, cases: list[Case], device: torch.device | str) -> list[Outcome]:
    """The reference's outcomes: computed on the CPU (or the case's own device), then moved to ``device``."""
    on_cpu = [on_device(c, "cpu") for c in cases]
    expected = wire.round_trip(run(prepare(spec, spec.reference), on_cpu))
    for case, want in zip(cases, expected):
        want.value = to_device(want.value, case.device or device)
    return expected


# The reference's outcomes of the last few checks, as wire text (decoded afresh on every use, so a
# check cannot change them): a learner who reruns a check, and mutation testing, which checks
# hundreds of wrong versions against the same cases, do not recompute them. This relies on
# make_cases(seed) drawing the same cases for the same seed, as the grader does too (a test keeps
# every spec to it).
_EXPECTED_CACHE: dict[tuple, str] = {}
_EXPECTED_CACHE_SIZE = 8


def _cached_expected(spec: Spec, seed: int, cases: list[Case], device: torch.device) -> list[Outcome]:
    # the objects themselves, not their ids: the cache keeps them alive, so a new spec made in the
    # same place (a test, a reloaded module) can never be taken for an old one
    key = (spec.name, spec.reference, spec.make_cases, spec.driver, seed)
    text = _EXPECTED_CACHE.pop(key, None)
    if text is None:
        on_cpu = [on_device(c, "cpu") for c in cases]
        text = wire.dumps(run(prepare(spec, spec.reference), on_cpu))
    _EXPECTED_CACHE[key] = text  # most recently used last
    while len(_EXPECTED_CACHE) > _EXPECTED_CACHE_SIZE:
        del _EXPECTED_CACHE[next(iter(_EXPECTED_CACHE))]
    expected = wire.loads(text)
    for case, want in zip(cases, expected):
        want.value = to_device(want.value, case.device or device)
    return expected


# What this kernel has checked so far, for summary(): spec name -> (spec, passed)
_RESULTS: dict[str, tuple[Spec, bool]] = {}


def _record(spec: Spec, passed: bool) -> None:
    _RESULTS[spec.name] = (spec, passed)
