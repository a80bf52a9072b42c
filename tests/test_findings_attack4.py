"""Wrong answers found by a last round of fresh learners after the third round's fixes (chapter 6),
each kept with why it is wrong; each must fail with a message that leads to the mistake. One of
them showed the reference itself refusing valid uint8 starts (289 compared as a uint8 is 33)."""

import pytest
import torch

from solutions import training as ref
from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function


def message(name, answer, seed=0):
    with pytest.raises(CheckFailure) as failure:
        check_function(SPECS[name], answer, seed=seed, device="cpu")
    return str(failure.value)


def get_batch_positions_in_starts_dtype(data, starts, seq):
    """Positions start + t made in the starts' own dtype: uint8 starts of 250 wrap past 255."""
    if data.dim() != 1 or starts.dim() != 1:
        raise ValueError("data and starts must be 1-D")
    for t in (data, starts):
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise ValueError("data and starts must be integer tensors")
    if seq < 1:
        raise ValueError("seq must be at least 1")
    hi = data.shape[0] - seq - 1
    if starts.numel() and (bool((starts < 0).any()) or bool((starts.long() > hi).any())):
        raise ValueError(f"every start must be in 0..{hi}: the largest allowed start is n - seq - 1 = {hi}")
    pos = starts[:, None] + torch.arange(seq, dtype=starts.dtype)  # WRONG: wraps in uint8
    return data[pos.long()].long(), data[(pos + 1).long()].long()


def apply_temperature_by_reciprocal(logits, temperature):
    """logits * (1 / T): at T = 1e-309 (float64) 1 / T is inf, and 0 * inf is nan."""
    if temperature <= 0:
        raise ValueError("temperature must be positive; T = 0 is greedy decoding (argmax)")
    return logits * (1.0 / temperature)


def top_p_ties_by_probability(logits, p):
    """Ties judged on probabilities, not logits: 1e-8 and 0 have the same float32 probability."""
    if not 0 < p <= 1:
        raise ValueError("p must be in (0, 1]")
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    keep_sorted = before < p
    last_kept = torch.where(keep_sorted, sorted_probs, torch.full_like(sorted_probs, float("inf"))).min(-1, keepdim=True).values
    return logits.masked_fill(probs < last_kept, float("-inf"))  # WRONG: compares probabilities


def sample_in_uniforms_dtype(probs, uniforms):
    """The cdf rounded to the uniforms' dtype: float64 probabilities 1e-12 from u lose the gap."""
    if uniforms.shape != probs.shape[:-1]:
        raise ValueError("uniforms must have the shape of probs without its last axis")
    cdf = torch.cumsum(probs, dim=-1).to(uniforms.dtype)  # WRONG: float64 cdf rounded to float32
    index = (cdf <= uniforms[..., None]).sum(-1)
    last = probs.shape[-1] - 1 - (probs.flip(-1) > 0).long().argmax(-1)
    return torch.minimum(index, last)


@pytest.mark.parametrize("name, wrong, words", [
    ("get_batch", get_batch_positions_in_starts_dtype, "uint8 starts of 250"),
    ("apply_temperature", apply_temperature_by_reciprocal, "1 / T overflows"),
    ("top_p_filter", top_p_ties_by_probability, "equal probabilities in float32, different logits"),
    ("sample_from_probs", sample_in_uniforms_dtype, "float64 probabilities 1e-12 from a float32 u"),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_last_round_wrong_answers_fail(name, wrong, words):
    text = message(name, wrong)
    assert words in text, text


def test_the_reference_takes_uint8_starts_past_the_uint8_range_of_n():
    data = torch.arange(300)
    x, y = ref.get_batch(data, torch.tensor([250, 3], dtype=torch.uint8), 10)
    assert x[0].tolist() == list(range(250, 260)) and y[0].tolist() == list(range(251, 261))


# --- chapter 2 ----------------------------------------------------------------------------------

from solutions import embeddings as ref_embeddings  # noqa: E402


class EmbedNamingTheLargestBadId(ref_embeddings.Embed):
    """Names the largest bad id, not the first one in reading order."""

    def forward(self, tokens):
        ids = tokens.long()
        bad = ids[(ids < 0) | (ids >= self.d_vocab)]
        if bad.numel():
            raise ValueError(f"token id {bad.max().item()} outside 0..{self.d_vocab - 1} (d_vocab = {self.d_vocab})")
        return super().forward(tokens)


class PosEmbedFloat32(ref_embeddings.PosEmbed):
    """Returns float32 whatever W_pos's dtype: after model.double() the rows are not W_pos's."""

    def forward(self, tokens):
        return super().forward(tokens).float()


def rope_capped_positions(x, base=10000.0):
    """Positions capped at 16,384: a longer sequence reuses the last angle."""
    seq = x.shape[-2]
    out = ref_embeddings.apply_rope(x[..., : min(seq, 16_384), :], base)
    if seq <= 16_384:
        return out
    rest = x[..., 16_384:, :]
    tail = ref_embeddings.apply_rope(torch.cat([x[..., :16_383, :] * 0, rest], dim=-2), base)[..., 16_383:, :]
    return torch.cat([out, tail], dim=-2)


def rope_rotated_in_bfloat16(x, base=10000.0):
    """Rotates half-precision inputs in their own dtype instead of float32."""
    if x.dtype not in (torch.float16, torch.bfloat16):
        return ref_embeddings.apply_rope(x, base)
    seq, d = x.shape[-2], x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * theta
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


def shift_matrix_clipped_k(k, d_model, base=10000.0):
    """k clipped to +-100,000."""
    return ref_embeddings.sinusoidal_shift_matrix(max(-100_000, min(100_000, k)), d_model, base)


def nearest_in_float32(query, W_E, k):
    """Similarities computed in float32 for float64 inputs: near-ties fall to the smaller id."""
    if not 0 <= k <= W_E.shape[0]:
        raise ValueError(f"k = {k} outside 0..{W_E.shape[0]}")
    sims = ref_embeddings.cosine_similarity(query[None].float(), W_E.float())[0]
    return torch.sort(sims, descending=True, stable=True).indices[:k]


@pytest.mark.parametrize("name, wrong, words", [
    ("Embed", EmbedNamingTheLargestBadId, "should name '45'"),
    ("PosEmbed", PosEmbedFloat32, "converted to float64"),
    ("apply_rope", rope_capped_positions, "20,000 positions"),
    ("apply_rope", rope_rotated_in_bfloat16, "rotated in float32"),
    ("sinusoidal_shift_matrix", shift_matrix_clipped_k, "k = 3,000,001"),
    ("nearest_neighbours", nearest_in_float32, "float64: six similarities"),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_chapter_2_last_round(name, wrong, words):
    if isinstance(wrong, type):
        wrong.__module__ = "learner"
    text = message(name, wrong)
    assert words in text, text


# --- chapter 3 ----------------------------------------------------------------------------------

from solutions import attention as ref_attention  # noqa: E402


class KVCacheWindow2048(ref_attention.KVCache):
    """Keeps only the last 2,048 positions: the exercise says a cache has no size limit."""

    def update(self, k, v):
        keys, values = super().update(k, v)
        return keys[..., -2048:, :], values[..., -2048:, :]


def forward_cached_window_1024(attn, x_new, cache):
    """Attends only to the last max(1024, seq_new) keys: the exercise says all of them."""
    import einops

    q = einops.einsum(x_new, attn.W_Q, "b s d, h d e -> b h s e") + attn.b_Q[:, None]
    k = einops.einsum(x_new, attn.W_K, "b s d, h d e -> b h s e") + attn.b_K[:, None]
    v = einops.einsum(x_new, attn.W_V, "b s d, h d e -> b h s e") + attn.b_V[:, None]
    K, V = cache.update(k, v)
    K, V = K[..., -max(1024, q.shape[-2]):, :], V[..., -max(1024, q.shape[-2]):, :]  # WRONG: a window
    z = ref_attention.scaled_dot_product_attention(q, K, V, causal=True)
    return einops.einsum(z, attn.W_O, "b h s e, h e d -> b s d") + attn.b_O


@pytest.mark.parametrize("name, wrong, words", [
    ("KVCache", KVCacheWindow2048, "9,100 positions"),
    ("forward_cached", forward_cached_window_1024, "attends to all 1,100 keys"),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_chapter_3_last_round(name, wrong, words):
    if isinstance(wrong, type):
        wrong.__module__ = "learner"
    text = message(name, wrong)
    assert words in text, text


# --- initialisation: copies inside one parameter (chapters 2-4) ---------------------------------

from solutions import mlp as ref_mlp  # noqa: E402


class EmbedDuplicateRows(ref_embeddings.Embed):
    """Row j + d_vocab/2 starts as a copy of row j: not independent N(0, 0.02^2) draws."""

    def __init__(self, d_vocab, d_model):
        super().__init__(d_vocab, d_model)
        with torch.no_grad():
            half = d_vocab // 2
            self.W_E[half: 2 * half] = self.W_E[:half]


class AttentionIdenticalHeads(ref_attention.Attention):
    """Every head starts as a copy of head 0: equal gradients keep them copies."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with torch.no_grad():
            for W in (self.W_Q, self.W_K, self.W_V, self.W_O):
                W[1:] = W[:1]


class MLPDuplicateHiddenUnits(ref_mlp.MLP):
    """Hidden unit j + d_mlp/2 starts as a copy of unit j."""

    def __init__(self, d_model, d_mlp=None):
        super().__init__(d_model, d_mlp)
        with torch.no_grad():
            half = self.W_in.shape[1] // 2
            self.W_in[:, half: 2 * half] = self.W_in[:, :half]
            self.W_out[half: 2 * half] = self.W_out[:half]


@pytest.mark.parametrize("name, wrong, words", [
    ("Embed", EmbedDuplicateRows, ".W_E starts with two equal slices along axis 0"),
    ("Attention", AttentionIdenticalHeads, "starts with two equal slices along axis 0"),
    ("MLP", MLPDuplicateHiddenUnits, ".W_in starts with two equal slices along axis 1"),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_copies_inside_one_parameter_are_named(name, wrong, words):
    wrong.__module__ = "learner"
    text = message(name, wrong)
    assert words in text, text


# --- chapter 4 ----------------------------------------------------------------------------------


def relu_by_abs(x):
    """(x + |x|) / 2: x + |x| overflows to inf near the largest float (3e38 in float32)."""
    return (x + x.abs()) / 2


def mlp_param_count_in_floats(d_model, d_mlp):
    """The formula in floats: past 2**53 the count is rounded."""
    if d_model < 1 or d_mlp < 1:
        raise ValueError(f"d_model and d_mlp must be at least 1, got {d_model} and {d_mlp}")
    return int(2.0 * d_model * d_mlp + d_mlp + d_model)


def changed_positions_adding_in_float32(module, x, position):
    """Adds 1.0 in float32 and converts back: a float64 1e20 comes back as 1.00000002e20."""
    copy = x.clone()
    copy[:, position] = (copy[:, position].float() + 1.0).to(x.dtype)
    with torch.no_grad():
        return (module(x) != module(copy)).any(dim=-1)


@pytest.mark.parametrize("name, wrong, words", [
    ("relu", relu_by_abs, "near float32's largest"),
    ("mlp_param_count", mlp_param_count_in_floats, "beyond 2**53"),
    ("changed_positions", changed_positions_adding_in_float32, "float64 inputs of 1e20"),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_chapter_4_last_round(name, wrong, words):
    text = message(name, wrong)
    assert words in text, text
