"""The plain data a check passes around: a case, what one call produced, and the failures.

Kept apart from the comparison logic (``core``) and the wire format (``wire``) so that both can
import these types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


class Unsupported:
    """Stands for a returned value of a type a check cannot compare (see ``wire``)."""

    def __init__(self, type_name: str, text: str = "") -> None:
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unsupported) and self.type_name == other.type_name

    def __hash__(self) -> int:  # a dict key on the wire may hold one: decoding must not fail
        return hash(("Unsupported", self.type_name))


class CheckFailure(AssertionError):
    """A check failed: the message is the sentence the learner reads."""


class NotImplementedYet(CheckFailure):
    """The exercise still raises NotImplementedError (an untouched stub)."""


@dataclass
class Case:
    """One call: positional and keyword arguments, and a short label shown in messages.

    ``seed``: when set, ``torch``'s and ``random``'s generators are seeded with it just before
    the call, so that code that draws random numbers gives the same result everywhere.
    ``device``: run this case on that device instead of the learner's. "meta" (tensors with a
    shape and no values) finds, on any machine, code that would put a tensor on the wrong device
    on a GPU: a tensor made without ``device=``, a tensor kept outside the module's buffers.
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    seed: Optional[int] = None
    device: Optional[str] = None
    # words an error's message must contain when the reference raises too (the exercise says the
    # message names them: an id, a limit)
    mentions: tuple[str, ...] = ()
    # run it a second time with every floating-point tensor argument requiring grad, backpropagate
    # a fixed cotangent and record the gradient of each such argument (see core.run)
    gradient: bool = False
    # names of torch functions (F.relu -> "relu") whose use the exercise forbids: run records the
    # ones the answer called (Outcome.calls); the verdict is computed by whoever compares
    forbid: tuple[str, ...] = ()


# The fields of a case that the grading sandbox needs besides its arguments: never the label or
# the mentions, which describe the case.
SANDBOX_FIELDS = ("seed", "device", "gradient", "forbid")


@dataclass
class Outcome:
    """What one call produced: a value, or the exception's type and message."""

    value: Any = None
    error: Optional[tuple[str, str]] = None  # (exception type name, message)
    mutated: list[str] = field(default_factory=list)  # names of arguments changed in place
    seconds: float = 0.0
    # when the case asked for gradients (Case.gradient): the result of the second call, made with
    # inputs that require grad, whether it carries a graph, and the gradient of each floating-point
    # tensor argument (None where none reached it); see core.run
    grad_value: Any = None
    has_graph: Optional[list] = None  # per floating-point tensor of that result: requires_grad
    grads: Optional[list] = None  # aligned with grad_of
    grad_of: list[str] = field(default_factory=list)  # "1" (first argument) or a keyword's name
    grad_error: Optional[tuple[str, str]] = None  # raised in the second call or in backward
    # which of the case's forbidden torch functions the answer called (Case.forbid), in order
    calls: list[str] = field(default_factory=list)
    # the exception itself, in-process only: chained to the failure so the learner sees where
    # their code raised (the grader gets only the type and message)
    exception: Optional[BaseException] = field(default=None, repr=False, compare=False)
