"""Tests for solutions/mlp.py: the references against independent oracles and properties.

Oracles: torch.nn.functional.relu, gelu (exact and tanh), silu; torch.nn.Sequential(Linear,
GELU(approximate="tanh"), Linear) with the MLP's weights copied in (transposed: nn.Linear keeps
(d_out, d_in)); SwiGLU written out with F.silu and F.linear; parameter counts from PyTorch's
own modules and from published sizes (GPT-2 small, LLaMA-7B). Properties: the MLP treats every
position on its own (changing one position changes one output row; permuting positions permutes
the output rows).
"""

from __future__ import annotations

import ast
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions import mlp as M
from solutions.mlp import MLP, SwiGLU, changed_positions, gelu_exact, gelu_tanh, mlp_param_count, relu


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grid(dtype=torch.float32) -> torch.Tensor:
    # a dense grid plus the edges: zero, tiny numbers, large magnitudes, infinities
    x = torch.linspace(-12, 12, 20_001, dtype=dtype)
    extra = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 50.0, -50.0, 1e6, -1e6,
                          float("inf"), float("-inf")], dtype=dtype)
    return torch.cat([x, extra])


# --- activations ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_is_f_relu(dtype):
    x = grid(dtype)
    assert relu(x).dtype == dtype
    assert torch.equal(relu(x), F.relu(x))
    assert torch.isnan(relu(torch.tensor([float("nan")]))).all()


def test_relu_does_not_call_f_relu():
    # written from the formula, as the exercise asks
    source = inspect.getsource(relu)
    assert "F.relu" not in source and "torch.relu" not in source and "clamp" not in source


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gelu_exact_is_f_gelu(dtype):
    x = grid(dtype)
    out = gelu_exact(x)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out[:-2], F.gelu(x)[:-2])  # finite inputs
    assert out[-2] == float("inf")  # inf * Phi(inf); -inf * Phi(-inf) = -inf * 0 is nan for both
    assert torch.isnan(F.gelu(x)[-1]) == torch.isnan(out[-1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gelu_tanh_is_f_gelu_tanh(dtype):
    x = grid(dtype)[:-2]
    out = gelu_tanh(x)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out, F.gelu(x, approximate="tanh"))


def test_activations_keep_low_precision_dtypes_and_shapes():
    x = torch.randn(2, 3, 5, generator=generator(0))
    for dtype in (torch.float16, torch.bfloat16):
        for fn, oracle in ((relu, F.relu), (gelu_exact, F.gelu), (gelu_tanh, lambda t: F.gelu(t, approximate="tanh"))):
            out = fn(x.to(dtype))
            assert out.dtype == dtype and out.shape == x.shape
            torch.testing.assert_close(out.float(), oracle(x), atol=2e-2, rtol=2e-2)


def test_the_two_gelus_differ_by_at_most_4_7e_4_at_x_2_70():
    # the number the chapter page states; float64 so the difference is not rounding noise
    x = torch.linspace(-10, 10, 2_000_001, dtype=torch.float64)
    diff = gelu_tanh(x) - gelu_exact(x)
    i = int(diff.abs().argmax())
    assert abs(diff[i].item() - 4.732e-4) < 1e-6
    assert abs(abs(x[i].item()) - 2.699) < 1e-3
    # the difference is even in x: GELU(x) - GELU(-x) = x for both forms
    torch.testing.assert_close(diff, diff.flip(0))


def test_gelu_tanh_mistakes_are_far_from_it():
    # the known mistakes differ by far more than the two GELUs differ from each other
    x = torch.linspace(-6, 6, 10_001, dtype=torch.float64)
    no_cubic = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * x))
    no_sqrt = 0.5 * x * (1 + torch.tanh(x + 0.044715 * x**3))
    assert (no_cubic - gelu_tanh(x)).abs().max() > 0.03
    assert (no_sqrt - gelu_tanh(x)).abs().max() > 0.05
    assert (gelu_exact(x) - gelu_tanh(x)).abs().max() < 5e-4


def test_gradients_match_torch():
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64).requires_grad_(True)
    for fn, oracle in ((gelu_exact, F.gelu), (gelu_tanh, lambda t: F.gelu(t, approximate="tanh")),
                       (relu, F.relu)):
        (g,) = torch.autograd.grad(fn(x).sum(), x)
        (g_ref,) = torch.autograd.grad(oracle(x).sum(), x)
        keep = x.detach() != 0  # ReLU's derivative at exactly 0 is a convention
        torch.testing.assert_close(g[keep], g_ref[keep])


# --- MLP ------------------------------------------------------------------------------------


def test_mlp_parameters_names_shapes_and_default_width():
    mlp = MLP(d_model=16)
    shapes = {name: tuple(p.shape) for name, p in mlp.named_parameters()}
    assert shapes == {"W_in": (16, 64), "b_in": (64,), "W_out": (64, 16), "b_out": (16,)}
    assert mlp.d_mlp == 64 and mlp.d_model == 16
    assert MLP(16, 24).W_in.shape == (16, 24)
    assert all(p.dtype == torch.float32 for p in mlp.parameters())


def test_mlp_initialisation_is_gpt2s():
    torch.manual_seed(0)
    mlp = MLP(256)  # 262,144 samples per weight matrix
    for W in (mlp.W_in, mlp.W_out):
        assert abs(W.mean().item()) < 3 * 0.02 / math.sqrt(W.numel())
        assert abs(W.std().item() - 0.02) < 2e-4
    assert torch.equal(mlp.b_in, torch.zeros(1024)) and torch.equal(mlp.b_out, torch.zeros(256))


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 3),
    seq=st.integers(1, 5),
    d_model=st.integers(1, 12),
    d_mlp=st.one_of(st.none(), st.integers(1, 20)),
    seed=st.integers(0, 2**16),
)
def test_mlp_equals_nn_sequential_with_copied_weights(batch, seq, d_model, d_mlp, seed):
    g = generator(seed)
    mlp = MLP(d_model, d_mlp)
    with torch.no_grad():  # random biases, larger weights: every part of the formula matters
        for p in mlp.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    hidden = mlp.d_mlp
    oracle = torch.nn.Sequential(
        torch.nn.Linear(d_model, hidden), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(hidden, d_model)
    )
    with torch.no_grad():  # nn.Linear stores (d_out, d_in) and computes x @ weight.T
        oracle[0].weight.copy_(mlp.W_in.T)
        oracle[0].bias.copy_(mlp.b_in)
        oracle[2].weight.copy_(mlp.W_out.T)
        oracle[2].bias.copy_(mlp.b_out)
    x = torch.randn(batch, seq, d_model, generator=g)
    out = mlp(x)
    assert out.shape == (batch, seq, d_model) and out.dtype == torch.float32
    torch.testing.assert_close(out, oracle(x))


def test_mlp_gradients_match_the_oracle_and_float64_works():
    mlp = MLP(8, 20).double()
    oracle = torch.nn.Sequential(torch.nn.Linear(8, 20), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(20, 8)).double()
    with torch.no_grad():
        mlp.b_in.normal_()
        mlp.b_out.normal_()
        oracle[0].weight.copy_(mlp.W_in.T)
        oracle[0].bias.copy_(mlp.b_in)
        oracle[2].weight.copy_(mlp.W_out.T)
        oracle[2].bias.copy_(mlp.b_out)
    x = torch.randn(2, 3, 8, dtype=torch.float64, generator=generator(3))
    mlp(x).square().sum().backward()
    oracle(x).square().sum().backward()
    torch.testing.assert_close(mlp.W_in.grad, oracle[0].weight.grad.T)
    torch.testing.assert_close(mlp.b_in.grad, oracle[0].bias.grad)
    torch.testing.assert_close(mlp.W_out.grad, oracle[2].weight.grad.T)
    torch.testing.assert_close(mlp.b_out.grad, oracle[2].bias.grad)


def test_mlp_with_zero_weights_returns_b_out_everywhere():
    mlp = MLP(4, 8)
    with torch.no_grad():
        mlp.W_in.zero_()
        mlp.W_out.zero_()
        mlp.b_out.copy_(torch.tensor([1.0, -2.0, 3.0, 0.5]))
    x = torch.randn(2, 3, 4)
    assert torch.equal(mlp(x), mlp.b_out.expand(2, 3, 4))


def test_mlp_rejects_a_wrong_d_model_naming_both_sizes():
    with pytest.raises(ValueError, match=r"\b7\b.*d_model = 8"):
        MLP(8)(torch.zeros(1, 2, 7))


# --- position-wise ----------------------------------------------------------------------------


class MixPositions(torch.nn.Module):
    """Not position-wise: a running sum over positions (like causal attention, it reads the past)."""

    def forward(self, x):
        return x.cumsum(dim=1)


@pytest.mark.parametrize("position", [0, 3, 6, -1])
def test_changing_one_position_changes_only_that_row_of_the_mlp(position):
    torch.manual_seed(0)
    mlp = MLP(8)
    x = torch.randn(3, 7, 8)
    x_before = x.clone()
    changed = changed_positions(mlp, x, position)
    expected = torch.zeros(3, 7, dtype=torch.bool)
    expected[:, position] = True
    assert changed.dtype == torch.bool and torch.equal(changed, expected)
    assert torch.equal(x, x_before)  # the probe works on a copy


def test_changed_positions_reports_mixing_for_a_module_that_mixes():
    x = torch.randn(2, 5, 3)
    expected = torch.tensor([False, False, True, True, True]).expand(2, 5)
    assert torch.equal(changed_positions(MixPositions(), x, 2), expected)
    # a module that ignores its input changes nothing
    assert not changed_positions(lambda t: torch.zeros_like(t), x, 2).any()


def test_changed_positions_works_with_parameters_that_require_grad_and_for_swiglu():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, requires_grad=True)
    changed = changed_positions(SwiGLU(16, 32), x, 1)
    assert torch.equal(changed, torch.tensor([False, True, False, False]).expand(2, 4))


def test_permuting_positions_permutes_the_mlp_output():
    torch.manual_seed(0)
    mlp = MLP(8)
    x = torch.randn(2, 6, 8)
    perm = torch.randperm(6, generator=generator(1))
    torch.testing.assert_close(mlp(x[:, perm]), mlp(x)[:, perm])
    # and per position, one at a time, is the same as all at once
    one_by_one = torch.cat([mlp(x[:, i : i + 1]) for i in range(6)], dim=1)
    torch.testing.assert_close(one_by_one, mlp(x))


def test_changed_positions_rejects_a_position_outside_the_sequence():
    with pytest.raises(IndexError):
        changed_positions(MLP(4), torch.zeros(1, 3, 4), 3)


# --- parameter counts -------------------------------------------------------------------------


@pytest.mark.parametrize("d_model,d_mlp", [(1, 1), (4, 16), (768, 3072), (5, 7)])
def test_mlp_param_count_counts_the_module(d_model, d_mlp):
    expected = sum(p.numel() for p in MLP(d_model, d_mlp).parameters())
    assert mlp_param_count(d_model, d_mlp) == expected
    assert type(mlp_param_count(d_model, d_mlp)) is int


def test_gpt2_small_block_parameters():
    # Radford et al. 2019, Table 2: d_model = 768; d_mlp = 4 * 768 in GPT-2's code
    d = 768
    mlp = mlp_param_count(d, 4 * d)
    attention = sum(p.numel() for p in torch.nn.MultiheadAttention(d, 12).parameters())
    layer_norms = 2 * sum(p.numel() for p in torch.nn.LayerNorm(d).parameters())
    assert mlp == 8 * d * d + 5 * d == 4_722_432
    assert attention == 4 * d * d + 4 * d == 2_362_368
    assert layer_norms == 4 * d == 3_072
    total = mlp + attention + layer_norms
    assert total == 7_087_872
    assert 0.66 < mlp / total < 0.67  # "about two thirds"
    # and 12 blocks + embeddings (50,257 x 768 + 1,024 x 768) + final LayerNorm = 124,439,808,
    # the size of the released GPT-2 small
    assert 12 * total + 50_257 * d + 1_024 * d + 2 * d == 124_439_808


@pytest.mark.parametrize("d_model,d_mlp", [(0, 4), (4, 0), (-1, 3)])
def test_mlp_param_count_rejects_sizes_below_one(d_model, d_mlp):
    with pytest.raises(ValueError):
        mlp_param_count(d_model, d_mlp)


# --- SwiGLU -----------------------------------------------------------------------------------


def test_swiglu_parameters_no_biases_and_initialisation():
    torch.manual_seed(0)
    swiglu = SwiGLU(64, 512)
    shapes = {name: tuple(p.shape) for name, p in swiglu.named_parameters()}
    assert shapes == {"W_gate": (64, 512), "W_up": (64, 512), "W_down": (512, 64)}
    for W in swiglu.parameters():
        assert abs(W.std().item() - 0.02) < 5e-4
    assert swiglu.d_mlp == 512 and swiglu.d_model == 64


@pytest.mark.parametrize(
    "d_model,d_mlp",
    # LLaMA-7B: d_model 4096 -> 11008 (Touvron et al. 2023, Table 2; the released 7B weights);
    # 13B: 5120 -> 13824; 33B: 6656 -> 17920; 65B: 8192 -> 22016 (the released weights' shapes)
    [(4096, 11008), (5120, 13824), (6656, 17920), (8192, 22016), (96, 256), (384, 1024), (768, 2048)],
)
def test_swiglu_default_width_is_llamas_rule(d_model, d_mlp):
    with torch.device("meta"):  # no memory for the large ones
        swiglu = SwiGLU(d_model)
    assert swiglu.d_mlp == d_mlp and swiglu.W_down.shape == (d_mlp, d_model)
    # the rule written out: 2/3 of 4 * d_model, rounded up to a multiple of 256
    assert d_mlp == 256 * math.ceil(int(8 * d_model / 3) / 256)


def test_swiglu_at_8_3_d_model_has_the_parameters_of_a_4_d_model_mlp():
    d = 768
    gated = sum(p.numel() for p in SwiGLU(d, 8 * d // 3).parameters())
    plain = 2 * d * 4 * d  # the two weight matrices of MLP(d), biases aside
    assert gated == 3 * d * (8 * d // 3) == plain


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), seq=st.integers(1, 5), d_model=st.integers(1, 10),
       d_mlp=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_swiglu_equals_the_formula_with_f_silu(batch, seq, d_model, d_mlp, seed):
    g = generator(seed)
    swiglu = SwiGLU(d_model, d_mlp)
    with torch.no_grad():
        for p in swiglu.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(batch, seq, d_model, generator=g)
    # Meta's LLaMA FeedForward: w2(silu(w1(x)) * w3(x)), with nn.Linear weights (d_out, d_in)
    w1, w3, w2 = swiglu.W_gate.T, swiglu.W_up.T, swiglu.W_down.T
    expected = F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)
    out = swiglu(x)
    assert out.shape == (batch, seq, d_model)
    torch.testing.assert_close(out, expected)


def test_swiglu_rejects_a_wrong_d_model():
    with pytest.raises(ValueError, match="d_model = 8"):
        SwiGLU(8, 16)(torch.zeros(1, 2, 9))


# --- the module ---------------------------------------------------------------------------------


def test_module_imports_only_torch_einops_and_earlier_chapters():
    tree = ast.parse(inspect.getsource(M))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    allowed = {"__future__", "math", "einops", "torch", "solutions.tokenization", "solutions.embeddings",
               "solutions.attention"}
    assert imported <= allowed, imported - allowed
