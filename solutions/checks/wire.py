"""A safe, plain format for the values a check passes around: JSON, never pickle.

The grader runs a student's function in a sandbox and reads back what it returned. Reading a
pickle would run the student's code in the grader, so values travel as JSON instead, and only
plain types survive: None, bool, int, float, str, bytes, list, tuple, dict and tensors. A
subclass (``Counter``, an ``int`` whose ``==`` always says yes, a tensor subclass) is turned into
its plain base type by the base type's own methods, so its overrides never run in the grader;
anything else becomes an "unsupported" marker that the comparison reports by type name.

Notebook checks send every value through the same round trip, so a learner sees exactly the
verdict the grader will give.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

from solutions.checks.lazy import is_tensor as _is_tensor
from solutions.checks.lazy import torch
from solutions.checks.outcome import Outcome, Unsupported

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DEPTH = 50
MAX_ITEMS = 1_000_000  # elements in all, tensor elements included


class _Budget:
    def __init__(self) -> None:
        self.items = 0

    def spend(self, n: int) -> None:
        self.items += n
        if self.items > MAX_ITEMS:
            raise ValueError(f"the value is too large to check (more than {MAX_ITEMS:,} elements)")


def _short_repr(value: Any) -> str:
    try:
        text = object.__repr__(value)  # never the value's own __repr__
    except Exception:
        text = "?"
    return text[:80]


def encode(value: Any, _depth: int = 0, _budget: _Budget | None = None) -> Any:
    """A JSON-ready form of ``value`` (see the module docstring for what survives)."""
    budget = _budget or _Budget()
    if _depth > MAX_DEPTH:
        raise ValueError("the value is nested too deeply to check")
    # every value costs one item, a tensor one per element: a tensor of exactly MAX_ITEMS fits
    budget.spend(torch.Tensor.numel(value) if _is_tensor(value) else 1)
    if value is None or value is True or value is False:
        return value
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        f = float.__float__(value)
        return f if math.isfinite(f) else {"$float": float.__repr__(f)}
    if isinstance(value, str):
        text = str.__str__(value)
        # JSON reads a high and a low surrogate written side by side as ONE character, so a text
        # holding surrogates (a case of chapter 1) travels as its code points
        return {"$chars": [ord(c) for c in text]} if _SURROGATE.search(text) else text
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(memoryview(value))).decode("ascii")}
    if _is_tensor(value):
        t = torch.Tensor.detach(value)
        if t.device.type == "meta":  # a shape and a dtype, no values
            dtype = str(t.dtype).replace("torch.", "")
            return {"$tensor": {"dtype": dtype, "shape": list(t.shape), "device": "meta", "data": None}}
        cpu = t.to("cpu").contiguous().clone()
        raw = cpu.view(torch.int16) if cpu.dtype == torch.bfloat16 else cpu  # numpy has no bfloat16
        return {
            "$tensor": {
                "dtype": str(cpu.dtype).replace("torch.", ""),
                "shape": list(cpu.shape),
                "device": t.device.type,
                "data": base64.b64encode(raw.numpy().tobytes()).decode("ascii"),
            }
        }
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, _depth + 1, budget) for v in tuple.__iter__(value)]}
    if isinstance(value, list):
        return [encode(v, _depth + 1, budget) for v in list.__iter__(value)]
    if isinstance(value, dict):
        return {"$dict": [[encode(k, _depth + 1, budget), encode(v, _depth + 1, budget)] for k, v in dict.items(value)]}
    return {"$unsupported": [f"{type(value).__module__}.{type(value).__qualname__}", _short_repr(value)]}


_DTYPE_NAMES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")


def decode(data: Any, device: str | None = None) -> Any:
    """The inverse of :func:`encode`. Tensors land on their recorded device when it exists here."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, device) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError("malformed value on the wire")
    ((tag, body),) = data.items()
    if tag == "$float":
        return float(body)
    if tag == "$chars":
        return "".join(chr(int(c)) for c in body)
    if tag == "$bytes":
        return base64.b64decode(body)
    if tag == "$tuple":
        return tuple(decode(v, device) for v in body)
    if tag == "$dict":
        return {_hashable(decode(k, device)): decode(v, device) for k, v in body}
    if tag == "$unsupported":
        return Unsupported(str(body[0]), str(body[1]))
    if tag == "$tensor":
        dtype = getattr(torch, body["dtype"]) if body["dtype"] in _DTYPE_NAMES else None
        if dtype is None:
            return Unsupported(f"tensor of dtype {body['dtype']}", "")
        if body.get("device") == "meta" or body.get("data") is None:
            return torch.empty([int(n) for n in body["shape"]], dtype=dtype, device="meta")
        raw = bytearray(base64.b64decode(body["data"]))
        storage = torch.int16 if dtype == torch.bfloat16 else dtype
        t = torch.frombuffer(raw, dtype=storage) if raw else torch.empty(0, dtype=storage)
        t = t.view(dtype).reshape(body["shape"]) if dtype == torch.bfloat16 else t.reshape(body["shape"])
        target = device or body.get("device", "cpu")
        return t.to(target) if _device_available(target) else t
    raise ValueError(f"unknown tag {tag!r} on the wire")


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    return key


def _device_available(kind: str) -> bool:
    if kind in ("cpu", "meta"):
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    return kind == "mps" and mps is not None and mps.is_available()


def outcome_to_wire(outcome: Outcome) -> dict:
    """One call's outcome as JSON-ready data; a value that cannot be sent becomes an error."""
    gradient: dict = {}
    try:
        value = encode(outcome.value) if outcome.error is None else None
        error = list(outcome.error) if outcome.error else None
        if outcome.has_graph is not None or outcome.grad_error is not None:
            gradient = {
                "grad_value": encode(outcome.grad_value),
                "has_graph": [bool(b) for b in outcome.has_graph or []] if outcome.has_graph is not None else None,
                "grads": encode(outcome.grads) if outcome.grads is not None else None,
                "grad_of": [str(n) for n in outcome.grad_of],
                "grad_error": [str(e) for e in outcome.grad_error] if outcome.grad_error else None,
            }
    except Exception as exc:  # an over-large or self-referencing value: the student's problem
        value, error, gradient = None, ["UncheckableValue", str(exc)], {}
    return {"value": value, "error": error, "mutated": list(outcome.mutated), "seconds": outcome.seconds,
            "calls": [str(c) for c in outcome.calls], **gradient}


def outcome_from_wire(data: dict, device: str | None = None) -> Outcome:
    error = data.get("error")
    grads, has_graph, grad_error = data.get("grads"), data.get("has_graph"), data.get("grad_error")
    return Outcome(
        value=decode(data.get("value"), device) if error is None else None,
        error=(str(error[0]), str(error[1])) if error else None,
        mutated=[str(m) for m in data.get("mutated", [])],
        seconds=float(data.get("seconds", 0.0)),
        calls=[str(c) for c in data.get("calls", [])],
        grad_value=decode(data.get("grad_value"), device),
        has_graph=[bool(b) for b in has_graph] if isinstance(has_graph, list) else None,
        grads=list(decode(grads, device)) if isinstance(grads, list) else None,
        grad_of=[str(n) for n in data.get("grad_of", [])],
        grad_error=(str(grad_error[0]), str(grad_error[1])) if grad_error else None,
    )


def dumps(outcomes: list[Outcome]) -> str:
    return json.dumps([outcome_to_wire(o) for o in outcomes], allow_nan=False)


def loads(text: str, device: str | None = None) -> list[Outcome]:
    return [outcome_from_wire(d, device) for d in json.loads(text)]


def round_trip(outcomes: list[Outcome]) -> list[Outcome]:
    """What the grader would read back: values canonicalised, exceptions kept for the learner."""
    result = loads(dumps(outcomes))
    for new, old in zip(result, outcomes):
        new.exception = old.exception
    return result
