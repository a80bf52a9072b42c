"""Special-value families: the inputs a contract admits that random draws never produce.

Random normal inputs have no exact zeros, no infinities, no values of 1e4 or 1e-30, no ties and
one dtype, so an answer that breaks on any of them (``x * (x > 0)`` at -inf, a mask that takes an
allowed score of exactly 0 for a masked one, ``clamp(min=-20)`` before a softmax, a norm that
underflows) passes a check drawn from them. A spec declares, per argument, the families its
contract admits::

    Spec(..., families={0: ("zeros", "inf", "large", "tiny", "float64")})

and :func:`derive` adds, for each family, one case made from the spec's own first case whose
argument is a floating-point tensor: the same call with that argument changed. The reference is
run on the derived case like on any other, so a family only needs to be *admitted* by the
contract, not to have a known answer. Everything is drawn from the check's seed on the CPU.

Families (the argument is changed as said; "some" is about a quarter of the entries, drawn):

========== =================================================================================
zeros      some entries exactly 0 (and some -0.0)
inf        some entries +inf and some -inf
nan        some entries nan (an elementwise function whose formula gives nan there must too)
neg_inf    some entries -inf, never a whole last-axis row (masked scores)
large      every entry times 1e3 (softmax of such rows is one-hot; squares reach 1e6)
shift      every entry minus 1e4: large negative values with the same differences
tiny       every entry times 1e-30 (lengths far below 1e-8, still normal float32)
ties       the last axis's first entry copied into its second (an exact tie in every row)
float16    every floating-point tensor of the case in float16 (likewise bfloat16, float64)
huge64     the case in float64, the argument times 1e100 (float32 would make it inf)
========== =================================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from solutions.checks.outcome import Case


def _some(shape: torch.Size, g: torch.Generator, share: float = 0.25) -> torch.Tensor:
    """About ``share`` of the entries, and always at least one."""
    pick = torch.rand(tuple(shape), generator=g) < share
    if pick.numel():
        pick.view(-1)[int(torch.randint(pick.numel(), (1,), generator=g))] = True
    return pick


def _zeros(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    pick = _some(x.shape, g)
    signed = _some(x.shape, g, 0.5)
    zero = torch.where(signed, torch.tensor(-0.0), torch.tensor(0.0)).to(x.dtype)
    return torch.where(pick, zero, x)


def _inf(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    pick, positive = _some(x.shape, g), _some(x.shape, g, 0.5)
    if x.numel() >= 2:  # both signs, always
        first, second = torch.randperm(x.numel(), generator=g)[:2].tolist()
        pick.view(-1)[[first, second]] = True
        positive.view(-1)[first], positive.view(-1)[second] = True, False
    inf = torch.where(positive, torch.tensor(float("inf")), torch.tensor(float("-inf"))).to(x.dtype)
    return torch.where(pick, inf, x)


def _nan(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x.masked_fill(_some(x.shape, g), float("nan"))


def _neg_inf(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    pick = _some(x.shape, g, 0.35)
    if x.dim() > 0 and x.shape[-1] > 0:
        keep = torch.randint(x.shape[-1], tuple(x.shape[:-1]) + (1,), generator=g)
        pick = pick & ~torch.zeros_like(pick).scatter(-1, keep, True)  # one finite entry per row
    return x.masked_fill(pick, float("-inf"))


def _last_tie(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if x.dim() == 0 or x.shape[-1] < 2:
        return x
    tied = x.clone()
    tied[..., 1] = tied[..., 0]
    return tied


FAMILIES: dict[str, tuple[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]]] = {
    "zeros": ("some entries exactly 0 or -0.0", _zeros),
    "inf": ("some entries +inf or -inf", _inf),
    "nan": ("some entries nan", _nan),
    "neg_inf": ("some entries -inf (never a whole row)", _neg_inf),
    "large": ("values near +-1e3", lambda x, g: x * 1e3),
    "shift": ("every value minus 1e4", lambda x, g: x - 1e4),
    "tiny": ("values near 1e-30", lambda x, g: x * 1e-30),
    "ties": ("an exact tie in every row", _last_tie),
}
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
# float64 inputs of a size float32 cannot hold: an answer that computes in float32 and casts back
# turns them into inf or nan
HUGE64 = "huge64"


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


def derive(families: dict[int, tuple[str, ...]], cases: list[Case], seed: int) -> list[Case]:
    """One new case per declared (argument, family), made from the first case whose argument at
    that index is a floating-point tensor (on no device of its own). Raises ValueError for a
    family that does not exist or an argument no case has: a bug in the spec."""
    derived = []
    for index, names in families.items():
        base = next(
            (c for c in cases if c.device is None and len(c.args) > index
             and isinstance(c.args[index], torch.Tensor) and c.args[index].is_floating_point()),
            None,
        )
        if base is None:
            raise ValueError(f"no case has a floating-point tensor as argument {index + 1} to derive families from")
        for number, name in enumerate(names):
            label = f"{base.label}, " if base.label else ""
            if name == HUGE64:
                args = list(_cast(base.args, torch.float64))
                args[index] = args[index] * 1e100
                derived.append(dataclasses.replace(
                    base, args=tuple(args), kwargs=_cast(base.kwargs, torch.float64),
                    label=f"{label}in float64, values near 1e100 (beyond float32)"))
                continue
            if name in DTYPES:
                derived.append(dataclasses.replace(
                    base, args=_cast(base.args, DTYPES[name]), kwargs=_cast(base.kwargs, DTYPES[name]),
                    label=f"{label}in {name}"))
                continue
            if name not in FAMILIES:
                raise ValueError(f"unknown special-value family {name!r}; the families are {', '.join([*FAMILIES, *DTYPES, HUGE64])}")
            what, change = FAMILIES[name]
            g = torch.Generator().manual_seed(seed * 1009 + index * 101 + number)
            args = list(base.args)
            args[index] = change(args[index].clone(), g)
            derived.append(dataclasses.replace(base, args=tuple(args), label=f"{label}{what}"))
    return derived
