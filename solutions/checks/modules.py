"""Checking exercises whose answer is a ``torch.nn.Module`` class.

A class cannot be compared by value, and a returned module cannot travel to the grader (it would
carry the student's code). So a module exercise is checked through what it *does*, with plain
tensors only. :func:`module_driver` turns a class into a function of one case:

1. build the module from a small config (``init``: keyword arguments, e.g. ``d_vocab=11``; an
   argument that is itself an object, such as chapter 5's ``Config``, travels as plain data made
   by :func:`built` and is built again where the module is);
2. compare its parameter names and shapes with the weights the check chose (a missing, extra or
   misshaped parameter is named in the message) and load those weights with ``strict=True``,
   so the learner's module and the reference compute with the same numbers;
3. move it to the device of the inputs, run ``forward`` on them;
4. run ``backward`` with a cotangent the check chose (the gradient of ``(output * cotangent).sum()``)
   and collect every parameter's gradient.

The result, ``{"output": tensor, "grads": {name: tensor or None}}``, is compared like any other
value. A module case is ``Case((init, weights, inputs, cotangent))``; :func:`module_case` builds one,
and :func:`init_case` one that checks how the module initialises its parameters instead.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch.overrides import TorchFunctionMode

from solutions.checks import core
from solutions.checks.outcome import Case


class ParameterMismatch(ValueError):
    """The learner's module does not have the parameters the exercise names."""


def module_case(
    init: dict,
    weights: dict[str, torch.Tensor],
    inputs: tuple,
    cotangent: Optional[torch.Tensor],
    label: str = "",
    watch: tuple[str, ...] = (),
    again: Optional[tuple] = None,
    attributes: tuple[str, ...] = (),
    dtype: Optional[str] = None,
    convert: Optional[str] = None,
) -> Case:
    """One module check: build with ``init``, load ``weights``, run ``forward(*inputs)``, backprop ``cotangent``.

    ``watch``: names of torch functions (e.g. "scaled_dot_product_attention") whose use is part
    of the answer: the result then says which of them forward called. ``weights == {}``: only
    build the module (for a config the exercise says to refuse). ``again``: inputs of a second
    call of the same module (a module that keeps something from its first call shows).
    ``attributes``: names the exercise promises on the module (``self.d_head``, used by a later
    exercise): a missing one is named, and their values are part of the result. ``dtype``: the
    module is converted with ``module.to(torch.<dtype>)`` after it is built, as ``model.double()``
    or ``model.to(device)`` would (a tensor computed in ``__init__`` from a parameter, such as a
    tied ``W_E.T``, stays behind and shows). ``convert``: the tensor inputs (and ``again``'s) are
    converted with ``.to(torch.<convert>)`` where the module runs, for input dtypes that do not travel
    to the grader as such (complex, uint16, uint32, uint64 ids).
    """
    case = Case((dict(init), dict(weights), tuple(inputs), cotangent), label=label)
    if watch:
        case.args = case.args + (tuple(watch),)
    if again is not None:
        case.kwargs = {"again": tuple(again)}
    if attributes:
        case.kwargs = {**case.kwargs, "attributes": tuple(attributes)}
    if dtype is not None:
        case.kwargs = {**case.kwargs, "dtype": str(dtype).replace("torch.", "")}
    if convert is not None:
        case.kwargs = {**case.kwargs, "convert": str(convert).replace("torch.", "")}
    return case


class _Watch(TorchFunctionMode):
    """Notes which of the watched torch functions are called."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names, self.seen = set(names), set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.names:
            self.seen.add(name)
        return func(*args, **(kwargs or {}))


BUILT = "__built__"  # marks an init value that the driver builds: {BUILT: "module:Name", "fields": {...}}


def built(factory: Any, **fields: Any) -> dict:
    """An ``init`` value that is an object, as plain data: ``factory(**fields)`` is called where the
    module is built (in the grading sandbox too, where only plain data may arrive).

    ``factory`` must be a top-level name of the course package that the notebook imports, e.g.
    ``built(Config, d_model=12, n_heads=3)`` for ``TransformerBlock(config=Config(...))``.
    """
    where = f"{factory.__module__}:{factory.__qualname__}"
    if not where.startswith("solutions.") or "." in factory.__qualname__:
        raise ValueError(f"built() takes a top-level name of the course package, not {where}")
    return {BUILT: where, "fields": dict(fields)}


def _is_built(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {BUILT, "fields"}


def build_init(init: dict) -> dict:
    """``init`` with every :func:`built` value replaced by the object it describes."""
    import importlib

    out = {}
    for key, value in init.items():
        if _is_built(value):
            module, name = value[BUILT].split(":")
            if not module.startswith("solutions."):
                raise ValueError(f"cannot build {value[BUILT]}: not a name of the course package")
            out[key] = getattr(importlib.import_module(module), name)(**value["fields"])
        else:
            out[key] = value
    return out


def build_value(value: Any) -> Any:
    """``value`` itself, or the object it describes when it was made by :func:`built`."""
    return build_init({"v": value})["v"]


def built_args_driver(answer: Any) -> Callable:
    """A function of one case whose arguments may be :func:`built` values (e.g. a ``Config``):
    builds them, then calls ``answer`` on the objects (``count_parameters(config)``)."""

    def drive(*args: Any, **kwargs: Any) -> Any:
        return answer(*(build_value(a) for a in args), **{k: build_value(v) for k, v in kwargs.items()})

    drive.__name__ = getattr(answer, "__name__", "answer")
    return drive


def _describe_built_case(name: str, case: Case, show: Callable[[Any], str]) -> str:
    parts = [_init_text(a) if _is_built(a) else show(a) for a in case.args]
    parts += [f"{k}={_init_text(v) if _is_built(v) else show(v)}" for k, v in case.kwargs.items()]
    return f"{name}({', '.join(parts)})"


built_args_driver.describe = _describe_built_case


def fresh_result_driver(answer: Any) -> Callable:
    """A function of one case that calls ``answer`` twice with the same arguments and returns the
    second result; in between, the first result is filled with NaN, as a caller that changes its
    tensor in place (``pe += x``) would. An answer that hands one stored tensor to every caller (a
    cache such as ``functools.lru_cache``, a view of a table kept between calls) then returns NaN."""

    def drive(*args: Any, **kwargs: Any) -> Any:
        first = answer(*args, **kwargs)
        if isinstance(first, torch.Tensor) and (first.is_floating_point() or first.is_complex()) and first.device.type != "meta":
            try:
                with torch.no_grad():
                    first.fill_(float("nan"))
            except RuntimeError:  # a tensor that cannot be written (an expanded view): nobody can spoil it
                pass
        return answer(*args, **kwargs)

    drive.__name__ = getattr(answer, "__name__", "answer")
    return drive


def init_case(init: dict, label: str = "the initial weights", seed: int = 0) -> Case:
    """A case that builds the module and reports each parameter's mean and standard deviation.

    With a large config (tens of thousands of numbers per parameter) the sample statistics of a
    right initialisation round to the stated ones (3 decimals; the rounding boundary is more than
    five standard errors away), so the check compares them exactly; a wrong scale, a wrong mean or
    no initialisation at all (``torch.empty`` gives NaN while the case runs) shows. The module is
    also built under a second seed: a random initialisation changes with it.
    """
    return Case((dict(init), None, None, None), label=label, seed=seed)


class _EmptyIsNaN(TorchFunctionMode):
    """Makes torch.empty (and its kin) return NaN instead of whatever memory held before, so a
    parameter that is never initialised shows as NaN, not as the numbers of the last module."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.empty, torch.empty_like, torch.Tensor.new_empty) and isinstance(out, torch.Tensor) and out.is_floating_point():
            with torch.no_grad():
                out.fill_(float("nan"))
        return out


def _initialisation(cls: Any, init: dict) -> dict:
    """Each parameter's rounded statistics, and whether it changes with the seed.

    Raises :class:`ParameterMismatch` when the two modules built here share the memory of a
    parameter (a tensor cached between builds, a module-level constant): every module must own its
    parameters, or training or loading one changes the others."""
    seed = torch.initial_seed()
    with _EmptyIsNaN():
        first = cls(**build_init(init))
        torch.manual_seed(seed + 1)
        second = cls(**build_init(init))
    _shares_parameters(getattr(cls, "__name__", "module"), first, second)
    _repeats_within(getattr(cls, "__name__", "module"), first)
    moved = {
        n: not torch.equal(p.detach(), q.detach())
        for (n, p), (_, q) in zip(first.named_parameters(), second.named_parameters())
    }
    return {"init": _init_statistics(first), "changes_with_seed": moved, "copies": _copies(first)}


def _repeats_within(name: str, module: torch.nn.Module) -> None:
    """Raise :class:`ParameterMismatch` when a randomly drawn parameter holds two equal slices
    along one of its axes (two rows of W_E, two hidden units of an MLP, two heads): independent
    draws are never equal, and copies get equal gradients, so they would stay copies in training.
    Constant parameters (zeros, ones) are what they are meant to be and are left alone."""
    for pname, p in module.named_parameters():
        values = p.detach()
        if values.ndim < 2 or values.numel() < 4 or values.device.type == "meta" or not values.is_floating_point():
            continue
        if not bool(torch.isfinite(values).all()) or bool((values == values.flatten()[0]).all()):
            continue
        for axis in range(values.ndim):
            size = values.shape[axis]
            if size < 2:
                continue
            slices = values.movedim(axis, 0).reshape(size, -1)
            _, which, counts = torch.unique(slices, dim=0, return_inverse=True, return_counts=True)
            if len(counts) < size:
                repeated = int(torch.nonzero(counts > 1)[0])
                i, j = torch.nonzero(which == repeated).flatten()[:2].tolist()
                raise ParameterMismatch(
                    f"{name}.{pname} starts with two equal slices along axis {axis} (index {i} and {j} hold the "
                    f"same numbers): draw every number on its own (one torch.randn of the whole shape); "
                    f"copies get equal gradients, so they would stay copies in training."
                )


def _storage(p: torch.Tensor) -> Optional[int]:
    """Where a parameter's numbers live (its storage, shared by every view of it), or None where
    there is nothing to share (no numbers, the meta device)."""
    if p.numel() == 0 or p.device.type == "meta":
        return None
    return p.untyped_storage().data_ptr()


def _shares_parameters(name: str, first: torch.nn.Module, second: torch.nn.Module) -> None:
    """Raise :class:`ParameterMismatch` naming the first parameter of ``first`` whose memory is also
    a parameter's of ``second``, another module built from the same config."""
    theirs: dict[int, str] = {}
    for n, q in second.named_parameters():
        where = _storage(q)
        if where is not None:
            theirs.setdefault(where, n)
    for n, p in first.named_parameters():
        other = theirs.get(_storage(p)) if _storage(p) is not None else None
        if other is not None:
            also = "" if other == n else f" (the other's {other})"
            raise ParameterMismatch(
                f"two {name}s built one after the other share the tensor of {n}{also}: create each parameter "
                f"afresh in __init__ (nn.Parameter(torch.zeros(...))), not from a tensor kept outside the module "
                f"(a cache, a module-level constant, a default argument). nn.Parameter does not copy, so "
                f"training or loading one {name} would change every other one, the blocks of a model included."
            )


def _copies(module: torch.nn.Module) -> dict[str, bool]:
    """For each parameter, whether another one holds the same values in some order (a copy, a
    transpose). Each random parameter is drawn on its own, so only constants (ones, zeros) repeat;
    a bool, not a name, so that the order in which the parameters were created does not matter."""
    keys = {n: p.detach().flatten().double().sort().values.cpu().numpy().tobytes() for n, p in module.named_parameters()}
    counts: dict[bytes, int] = {}
    for key in keys.values():
        counts[key] = counts.get(key, 0) + 1
    return {n: counts[key] > 1 for n, key in keys.items()}


def _init_statistics(module: torch.nn.Module) -> dict[str, dict[str, float]]:
    stats = {}
    for n, p in module.named_parameters():
        values = p.detach().double()
        if not bool(torch.isfinite(values).all()):
            stats[n] = {"std": float("nan"), "mean": float("nan")}
            continue
        mean, std = values.mean(), values.std()
        z = (values.flatten() - mean) / std.clamp_min(1e-12)
        # the shape of the distribution (kurtosis: 3 for a normal, 1.8 for a uniform) to the
        # nearest 0.5, and the correlation of neighbouring values (0 for independent draws, 1 for
        # sorted ones) to one decimal; both are many standard errors from a rounding boundary
        kurtosis = round(2 * (z**4).mean().item()) / 2
        neighbours = round((z[1:] * z[:-1]).mean().item(), 1)
        # + 0.0 turns a rounded -0.0 into 0.0
        stats[n] = {  # the standard deviation first: a wrong scale is the likelier mistake
            "std": round(std.item(), 3) + 0.0,
            "mean": round(mean.item(), 3) + 0.0,
            "kurtosis": kurtosis + 0.0,
            "neighbour correlation": neighbours + 0.0,
        }
    return stats


def _shapes(named: dict[str, Any]) -> str:
    return ", ".join(f"{n} {tuple(t.shape)}" for n, t in named.items()) or "none"


def check_parameters(module: torch.nn.Module, weights: dict[str, torch.Tensor], name: str) -> None:
    """Raise :class:`ParameterMismatch` naming the first parameter that is missing, extra or misshaped."""
    have = module.state_dict()
    missing = [n for n in weights if n not in have]
    extra = [n for n in have if n not in weights]
    if missing:
        raise ParameterMismatch(
            f"{name} has no parameter {missing[0]!r} (shape {tuple(weights[missing[0]].shape)}); "
            f"it has: {_shapes(have)}. Give the parameter the name the exercise uses."
        )
    if extra:
        raise ParameterMismatch(
            f"{name} has a parameter or buffer {extra[0]!r} that the exercise does not ask for; "
            f"it should have exactly: {_shapes(weights)}."
        )
    for n, t in weights.items():
        if tuple(have[n].shape) != tuple(t.shape):
            raise ParameterMismatch(f"{name}.{n} has shape {tuple(have[n].shape)}, expected {tuple(t.shape)}.")


def _first_tensor(value: Any) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for v in value:
            found = _first_tensor(v)
            if found is not None:
                return found
    return None


def _differentiable(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def module_driver(cls: Any) -> Callable:
    """A function of one module case that builds, loads, runs and backprops ``cls`` (see module doc)."""
    name = getattr(cls, "__name__", type(cls).__name__)

    def drive(init: dict, weights: dict, inputs: tuple, cotangent: Optional[torch.Tensor], watch: tuple = (),
              again: Optional[tuple] = None, attributes: tuple = (), dtype: Optional[str] = None,
              convert: Optional[str] = None) -> dict:
        if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
            raise TypeError(f"{name} should be a class derived from torch.nn.Module")
        if convert is not None:
            inputs = _converted(inputs, convert)
            again = _converted(again, convert) if again is not None else None
        if weights is None:  # an init_case
            return _initialisation(cls, init)
        module = cls(**build_init(init))
        if not weights:  # only building it was asked (a config to refuse)
            return {"built": True}
        check_parameters(module, weights, name)
        missing = [a for a in attributes if not hasattr(module, a)]
        if missing:
            raise ParameterMismatch(
                f"{name} has no attribute {missing[0]!r}: the exercise asks you to store it "
                f"(self.{missing[0]} = ...), and later code reads it by that name."
            )
        if dtype is not None:
            if dtype not in ("float64", "float32", "float16", "bfloat16"):
                raise ValueError(f"module_case dtype must be a float dtype's name, not {dtype!r}")
            module.to(getattr(torch, dtype))
        first = _first_tensor(inputs)
        if first is not None:
            # moved before loading, so that on the `meta` device nothing is copied out of meta
            # tensors; a tensor kept as a plain attribute (not a parameter or buffer) stays behind
            # on the CPU, as it would on a GPU, and the forward pass shows it
            module.to(first.device)
        module.load_state_dict(weights, strict=True)
        # float inputs are leaves that need a gradient: the gradient that flows back into the
        # input (what the layers before receive) is part of the answer, not only the parameters'
        inputs = tuple(x.detach().requires_grad_() if _differentiable(x) else x for x in inputs)
        with _Watch(tuple(watch)) as watching:
            output = module(*inputs)
        # a misshaped output cannot take the check's cotangent: backward is skipped, so that the
        # output's own comparison (its shape, named by axis) is what the learner reads, not an
        # error of the check's machinery
        if (cotangent is not None and isinstance(output, torch.Tensor) and output.requires_grad
                and output.shape == cotangent.shape and output.dtype == cotangent.dtype):
            output.backward(cotangent)
        grads = {n: (p.grad.detach() if p.grad is not None else None) for n, p in module.named_parameters()}
        out = output.detach() if isinstance(output, torch.Tensor) else output
        result = {"output": out, "grads": grads}
        if cotangent is not None and any(_differentiable(x) for x in inputs):
            result["input_grads"] = [x.grad.detach() if x.grad is not None else None for x in inputs if _differentiable(x)]
        if any(_differentiable(x) for x in inputs):
            # the same call on inputs that do not require grad (as in evaluation, or under
            # torch.no_grad()): the same output, and the input left as it was
            plain = tuple(x.detach().clone() if isinstance(x, torch.Tensor) else x for x in inputs)
            kept = [x.clone() for x in plain if isinstance(x, torch.Tensor)]
            quiet = module(*plain)
            result["no_grad_output"] = quiet.detach() if isinstance(quiet, torch.Tensor) else quiet
            result["changes_its_input"] = not all(
                a.device.type == "meta" or torch.equal(a, b)
                for a, b in zip(kept, (x for x in plain if isinstance(x, torch.Tensor)))
            )
        if attributes:
            result["attributes"] = {a: _plain(getattr(module, a)) for a in attributes}
        if watch:
            result["calls"] = {f: f in watching.seen for f in watch}
        if again is not None:
            with torch.no_grad():
                second = module(*again)
            result["again"] = second.detach() if isinstance(second, torch.Tensor) else second
        return result

    drive.__name__ = name
    return drive


def _converted(inputs: tuple, dtype: str) -> tuple:
    """The tensors of ``inputs`` converted to ``torch.<dtype>`` (on the CPU, then moved back: a device
    that lacks the conversion still gets the tensor), the rest as they are."""
    target = getattr(torch, dtype, None)
    if not isinstance(target, torch.dtype):
        raise ValueError(f"module_case convert must be a dtype's name, not {dtype!r}")
    return tuple(x.cpu().to(target).to(x.device) if isinstance(x, torch.Tensor) else x for x in inputs)


def _plain(value: Any) -> Any:
    """An attribute's value as the check compares it: numbers, strings and flags as they are,
    anything else by its type's name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"<{type(value).__name__}>"


def _describe_module_case(name: str, case: Case, show: Callable[[Any], str]) -> str:
    init, weights, inputs = case.args[:3]
    config = ", ".join(f"{k}={_init_text(v)}" for k, v in init.items())
    if weights is None:
        return f"{name}({config}), its parameters as initialised"
    if not weights:
        return f"{name}({config})"
    convert = case.kwargs.get("convert")
    shown = ", ".join(show(x) for x in inputs) + (f" converted to {convert}" if convert else "")
    return f"{name}({config}) with the check's weights, called on {shown}"


def _init_text(value: Any) -> str:
    if _is_built(value):
        fields = ", ".join(f"{k}={v!r}" for k, v in value["fields"].items())
        return f"{value[BUILT].split(':')[1]}({fields})"
    return repr(value)


def _reproduce_module_case(name: str, number: int, case: Case) -> str:
    if not case.args[1]:
        return f"m = {name}(**check.inputs({name!r}, {number})[0])"
    convert = case.kwargs.get("convert")
    call = f"m(*(x.to(torch.{convert}) for x in inputs))" if convert else "m(*inputs)"
    return (
        f"init, weights, inputs, cotangent, *_ = check.inputs({name!r}, {number}); "
        f"m = {name}(**init); m.load_state_dict(weights); {call}"
    )


# how the check talks about a module case: the answer is a class, not a function
module_driver.wants_class = True
module_driver.describe = _describe_module_case
module_driver.reproduce = _reproduce_module_case


# bound in the answer's namespace for the duration of a check (kept here for older imports)
references_bound = core.references_bound


# --- probes: modules built from plain data, for exercises that take a module as an argument ---
#
# A module cannot travel to the grading sandbox (it would be code), so an exercise such as
# "which output positions does this module let one input position change?" gets a *description*
# of the module instead: a kind and plain tensors. `probe_driver` builds the module from it with
# torch alone (no reference code), then calls the answer as `answer(module, *rest)`.


class Probe(torch.nn.Module):
    """A small module of one of several kinds; which kind is what the exercise must find out by
    running it (all kinds have the same class name, and some have parameters, some not)."""

    def __init__(self, kind: str, W: Optional[torch.Tensor] = None, b: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self._kind = kind
        if W is not None:
            self.W = torch.nn.Parameter(W)
        if b is not None:
            self.b = torch.nn.Parameter(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = self._kind
        if kind == "position-wise":  # tanh(x W + b) at every position on its own, like an MLP
            return torch.tanh(x @ self.W + self.b)
        if kind == "squares":  # position-wise, no parameters
            return x * x
        if kind == "running mean":  # each position averages itself and the earlier ones
            counts = torch.arange(1, x.shape[-2] + 1, device=x.device, dtype=x.dtype)[:, None]
            return x.cumsum(dim=-2) / counts
        if kind == "next neighbour":  # each position adds its right neighbour: looks backwards
            shifted = torch.cat([x[..., 1:, :], torch.zeros_like(x[..., :1, :])], dim=-2)
            return x + shifted
        if kind == "faint mix":  # a change of 1 moves the next position by about 1e-6
            previous = torch.cat([torch.zeros_like(x[..., :1, :]), x[..., :-1, :]], dim=-2)
            return x + 1e-6 * previous
        if kind == "one feature mixes":  # only feature 0 of the next position hears it
            previous = torch.cat([torch.zeros_like(x[..., :1, :1]), x[..., :-1, :1]], dim=-2)
            out = x @ self.W
            return torch.cat([out[..., :1] + previous, out[..., 1:]], dim=-1)
        if kind == "mixes in sequence 1 only":  # the batch's second sequence mixes, the others not
            mixed = x.clone()
            mixed[1:2] = x[1:2].cumsum(dim=-2)
            return mixed
        previous = torch.cat([torch.zeros_like(x[..., :1, :]), x[..., :-1, :]], dim=-2)
        if kind == "relu":  # position-wise and flat below 0: only a change upwards can show
            return torch.clamp_min(x, 0.0)
        if kind == "signed zero":  # one more feature, 0.0 * the previous position's feature 0:
            # -0.0 or +0.0 by its sign, and -0.0 == 0.0 (a bit-pattern comparison sees a change)
            return torch.cat([x, 0.0 * previous[..., :1]], dim=-1)
        if kind == "balanced mix":  # the next position's feature 0 goes up as its feature 1 goes down
            return torch.cat([x[..., :1] + previous[..., :1], x[..., 1:2] - previous[..., :1], x[..., 2:]], dim=-1)
        if kind == "fainter mix":  # a change of 1 moves the next position by about 1e-9
            return x + 1e-9 * previous
        if kind == "log":  # position-wise; nan below 0 and -inf at 0, whatever the probe changes
            return torch.log(x)
        if kind == "batch sum mix":  # each position hears the previous one summed over the batch
            return x + previous.sum(dim=0, keepdim=True)
        if kind == "mixes with grad on":  # a running mean while autograd records, else itself
            if torch.is_grad_enabled():
                counts = torch.arange(1, x.shape[-2] + 1, device=x.device, dtype=x.dtype)[:, None]
                return x.cumsum(dim=-2) / counts
            return x * 1.0
        raise ValueError(f"unknown probe kind {kind!r}")


_PROBE_KINDS = ("position-wise", "squares", "running mean", "next neighbour", "faint mix", "one feature mixes",
                "mixes in sequence 1 only", "relu", "signed zero", "balanced mix", "fainter mix", "log",
                "batch sum mix", "mixes with grad on")


def probe_case(kind: str, weights: dict, *rest: Any, label: str = "", again: Optional[torch.Tensor] = None) -> Case:
    """A case whose first argument is the module ``kind`` built from ``weights`` (plain tensors).

    ``again``: the answer is called twice on the same module and the same tensor object, whose
    values become ``again`` in between; the result is the pair of answers."""
    if kind not in _PROBE_KINDS:
        raise ValueError(f"unknown probe module {kind!r}")
    case = Case((kind, dict(weights), *rest), label=label or f"a {kind} module")
    if again is not None:
        case.kwargs = {"again": again}
    return case


def probe_driver(answer: Any) -> Callable:
    """A function of one probe case: builds the probe module, then calls ``answer(module, *rest)``."""

    def drive(kind: str, weights: dict, *rest: Any, again: Optional[torch.Tensor] = None) -> Any:
        first = _first_tensor(rest)
        module = Probe(kind, **weights)
        if first is not None:
            module.to(first.device)
        mode = module.training
        if again is None:
            result = answer(module, *rest)
        else:
            # the same module and the same tensor object, whose values change between two calls:
            # an answer that remembers the first call (by id, say) repeats its first answer
            x = rest[0].clone()
            first_answer = answer(module, x, *rest[1:])
            with torch.no_grad():
                x.copy_(again)
            result = (first_answer, answer(module, x, *rest[1:]))
        if module.training != mode:
            raise RuntimeError(
                f"{getattr(answer, '__name__', 'the answer')} left the module in "
                f"{'training' if module.training else 'eval'} mode (it was in "
                f"{'training' if mode else 'eval'} mode): a probe must leave the module as it found it "
                f"(a training run that probes its model would lose its dropout); do not call .eval() or .train()."
            )
        return result

    drive.__name__ = getattr(answer, "__name__", "answer")
    return drive


def _describe_probe_case(name: str, case: Case, show: Callable[[Any], str]) -> str:
    kind, _, *rest = case.args
    return f"{name}(<a {kind} module>, {', '.join(show(x) for x in rest)})"


def _reproduce_probe_case(name: str, number: int, case: Case) -> str:
    return f"module, *args = check.probe_inputs({name!r}, {number}); {name}(module, *args)"


probe_driver.describe = _describe_probe_case
probe_driver.argument_offset = 1  # a case's (kind, weights) are the answer's one module argument
probe_driver.reproduce = _reproduce_probe_case


def build_probe(kind: str, weights: dict) -> torch.nn.Module:
    """The probe module a case describes (for a learner who wants to try the failing case)."""
    return Probe(kind, **weights)
