"""Wrong answers a second round of learner-attackers got past the checks after issue 19's framework
change (chapters 2-4 and 6), each now refused with a message that leads to the mistake. Each
function is the learner's code, with a docstring saying why it is wrong."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solutions import checks as check
from solutions.checks.core import CheckFailure


def cosine_similarity(a, b):
    """Computed in float32 and cast back: float64 rows of size 1e100 give nan, not their cosine."""
    af, bf = a.float(), b.float()
    na = af.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    nb = bf.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return ((af / na) @ (bf / nb).T).to(a.dtype)


def lookup_embed(tokens, W_E):
    """Ids through int16: id 40,000 of GPT-2's vocabulary wraps around to another row."""
    return W_E[tokens.short().long()]


def one_hot_embed(tokens, W_E):
    """The product in float32, cast back: float64 weights beyond float32's range become inf."""
    return (F.one_hot(tokens.long(), num_classes=W_E.shape[0]).float() @ W_E.float()).to(W_E.dtype)


_cache: dict = {}


def sinusoidal_encoding(n_ctx, d_model, base=10000.0):
    """Cached by (n_ctx, d_model) alone: another base gets the table of the first one."""
    if d_model % 2:
        raise ValueError(f"d_model must be even, got {d_model}")
    if (n_ctx, d_model) not in _cache:
        p = torch.arange(n_ctx, dtype=torch.float64)[:, None]
        w = base ** (-2 * torch.arange(d_model // 2, dtype=torch.float64) / d_model)
        pe = torch.zeros(n_ctx, d_model, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(p * w), torch.cos(p * w)
        _cache[n_ctx, d_model] = pe.float()
    return _cache[n_ctx, d_model].clone()


def merge_heads(x):
    """Casts to float32: a bfloat16 or float64 stream comes back in another dtype."""
    b, h, s, dh = x.shape
    return x.float().transpose(1, 2).reshape(b, s, h * dh)


def split_heads(x, n_heads):
    """Casts to float32 first (the same mistake as merge_heads)."""
    x = x.float()
    b, s, d = x.shape
    if d % n_heads:
        raise ValueError(f"d_model = {d} is not divisible by n_heads = {n_heads}")
    return x.view(b, s, n_heads, d // n_heads).transpose(1, 2)


def gelu_exact(x):
    """Computed in float32 and cast back: float64 inputs of 1e100 become inf."""
    xf = x.float()
    return (0.5 * xf * (1 + torch.erf(xf / math.sqrt(2)))).to(x.dtype)


def relu(x):
    """torch's own relu through its operator overload: the built-in the exercise forbids."""
    return torch.ops.aten.relu.default(x)


class SwiGLU(nn.Module):
    """torch's own silu through its operator overload: the built-in the exercise forbids."""

    def __init__(self, d_model, d_mlp=None):
        super().__init__()
        if d_mlp is None:
            d_mlp = 256 * ((int(2 * 4 * d_model / 3) + 255) // 256)
        self.d_model, self.d_mlp = d_model, d_mlp
        self.W_gate = nn.Parameter(torch.randn(d_model, d_mlp) * 0.02)
        self.W_up = nn.Parameter(torch.randn(d_model, d_mlp) * 0.02)
        self.W_down = nn.Parameter(torch.randn(d_mlp, d_model) * 0.02)

    def forward(self, x):
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x's last axis is {x.shape[-1]}, expected d_model = {self.d_model}")
        return (torch.ops.aten.silu.default(x @ self.W_gate) * (x @ self.W_up)) @ self.W_down


def top_k_filter(logits, k):
    """Casts to float32: float64 and bfloat16 logits come back float32."""
    logits = logits.float()
    d_vocab = logits.shape[-1]
    if not 1 <= k <= d_vocab:
        raise ValueError(f"k must be in 1..d_vocab = {d_vocab}")
    kth = torch.topk(logits, k).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def clip_grad_norm(grads, max_norm):
    """Returns the input tensors themselves when the norm is under the limit (the exercise
    promises a list of new tensors: changing one would change the caller's gradient)."""
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    if norm <= max_norm:
        return list(grads), norm.float()
    return [g * (max_norm / (norm + 1e-6)).to(g.dtype) for g in grads], norm.float()


WRONG = [
    (cosine_similarity, "float64"),  # its float32 rounding shows on any float64 case now
    (lookup_embed, "ids above 32,767"),
    (one_hot_embed, "float64"),  # float32 rounding shows on any float64 case now
    (sinusoidal_encoding, "another base (nothing kept from an earlier call)"),
    (merge_heads, "has dtype torch.float32"),
    (split_heads, "has dtype torch.float32"),
    (gelu_exact, "float64"),
    (relu, "calls torch's `relu`"),
    (SwiGLU, "calls torch's `silu`"),
    (top_k_filter, "has dtype torch.float32"),
]


@pytest.mark.parametrize("wrong, words", WRONG, ids=[w.__name__ for w, _ in WRONG])
def test_the_second_round_of_wrong_answers_fails_with_a_leading_message(wrong, words):
    _cache.clear()
    with pytest.raises(CheckFailure) as failure:
        getattr(check, wrong.__name__)(wrong)
    assert words in str(failure.value)


def test_a_result_list_that_holds_the_input_tensors_themselves_is_refused():
    from solutions.checks import SPECS
    from solutions.checks.core import check_function

    with pytest.raises(CheckFailure, match="returned its input"):
        check_function(SPECS["clip_grad_norm"], clip_grad_norm)


class Embed(nn.Module):
    """Stores the vocabulary size as `vocab` and looks ids up through int16: the exercise promises
    `self.d_vocab`, and ids of 32,768 and more wrap around to other rows."""

    def __init__(self, d_vocab, d_model):
        super().__init__()
        self.vocab = d_vocab
        self.W_E = nn.Parameter(torch.randn(d_vocab, d_model) * 0.02)

    def forward(self, tokens):
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise TypeError(f"tokens must be an integer tensor, got dtype {tokens.dtype}")
        bad = (tokens < 0) | (tokens >= self.vocab)
        if bad.any():
            raise ValueError(f"id {int(tokens[bad][0])} is outside 0..d_vocab-1 = {self.vocab - 1}")
        return self.W_E[tokens.short().long()]


def split_heads_vague(x, n_heads):
    """Refuses an indivisible d_model with a message that does not say "not divisible"."""
    b, s, d = x.shape
    if d % n_heads:
        raise ValueError("bad number of heads")
    return x.view(b, s, n_heads, d // n_heads).transpose(1, 2)


def mlp_param_count(d_model, d_mlp):
    """Checks d_mlp == 0 only: a negative d_mlp gives a negative count instead of a ValueError."""
    if d_model < 1 or d_mlp == 0:
        raise ValueError(f"both sizes must be at least 1, got {d_model} and {d_mlp}")
    return 2 * d_model * d_mlp + d_mlp + d_model


def test_promised_attributes_big_ids_messages_and_negative_sizes():
    with pytest.raises(CheckFailure, match="Embed has no attribute 'd_vocab'"):
        check.Embed(Embed)
    Embed.d_vocab = property(lambda self: self.vocab)
    try:
        with pytest.raises(CheckFailure, match="ids above 32,767"):
            check.Embed(Embed)
    finally:
        del Embed.d_vocab
    with pytest.raises(CheckFailure, match="its message should name 'not divisible'"):
        check.split_heads(split_heads_vague)
    with pytest.raises(CheckFailure, match="a negative d_mlp should raise ValueError"):
        check.mlp_param_count(mlp_param_count)


class LayerNorm(nn.Module):
    """The variance as E[x^2] - E[x]^2: in float32 it cancels when the mean is large against the
    spread (F.layer_norm, which the text says to match, does not)."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        m = x.mean(-1, keepdim=True)
        var = (x * x).mean(-1, keepdim=True) - m * m
        return (x - m) / torch.sqrt(var + self.eps) * self.w + self.b


def split_c_attn(W, b, n_heads):
    """Checks that b has 3 W.shape[0] numbers and W's rows, never W's columns: a W of 40 columns
    is cut to 36 without a word, though the exercise says to check both axes of W."""
    if b.dim() != 1 or W.dim() != 2 or W.shape[0] * 3 != b.shape[0]:
        if W.dim() == 2 and W.shape[1] == 3 * W.shape[0]:
            raise ValueError(f"b: expected {(3 * W.shape[0],)}, got {tuple(b.shape)}")
        d = b.shape[0] // 3
        raise ValueError(f"W: expected {(d, 3 * d)}, got {tuple(W.shape)}")
    d = W.shape[0]
    if n_heads <= 0 or d % n_heads:
        raise ValueError(f"n_heads {n_heads} does not divide d_model {d}")
    heads = [W[:, i * d:(i + 1) * d].reshape(d, n_heads, d // n_heads).permute(1, 0, 2) for i in range(3)]
    return (*heads, *(v.reshape(n_heads, d // n_heads) for v in b.split(d)))


def test_layer_norm_with_an_offset_and_c_attn_with_too_many_columns():
    with pytest.raises(CheckFailure, match="an offset of 100 against a spread of 1"):
        check.LayerNorm(LayerNorm)
    with pytest.raises(CheckFailure, match="W of 40 columns"):
        check.split_c_attn(split_c_attn)


def adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """A "lazy" decay that skips entries whose gradient is exactly 0: the rows of tokens that are
    not in the batch, which torch.optim.AdamW decays all the same."""
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    if not param.shape == grad.shape == exp_avg.shape == exp_avg_sq.shape:
        raise ValueError("param, grad, exp_avg and exp_avg_sq must have the same shape")
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    update = (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + eps)
    decayed = torch.where(grad == 0, param, param * (1 - lr * weight_decay))
    return decayed - lr * update, m, v


def weight_decay_groups(names):
    """Leaves out every name that ends in "pos": W_xpos is a linear map's matrix and decays."""
    if len(set(names)) != len(names):
        raise ValueError("duplicate parameter names")

    def decays(n):
        last = n.split(".")[-1]
        return last.startswith("W_") and last != "W_E" and not last.endswith("pos")

    return [n for n in names if decays(n)], [n for n in names if not decays(n)]


def test_lazy_decay_and_a_decay_rule_by_suffix_fail():
    with pytest.raises(CheckFailure, match="gradients exactly 0 in some rows"):
        check.adamw_update(adamw_update)
    with pytest.raises(CheckFailure, match="the names that decay has 6 items, expected 7"):
        check.weight_decay_groups(weight_decay_groups)


def attention_output(pattern, v):
    """A batched matrix product over exactly three axes: the one-head (seq_q, seq_k) form of the
    notebook's own example is an IndexError."""
    out = torch.bmm(pattern.flatten(0, -3), v.flatten(0, -3))
    return out.view(*pattern.shape[:-1], v.shape[-1])


def scaled_dot_product_attention(q, k, v, causal=True, key_padding_mask=None):
    """Padding filled with -1e4 instead of -inf: when the real scores are below -1e4, the padding
    keys get the weight."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    seq_q, seq_k = scores.shape[-2:]
    if causal:
        allowed = torch.ones(seq_q, seq_k, dtype=torch.bool, device=q.device).tril(seq_k - seq_q)
        scores = scores.masked_fill(~allowed, float("-inf"))
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], -1e4)
    return scores.softmax(-1) @ v


def test_one_head_outputs_and_a_finite_padding_fill_fail():
    with pytest.raises(CheckFailure, match=r"one head: \(seq_q, seq_k\)"):
        check.attention_output(attention_output)
    with pytest.raises(CheckFailure, match="real scores of about -1e5"):
        check.scaled_dot_product_attention(scaled_dot_product_attention)


_tables: dict = {}


def apply_rope(x, base=10000.0):
    """cos/sin tables cached by (seq, d_head) alone: another base gets the first base's angles."""
    seq, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"d_head must be even, got {d}")
    if (seq, d) not in _tables:
        theta = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
        angles = torch.arange(seq, dtype=torch.float32)[:, None] * theta
        _tables[seq, d] = (angles.cos(), angles.sin())
    cos, sin = (t.to(x.device) for t in _tables[seq, d])
    x0, x1 = x.float()[..., 0::2], x.float()[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2).to(x.dtype)


def top_p_filter(logits, p):
    """Keeps everything when p >= 1, though by the rule a token whose mass before it is already 1
    (not below p) is removed."""
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    if p >= 1:
        return logits.clone()
    probs = logits.softmax(-1)
    sorted_probs, order = probs.sort(-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, before < p)
    return logits.masked_fill(~keep, float("-inf"))


def test_a_cache_that_ignores_base_and_p_equal_to_one_fail():
    _tables.clear()
    with pytest.raises(CheckFailure, match="another base"):
        check.apply_rope(apply_rope)
    with pytest.raises(CheckFailure, match="p = 1 and a token of probability 0"):
        check.top_p_filter(top_p_filter)
