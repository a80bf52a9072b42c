"""Chapters 4 (MLP) and 5 (blocks): wrong answers that fresh learners wrote and that passed the
checks; each is kept here with why it is wrong, and each must now fail with a message that leads to
the mistake. The mechanisms behind them (the nan family, parameters shared between two builds of a
module, float64 module cases, forbidden builders, all pairs of the model's switches) are tested
here too."""

import dataclasses
import math
import itertools

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solutions import blocks as ref_blocks
from solutions.blocks import CausalSelfAttention, Config, LayerNorm as RefLayerNorm, RMSNorm as RefRMSNorm
from solutions.checks import SPECS, core
from solutions.checks import blocks as blocks_checks
from solutions.checks import mlp as mlp_checks
from solutions.checks.core import CheckFailure, check_function
from solutions.mlp import MLP as RefMLP
from solutions.mlp import SwiGLU as RefSwiGLU


def message(name, answer, seed=0):
    with pytest.raises(CheckFailure) as failure:
        check_function(SPECS[name], answer, seed=seed, device="cpu")
    return str(failure.value)


def _gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


# --- chapter 4, exercise 1: relu ------------------------------------------------------------------


def relu_nan_to_zero(x):
    """torch.where(x > 0, x, 0): nan > 0 is False, so nan becomes 0 where max(x, 0) and F.relu give
    nan (a diverged activation hidden)."""
    return torch.where(x > 0, x, torch.zeros_like(x))


def test_relu_turning_nan_into_zero_fails():
    text = message("relu", relu_nan_to_zero)
    assert "some entries nan" in text and "nan stays nan" in text


@pytest.mark.parametrize("name", ["relu", "gelu_exact", "gelu_tanh"])
def test_the_activations_are_tried_with_nan(name):
    assert "nan" in SPECS[name].families[0]


# --- chapter 4, exercise 4: MLP -------------------------------------------------------------------


_ZEROS = {}


def _cached_zeros(n):
    if n not in _ZEROS:
        _ZEROS[n] = torch.zeros(n)
    return _ZEROS[n]


class MLPSharedBiasStorage(nn.Module):
    """Reuses one cached zero tensor per size as b_in and b_out: nn.Parameter does not copy, so every
    MLP of one size shares its biases (training one block's b_out changes every block's)."""

    def __init__(self, d_model, d_mlp=None):
        super().__init__()
        self.d_model = d_model
        self.d_mlp = 4 * d_model if d_mlp is None else d_mlp
        self.W_in = nn.Parameter(torch.empty(d_model, self.d_mlp))
        self.W_out = nn.Parameter(torch.empty(self.d_mlp, d_model))
        nn.init.normal_(self.W_in, 0.0, 0.02)
        nn.init.normal_(self.W_out, 0.0, 0.02)
        self.b_in = nn.Parameter(_cached_zeros(self.d_mlp))
        self.b_out = nn.Parameter(_cached_zeros(d_model))

    def forward(self, x):
        if x.shape[-1] != self.d_model:
            raise ValueError(f"expected last axis d_model = {self.d_model}, got {x.shape[-1]}")
        return _gelu_tanh(x @ self.W_in + self.b_in) @ self.W_out + self.b_out


MLPSharedBiasStorage.__name__ = MLPSharedBiasStorage.__qualname__ = "MLP"


class MLPFloat32Compute(nn.Module):
    """Computes in float32 whatever the module's dtype and casts back: after .double() the result has
    float32's precision only."""

    def __init__(self, d_model, d_mlp=None):
        super().__init__()
        self.d_model = d_model
        self.d_mlp = 4 * d_model if d_mlp is None else d_mlp
        self.W_in = nn.Parameter(torch.empty(d_model, self.d_mlp))
        nn.init.normal_(self.W_in, 0, 0.02)
        self.b_in = nn.Parameter(torch.zeros(self.d_mlp))
        self.W_out = nn.Parameter(torch.empty(self.d_mlp, d_model))
        nn.init.normal_(self.W_out, 0, 0.02)
        self.b_out = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        if x.shape[-1] != self.d_model:
            raise ValueError(f"expected last axis d_model = {self.d_model}, got {x.shape[-1]}")
        f = lambda t: t.float()  # noqa: E731
        y = _gelu_tanh(f(x) @ f(self.W_in) + f(self.b_in)) @ f(self.W_out) + f(self.b_out)
        return y.to(x.dtype)


def test_mlp_sharing_its_biases_between_modules_fails():
    text = message("MLP", MLPSharedBiasStorage)
    assert "two MLPs built one after the other share the tensor of b_in" in text
    assert "afresh in __init__" in text


def test_every_module_exercise_refuses_parameters_shared_between_modules():
    """The mechanism is in the module driver: a LayerNorm whose w is one cached tensor fails too."""
    ones = {}

    class LayerNorm(RefLayerNorm):
        def __init__(self, d_model, eps=1e-5):
            super().__init__(d_model, eps)
            self.w = nn.Parameter(ones.setdefault(d_model, torch.ones(d_model)))

    text = message("LayerNorm", LayerNorm)
    assert "two LayerNorms built one after the other share the tensor of w" in text


def test_mlp_computing_in_float32_fails():
    text = message("MLP", MLPFloat32Compute)
    assert "converted to float64" in text and "only to float32's precision" in text


# --- chapter 4, exercise 6: mlp_param_count ---------------------------------------------------------


def mlp_param_count_product_check(d_model, d_mlp):
    """Validates the product: (-2, -8) passes as 22 parameters."""
    if d_model * d_mlp < 1:
        raise ValueError(f"sizes must be at least 1, got d_model = {d_model}, d_mlp = {d_mlp}")
    return 2 * d_model * d_mlp + d_mlp + d_model


def mlp_param_count_builds_module(d_model, d_mlp):
    """Builds the module the statement says not to build, and sums numel()."""
    if d_model < 1 or d_mlp < 1:
        raise ValueError(f"sizes must be at least 1, got d_model = {d_model}, d_mlp = {d_mlp}")
    return sum(p.numel() for p in RefMLP(d_model, d_mlp).parameters())


def mlp_param_count_meta(d_model, d_mlp):
    """The same on the meta device: no memory, but still a module built."""
    if d_model < 1 or d_mlp < 1:
        raise ValueError(f"sizes must be at least 1, got d_model = {d_model}, d_mlp = {d_mlp}")
    with torch.device("meta"):
        return sum(p.numel() for p in RefMLP(d_model, d_mlp).parameters())


def test_mlp_param_count_with_both_sizes_negative_fails():
    text = message("mlp_param_count", mlp_param_count_product_check)
    assert "both sizes negative" in text and "should raise ValueError" in text and "returned 22" in text


@pytest.mark.parametrize("answer", [mlp_param_count_builds_module, mlp_param_count_meta], ids=["cpu", "meta"])
def test_mlp_param_count_building_the_module_fails(answer):
    text = message("mlp_param_count", answer)
    assert "calls torch's" in text and "compute the count from the formula" in text


def test_the_counting_references_build_nothing():
    for reference, args in ((SPECS["mlp_param_count"].reference, (768, 3072)),
                            (SPECS["count_parameters"].reference, (Config.gpt3_175b(),))):
        with core._watching(mlp_checks._BUILD_CALLS) as seen:
            reference(*args)
        assert seen == []


# --- chapter 4, exercise 7: SwiGLU --------------------------------------------------------------------


class SwiGLUFloat32Compute(RefSwiGLU):
    """LLaMA's habit of upcasting, as float32 for every dtype: a float64 model gets float32's precision."""

    def forward(self, x):
        if x.shape[-1] != self.d_model:
            raise ValueError(f"expected last axis d_model = {self.d_model}, got {x.shape[-1]}")
        xf = x.float()
        g = xf @ self.W_gate.float()
        return ((g * torch.sigmoid(g) * (xf @ self.W_up.float())) @ self.W_down.float()).to(x.dtype)


SwiGLUFloat32Compute.__module__ = "learner"


def test_swiglu_computing_in_float32_fails():
    text = message("SwiGLU", SwiGLUFloat32Compute)
    assert "converted to float64" in text and "only to float32's precision" in text


# --- chapter 5, exercises 1-2: LayerNorm and RMSNorm ------------------------------------------------


class LayerNormInstanceNorm(nn.Module):
    """F.instance_norm on x reshaped to (N, 1, d_model): layer norm by another name, no formula written."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        d = x.shape[-1]
        return F.instance_norm(x.reshape(-1, 1, d), eps=self.eps).reshape(x.shape) * self.w + self.b


class LayerNormBatchNorm(LayerNormInstanceNorm):
    """F.batch_norm on the transposed rows: the same kernel."""

    def forward(self, x):
        d = x.shape[-1]
        rows = x.reshape(-1, d).T
        y = F.batch_norm(rows, None, None, training=True, eps=self.eps).T
        return y.reshape(x.shape) * self.w + self.b


class RMSNormFusedKernel(nn.Module):
    """The kernel behind F.rms_norm, called by its private name."""

    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], self.w, self.eps)[0]


class RMSNormNormalize(RMSNormFusedKernel):
    """F.normalize (x / ||x||) times sqrt(d_model): torch's normalisation, and eps in the wrong place."""

    def forward(self, x):
        d = x.shape[-1]
        return F.normalize(x, dim=-1) * math.sqrt(d) * self.w


for _cls, _name in ((LayerNormInstanceNorm, "LayerNorm"), (LayerNormBatchNorm, "LayerNorm"),
                    (RMSNormFusedKernel, "RMSNorm"), (RMSNormNormalize, "RMSNorm")):
    _cls.__name__ = _name


@pytest.mark.parametrize("name, answer, called", [
    ("LayerNorm", LayerNormInstanceNorm, "instance_norm"),
    ("LayerNorm", LayerNormBatchNorm, "batch_norm"),
    ("RMSNorm", RMSNormFusedKernel, "rms_norm"),
    ("RMSNorm", RMSNormNormalize, "normalize"),
], ids=["instance_norm", "batch_norm", "fused_rms_norm", "normalize"])
def test_norms_through_a_torch_normalisation_function_fail(name, answer, called):
    text = message(name, answer)
    assert f"calls torch's `{called}`" in text and "no torch normalisation function" in text


# --- chapter 5, exercise 3: TransformerBlock --------------------------------------------------------


def _norm(c):
    return (RefLayerNorm if c.norm == "layernorm" else RefRMSNorm)(c.d_model, c.layer_norm_eps)


class _BlockReadingOneSwitchFromAnother(nn.Module):
    bias = staticmethod(lambda c: c.bias)
    rope = staticmethod(lambda c: c.positions == "rope")

    def __init__(self, config):
        super().__init__()
        self.ln1, self.ln2 = _norm(config), _norm(config)
        self.attn = CausalSelfAttention(config.d_model, config.n_heads, bias=self.bias(config),
                                        rope=self.rope(config), rope_base=config.rope_base, fused=config.fused)
        self.mlp = (RefMLP if config.mlp == "gelu" else RefSwiGLU)(config.d_model, config.d_mlp)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class BlockRopeFromBias(_BlockReadingOneSwitchFromAnother):
    """rope=not config.bias ("LLaMA has no biases and uses RoPE")."""

    rope = staticmethod(lambda c: not c.bias)


class BlockBiasFromPositions(_BlockReadingOneSwitchFromAnother):
    """bias=config.positions == "learned" ("GPT-2 has learned positions and biases, LLaMA neither")."""

    bias = staticmethod(lambda c: c.positions == "learned")


BlockRopeFromBias.__name__ = BlockBiasFromPositions.__name__ = "TransformerBlock"


@pytest.mark.parametrize("answer", [BlockRopeFromBias, BlockBiasFromPositions], ids=["rope from bias", "bias from positions"])
def test_block_reading_a_switch_from_another_fails(answer):
    text = message("TransformerBlock", answer)
    assert "read each switch from its own field" in text


def _switches(case, names):
    init = case.args[0]
    if not init or "config" not in init:
        return None
    fields = {**dataclasses.asdict(Config(d_model=2, n_heads=1, d_mlp=1, d_vocab=2, n_ctx=1, n_layers=1)),
              **init["config"]["fields"]}
    if case.args[1] is None:  # an initialisation case: no forward
        return None
    return tuple(fields[n] for n in names)


@pytest.mark.parametrize("name, names", [
    ("TransformerBlock", blocks_checks.SWITCHES + ("fused",)),
    ("GPT", blocks_checks.SWITCHES + ("tie_embeddings",)),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_pair_of_switches_is_seen_in_all_four_combinations(name, names, seed):
    """No switch can be read from another: for every pair, each of the four combinations has a case."""
    configs = {s for s in (_switches(c, names) for c in SPECS[name].make_cases(seed)) if s is not None}
    values = {n: sorted({c[i] for c in configs}, key=str) for i, n in enumerate(names)}
    assert all(len(v) == 2 for v in values.values()), values
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        seen = {(c[i], c[j]) for c in configs}
        assert len(seen) == 4, f"{name}: {a} and {b} are seen only as {sorted(seen, key=str)}"


# --- chapter 5, exercise 5: count_parameters --------------------------------------------------------


def count_parameters_meta_model(config):
    """Builds GPT(config) on the meta device and sums numel(): no memory, but the model the statement
    says not to build (and only as right as the class built)."""
    with torch.device("meta"):
        return int(sum(p.numel() for p in ref_blocks.GPT(config).parameters()))


def test_count_parameters_building_a_meta_model_fails():
    text = message("count_parameters", count_parameters_meta_model)
    assert "calls torch's" in text and "compute the count from the formula" in text and "meta device" in text


# --- chapter 5, exercise 6: split_c_attn --------------------------------------------------------------


def split_c_attn_b_by_numel(W, b, n_heads):
    """Checks b's number of values, not its shape: a b of shape (36, 1) or (1, 36) passes silently."""
    if W.dim() == 2 and W.shape[1] == 3 * W.shape[0]:
        d = W.shape[0]
    else:
        d = b.numel() // 3
        raise ValueError(f"W: expected {(d, 3 * d)}, got {tuple(W.shape)}")
    if b.numel() != 3 * d:
        raise ValueError(f"b: expected {(3 * d,)}, got {tuple(b.shape)}")
    if n_heads <= 0 or d % n_heads:
        raise ValueError(f"n_heads = {n_heads} does not divide d_model = {d}")
    b = b.reshape(3 * d)
    Ws = [einops.rearrange(w, "m (h k) -> h m k", h=n_heads) for w in W.split(d, dim=1)]
    bs = [einops.rearrange(v, "(h k) -> h k", h=n_heads) for v in b.split(d)]
    return (*Ws, *bs)


def test_split_c_attn_checking_b_by_its_number_of_values_fails():
    text = message("split_c_attn", split_c_attn_b_by_numel)
    assert "b of shape (36, 1)" in text and "should raise ValueError" in text and "(36,)" in text
