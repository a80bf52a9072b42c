"""Chapter 3 (attention): wrong answers that fresh learners wrote and that passed the checks; each is
kept here with why it is wrong, and each must now fail with a message that leads to the mistake."""

import math

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function


def message(name, answer, seed=0):
    with pytest.raises(CheckFailure) as failure:
        check_function(SPECS[name], answer, seed=seed, device="cpu")
    return str(failure.value)


def _allowed(sq, sk, device):
    return torch.tril(torch.ones(sq, sk, dtype=torch.bool, device=device), diagonal=sk - sq)


def _step_by_step(q, k, v, causal=True, key_padding_mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        sq, sk = s.shape[-2:]
        if sq > sk:
            raise ValueError(f"seq_q = {sq} > seq_k = {sk}")
        s = s.masked_fill(~_allowed(sq, sk, s.device), float("-inf"))
    if key_padding_mask is not None:
        s = s.masked_fill(einops.rearrange(key_padding_mask, "b k -> b 1 1 k"), float("-inf"))
    return torch.softmax(s, -1) @ v


# --- exercise 2: causal_mask ----------------------------------------------------------------------


def causal_mask_additive(scores):
    """Adds a 0/-inf matrix instead of setting the masked scores: a masked +inf becomes nan."""
    sq, sk = scores.shape[-2:]
    if sq > sk:
        raise ValueError(f"seq_q = {sq} > seq_k = {sk}")
    additive = torch.zeros(sq, sk, dtype=scores.dtype, device=scores.device).masked_fill(~_allowed(sq, sk, scores.device), float("-inf"))
    return scores + additive


def test_additive_causal_mask_fails_on_a_masked_inf():
    text = message("causal_mask", causal_mask_additive)
    assert "instead of -inf" in text and "+inf" in text
    assert "adding a mask of 0 and -inf" in text


# --- exercise 3: attention_pattern ----------------------------------------------------------------


def attention_pattern_clamped_exponent(scores):
    """Clamps s - max at -80: a masked -inf gets exp(-80) = 1.8e-35 instead of exactly 0."""
    z = (scores - scores.amax(-1, keepdim=True)).clamp(min=-80.0)
    e = torch.exp(z)
    return e / e.sum(-1, keepdim=True)


def attention_pattern_finite_for_neginf(scores):
    """-1e9 in place of -inf: a row of only -inf becomes uniform instead of nan."""
    return torch.softmax(torch.nan_to_num(scores, neginf=-1e9), dim=-1)


def attention_pattern_nan_to_zero(scores):
    """Zeroes the nan of a row of only -inf: a row that sums to 0, the empty query hidden."""
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


def test_clamped_exponent_fails_on_exact_zeros():
    text = message("attention_pattern", attention_pattern_clamped_exponent)
    assert "instead of 0" in text and "exp(-100)" in text
    assert "exactly 0" in text


@pytest.mark.parametrize("answer", [attention_pattern_finite_for_neginf, attention_pattern_nan_to_zero],
                         ids=["finite stand-in", "nan to zero"])
def test_pattern_that_hides_an_empty_row_fails(answer):
    text = message("attention_pattern", answer)
    assert "a row of only -inf" in text and "instead of nan" in text
    assert "Keep that nan" in text


# --- exercise 4: attention_output -----------------------------------------------------------------


def attention_output_cleaned(pattern, v):
    """Cleans the pattern first: nan rows (a query that saw only padding) and infinite weights vanish."""
    return torch.nan_to_num(pattern) @ v


def test_output_that_cleans_the_pattern_fails():
    text = message("attention_output", attention_output_cleaned)
    assert "+inf or -inf" in text
    assert "nan_to_num" in text


# --- exercise 5: scaled_dot_product_attention -----------------------------------------------------


def sdpa_padding_penalty(q, k, v, causal=True, key_padding_mask=None):
    """Padding lowered by 1e9 instead of masked: padding keys scoring far above the real ones win."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        sq, sk = s.shape[-2:]
        if sq > sk:
            raise ValueError(f"seq_q = {sq} > seq_k = {sk}")
        s = s.masked_fill(~_allowed(sq, sk, s.device), float("-inf"))
    if key_padding_mask is not None:
        s = s - 1e9 * einops.rearrange(key_padding_mask, "b k -> b 1 1 k").to(s.dtype)
    return torch.softmax(s, -1) @ v


def sdpa_padding_finite_fill(q, k, v, causal=True, key_padding_mask=None):
    """Padding filled with -1e30: below any real score, but a query that sees only padding averages it."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        sq, sk = s.shape[-2:]
        s = s.masked_fill(~_allowed(sq, sk, s.device), float("-inf"))
    if key_padding_mask is not None:
        s = s.masked_fill(einops.rearrange(key_padding_mask, "b k -> b 1 1 k"), -1e30)
    return torch.softmax(s, -1) @ v


def sdpa_aten_math_kernel(q, k, v, causal=True, key_padding_mask=None):
    """PyTorch's math kernel through torch.ops: no step of its own."""
    sq, sk = q.shape[-2], k.shape[-2]
    allowed = torch.ones(sq, sk, dtype=torch.bool, device=q.device)
    if causal:
        allowed = torch.tril(allowed, diagonal=sk - sq)
    if key_padding_mask is not None:
        allowed = allowed & ~einops.rearrange(key_padding_mask, "b k -> b 1 1 k")
    bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill(~allowed, float("-inf"))
    return torch.ops.aten._scaled_dot_product_attention_math(q, k, v, attn_mask=bias)[0]


def test_padding_by_a_finite_penalty_fails():
    text = message("scaled_dot_product_attention", sdpa_padding_penalty)
    assert "padding keys whose scores lie some 1e19 above" in text
    assert "set its score to -inf" in text


def test_padding_with_a_finite_fill_fails_on_a_query_without_keys():
    text = message("scaled_dot_product_attention", sdpa_padding_finite_fill)
    assert "queries that see no key at all" in text and "instead of nan" in text
    assert "Keep the nan" in text


def test_the_aten_math_kernel_is_refused():
    text = message("scaled_dot_product_attention", sdpa_aten_math_kernel)
    assert "calls torch's `scaled_dot_product_attention`" in text


# --- exercises 6 and 7: split_heads, merge_heads --------------------------------------------------


def split_heads_other_message(x, n_heads):
    """The right error type, but the message does not say "not divisible" as the exercise asks."""
    b, s, d = x.shape
    if d % n_heads:
        raise ValueError("d_model must be divisible by n_heads")
    return x.view(b, s, n_heads, d // n_heads).transpose(1, 2)


def merge_heads_axes_by_size(x):
    """Finds the d_head axis by its size: with n_heads = d_head it takes the heads axis for it."""
    batch, n_heads, seq, d_head = x.shape
    last = x.shape.index(d_head)
    return x.movedim(last, -1).transpose(1, 2).reshape(batch, seq, n_heads * d_head)


def test_split_heads_message_must_say_not_divisible():
    text = message("split_heads", split_heads_other_message)
    assert "rightly raised ValueError" in text and "'not divisible'" in text


def test_merge_heads_that_finds_axes_by_size_fails_when_n_heads_equals_d_head():
    text = message("merge_heads", merge_heads_axes_by_size)
    assert "4 heads of 4 (n_heads = d_head)" in text


# --- exercise 8: Attention --------------------------------------------------------------------------


def _fused(q, k, v, causal, key_padding_mask):
    if key_padding_mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    m = ~einops.rearrange(key_padding_mask, "b k -> b 1 1 k")
    if causal:
        m = m & _allowed(q.shape[-2], k.shape[-2], q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m)


class _AttentionBase(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, fused=False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model = {d_model} not divisible by n_heads = {n_heads}")
        self.n_heads, self.d_head, self.causal, self.fused = n_heads, d_model // n_heads, causal, fused
        dh = self.d_head
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, dh))
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, dh))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, dh))
        self.W_O = nn.Parameter(torch.empty(n_heads, dh, d_model))
        for w in (self.W_Q, self.W_K, self.W_V, self.W_O):
            nn.init.normal_(w, std=0.02)
        self.b_Q = nn.Parameter(torch.zeros(n_heads, dh))
        self.b_K = nn.Parameter(torch.zeros(n_heads, dh))
        self.b_V = nn.Parameter(torch.zeros(n_heads, dh))
        self.b_O = nn.Parameter(torch.zeros(d_model))

    def kv(self, src):
        k = einops.einsum(src, self.W_K, "b s m, h m d -> b h s d") + self.b_K[:, None]
        v = einops.einsum(src, self.W_V, "b s m, h m d -> b h s d") + self.b_V[:, None]
        return k, v


class AttentionBoundFlags(_AttentionBase):
    """Picks the path and the mask in __init__: setting attn.fused or attn.causal later does nothing."""

    def __init__(self, d_model, n_heads, causal=True, fused=False):
        super().__init__(d_model, n_heads, causal, fused)
        self._attend = _fused if fused else _step_by_step
        self._self_causal = causal

    def forward(self, x, context=None, key_padding_mask=None):
        q = einops.einsum(x, self.W_Q, "b s m, h m d -> b h s d") + self.b_Q[:, None]
        k, v = self.kv(x if context is None else context)
        z = self._attend(q, k, v, self._self_causal and context is None, key_padding_mask)
        return einops.einsum(z, self.W_O, "b h s d, h d m -> b s m") + self.b_O


class AttentionContextCache(_AttentionBase):
    """Caches the context's keys and values by the context's shape: another context of that shape
    gets the first one's keys and values."""

    def forward(self, x, context=None, key_padding_mask=None):
        q = einops.einsum(x, self.W_Q, "b s m, h m d -> b h s d") + self.b_Q[:, None]
        if context is None:
            k, v = self.kv(x)
        else:
            if getattr(self, "_ctx_key", None) != tuple(context.shape):
                self._ctx_key, self._ctx_kv = tuple(context.shape), self.kv(context)
            k, v = self._ctx_kv
        causal = self.causal and context is None
        attend = _fused if self.fused else _step_by_step
        z = attend(q, k, v, causal, key_padding_mask)
        return einops.einsum(z, self.W_O, "b h s d, h d m -> b s m") + self.b_O


for _cls in (AttentionBoundFlags, AttentionContextCache):
    _cls.__name__ = "Attention"


def test_attention_that_decides_its_path_in_init_fails():
    text = message("Attention", AttentionBoundFlags)
    assert "m.fused = True set" in text and "whether forward called torch's scaled_dot_product_attention" in text
    assert "m.fused = True; m.load_state_dict(weights)" in text  # the way to reproduce it sets it too


def test_attention_that_caches_a_context_by_its_shape_fails():
    text = message("Attention", AttentionContextCache)
    assert "another context of the same shape" in text and "second call of forward" in text


# --- exercise 9: KVCache --------------------------------------------------------------------------


class KVCacheShared:
    """The pieces live in lists of the class: two caches (one per layer) append to the same ones."""

    _ks: list = []
    _vs: list = []

    def __init__(self):
        self.k = None
        self.v = None
        self._ks.clear()
        self._vs.clear()

    def update(self, k_new, v_new):
        self._ks.append(k_new)
        self._vs.append(v_new)
        self.k = torch.cat(self._ks, dim=-2)
        self.v = torch.cat(self._vs, dim=-2)
        return self.k, self.v

    def __len__(self):
        return 0 if self.k is None else self.k.shape[-2]


class KVCacheFixedCapacity:
    """A preallocated buffer of 256 positions (a "static cache"): position 257 fails."""

    def __init__(self):
        self.k = None
        self.v = None
        self._n = 0

    def update(self, k_new, v_new):
        if not hasattr(self, "_bk"):
            self._bk = k_new.new_zeros(*k_new.shape[:-2], 256, k_new.shape[-1])
            self._bv = v_new.new_zeros(*v_new.shape[:-2], 256, v_new.shape[-1])
        n = k_new.shape[-2]
        self._bk[..., self._n:self._n + n, :] = k_new
        self._bv[..., self._n:self._n + n, :] = v_new
        self._n += n
        self.k, self.v = self._bk[..., :self._n, :], self._bv[..., :self._n, :]
        return self.k, self.v

    def __len__(self):
        return self._n


for _cls in (KVCacheShared, KVCacheFixedCapacity):
    _cls.__name__ = "KVCache"


def test_caches_that_share_their_lists_fail():
    text = message("KVCache", KVCacheShared)
    assert "two caches at once" in text and "second cache" in text
    assert "one cache per layer" in text.split("Hint:")[-1]


def test_cache_with_a_fixed_capacity_fails():
    text = message("KVCache", KVCacheFixedCapacity)
    assert "9,100 positions: a cache has no size limit" in text


# --- exercise 10: forward_cached ------------------------------------------------------------------


def _project(attn, x):
    q = einops.einsum(x, attn.W_Q, "b s m, h m d -> b h s d") + attn.b_Q[:, None]
    k = einops.einsum(x, attn.W_K, "b s m, h m d -> b h s d") + attn.b_K[:, None]
    v = einops.einsum(x, attn.W_V, "b s m, h m d -> b h s d") + attn.b_V[:, None]
    return q, k, v


def forward_cached_detached(attn, x_new, cache):
    """Caches detached keys and values: the values are right, no gradient reaches W_K, W_V."""
    q, k, v = _project(attn, x_new)
    k, v = cache.update(k.detach(), v.detach())
    z = _step_by_step(q, k, v, causal=True)
    return einops.einsum(z, attn.W_O, "b h s d, h d m -> b s m") + attn.b_O


def forward_cached_torch_kernel(attn, x_new, cache):
    """Right numbers, but through F.scaled_dot_product_attention (with a bottom-right mask), which
    the exercise replaces by the learner's own scaled_dot_product_attention."""
    q, k, v = _project(attn, x_new)
    k, v = cache.update(k, v)
    z = F.scaled_dot_product_attention(q, k, v, attn_mask=_allowed(q.shape[-2], k.shape[-2], q.device))
    return einops.einsum(z, attn.W_O, "b h s d, h d m -> b s m") + attn.b_O


def test_forward_cached_with_a_detached_cache_fails():
    text = message("forward_cached", forward_cached_detached)
    assert "the gradient of W_K is None" in text


def test_forward_cached_through_torchs_kernel_is_refused():
    text = message("forward_cached", forward_cached_torch_kernel)
    assert "calls torch's `scaled_dot_product_attention`" in text and "offset" in text


@pytest.mark.parametrize("name,answer", [
    ("causal_mask", causal_mask_additive),
    ("attention_pattern", attention_pattern_clamped_exponent),
    ("attention_pattern", attention_pattern_finite_for_neginf),
    ("attention_pattern", attention_pattern_nan_to_zero),
    ("attention_output", attention_output_cleaned),
    ("scaled_dot_product_attention", sdpa_padding_penalty),
    ("scaled_dot_product_attention", sdpa_padding_finite_fill),
    ("merge_heads", merge_heads_axes_by_size),
    ("Attention", AttentionBoundFlags),
    ("Attention", AttentionContextCache),
    ("KVCache", KVCacheShared),
    ("KVCache", KVCacheFixedCapacity),
    ("forward_cached", forward_cached_detached),
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__qualname__", ""))
def test_each_also_fails_under_a_hidden_seed(name, answer):
    message(name, answer, seed=424242)
