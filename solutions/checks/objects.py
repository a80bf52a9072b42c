"""Drivers for answers that work through objects: a cache class, a function given a module.

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


def cache_case(updates: list[tuple[torch.Tensor, torch.Tensor]], label: str = "") -> Case:
    """Build the answer's cache, then feed it ``updates`` (k_new, v_new) one after the other."""
    return Case(([list(u) for u in updates],), label=label)


_MISSING = "<no such attribute>"


def cache_driver(answer: Any) -> Callable:
    """What an empty cache holds (``k`` and ``v`` are None, as the exercise says; a stand-in such
    as ``torch.empty(0)`` would change the dtype and device of everything appended to it), then
    for each update the keys and values it returns and the length after it, each named by meaning."""

    def drive(updates: list) -> dict:
        cache = answer()
        seen = {
            "cache.k before any update": getattr(cache, "k", _MISSING),
            "cache.v before any update": getattr(cache, "v", _MISSING),
            "len(cache) before any update": len(cache),
        }
        for number, (k_new, v_new) in enumerate(updates, start=1):
            k, v = cache.update(k_new, v_new)
            seen[f"the keys update {number} returns"] = k
            seen[f"the values update {number} returns"] = v
            seen[f"len(cache) after update {number}"] = len(cache)
        return seen

    drive.__name__ = getattr(answer, "__name__", "answer")
    return drive


def _describe_cache_case(name: str, case: Case, show: Callable[[Any], str]) -> str:
    (updates,) = case.args
    steps = ", ".join(f"update({show(k)}, {show(v)})" for k, v in updates)
    return f"cache = {name}(); len(cache); then {steps}, with len(cache) after each"


def _reproduce_cache_case(name: str, number: int, case: Case) -> str:
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
    the cache's length after each piece, and the keys and values it holds at the end."""

    def drive(weights: dict, x: torch.Tensor, chunks: list) -> torch.Tensor:
        attn = PlainAttention(weights).to(x.device)
        cache = PlainKVCache()
        outputs, lengths, start = [], [], 0
        for n in chunks:
            outputs.append(answer(attn, x[:, start : start + n], cache))
            lengths.append(len(cache))
            start += n
        # what the cache holds is part of the answer: the keys and values of every position. The
        # outputs keep the key "output", so that a shape message names their axes (spec.dims)
        return {"output": torch.cat([o.detach() for o in outputs], dim=1),
                "len(cache) after each call": lengths,
                "the keys the cache holds at the end": cache.k, "the values the cache holds at the end": cache.v}

    drive.__name__ = getattr(answer, "__name__", "answer")
    return drive


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
