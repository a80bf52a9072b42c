"""Attention: how each position of a sequence reads from the others (chapter 3).

Scaled dot-product attention (Vaswani et al. 2017, section 3.2.1), step by step::

    scores  = Q K^T / sqrt(d_head)          how well each query matches each key
    scores  = causal_mask(scores)           -inf where a key lies in the query's future
    pattern = softmax(scores, over keys)    each query's weights over the keys, summing to 1
    z       = pattern V                     a weighted average of the values

Multi-head attention runs n_heads of these side by side on d_head = d_model / n_heads numbers
each, and adds the heads' outputs back into the residual stream through W_O.

Shapes use the course's dimension names: batch, seq, d_model, n_heads, d_head. Conventions,
used everywhere in this file:

* vectors are rows: a projection is ``x @ W``;
* the weights follow ARENA's per-head layout: W_Q, W_K, W_V (n_heads, d_model, d_head),
  b_Q, b_K, b_V (n_heads, d_head), W_O (n_heads, d_head, d_model), b_O (d_model,);
* queries sit at the LAST seq_q of the seq_k key positions (query i at position
  seq_k - seq_q + i), so one causal mask serves a full forward pass (seq_q = seq_k) and
  decoding with a KV cache (seq_q < seq_k);
* a padding mask is True where a key is padding, i.e. must be ignored (torch.nn's
  ``key_padding_mask`` convention; note that ``F.scaled_dot_product_attention``'s boolean
  ``attn_mask`` is the opposite: True where attention is allowed).

The first part holds the exercises, the second the helpers the chapter page uses.
"""

from __future__ import annotations

import math
import time

import einops
import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------------------------
# Part 1: the exercises
# ----------------------------------------------------------------------------------------------


def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Scaled dot products of every query with every key: q k^T / sqrt(d_head).

    q: (..., seq_q, d_head); k: (..., seq_k, d_head); returns (..., seq_q, seq_k), where
    scores[..., i, j] is how much query i "likes" key j. The leading axes (for example batch,
    n_heads) are matched one to one.

    Why divide by sqrt(d_head): if the entries of q and k are independent with mean 0 and
    variance 1, q . k is a sum of d_head products of variance 1, so its variance is d_head.
    Dividing by sqrt(d_head) brings it back to 1, and the softmax stays out of its flat,
    saturated regime where gradients vanish (Vaswani et al. 2017, section 3.2.1, footnote 4).
    """
    d_head = q.shape[-1]
    return q @ k.transpose(-2, -1) / math.sqrt(d_head)


def causal_mask(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` (..., seq_q, seq_k) with -inf wherever the key comes after the query.

    The queries are the LAST seq_q of the seq_k positions: query i sits at position
    seq_k - seq_q + i and may see keys 0 .. seq_k - seq_q + i. With seq_q = seq_k this is the
    usual lower triangle; with a KV cache (seq_q < seq_k) the one new query sees every cached
    key. seq_q > seq_k is a ValueError (the first queries would see nothing).

    -inf, not 0: the mask goes *before* the softmax, and exp(-inf) = 0, so masked keys get
    exactly zero weight. A score of 0 would still get weight exp(0) = 1 (relative to the
    others). Returns a new tensor; the input is not changed.
    """
    seq_q, seq_k = scores.shape[-2], scores.shape[-1]
    if seq_q > seq_k:
        raise ValueError(f"more queries than keys (seq_q = {seq_q} > seq_k = {seq_k}): "
                         f"queries are the last seq_q of the seq_k positions")
    ones = torch.ones(seq_q, seq_k, dtype=torch.bool, device=scores.device)
    allowed = torch.tril(ones, diagonal=seq_k - seq_q)  # key j <= query position seq_k-seq_q+i
    return scores.masked_fill(~allowed, float("-inf"))


def attention_pattern(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the key axis (the last one): (..., seq_q, seq_k), every row sums to 1.

    pattern[..., i, j] is the weight query i gives key j. torch.softmax subtracts each row's
    maximum first, so large scores do not overflow and -inf entries become exactly 0. A row
    that is -inf everywhere would give 0/0 = nan; a causal mask never makes one (every query
    sees at least its own position), but a padding mask can if a query sees only padding.
    """
    return scores.softmax(dim=-1)


def attention_output(pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weighted sum of the values: pattern (..., seq_q, seq_k) @ v (..., seq_k, d_head).

    Returns (..., seq_q, d_head): row i is sum_j pattern[i, j] * v[j].
    """
    return pattern @ v


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention step by step: scores, masks, softmax, weighted sum of values.

    q: (batch, n_heads, seq_q, d_head); k, v: (batch, n_heads, seq_k, d_head);
    key_padding_mask: bool (batch, seq_k), True where the key is padding (ignored by every
    query), or None. Returns (batch, n_heads, seq_q, d_head): F.scaled_dot_product_attention's
    result with the same masks, except for a query whose keys are all masked (0/0: nan here, 0 there).

    Both masks are applied to the scores, before the softmax: masking the pattern afterwards
    would leave rows that no longer sum to 1 (and renormalising them is just a slower softmax).
    """
    scores = attention_scores(q, k)
    if causal:
        scores = causal_mask(scores)
    if key_padding_mask is not None:
        padding = einops.rearrange(key_padding_mask, "batch seq_k -> batch 1 1 seq_k")
        scores = scores.masked_fill(padding, float("-inf"))
    pattern = attention_pattern(scores)
    return attention_output(pattern, v)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, seq, d_model) -> (batch, n_heads, seq, d_head), d_head = d_model // n_heads.

    Head h gets the numbers h*d_head .. (h+1)*d_head - 1 of every position. The view splits
    the last axis into (n_heads, d_head); the transpose then moves n_heads in front of seq, so
    that each head is a (seq, d_head) matrix. A view straight to (batch, n_heads, seq, d_head)
    would be the right shape with the wrong numbers: it cuts the flat memory into n_heads
    blocks of *positions*. Same as einops.rearrange(x, "batch seq (n_heads d_head) ->
    batch n_heads seq d_head"). d_model not divisible by n_heads is a ValueError.
    """
    batch, seq, d_model = x.shape
    if d_model % n_heads != 0:
        raise ValueError(f"d_model = {d_model} is not divisible by n_heads = {n_heads}")
    return x.view(batch, seq, n_heads, d_model // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """The inverse of split_heads: (batch, n_heads, seq, d_head) -> (batch, seq, n_heads * d_head).

    After the transpose the tensor is no longer contiguous in memory, so ``reshape`` (which
    copies when it must) is needed instead of ``view``.
    """
    batch, n_heads, seq, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, seq, n_heads * d_head)


class Attention(nn.Module):
    """Multi-head attention with GPT-2's initialisation and ARENA's per-head weight layout.

    W_Q, W_K, W_V: (n_heads, d_model, d_head)   b_Q, b_K, b_V: (n_heads, d_head)
    W_O: (n_heads, d_head, d_model)             b_O: (d_model,)

    Weights are drawn from N(0, 0.02^2), biases start at 0. ``causal`` masks the future in
    self-attention; ``fused`` switches from the step-by-step path (the exercises above) to
    PyTorch's fused ``F.scaled_dot_product_attention``: the same results to float32 rounding.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = True, fused: bool = False):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model = {d_model} is not divisible by n_heads = {n_heads}")
        d_head = d_model // n_heads
        self.n_heads, self.d_head, self.causal, self.fused = n_heads, d_head, causal, fused
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_O = nn.Parameter(torch.empty(n_heads, d_head, d_model))
        self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_K = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_V = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_O = nn.Parameter(torch.zeros(d_model))
        for W in (self.W_Q, self.W_K, self.W_V, self.W_O):
            nn.init.normal_(W, mean=0.0, std=0.02)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (batch, seq, d_model) -> (batch, seq, d_model).

        context: (batch, seq_kv, d_model) or None. Queries always come from x; keys and values
        come from context (cross-attention, as in an encoder-decoder) or, if it is None, from x
        itself (self-attention). The causal mask applies only to self-attention: positions in
        two different sequences are not "earlier" or "later" than each other.
        key_padding_mask: bool (batch, seq_kv), True where a key is padding.
        """
        source = x if context is None else context
        q = einops.einsum(x, self.W_Q, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head")
        k = einops.einsum(source, self.W_K, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head")
        v = einops.einsum(source, self.W_V, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head")
        q = q + self.b_Q[:, None, :]  # (n_heads, 1, d_head): the same bias at every position
        k = k + self.b_K[:, None, :]
        v = v + self.b_V[:, None, :]
        causal = self.causal and context is None
        if self.fused:
            z = fused_attention(q, k, v, causal, key_padding_mask)
        else:
            z = scaled_dot_product_attention(q, k, v, causal, key_padding_mask)
        # each head writes into the residual stream through its own slice W_O[h]; the sum over
        # heads is the same as concatenating the heads and multiplying by one big matrix
        out = einops.einsum(z, self.W_O, "batch n_heads seq d_head, n_heads d_head d_model -> batch seq d_model")
        return out + self.b_O


class KVCache:
    """The keys and values of every position decoded so far, for one attention layer.

    k, v: (batch, n_heads, seq_cached, d_head), or None while the cache is empty. Keys and
    values of a position never change once computed (a causal layer's position p only reads
    positions <= p), so they are computed once and kept.
    """

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def update(self, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k_new, v_new (batch, n_heads, seq_new, d_head) along the seq axis.

        Returns all keys and all values, (batch, n_heads, seq_cached + seq_new, d_head).
        """
        if self.k is None:
            self.k, self.v = k_new, v_new
        else:
            self.k = torch.cat([self.k, k_new], dim=-2)
            self.v = torch.cat([self.v, v_new], dim=-2)
        return self.k, self.v

    def __len__(self) -> int:
        """The number of cached positions."""
        return 0 if self.k is None else self.k.shape[-2]


def forward_cached(attn: Attention, x_new: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Causal self-attention of ``attn`` for the new positions only, with cached keys/values.

    x_new: (batch, seq_new, d_model), the residual stream of the positions after the
    len(cache) already decoded ones (seq_new = 1 when generating token by token; the prompt
    may come in one go). Returns (batch, seq_new, d_model): the same rows that
    ``attn(x)`` would give for these positions of the whole sequence x, while projecting only
    the new positions. The new queries are the last seq_new of the len(cache) + seq_new keys:
    exactly causal_mask's convention, which handles the position offset.
    """
    q = einops.einsum(x_new, attn.W_Q, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head")
    k = einops.einsum(x_new, attn.W_K, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head")
    v = einops.einsum(x_new, attn.W_V, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head")
    k, v = cache.update(k + attn.b_K[:, None, :], v + attn.b_V[:, None, :])
    z = scaled_dot_product_attention(q + attn.b_Q[:, None, :], k, v, causal=True)
    out = einops.einsum(z, attn.W_O, "batch n_heads seq d_head, n_heads d_head d_model -> batch seq d_model")
    return out + attn.b_O


# ----------------------------------------------------------------------------------------------
# Part 2: the fused path and helpers for the chapter page
# ----------------------------------------------------------------------------------------------


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``scaled_dot_product_attention`` through PyTorch's fused kernel, same conventions.

    F.scaled_dot_product_attention's ``is_causal`` aligns the mask with the *first* key
    (top-left), which differs from ours when seq_q < seq_k, and it cannot be combined with a
    mask. So unless the plain case applies, the allowed positions are passed as a boolean
    ``attn_mask`` (True = may attend, the opposite of a padding mask).
    """
    seq_q, seq_k = q.shape[-2], k.shape[-2]
    if key_padding_mask is None and (not causal or seq_q == seq_k):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    allowed = torch.ones(seq_q, seq_k, dtype=torch.bool, device=q.device)
    if causal:
        allowed = torch.tril(allowed, diagonal=seq_k - seq_q)
    if key_padding_mask is not None:
        allowed = allowed & ~einops.rearrange(key_padding_mask, "batch seq_k -> batch 1 1 seq_k")
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def attention_patterns(attn: Attention, x: torch.Tensor, causal: bool | None = None) -> torch.Tensor:
    """The attention pattern of every head of ``attn`` on x: (batch, n_heads, seq, seq).

    ``causal`` overrides the module's own setting (to show one head with and without the mask).
    Computed without gradients: it is for looking at.
    """
    causal = attn.causal if causal is None else causal
    with torch.no_grad():
        return _patterns(attn, x, causal)


def _patterns(attn: Attention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    q = einops.einsum(x, attn.W_Q, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head")
    k = einops.einsum(x, attn.W_K, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head")
    scores = attention_scores(q + attn.b_Q[:, None, :], k + attn.b_K[:, None, :])
    return attention_pattern(causal_mask(scores) if causal else scores)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention written as the formula (no fused kernel): for the cost figure."""
    return scaled_dot_product_attention(q, k, v, causal=True)


def saved_bytes(fn, *tensors: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``fn(*tensors)``.

    This is the memory that training holds per attention layer until the backward pass, and
    where the naive path and the fused kernel differ most: the naive path keeps the
    (seq, seq) pattern of every head, the fused kernel only q, k, v, the output and one number
    per query (the log of its softmax denominator). Each storage is counted once.
    """
    storages: dict[int, int] = {}  # data pointer -> bytes: a tensor saved twice counts once

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*tensors)
    return sum(storages.values())


def median_seconds(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall-clock time of ``fn()`` over ``repeat`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def attention_cost(
    seq: int, batch: int = 1, n_heads: int = 4, d_head: int = 64, backward: bool = False,
    repeat: int = 5, seed: int = 0,
) -> dict[str, float]:
    """Time (median seconds) and bytes kept for backward, naive vs fused causal attention.

    Returns {"naive_s", "fused_s", "naive_bytes", "fused_bytes"}; with ``backward`` the time is
    of forward + backward. float32 on the CPU.
    """
    g = torch.Generator().manual_seed(seed)
    shape = (batch, n_heads, seq, d_head)
    q, k, v = (torch.randn(shape, generator=g).requires_grad_(backward) for _ in range(3))
    grad = torch.randn(shape, generator=g)
    fused = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
    result = {}
    for name, fn in (("naive", naive_attention), ("fused", fused)):
        if backward:
            def step(fn=fn):
                q.grad = k.grad = v.grad = None
                fn(q, k, v).backward(grad)
        else:
            def step(fn=fn):
                with torch.no_grad():
                    fn(q, k, v)
        result[f"{name}_s"] = median_seconds(step, repeat=repeat)
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
        result[f"{name}_bytes"] = saved_bytes(fn, *leaves)
    return result
