"""Wrong answers to chapters 2 and 3 that once passed their checks (found by learners who had not
seen the references, issue 19), each kept here as it was written, with its docstring.

Each must now fail its check with a message that leads to the mistake. The checks run once, on
the notebook's seed and the CPU (other seeds are covered by tests/test_checks_all.py).
"""

import math
import types

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solutions import attention as ref_attention
from solutions import embeddings as ref_embeddings
from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function


def failure(name, answer):
    """The check's message for ``answer`` (which must fail)."""
    with pytest.raises(CheckFailure) as info:
        check_function(SPECS[name], answer, device="cpu")
    return str(info.value)


# --- chapter 2 ----------------------------------------------------------------------------------


def test_embed_that_refuses_only_float_ids_is_told_bool_is_not_an_integer_dtype():
    class Embed(nn.Module):
        """Chapter 2, exercise 3 (Embed), ch02_Embed_boolids: only floating-point ids are refused,
        so a bool tensor (not an integer dtype: a TypeError) reaches W_E[tokens], which reads it
        as a mask and silently returns the rows where it is True."""

        def __init__(self, d_vocab, d_model):
            super().__init__()
            self.d_vocab = d_vocab
            self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))
            nn.init.normal_(self.W_E, mean=0.0, std=0.02)

        def forward(self, tokens):
            if tokens.dtype.is_floating_point:  # BUG: bool (and complex) slip through
                raise TypeError(f"tokens must be integers, got {tokens.dtype}")
            if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.d_vocab):
                bad = tokens[(tokens < 0) | (tokens >= self.d_vocab)][0].item()
                raise ValueError(f"token id {bad} is outside 0..{self.d_vocab - 1} (d_vocab = {self.d_vocab})")
            return self.W_E[tokens]

    message = failure("Embed", Embed)
    assert "bool ids" in message and "should raise TypeError" in message and "torch.bool" in message


def test_cosine_that_turns_nan_into_0_is_told_about_vectors_shorter_than_eps():
    def cosine_similarity(a, b):
        """Chapter 2, exercise 8, ch02_cosine_similarity_nan_to_num: divides by |a||b| and maps
        nan (0/0) to 0. Zero vectors come out right, but a non-zero vector shorter than 1e-8 gets
        its true cosine instead of the formula's (which divides by max(|v|, 1e-8))."""
        r = (a @ b.T) / (a.norm(dim=-1)[:, None] * b.norm(dim=-1)[None, :])
        return torch.nan_to_num(r, nan=0.0)  # BUG: no per-vector max(|v|, 1e-8)

    message = failure("cosine_similarity", cosine_similarity)
    assert "shorter than 1e-8" in message and "Hint: divide by max(|v|, 1e-8) for each vector" in message


def test_lookup_embed_from_a_detached_table_is_told_it_carries_no_gradient():
    def lookup_embed(tokens, W_E):
        """Chapter 2, exercise 2, ch02_lookup_embed_detach: the look-up is taken from a detached
        W_E, so no gradient reaches the table (the page: the look-up's backward pass adds each
        G_i into row t_i)."""
        return W_E.detach()[tokens]  # BUG: .detach() cuts the gradient

    message = failure("lookup_embed", lookup_embed)
    assert message.startswith("lookup_embed on") and "carries no gradient" in message and ".detach()" in message


# --- chapter 3 ----------------------------------------------------------------------------------


def test_attention_that_stores_head_dim_and_is_causal_is_told_the_promised_names():
    class Attention(nn.Module):
        """Chapter 3, exercise 8, ch03_Attention_attribute_names: stores self.head_dim and
        self.is_causal (names from other code bases) instead of self.d_head and self.causal, which
        the exercise promises and exercise 10 may read."""

        def __init__(self, d_model, n_heads, causal=True, fused=False):
            super().__init__()
            if d_model % n_heads != 0:
                raise ValueError(f"d_model = {d_model} is not divisible by n_heads = {n_heads}")
            self.n_heads, self.head_dim = n_heads, d_model // n_heads  # BUG: not self.d_head
            self.is_causal, self.fused = causal, fused  # BUG: not self.causal
            d_head = self.head_dim
            self.W_Q = nn.Parameter(torch.randn(n_heads, d_model, d_head) * 0.02)
            self.W_K = nn.Parameter(torch.randn(n_heads, d_model, d_head) * 0.02)
            self.W_V = nn.Parameter(torch.randn(n_heads, d_model, d_head) * 0.02)
            self.W_O = nn.Parameter(torch.randn(n_heads, d_head, d_model) * 0.02)
            self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head))
            self.b_K = nn.Parameter(torch.zeros(n_heads, d_head))
            self.b_V = nn.Parameter(torch.zeros(n_heads, d_head))
            self.b_O = nn.Parameter(torch.zeros(d_model))

        def forward(self, x, context=None, key_padding_mask=None):
            src = x if context is None else context
            proj = "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head"
            q = einops.einsum(x, self.W_Q, proj) + self.b_Q[:, None, :]
            k = einops.einsum(src, self.W_K, proj) + self.b_K[:, None, :]
            v = einops.einsum(src, self.W_V, proj) + self.b_V[:, None, :]
            causal = self.is_causal and context is None
            if self.fused:
                z = ref_attention.fused_attention(q, k, v, causal, key_padding_mask)
            else:
                z = ref_attention.scaled_dot_product_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask)
            out = einops.einsum(z, self.W_O, "batch n_heads seq d_head, n_heads d_head d_model -> batch seq d_model")
            return out + self.b_O

    message = failure("Attention", Attention)
    assert "no attribute 'd_head'" in message and "self.d_head" in message


def test_kv_cache_that_starts_from_an_empty_tensor_is_told_to_start_from_none():
    class KVCache:
        """Chapter 3, exercise 9, ch03_KVCache_empty_tensor_init: starts from torch.empty(0) (a
        float32 CPU tensor) instead of None; torch.cat promotes, so a float16 / bfloat16 cache
        comes back as float32."""

        def __init__(self):
            self.k = torch.empty(0)  # BUG: the exercise asks for None
            self.v = torch.empty(0)

        def update(self, k_new, v_new):
            self.k = torch.cat([self.k, k_new], dim=-2)
            self.v = torch.cat([self.v, v_new], dim=-2)
            return self.k, self.v

        def __len__(self):
            return self.k.shape[-2] if self.k.dim() > 1 else 0

    message = failure("KVCache", KVCache)
    assert "'cache.k before any update'" in message and "expected None" in message
    assert "float16" in message  # the hint says what the stand-in does to half-precision keys


def test_kv_cache_that_keeps_none_but_casts_to_float32_is_named_by_dtype():
    class KVCache:
        """A variant of the same kind: None at the start, but every update casts to float32."""

        def __init__(self):
            self.k = self.v = None

        def update(self, k_new, v_new):
            k_new, v_new = k_new.float(), v_new.float()
            self.k = k_new if self.k is None else torch.cat([self.k, k_new], dim=-2)
            self.v = v_new if self.v is None else torch.cat([self.v, v_new], dim=-2)
            return self.k, self.v

        def __len__(self):
            return 0 if self.k is None else self.k.shape[-2]

    message = failure("KVCache", KVCache)
    assert "float16 keys and values" in message and "'the keys update 1 returns' has dtype torch.float32" in message


def test_attention_pattern_that_clamps_at_minus_20_is_told_masked_weights_are_exactly_0():
    def attention_pattern(scores):
        """Chapter 3, exercise 3, ch03_attention_pattern_clamp_neg20: replaces -inf (and every
        score below -20) by -20 "to avoid nan": masked keys get a little weight, and a row whose
        real scores are all below -20 comes out uniform."""
        return torch.softmax(scores.clamp(min=-20.0), dim=-1)  # BUG: clamp

    message = failure("attention_pattern", attention_pattern)
    assert "below -20" in message and "Hint: a masked score of -inf must get a weight of exactly 0" in message


def test_attention_pattern_with_a_floor_of_minus_1e4_is_told_the_same():
    def attention_pattern(scores):
        """The same kind with another floor: -inf replaced by -1e4 (a common stand-in)."""
        return torch.softmax(scores.clamp(min=-1e4), dim=-1)

    message = failure("attention_pattern", attention_pattern)
    assert "exactly 0" in message


def test_attention_pattern_under_no_grad_is_told_it_carries_no_gradient():
    def attention_pattern(scores):
        """Chapter 3, exercise 3, ch03_attention_pattern_no_grad: computed under
        torch.no_grad(), so no gradient reaches the scores (W_Q, W_K never train)."""
        with torch.no_grad():  # BUG
            return torch.softmax(scores, dim=-1)

    message = failure("attention_pattern", attention_pattern)
    assert message.startswith("attention_pattern on") and "carries no gradient" in message and "torch.no_grad()" in message


def test_detached_attention_scores_are_blamed_on_attention_scores():
    def attention_scores(q, k):
        """Chapter 3, exercise 1, ch03_attention_scores_detached: the result is detached, so no
        gradient reaches q and k; it used to be blamed later, on the Attention module."""
        return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).detach()  # BUG: .detach()

    message = failure("attention_scores", attention_scores)
    assert message.startswith("attention_scores on") and "carries no gradient" in message


def test_causal_mask_that_masks_every_zero_is_told_an_allowed_score_may_be_0():
    def causal_mask(scores):
        """Chapter 3, exercise 2, ch03_causal_mask_zero_scores: zeroes the future with torch.tril,
        then turns every 0 into -inf, so an allowed score of exactly 0 is masked too (the page's
        own causal_mask(torch.zeros(2, 5)) comes out all -inf)."""
        seq_q, seq_k = scores.shape[-2], scores.shape[-1]
        if seq_q > seq_k:
            raise ValueError(f"seq_q = {seq_q} > seq_k = {seq_k}")
        s = torch.tril(scores, diagonal=seq_k - seq_q)
        return s.masked_fill(s == 0, float("-inf"))  # BUG: allowed zeros become -inf

    message = failure("causal_mask", causal_mask)
    assert "scores of exactly 0" in message and "from the positions alone" in message


def test_step_by_step_attention_through_torchs_kernel_is_refused_by_name():
    def scaled_dot_product_attention(q, k, v, causal=True, key_padding_mask=None):
        """Chapter 3, exercise 5, ch03_scaled_dot_product_attention_torch_kernel: calls PyTorch's
        fused kernel instead of putting exercises 1-4 together."""
        seq_q, seq_k = q.shape[-2], k.shape[-2]
        mask = torch.ones(seq_q, seq_k, dtype=torch.bool, device=q.device)
        if causal:
            mask = mask.tril(seq_k - seq_q)
        if key_padding_mask is not None:
            mask = mask & ~key_padding_mask[:, None, None, :]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # the built-in

    message = failure("scaled_dot_product_attention", scaled_dot_product_attention)
    assert "calls torch's `scaled_dot_product_attention`" in message and "step by step" in message


def test_a_correct_attention_is_not_blamed_for_that_step_by_step_function():
    # the notebook's namespace: the learner's exercise 5 calls the kernel, exercise 8 is right and
    # calls exercise 5 by name; Attention's check binds the reference there, so it passes
    notebook = types.ModuleType("notebook_of_a_learner")
    exec(
        "import torch.nn.functional as F\n"
        "from solutions.attention import Attention as _Right\n"
        "def scaled_dot_product_attention(q, k, v, causal=True, key_padding_mask=None):\n"
        "    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)\n"
        "from solutions.attention import fused_attention\n"
        "import einops\n"
        "class Attention(_Right):\n"
        "    def forward(self, x, context=None, key_padding_mask=None):\n"
        "        src = x if context is None else context\n"
        "        p = 'b s m, h m d -> b h s d'\n"
        "        q = einops.einsum(x, self.W_Q, p) + self.b_Q[:, None, :]\n"
        "        k = einops.einsum(src, self.W_K, p) + self.b_K[:, None, :]\n"
        "        v = einops.einsum(src, self.W_V, p) + self.b_V[:, None, :]\n"
        "        causal = self.causal and context is None\n"
        "        attend = fused_attention if self.fused else scaled_dot_product_attention\n"
        "        z = attend(q, k, v, causal, key_padding_mask)\n"
        "        return einops.einsum(z, self.W_O, 'b h s d, h d m -> b s m') + self.b_O\n",
        vars(notebook),
    )
    notebook.Attention.__module__ = notebook.__name__
    import sys

    sys.modules[notebook.__name__] = notebook
    try:
        check_function(SPECS["Attention"], notebook.Attention, device="cpu")
    finally:
        del sys.modules[notebook.__name__]
