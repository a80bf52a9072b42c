"""Drivers for answers that work through objects: a cache class, a function given a module, a
module whose switches are changed after it is built.

Like :mod:`.modules`, these turn an answer into a function of plain data, so that a case can
travel to the grading sandbox and back as tensors only. The objects the answer is handed are
built here from those tensors, with torch alone: this module imports no reference code, so it
may sit next to a student's answer.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from solutions.checks.outcome import Case


class PlainAttention(torch.nn.Module):
    """Just the parameters of the course's ``Attention`` (its names and shapes), filled by a case.

    An answer such as ``forward_cached(attn, x_new, cache)`` reads ``attn.W_Q`` and friends; it
    gets this object, so the check needs no attention code of its own.
    """

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for name, value in weights.items():
            setattr(self, name, torch.nn.Parameter(value.clone()))
        self.n_heads, _, self.d_head = weights["W_Q"].shape


class PlainKVCache:
    """A key/value cache with the course's interface: ``update(k_new, v_new)`` and ``len``."""

    def __init__(self) -> None:
        self.k: Optional[torch.Tensor] = None
        self.v: Optional[torch.Tensor] = None

    def update(self, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k_new if self.k is None else torch.cat([self.k, k_new], dim=-2)
        self.v = v_new if self.v is None else torch.cat([self.v, v_new], dim=-2)
        return self.k, self.v

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]


# --- a cache class ------------------------------------------------------------------------------


def cache_case(updates: list[tuple[torch.Tensor, torch.Tensor]], label: str = "",
               beside: Optional[list[tuple[torch.Tensor, torch.Tensor]]] = None) -> Case:
    """Build the answer's cache, then feed it ``updates`` (k_new, v_new) one after the other.

    ``beside``: the updates of a second cache, built right after the first and fed in turn with
    it (one cache per layer of a model): state that the two share (a class attribute, a module
    global) shows in what either returns."""
    case = Case(([list(u) for u in updates],), label=label)
    if beside is not None:
        case.kwargs = {"beside": [list(u) for u in beside]}
    return case


_MISSING = "<no such attribute>"


def cache_driver(answer: Any) -> Callable:
    """What an empty cache holds (``k`` and ``v`` are None, as the exercise says; a stand-in such
    as ``torch.empty(0)`` would change the dtype and device of everything appended to it), then
    for each update the keys and values it returns and the length after it, each named by meaning."""

    def drive(updates: list, beside: Optional[list] = None) -> dict:
        cache = answer()
        other = answer() if beside is not None else None
        seen = {
            "cache.k before any update": getattr(cache, "k", _MISSING),
            "cache.v before any update": getattr(cache, "v", _MISSING),
            "len(cache) before any update": len(cache),
        }
        if other is not None:
            seen["len(second cache) before any update"] = len(other)
        for number in range(1, max(len(updates), len(beside or [])) + 1):
            if number <= len(updates):
                k, v = cache.update(*updates[number - 1])
                seen[f"the keys update {number} returns"] = k
                seen[f"the values update {number} returns"] = v
                seen[f"len(cache) after update {number}"] = len(cache)
            if other is not None and number <= len(beside):
                k, v = other.update(*beside[number - 1])
                seen[f"the keys update {number} of a second cache (built beside the first) returns"] = k
                seen[f"the values update {number} of a second cache (built beside the first) returns"] = v
                seen[f"len(second cache) after its update {number}"] = len(other)
        return seen

    drive.__name__ = getattr(answer, "__name__", "answer")
    return drive


def _describe_cache_case(name: str, case: Case, show: Callable[[Any], str]) -> str:
    (updates,) = case.args
    steps = ", ".join(f"update({show(k)}, {show(v)})" for k, v in updates)
    text = f"cache = {name}(); len(cache); then {steps}, with len(cache) after each"
    if "beside" in case.kwargs:
        others = ", ".join(f"update({show(k)}, {show(v)})" for k, v in case.kwargs["beside"])
        text += (f"; with a second cache = {name}() built beside it, whose updates ({others}) "
                 f"take turns with the first's")
    return text


def _reproduce_cache_case(name: str, number: int, case: Case) -> str:
    if "beside" in case.kwargs:
        return (f"(updates,), kwargs = check.inputs({name!r}, {number}, with_kwargs=True); cache, second = {name}(), "
                f"{name}(); then in turn cache.update(*updates[i]) and second.update(*kwargs['beside'][i])")
    return f"(updates,) = check.inputs({name!r}, {number}); cache = {name}(); [cache.update(k, v) for k, v in updates]"


cache_driver.wants_class = True
cache_driver.describe = _describe_cache_case
cache_driver.reproduce = _reproduce_cache_case


# --- decoding with a cache ------------------------------------------------------------------------


def decoding_case(weights: dict[str, torch.Tensor], x: torch.Tensor, chunks: list[int], label: str = "") -> Case:
    """Decode ``x`` (batch, seq, d_model) in pieces of the given lengths, with one cache."""
    if sum(chunks) != x.shape[1]:
        raise ValueError("the chunks must add up to the sequence length")
    return Case((dict(weights), x, list(chunks)), label=label)


def decoding_driver(answer: Any) -> Callable:
    """Calls ``answer(attn, x_new, cache)`` piece by piece; returns the outputs joined along seq,
    the cache's length after each piece, and the keys and values it holds at the end; then
    backpropagates a fixed cotangent from the joined outputs and returns the gradient of every
    weight and of x (as ``attn(x)`` gives them: keys and values cached by an earlier piece are
    still part of the graph)."""

    def drive(weights: dict, x: torch.Tensor, chunks: list) -> torch.Tensor:
        attn = PlainAttention(weights).to(x.device)
        cache = PlainKVCache()
        x = x.detach().requires_grad_(x.is_floating_point())
        outputs, lengths, start = [], [], 0
        for n in chunks:
            outputs.append(answer(attn, x[:, start : start + n], cache))
            lengths.append(len(cache))
            start += n
        joined = torch.cat(outputs, dim=1)
        # what the cache holds is part of the answer: the keys and values of every position. The
        # outputs keep the key "output", so that a shape message names their axes (spec.dims)
        result = {"output": joined.detach(),
                  "len(cache) after each call": lengths,
                  "the keys the cache holds at the end": _detached(cache.k),
                  "the values the cache holds at the end": _detached(cache.v)}
        if joined.requires_grad and joined.shape == x.shape and joined.dtype == x.dtype:
            # a misshaped output has its own message (above); no backward then
            g = torch.Generator().manual_seed(7919)
            joined.backward(torch.randn(tuple(x.shape), generator=g, dtype=torch.float64).to(x.dtype).to(x.device))
        result["grads"] = {n: (p.grad.detach() if p.grad is not None else None) for n, p in attn.named_parameters()}
        result["the gradient with respect to x"] = x.grad.detach() if x.grad is not None else None
        return result

    drive.__name__ = getattr(answer, "__name__", "answer")
    return drive


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _describe_decoding_case(name: str, case: Case, show: Callable[[Any], str]) -> str:
    _, x, chunks = case.args
    return f"{name}(attn, x_new, cache) on {show(x)} in pieces of {chunks} positions, one cache throughout"


def _reproduce_decoding_case(name: str, number: int, case: Case) -> str:
    return (
        f"weights, x, chunks = check.inputs({name!r}, {number}); then build an Attention, load the "
        f"weights, and call {name} on x[:, a:b] for each piece with one KVCache"
    )


decoding_driver.describe = _describe_decoding_case
decoding_driver.reproduce = _reproduce_decoding_case


# --- a module whose switches are changed after it is built -----------------------------------------


def switch_case(case: Case, switches: dict[str, Any]) -> Case:
    """A :func:`~solutions.checks.modules.module_case` whose module gets ``switches`` set as
    attributes right after it is built (``attn.fused = True``, as a benchmark or a demo switches
    paths): a module that promises such attributes must read them when it runs, not only in
    ``__init__``. For :func:`switchable_module_driver`."""
    case.kwargs = {**case.kwargs, "switches": dict(switches)}
    return case


def switchable_module_driver(cls: Any) -> Callable:
    """:func:`~solutions.checks.modules.module_driver`, where a case may name ``switches``:
    attributes set on the module after ``__init__`` (then the weights are loaded and forward runs
    as in any module case)."""
    from solutions.checks.modules import module_driver

    plain = module_driver(cls)

    def drive(*args: Any, switches: Optional[dict] = None, **kwargs: Any) -> Any:
        if not switches or not isinstance(cls, type):
            return plain(*args, **kwargs)

        def __init__(self, *a: Any, **k: Any) -> None:
            cls.__init__(self, *a, **k)
            for attribute, value in switches.items():
                setattr(self, attribute, value)

        switched = type(cls.__name__, (cls,), {"__init__": __init__, "__module__": cls.__module__,
                                               "__qualname__": cls.__qualname__})
        return module_driver(switched)(*args, **kwargs)

    drive.__name__ = getattr(cls, "__name__", "answer")
    return drive


def _describe_switched_case(name: str, case: Case, show: Callable[[Any], str]) -> str:
    from solutions.checks.modules import module_driver

    switches = case.kwargs.get("switches")
    text = module_driver.describe(name, case, show)
    if switches:
        text += ", after " + " and ".join(f"m.{k} = {v!r}" for k, v in switches.items()) + " was set on the built module"
    return text


def _reproduce_switched_case(name: str, number: int, case: Case) -> str:
    from solutions.checks.modules import module_driver

    text = module_driver.reproduce(name, number, case)
    switches = case.kwargs.get("switches")
    if switches:
        settings = "; ".join(f"m.{k} = {v!r}" for k, v in switches.items())
        text = text.replace("m.load_state_dict(weights);", f"{settings}; m.load_state_dict(weights);")
    return text


switchable_module_driver.wants_class = True
switchable_module_driver.describe = _describe_switched_case
switchable_module_driver.reproduce = _reproduce_switched_case
