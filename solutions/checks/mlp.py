"""Check specs for chapter 4, the MLP: one :class:`Spec` per exercise, in notebook order.

Inputs come from a ``torch.Generator`` seeded by the check's seed, on the CPU. Activations are
checked on a grid that includes 0, the region where the two GELUs differ most (|x| near 2.7) and
large values, in float32 and float64; modules through the module driver (weights loaded by name,
outputs and gradients compared), with sizes that differ per dimension.
"""

from __future__ import annotations

import math
import random

import torch

from solutions import mlp as ref
from solutions.checks import core
from solutions.checks.core import Case, Mistake, Spec
from solutions.checks.modules import init_case, module_case, module_driver, probe_case, probe_driver

CHAPTER = "04_mlp"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- 1-3. activations -------------------------------------------------------------------------


def _cases_activation(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    grid = torch.linspace(-6, 6, 241)  # steps of 0.05: 0, +-2.7 and +-1.36 are on it
    cases = [
        Case((grid,), label="a grid from -6 to 6"),
        Case((grid.double(),), label="the grid in float64"),
        Case((torch.tensor([0.0, -0.0, 1e-6, -1e-6, 30.0, -30.0]),), label="zero, tiny and large values"),
    ]
    for _ in range(3):
        shape = (rng.randint(2, 3), rng.randint(4, 6), rng.randint(7, 9))
        cases.append(Case((3 * torch.randn(*shape, generator=g),), label="a (batch, seq, d_model) tensor"))
    meta = Case((torch.randn(2, 3, 4, generator=g),), label="the meta device (finds tensors made without device=)")
    meta.device = "meta"
    cases.append(meta)
    return cases


def _cases_relu(seed: int) -> list[Case]:
    """The activations' cases, and values near the largest float32 and float16 numbers: "every
    float" includes them, and (x + |x|) / 2 overflows there where max(x, 0) does not."""
    return _cases_activation(seed) + [
        Case((torch.tensor([3e38, -3e38, 2e38, 1.0]),), label="values near float32's largest (3.4e38)"),
        Case((torch.tensor([40000.0, -40000.0, 60000.0, 0.5]).half(),), label="float16 values near its largest (65504)"),
    ]


def _no_exact_zero(case: Case) -> bool:
    """Whether relu's gradient is compared on this case: at exactly 0 right answers differ
    (torch.maximum gives 0.5, clamp and where give 0 or 1), and so they do at nan (maximum passes
    the gradient on, F.relu and clamp give 0), so cases holding a 0 or a nan are left out."""
    return not any(isinstance(a, torch.Tensor) and bool(((a == 0) | a.isnan()).any()) for a in case.args)


# what the exercises ask to write by hand, and why (the notebook says which calls are not allowed)
_RELU_BY_HAND = {"relu": "write ReLU from its formula, max(x, 0), with tensor operations such as torch.maximum "
                         "and torch.zeros_like (not F.relu, torch.relu or nn.ReLU)."}
_GELU_BY_HAND = {"gelu": "write GELU from its formula (with torch.erf for the exact form, torch.tanh for GPT-2's); "
                         "F.gelu is what the check compares with, not an answer."}
# families of special values each activation admits: relu is defined at +-inf (0 and inf), the
# GELUs at large values (their formulas give nan at -inf: 0 * inf); every float dtype keeps its
# dtype; nan stays nan (as F.relu and F.gelu give: a diverged activation must not be hidden)
_RELU_FAMILIES = {0: ("inf", "zeros", "large", "float16", "bfloat16", "huge64", "nan")}
_GELU_FAMILIES = {0: ("large", "float16", "bfloat16", "huge64", "nan")}


def _gelu_exact_form(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_tanh_form(x: torch.Tensor, c: float = math.sqrt(2.0 / math.pi), k: float = 0.044715, whole: bool = True) -> torch.Tensor:
    inner = c * (x + k * x**3) if whole else c * x + k * x**3
    return 0.5 * x * (1.0 + torch.tanh(inner))


def _gelu_erf_without_root2(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x))


def _relu_leaky(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, 0.01 * x)


def _relu_times_mask(x: torch.Tensor) -> torch.Tensor:
    return x * (x > 0)  # -inf * 0 = nan


def _relu_nan_to_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, torch.zeros_like(x))  # nan > 0 is False: nan becomes 0


_EXACT_NOT_TANH = "this is the exact GELU (with erf); the exercise asks for GPT-2's tanh approximation."
_TANH_NOT_EXACT = "this is the tanh approximation; the exact GELU uses the error function: x * Phi(x) with erf."


# --- 4. MLP -----------------------------------------------------------------------------------


def _sizes(rng: random.Random) -> dict[str, int]:
    return {"batch": rng.randint(2, 3), "seq": rng.randint(4, 6), "d_model": rng.randint(7, 11)}


def _mlp_weights(g: torch.Generator, d_model: int, d_mlp: int) -> dict[str, torch.Tensor]:
    return {  # of order 1 at every step (see _swiglu_weights)
        "W_in": torch.randn(d_model, d_mlp, generator=g) / d_model**0.5,
        "b_in": torch.randn(d_mlp, generator=g) * 0.5,
        "W_out": torch.randn(d_mlp, d_model, generator=g) / d_mlp**0.5,
        "b_out": torch.randn(d_model, generator=g) * 0.5,
    }


# the exercise: store self.d_model and self.d_mlp (later code reads them)
_ATTRIBUTES = ("d_model", "d_mlp")


def _with_attributes(cases: list[Case]) -> list[Case]:
    """The module cases (not the initialisation one) with the promised attributes read too."""
    for case in cases:
        if case.args[1]:  # weights given: a forward case
            case.kwargs = {**case.kwargs, "attributes": _ATTRIBUTES}
    return cases


def _cases_MLP(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for label in ("the default d_mlp = 4 d_model", "other sizes"):
        s = _sizes(rng)
        x = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
        cotangent = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
        cases.append(module_case({"d_model": s["d_model"]}, _mlp_weights(g, s["d_model"], 4 * s["d_model"]), (x,), cotangent, label))
    s = _sizes(rng)
    x = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
    cotangent = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
    cases.append(module_case({"d_model": s["d_model"], "d_mlp": 13}, _mlp_weights(g, s["d_model"], 13), (x,), cotangent, "d_mlp given"))
    meta = module_case(*cases[0].args, label="the meta device (finds tensors made without device=)")
    meta.device = "meta"
    cases.append(meta)
    wrong = torch.randn(2, 4, 12, generator=g)
    case = module_case({"d_model": 9}, _mlp_weights(g, 9, 36), (wrong,), torch.randn(2, 4, 9, generator=g), "x whose last axis is not d_model")
    case.mentions = ("12", "9")  # the exercise: the message names both sizes
    cases.append(case)
    cases.append(_float64_case(g, rng, _mlp_weights, 4))
    cases.append(init_case({"d_model": 300, "d_mlp": 400}, "the initial parameters: N(0, 0.02^2) weights, zero biases", seed))
    return _with_attributes(cases)


def _float64_case(g: torch.Generator, rng: random.Random, draw, ratio: int) -> Case:
    """The module converted to float64 after it is built (``module.double()``), with float64
    weights and input: compared at float64's own tolerance, so an answer that computes in float32
    and converts back (``.float()`` ... ``.to(x.dtype)``) shows its float32 rounding (1e-6 and more)."""
    s = _sizes(rng)
    d_mlp = ratio * s["d_model"]
    weights = {n: w.double() for n, w in draw(g, s["d_model"], d_mlp).items()}
    x = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g, dtype=torch.float64)
    cotangent = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g, dtype=torch.float64)
    return module_case({"d_model": s["d_model"], "d_mlp": d_mlp}, weights, (x,), cotangent,
                       "the module converted to float64 (module.double()), float64 input", dtype="float64")


class _MLPBase(torch.nn.Module):
    """The MLP's parameters, for the wrong variants below (each changes one thing)."""

    default_ratio = 4

    def __init__(self, d_model: int, d_mlp: int | None = None):
        super().__init__()
        self.d_model = d_model
        d_mlp = self.default_ratio * d_model if d_mlp is None else d_mlp
        self.d_mlp = d_mlp
        self.W_in = torch.nn.Parameter(torch.randn(d_model, d_mlp) * 0.02)
        self.b_in = torch.nn.Parameter(torch.zeros(d_mlp))
        self.W_out = torch.nn.Parameter(torch.randn(d_mlp, d_model) * 0.02)
        self.b_out = torch.nn.Parameter(torch.zeros(d_model))

    def check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x has {x.shape[-1]} features, expected d_model = {self.d_model}")


class _MLPExactGelu(_MLPBase):
    def forward(self, x):
        self.check(x)
        return _gelu_exact_form(x @ self.W_in + self.b_in) @ self.W_out + self.b_out


class _MLPActAfter(_MLPBase):
    def forward(self, x):
        self.check(x)
        return _gelu_tanh_form((x @ self.W_in + self.b_in) @ self.W_out + self.b_out)


class _MLPNoInBias(_MLPBase):
    def forward(self, x):
        self.check(x)
        return _gelu_tanh_form(x @ self.W_in) @ self.W_out + self.b_out


class _MLPNoOutBias(_MLPBase):
    def forward(self, x):
        self.check(x)
        return _gelu_tanh_form(x @ self.W_in + self.b_in) @ self.W_out


class _MLPTwice(_MLPBase):
    default_ratio = 2

    def forward(self, x):
        self.check(x)
        return _gelu_tanh_form(x @ self.W_in + self.b_in) @ self.W_out + self.b_out


# --- 5. changed_positions ---------------------------------------------------------------------


def _cases_changed_positions(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    kinds = ["position-wise", "running mean", "next neighbour", "squares", "faint mix", "one feature mixes",
             "mixes in sequence 1 only"]
    rng.shuffle(kinds)  # the order of the kinds is not part of the question
    for kind in kinds:
        batch, seq, d = rng.randint(2, 3), rng.randint(4, 7), rng.randint(5, 8)
        x = torch.randn(batch, seq, d, generator=g)
        weights = {}
        if kind == "position-wise":
            weights = {"W": torch.randn(d, d, generator=g), "b": torch.randn(d, generator=g)}
        elif kind == "one feature mixes":
            weights = {"W": torch.randn(d, d, generator=g)}
        position = rng.randrange(0, seq - 1)  # never the last: a mix must have a later position to reach
        if rng.random() < 0.5:
            position -= seq  # negative positions count from the end
        cases.append(probe_case(kind, weights, x, position, label=f"some module, position {position}"))
    x = torch.randn(2, 5, 6, generator=g)
    cases.append(probe_case("running mean", {}, x, 0, label="some module, the first position"))
    cases.append(probe_case("next neighbour", {}, x, 4, label="some module, the last position"))
    cases.append(_faint_case(rng, g))
    cases.append(_one_feature_case(rng, g))
    cases += _contract_cases(rng, g)
    return cases


def _contract_cases(rng: random.Random, g: torch.Generator) -> list[Case]:
    """One case per sentence of the exercise's rules, each with a layer where breaking that
    sentence changes the answer."""
    cases = []

    def sizes():
        return rng.randint(2, 3), rng.randint(5, 7), rng.randint(4, 6)

    batch, seq, d = sizes()
    p = rng.randrange(0, seq - 1)
    # rule 2, *add* 1.0: a ReLU layer with inputs in (-1, 0) there changes upwards only
    x = torch.randn(batch, seq, d, generator=g)
    x[:, p] = -torch.rand(batch, d, generator=g) * 0.9 - 0.05
    cases.append(probe_case("relu", {}, x, p, label=f"a ReLU layer, inputs between -1 and 0 at position {p}"))
    # rule 2, add (not set): the inputs there are already 1.0
    x = torch.randn(batch, seq, d, generator=g)
    x[:, p] = 1.0
    cases.append(probe_case("squares", {}, x, p, label=f"x * x, with every input at position {p} equal to 1.0"))
    # rule 2, negative positions: -1 is the last one (a slice p:p+1 is empty there)
    cases.append(probe_case("running mean", {}, torch.randn(batch, seq, d, generator=g), -1,
                            label="a running mean, position -1"))
    # rule 3, two calls: a layer that looks across the batch
    cases.append(probe_case("batch sum mix", {}, torch.randn(batch, seq, d, generator=g), p,
                            label=f"a layer that sums the previous position over the batch, position {p}"))
    # rule 3, under torch.no_grad(): a layer that mixes only while autograd records
    cases.append(probe_case("mixes with grad on", {}, torch.randn(batch, seq, d, generator=g), p,
                            label=f"a layer that mixes positions only while autograd records, position {p}"))
    # rule 3, run the module on every call: the same x object with other values the second time
    x = torch.randn(batch, seq, d, generator=g)
    x[:, p] = -torch.rand(batch, d, generator=g) * 0.9 - 0.05
    later = torch.randn(batch, seq, d, generator=g)  # other values everywhere,
    later[:, p] = -3.0  # and at position p ones that +1 leaves below 0: nothing changes now
    cases.append(probe_case("relu", {}, x, p, again=later,
                            label=f"a ReLU layer probed twice at position {p}, x's values changed in between"))
    # rule 4, any number: one feature up, another down by as much
    cases.append(probe_case("balanced mix", {}, torch.randn(batch, seq, d, generator=g), p,
                            label=f"a layer whose next position gains in one feature what it loses in another, position {p}"))
    # rule 4, exactly: a move of one float32 spacing, 9.3e-10 (inputs in [2^-7, 2^-6))
    x = (1 + torch.rand(batch, seq, d, generator=g)) / 128
    x[:, p] = 0.1 * torch.rand(batch, d, generator=g) - 0.05
    cases.append(probe_case("fainter mix", {}, x, p, label=f"a layer that moves the next position by about 1e-9, position {p}"))
    # rule 4, exactly, in the module's own dtype: float64 moves that float32 cannot hold
    x = 1 + torch.rand(batch, seq, d, generator=g, dtype=torch.float64)
    cases.append(probe_case("fainter mix", {}, x, p, label=f"float64: a layer that moves the next position by 1e-9, position {p}"))
    # rule 2 in x's own dtype: float64 inputs of 1e20, where adding 1.0 changes nothing (made in
    # float32 and converted back, 1e20 comes back as 1.00000002e20)
    x = torch.randn(batch, seq, d, generator=g, dtype=torch.float64)
    x[:, p] = 1e20
    cases.append(probe_case("relu", {}, x, p, label=f"float64 inputs of 1e20 at position {p} (adding 1.0 changes nothing)"))
    # rule 4, with !=: -0.0 != 0.0 is False (the bits differ, the numbers do not)
    x = torch.randn(batch, seq, d, generator=g)
    x[:, p, 0] = -0.5
    cases.append(probe_case("signed zero", {}, x, p, label=f"a layer whose next position turns -0.0 into 0.0, position {p}"))
    # rule 4, with !=: nan != nan is True (a nan output counts as changed), inf == inf
    x = 0.5 + torch.rand(batch, seq, d, generator=g)
    others = [q for q in range(seq) if q != p]
    x[:, others[0], 0] = -1.0  # log: nan
    x[:, others[-1], 1] = 0.0  # log: -inf
    cases.append(probe_case("log", {}, x, p, label=f"log(x), with nan and -inf outputs at other positions, position {p}"))
    # rule 4, on x's device: the meta device finds a result made without device=
    meta = probe_case("running mean", {}, torch.randn(batch, seq, d, generator=g), p,
                      label="the meta device (finds a result made without device=)")
    meta.device = "meta"
    cases.append(meta)
    return cases


def _faint_case(rng: random.Random, g: torch.Generator) -> Case:
    """Rule 4, compare exactly: a module that moves the next position by 9.5e-7 only.

    The "faint mix" module adds 1e-6 times the previous position. Every number of x lies in
    [8, 12), where float32's spacing is 2**-20 = 9.54e-7, except at ``position``, where they are
    below 0.05: there 1e-6 * x rounds away, and 1e-6 * (x + 1) moves the next position by exactly
    one spacing, 9.54e-7 (less than 1e-6), on every device. A tolerance of 1e-6 misses it.
    """
    batch, seq, d = 2, rng.randint(5, 7), rng.randint(5, 7)
    position = rng.randrange(1, seq - 2)
    x = 8 + 4 * torch.rand(batch, seq, d, generator=g)
    x[:, position] = 0.1 * torch.rand(batch, d, generator=g) - 0.05
    return probe_case("faint mix", {}, x, position,
                      label=f"some module, position {position} (the next position moves by less than 1e-6)")


def _one_feature_case(rng: random.Random, g: torch.Generator) -> Case:
    """Rule 2, add 1.0 to *every* number at ``position``: here only one feature (never the first
    or the last) can show it. The other numbers at ``position`` are 2**26, where float32's spacing
    is 8, so adding 1.0 leaves them exactly as they are; a probe that changes one chosen feature
    only (feature 0, say) changes nothing at all."""
    batch, seq, d = 2, rng.randint(5, 7), rng.randint(5, 7)
    position, feature = rng.randrange(0, seq - 2), rng.randrange(1, d - 1)
    x = torch.randn(batch, seq, d, generator=g)
    x[:, position] = 2.0**26
    x[:, position, feature] = torch.randn(batch, generator=g)
    return probe_case("running mean", {}, x, position,
                      label=f"some module, position {position}, where adding 1.0 can change feature {feature} only")


def _changed_only_after(module, x, position):
    # assumes a change can only move forwards, as in causal attention
    seq = x.shape[1]
    p = position % seq
    out = torch.zeros(x.shape[0], seq, dtype=torch.bool, device=x.device)
    out[:, p:] = True
    return out


def _probe(module, x, position, *, features=slice(None), differ=lambda a, b: a != b):
    copy = x.clone()
    copy[:, position, features] += 1.0
    with torch.no_grad():
        return differ(module(copy), module(x)).any(dim=-1)


def _changed_one_feature(module, x, position):
    return _probe(module, x, position, features=0)


def _changed_beyond_tolerance(module, x, position):
    return _probe(module, x, position, differ=lambda a, b: (a - b).abs() > 1e-6)


def _changed_only_there(module, x, position):
    out = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
    out[:, position] = True
    return out


# --- 6. mlp_param_count -----------------------------------------------------------------------


# the exercise: the count comes from the formula, no module is built. Building one (even on the
# meta device) creates its parameters through torch's factories and initialisers, which the check
# watches; the answer itself needs no torch at all
_BUILD_CALLS = ("empty", "zeros", "ones", "full", "rand", "randn", "randint", "normal", "uniform",
                "trunc_normal", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "numel")


def formula_only(what: str) -> dict[str, str]:
    """``Spec.forbids`` for a parameter count (chapter 5's count_parameters too)."""
    reason = (f"compute the count from the formula, with integer arithmetic on the sizes: do not build {what} "
              f"and count its parameters, not even on the meta device (a large model's weights fill gigabytes, "
              f"and a count read off a built module is only as right as the class that was built).")
    return {name: reason for name in _BUILD_CALLS}


def _cases_mlp_param_count(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case((768, 3072), label="GPT-2 small"),
        Case((1, 1), label="the smallest MLP"),
        Case((3, 5), label="d_model=3, d_mlp=5"),
        Case((0, 4), label="d_model=0"),
        Case((4, 0), label="d_mlp=0"),
        Case((-2, 8), label="a negative size"),
        Case((4, -3), label="a negative d_mlp"),
        Case((-2, -8), label="both sizes negative (their product is positive)"),
        # beyond 2**53 a float holds no exact count: the formula in Python ints
        Case((10**9 + 1, 3 * 10**9 + 7), label="sizes of a billion (a count beyond 2**53)"),
    ]
    for _ in range(4):
        cases.append(Case((rng.randint(2, 999), rng.randint(2, 4999)), label="random sizes"))
    return cases


def _count_no_biases(d_model: int, d_mlp: int) -> int:
    if d_model < 1 or d_mlp < 1:
        raise ValueError("sizes")
    return 2 * d_model * d_mlp


def _count_one_matrix(d_model: int, d_mlp: int) -> int:
    if d_model < 1 or d_mlp < 1:
        raise ValueError("sizes")
    return d_model * d_mlp + d_mlp + d_model


# --- 7. SwiGLU --------------------------------------------------------------------------------


def _swiglu_weights(g: torch.Generator, d_model: int, d_mlp: int) -> dict[str, torch.Tensor]:
    # scaled by 1/sqrt(fan-in), so that every intermediate value is of order 1 whatever the
    # width: float32 sums in another order (other threads, a GPU) then stay within tolerance
    return {
        "W_gate": torch.randn(d_model, d_mlp, generator=g) / d_model**0.5,
        "W_up": torch.randn(d_model, d_mlp, generator=g) / d_model**0.5,
        "W_down": torch.randn(d_mlp, d_model, generator=g) / d_mlp**0.5,
    }


def _cases_SwiGLU(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for label in ("d_mlp given", "other sizes"):
        s = _sizes(rng)
        d_mlp = rng.randint(12, 20)
        x = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
        cotangent = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
        cases.append(module_case({"d_model": s["d_model"], "d_mlp": d_mlp}, _swiglu_weights(g, s["d_model"], d_mlp), (x,), cotangent, label))
    # LLaMA's rule: int(8 d_model / 3), rounded up to a multiple of 256
    for d_model, d_mlp in ((96, 256), (100, 512)):
        x = torch.randn(2, 3, d_model, generator=g)
        cotangent = torch.randn(2, 3, d_model, generator=g)
        cases.append(module_case({"d_model": d_model}, _swiglu_weights(g, d_model, d_mlp), (x,), cotangent, f"the default d_mlp for d_model={d_model}"))
    meta = module_case(*cases[0].args, label="the meta device (finds tensors made without device=)")
    meta.device = "meta"
    cases.append(meta)
    wrong = torch.randn(2, 4, 11, generator=g)
    case = module_case({"d_model": 8, "d_mlp": 16}, _swiglu_weights(g, 8, 16), (wrong,), torch.randn(2, 4, 8, generator=g), "x whose last axis is not d_model")
    case.mentions = ("11", "8")
    cases.append(case)
    cases.append(_float64_case(g, rng, _swiglu_weights, 2))
    cases.append(init_case({"d_model": 300, "d_mlp": 400}, "the initial weights: N(0, 0.02^2)", seed))
    return _with_attributes(cases)


class _SwiGLUBase(torch.nn.Module):
    round_up = True

    def __init__(self, d_model: int, d_mlp: int | None = None):
        super().__init__()
        self.d_model = d_model
        if d_mlp is None:
            d_mlp = int(2 * 4 * d_model / 3)
            if self.round_up:
                d_mlp = 256 * ((d_mlp + 255) // 256)
        self.d_mlp = d_mlp
        self.W_gate = torch.nn.Parameter(torch.randn(d_model, d_mlp) * 0.02)
        self.W_up = torch.nn.Parameter(torch.randn(d_model, d_mlp) * 0.02)
        self.W_down = torch.nn.Parameter(torch.randn(d_mlp, d_model) * 0.02)

    def check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x has {x.shape[-1]} features, expected d_model = {self.d_model}")

    def forward(self, x):
        self.check(x)
        gate, up = x @ self.W_gate, x @ self.W_up
        return (gate * torch.sigmoid(gate) * up) @ self.W_down


class _SwiGLUSiluOnUp(_SwiGLUBase):
    def forward(self, x):
        self.check(x)
        gate, up = x @ self.W_gate, x @ self.W_up
        return (gate * up * torch.sigmoid(up)) @ self.W_down


class _SwiGLUSigmoid(_SwiGLUBase):
    def forward(self, x):
        self.check(x)
        gate, up = x @ self.W_gate, x @ self.W_up
        return (torch.sigmoid(gate) * up) @ self.W_down


class _SwiGLUNoRounding(_SwiGLUBase):
    round_up = False


_FLOAT32_HINT = ("the result agrees with the reference only to float32's precision: the module computes in float32 "
                 "and converts back. After module.double() its parameters and the input are float64, and the result "
                 "must be the formula computed in float64 (no .float(), no float32 tensors in forward).")


def float32_diagnosis(tolerance: tuple[float, float] = (1e-4, 1e-5)):
    """A ``diagnose`` for module cases in float64 (:func:`_float64_case`): where the learner's result
    is off at float64's tolerance but within float32's (``tolerance``), the module computed in
    float32 and converted back (a fact about this case: the two float64 computations of the
    formula agree to 1e-9)."""

    def diagnose(case: Case, actual, expected):
        if case.kwargs.get("dtype") != "float64" or not isinstance(actual, dict):
            return None
        try:
            near = core.difference(actual, expected, tolerance={"float64": tolerance}) is None
        except Exception:  # a diagnosis never fails a check; it only finds no hint
            return None
        return _FLOAT32_HINT if near else None

    return diagnose


# ----------------------------------------------------------------------------------------------

_MODULE_DIMS = ("batch", "seq", "d_model")

SPECS = [
    Spec(
        name="relu",
        chapter=CHAPTER,
        reference=ref.relu,
        make_cases=_cases_relu,
        mistakes=[
            Mistake("leaky", "ReLU is exactly 0 for negative inputs, not a small slope.", _relu_leaky),
            Mistake("times a mask", "x * (x > 0) is nan at x = -inf (-inf * 0), where max(x, 0) is 0: choose "
                    "between x and 0 (torch.maximum, torch.where) instead of multiplying.", _relu_times_mask),
            Mistake("nan to zero", "nan stays nan: max(nan, 0) is nan, as F.relu gives, so that a diverged "
                    "activation is not hidden; torch.where(x > 0, x, 0) turns nan into 0 (nan > 0 is False). "
                    "torch.maximum keeps nan.", _relu_nan_to_zero),
        ],
        # the gradient at exactly 0 differs between right answers (maximum: 0.5; clamp, where: 0 or 1)
        gradients=_no_exact_zero,
        forbids=_RELU_BY_HAND,
        families=_RELU_FAMILIES,
    ),
    Spec(
        name="gelu_exact",
        chapter=CHAPTER,
        reference=ref.gelu_exact,
        make_cases=_cases_activation,
        mistakes=[
            Mistake("tanh form", _TANH_NOT_EXACT, _gelu_tanh_form),
            Mistake("erf without sqrt(2)", "Phi(x) = (1 + erf(x / sqrt(2))) / 2: the error function takes x / sqrt(2).", _gelu_erf_without_root2),
        ],
        forbids=_GELU_BY_HAND,
        families=_GELU_FAMILIES,
    ),
    Spec(
        name="gelu_tanh",
        chapter=CHAPTER,
        reference=ref.gelu_tanh,
        make_cases=_cases_activation,
        mistakes=[
            Mistake("exact form", _EXACT_NOT_TANH, _gelu_exact_form),
            Mistake("no cubic term", "the tanh's argument has a cubic term: x + 0.044715 x^3.", lambda x: _gelu_tanh_form(x, k=0.0)),
            Mistake("no sqrt(2/pi)", "the tanh's argument is scaled by sqrt(2 / pi).", lambda x: _gelu_tanh_form(x, c=1.0)),
            Mistake("scale on x only", "sqrt(2 / pi) multiplies the whole bracket, the cubic term included.", lambda x: _gelu_tanh_form(x, whole=False)),
        ],
        forbids=_GELU_BY_HAND,
        families=_GELU_FAMILIES,
    ),
    Spec(
        name="MLP",
        chapter=CHAPTER,
        reference=ref.MLP,
        make_cases=_cases_MLP,
        driver=module_driver,
        forbids={"gelu": "the exercise asks for your own gelu_tanh between the two layers (the check runs "
                         "it as the reference's), not torch's F.gelu."},
        dims=_MODULE_DIMS,
        mistakes=[
            Mistake("exact GELU", "the MLP uses GPT-2's activation, the tanh approximation of GELU, not the exact one.", _MLPExactGelu),
            Mistake("activation after", "the activation goes between the two layers: act(x W_in + b_in) W_out + b_out.", _MLPActAfter),
            Mistake("no b_in", "add b_in before the activation.", _MLPNoInBias),
            Mistake("no b_out", "add b_out after the second layer.", _MLPNoOutBias),
            Mistake("d_mlp", "d_mlp defaults to 4 * d_model (the usual width, Vaswani et al. 2017).", _MLPTwice),
        ],
        diagnose=float32_diagnosis(),
        points=2,
    ),
    Spec(
        name="changed_positions",
        chapter=CHAPTER,
        reference=ref.changed_positions,
        make_cases=_cases_changed_positions,
        driver=probe_driver,
        dims=("batch", "seq"),
        mistakes=[
            Mistake("assumed position-wise", "run the module on both inputs and compare: the answer depends on the module, and a mixing one changes other positions too.", _changed_only_there),
            Mistake("assumed causal", "run the module on both inputs and compare: not every module only looks backwards.", _changed_only_after),
            Mistake("one feature", "add 1.0 to every number of the copy at position, all its d_model features "
                    "(copy[:, position] += 1.0): a layer may pass only some features on to other positions.", _changed_one_feature),
            Mistake("tolerance", "compare exactly, with !=: a layer may move another position by less than 1e-6 "
                    "and still mix positions, and a position-wise layer leaves the other rows bit for bit the same.",
                    _changed_beyond_tolerance),
        ],
        gradients=False,  # a bool answer about a module, not a differentiable function
    ),
    Spec(
        name="mlp_param_count",
        chapter=CHAPTER,
        reference=ref.mlp_param_count,
        make_cases=_cases_mlp_param_count,
        mistakes=[
            Mistake("no biases", "count the biases too: b_in has d_mlp numbers and b_out d_model.", _count_no_biases),
            Mistake("one matrix", "there are two weight matrices, W_in and W_out.", _count_one_matrix),
        ],
        forbids=formula_only("the module"),
    ),
    Spec(
        name="SwiGLU",
        chapter=CHAPTER,
        reference=ref.SwiGLU,
        make_cases=_cases_SwiGLU,
        driver=module_driver,
        dims=_MODULE_DIMS,
        mistakes=[
            Mistake("silu on up", "SiLU goes on the gate, x W_gate; x W_up is multiplied in as it is.", _SwiGLUSiluOnUp),
            Mistake("sigmoid", "the gate is silu(z) = z * sigmoid(z), not sigmoid(z) alone.", _SwiGLUSigmoid),
            Mistake("no rounding", "LLaMA rounds int(8 d_model / 3) up to a multiple of 256.", _SwiGLUNoRounding),
        ],
        diagnose=float32_diagnosis((2e-4, 5e-5)),
        forbids={"silu": "write SiLU from its formula, z * torch.sigmoid(z): F.silu and nn.SiLU are what the check "
                         "compares with, not an answer."},
        points=2,
        # sums over d_mlp = 512 in float32: other threads or a GPU add in another order
        tolerance=(2e-4, 5e-5),
        max_output_items=200_000,  # the default width needs d_model near 100 to round to 256 and 512
    ),
]
