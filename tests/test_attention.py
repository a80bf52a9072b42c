"""Tests for solutions/attention.py: the references against PyTorch's own attention.

Oracles: torch.nn.functional.scaled_dot_product_attention (with is_causal and boolean
attn_mask), torch.nn.MultiheadAttention given the same weights (its fused in_proj and
out_proj converted to the per-head layout), einops.rearrange for the head split, and full
recomputation for the KV cache. Properties: the mask convention for seq_q < seq_k, -inf masked
keys get exactly zero weight, nothing is changed in place, the initialisation statistics.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap

import einops
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions import attention as A
from solutions.attention import (
    Attention,
    KVCache,
    attention_output,
    attention_pattern,
    attention_scores,
    causal_mask,
    forward_cached,
    fused_attention,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=generator(seed), dtype=dtype)


def close(a, b, **kw):
    torch.testing.assert_close(a, b, rtol=kw.get("rtol", 1e-5), atol=kw.get("atol", 1e-5))


# --- the four steps -------------------------------------------------------------------------


def test_scores_are_q_k_transpose_over_sqrt_d_head_with_leading_axes():
    q, k = randn(2, 3, 5, 8, seed=1), randn(2, 3, 7, 8, seed=2)
    scores = attention_scores(q, k)
    assert scores.shape == (2, 3, 5, 7)
    expected = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(8)
    close(scores, expected)
    # not symmetric in q and k: swapping them transposes the result
    close(attention_scores(k, q), expected.transpose(-2, -1))
    # a worked example: d_head = 4, q = k = ones -> 4 / 2 = 2
    assert attention_scores(torch.ones(1, 4), torch.ones(1, 4)).item() == 2.0


def test_the_scale_keeps_the_variance_of_scores_at_one():
    for d_head in (16, 256):
        q, k = randn(4000, d_head, seed=3), randn(4000, d_head, seed=4)
        raw = (q * k).sum(-1)
        scaled = raw / math.sqrt(d_head)
        assert abs(raw.var().item() / d_head - 1) < 0.1
        assert abs(scaled.var().item() - 1) < 0.1


@pytest.mark.parametrize("seq_q,seq_k", [(1, 1), (4, 4), (1, 6), (3, 7), (6, 6)])
def test_causal_mask_queries_are_the_last_positions(seq_q, seq_k):
    scores = randn(2, seq_q, seq_k, seed=5)
    masked = causal_mask(scores)
    for i in range(seq_q):
        position = seq_k - seq_q + i
        for j in range(seq_k):
            if j <= position:
                assert masked[:, i, j].equal(scores[:, i, j])
            else:
                assert (masked[:, i, j] == float("-inf")).all()


def test_causal_mask_matches_torch_lower_right_mask_and_keeps_its_input():
    scores = randn(3, 5, 9, seed=6)
    before = scores.clone()
    masked = causal_mask(scores)
    assert torch.equal(scores, before)
    # oracle: the allowed set written with a comparison of positions
    query_pos = torch.arange(5)[:, None] + (9 - 5)
    key_pos = torch.arange(9)[None, :]
    expected = scores.masked_fill(key_pos > query_pos, float("-inf"))
    assert torch.equal(masked, expected)
    # a one-query KV-cache step sees every key
    assert torch.equal(causal_mask(scores[:, -1:, :]), scores[:, -1:, :])


def test_causal_mask_rejects_more_queries_than_keys():
    with pytest.raises(ValueError, match="seq_q"):
        causal_mask(torch.zeros(5, 3))


def test_pattern_is_softmax_over_keys_and_masked_keys_get_exactly_zero():
    scores = causal_mask(randn(2, 4, 4, seed=7) * 30)
    pattern = attention_pattern(scores)
    close(pattern.sum(-1), torch.ones(2, 4))
    assert (pattern.triu(1) == 0).all()
    assert torch.isfinite(pattern).all()
    assert torch.equal(pattern[:, 0, 0], torch.ones(2))  # the first query sees only itself
    # large scores do not overflow
    big = attention_pattern(torch.tensor([[1000.0, 999.0, float("-inf")]]))
    close(big, torch.tensor([[1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)), 0.0]]))


def test_zero_instead_of_minus_infinity_leaks_weight_into_the_future():
    scores = torch.tensor([[2.0, -1.0, -3.0]])
    right = attention_pattern(causal_mask(scores.expand(3, 3)))
    wrong = attention_pattern(scores.expand(3, 3).masked_fill(torch.ones(3, 3).triu(1).bool(), 0.0))
    assert right[0, 1:].eq(0).all() and wrong[0, 1:].gt(0.1).all()


def test_output_is_the_weighted_sum_of_values():
    pattern = attention_pattern(randn(2, 3, 5, seed=8))
    v = randn(2, 5, 4, seed=9)
    out = attention_output(pattern, v)
    assert out.shape == (2, 3, 4)
    close(out, torch.einsum("bqk,bkd->bqd", pattern, v))


# --- scaled dot-product attention against PyTorch -------------------------------------------


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 3), n_heads=st.integers(1, 3), seq_q=st.integers(1, 6),
    extra=st.integers(0, 4), d_head=st.sampled_from([1, 4, 8]), causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_sdpa_equals_torch(batch, n_heads, seq_q, extra, d_head, causal, seed):
    seq_k = seq_q + extra
    g = generator(seed)
    q = torch.randn(batch, n_heads, seq_q, d_head, generator=g)
    k = torch.randn(batch, n_heads, seq_k, d_head, generator=g)
    v = torch.randn(batch, n_heads, seq_k, d_head, generator=g)
    ours = scaled_dot_product_attention(q, k, v, causal=causal)
    if causal:  # torch's is_causal is top-left aligned; ours (and a KV cache's) lower-right
        allowed = torch.ones(seq_q, seq_k, dtype=torch.bool).tril(seq_k - seq_q)
        oracle = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        if seq_q == seq_k:
            close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    else:
        oracle = F.scaled_dot_product_attention(q, k, v)
    close(ours, oracle)
    close(fused_attention(q, k, v, causal), oracle)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_with_padding_equals_torch_attn_mask(causal):
    q, k, v = (randn(2, 3, 6, 8, seed=s) for s in (10, 11, 12))
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])  # right padding
    allowed = ~padding[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(6, 6, dtype=torch.bool).tril()
    oracle = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    close(scaled_dot_product_attention(q, k, v, causal, padding), oracle)
    close(fused_attention(q, k, v, causal, padding), oracle)
    # padded keys are ignored: their values do not matter
    v2 = v.clone()
    v2[1, :, 4:] = 1e6
    close(scaled_dot_product_attention(q, k, v2, causal, padding), oracle)


def test_mask_after_softmax_is_wrong():
    q, k, v = (randn(1, 1, 4, 8, seed=s) for s in (13, 14, 15))
    after = attention_pattern(attention_scores(q, k)).tril()
    assert not torch.allclose(after.sum(-1), torch.ones(1, 1, 4))
    close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True))


# --- heads ----------------------------------------------------------------------------------


def test_split_heads_is_rearrange_and_merge_is_its_inverse():
    x = randn(2, 5, 12, seed=16)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads, einops.rearrange(x, "b s (h d) -> b h s d", h=3))
    assert torch.equal(heads[:, 1, 2], x[:, 2, 4:8])
    assert torch.equal(merge_heads(heads), x)
    # the view without the transpose has the right shape and the wrong numbers
    assert not torch.equal(x.view(2, 3, 5, 4), heads)


def test_split_heads_rejects_an_indivisible_d_model():
    with pytest.raises(ValueError, match="divisible"):
        split_heads(torch.zeros(1, 2, 10), 3)


# --- the Attention module -------------------------------------------------------------------


def test_attention_parameters_names_shapes_and_initialisation():
    torch.manual_seed(0)
    attn = Attention(d_model=256, n_heads=8)
    shapes = {name: tuple(p.shape) for name, p in attn.named_parameters()}
    assert shapes == {
        "W_Q": (8, 256, 32), "W_K": (8, 256, 32), "W_V": (8, 256, 32), "W_O": (8, 32, 256),
        "b_Q": (8, 32), "b_K": (8, 32), "b_V": (8, 32), "b_O": (256,),
    }
    for name in ("W_Q", "W_K", "W_V", "W_O"):
        W = getattr(attn, name)
        assert abs(W.std().item() - 0.02) < 5e-4 and abs(W.mean().item()) < 5e-4
    for name in ("b_Q", "b_K", "b_V", "b_O"):
        assert torch.equal(getattr(attn, name), torch.zeros_like(getattr(attn, name)))
    assert attn.d_head == 32 and attn.n_heads == 8


@pytest.mark.parametrize("d_model,n_heads", [(10, 3), (7, 2)])
def test_attention_rejects_an_indivisible_d_model(d_model, n_heads):
    with pytest.raises(ValueError, match="divisible"):
        Attention(d_model, n_heads)


def load_from_multihead(attn: Attention, mha: torch.nn.MultiheadAttention) -> None:
    """Copy nn.MultiheadAttention's fused weights into the per-head layout.

    mha computes x @ in_proj_weight.T, with output feature h*d_head + j of head h; out_proj
    computes z_concat @ out_proj.weight.T with input feature h*d_head + j.
    """
    n_heads = attn.n_heads
    W_q, W_k, W_v = mha.in_proj_weight.detach().chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for W, b, ours_W, ours_b in ((W_q, b_q, attn.W_Q, attn.b_Q), (W_k, b_k, attn.W_K, attn.b_K),
                                     (W_v, b_v, attn.W_V, attn.b_V)):
            ours_W.copy_(einops.rearrange(W, "(h d) m -> h m d", h=n_heads))
            ours_b.copy_(einops.rearrange(b, "(h d) -> h d", h=n_heads))
        attn.W_O.copy_(einops.rearrange(mha.out_proj.weight.detach(), "m (h d) -> h d m", h=n_heads))
        attn.b_O.copy_(mha.out_proj.bias.detach())


def multihead_pair(d_model=16, n_heads=4, causal=True, fused=False, seed=0):
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(d_model, n_heads, batch_first=True)
    with torch.no_grad():  # non-zero biases, so a misplaced bias is seen
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    attn = Attention(d_model, n_heads, causal=causal, fused=fused)
    load_from_multihead(attn, mha)
    return attn, mha.eval()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("case", ["bidirectional", "causal", "padding", "causal+padding", "cross", "cross+padding"])
def test_attention_equals_nn_multihead_attention(fused, case):
    causal = "causal" in case
    attn, mha = multihead_pair(causal=causal, fused=fused)
    x = randn(3, 6, 16, seed=20)
    context = randn(3, 9, 16, seed=21) if "cross" in case else None
    source = x if context is None else context
    padding = None
    if "padding" in case:
        lengths = torch.tensor([source.shape[1], source.shape[1] - 2, source.shape[1] - 3])
        padding = torch.arange(source.shape[1])[None, :] >= lengths[:, None]  # right padding
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None  # True = not allowed
    expected, _ = mha(x, source, source, key_padding_mask=padding, attn_mask=mask, need_weights=False)
    out = attn(x, context=context, key_padding_mask=padding)
    assert out.shape == (3, 6, 16)
    close(out, expected, atol=1e-5)


def test_cross_attention_is_never_causally_masked():
    attn = Attention(16, 4, causal=True)
    x, context = randn(2, 3, 16, seed=22), randn(2, 5, 16, seed=23)
    out = attn(x, context=context)
    # changing the last context position changes the output at the first query position
    context2 = context.clone()
    context2[:, -1] += 1.0
    assert not torch.allclose(attn(x, context=context2)[:, 0], out[:, 0])


@settings(max_examples=8, deadline=None)
@given(causal=st.booleans(), seq=st.integers(1, 7), n_heads=st.sampled_from([1, 2, 4]), seed=st.integers(0, 999))
def test_fused_and_step_by_step_agree_with_gradients(causal, seq, n_heads, seed):
    torch.manual_seed(seed)
    slow = Attention(16, n_heads, causal=causal, fused=False)
    fast = Attention(16, n_heads, causal=causal, fused=True)
    fast.load_state_dict(slow.state_dict())
    x = randn(2, seq, 16, seed=seed)
    grad = randn(2, seq, 16, seed=seed + 1)
    outs = []
    for module in (slow, fast):
        out = module(x)
        out.backward(grad)
        outs.append((out.detach(), [p.grad for p in module.parameters()]))
    close(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        close(a, b, atol=1e-5)


def test_causal_attention_does_not_look_ahead():
    attn = Attention(16, 2, causal=True)
    x = randn(1, 5, 16, seed=24)
    x2 = x.clone()
    x2[:, 3:] = randn(1, 2, 16, seed=25)
    close(attn(x)[:, :3], attn(x2)[:, :3])
    bidirectional = Attention(16, 2, causal=False)
    assert not torch.allclose(bidirectional(x)[:, :3], bidirectional(x2)[:, :3])


# --- KV cache -------------------------------------------------------------------------------


@pytest.mark.parametrize("fused", [False, True])
def test_decoding_with_a_kv_cache_equals_the_full_forward(fused):
    torch.manual_seed(1)
    attn = Attention(24, 3, causal=True, fused=fused)
    with torch.no_grad():
        for b in (attn.b_Q, attn.b_K, attn.b_V, attn.b_O):
            b.normal_()
    x = randn(2, 9, 24, seed=26)
    full = attn(x)
    # prompt of 4 positions in one go, then one position at a time
    cache = KVCache()
    pieces = [forward_cached(attn, x[:, :4], cache)]
    assert len(cache) == 4
    for t in range(4, 9):
        pieces.append(forward_cached(attn, x[:, t:t + 1], cache))
    assert len(cache) == 9 and cache.k.shape == (2, 3, 9, 8)
    close(torch.cat(pieces, dim=1), full)
    # the cache holds exactly the keys the full forward computes
    k_full = einops.einsum(x, attn.W_K, "b s m, h m d -> b h s d") + attn.b_K[:, None, :]
    close(cache.k, k_full)


def test_a_cache_that_forgets_the_offset_differs():
    torch.manual_seed(2)
    attn = Attention(16, 2)
    x = randn(1, 5, 16, seed=27)
    cache = KVCache()
    forward_cached(attn, x[:, :4], cache)
    right = forward_cached(attn, x[:, 4:], cache)
    close(right, attn(x)[:, 4:])
    # top-left alignment (the new query sees only key 0) gives a different answer
    q = einops.einsum(x[:, 4:], attn.W_Q, "b s m, h m d -> b h s d")
    wrong = F.scaled_dot_product_attention(q, cache.k, cache.v, is_causal=True)
    z = einops.einsum(wrong, attn.W_O, "b h s d, h d m -> b s m") + attn.b_O
    assert not torch.allclose(z, right)


def test_kv_cache_update_appends_along_seq():
    cache = KVCache()
    assert len(cache) == 0 and cache.k is None
    k1, v1 = randn(1, 2, 3, 4, seed=28), randn(1, 2, 3, 4, seed=29)
    k, v = cache.update(k1, v1)
    assert torch.equal(k, k1) and torch.equal(v, v1)
    k2, v2 = randn(1, 2, 1, 4, seed=30), randn(1, 2, 1, 4, seed=31)
    k, v = cache.update(k2, v2)
    assert torch.equal(k, torch.cat([k1, k2], 2)) and torch.equal(v, torch.cat([v1, v2], 2))
    assert len(cache) == 4


# --- code rules -----------------------------------------------------------------------------


def tensor_constructors_without_device(fn) -> list[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    bad = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and node.func.attr in {"ones", "zeros", "arange", "tensor", "full", "empty"}
                and not any(kw.arg == "device" for kw in node.keywords)):
            bad.append(ast.unparse(node))
    return bad


@pytest.mark.parametrize("fn", [causal_mask, scaled_dot_product_attention, fused_attention, Attention.forward, forward_cached])
def test_code_creates_tensors_only_on_the_input_device(fn):
    assert tensor_constructors_without_device(fn) == []


def test_step_by_step_works_on_the_meta_device():
    attn = Attention(16, 4).to("meta")
    out = attn(torch.empty(2, 5, 16, device="meta"), key_padding_mask=torch.zeros(2, 5, dtype=torch.bool, device="meta"))
    assert out.shape == (2, 5, 16) and out.device.type == "meta"


def test_page_helpers():
    attn = Attention(16, 2)
    x = randn(1, 5, 16, seed=32)
    patterns = A.attention_patterns(attn, x)
    assert patterns.shape == (1, 2, 5, 5) and (patterns.triu(1) == 0).all()
    close(A.attention_patterns(attn, x, causal=False).sum(-1), torch.ones(1, 2, 5))
    cost = A.attention_cost(128, backward=True, repeat=1)
    assert cost["naive_bytes"] > cost["fused_bytes"] > 0
