"""Chapter 2: wrong answers that fresh learners (who had not seen the references) wrote and that
passed the checks; each is kept here with why it is wrong, and must now fail with a message that
leads to the mistake. Where the finding came with a right version, that one must pass."""

import functools
import warnings

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solutions.checks.core import CheckFailure, check_function
from solutions.checks.embeddings import SPECS

SPEC = {spec.name: spec for spec in SPECS}
SEEDS = (0, 424242)  # the notebook's seed and one of the grader's kind


def failure(name, answer, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex -> int64 warns, as it should
        with pytest.raises(CheckFailure) as info:
            check_function(SPEC[name], answer, seed=seed, device="cpu")
    return str(info.value)


def passes(name, answer):
    for seed in SEEDS:
        check_function(SPEC[name], answer, seed=seed, device="cpu")


# --- Embed ---------------------------------------------------------------------------------------


class _EmbedBase(nn.Module):
    def __init__(self, d_vocab, d_model):
        super().__init__()
        self.d_vocab = d_vocab
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))
        nn.init.normal_(self.W_E, std=0.02)

    def _type_ok(self, tokens):
        return not (tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool)

    def forward(self, tokens):
        if not self._type_ok(tokens):
            raise TypeError(f"token ids must be integers, got {tokens.dtype}")
        t = tokens.long()
        if t.numel() and (t.min() < 0 or t.max() >= self.d_vocab):
            bad = t[(t < 0) | (t >= self.d_vocab)][0].item()
            raise ValueError(f"token id {bad} is outside 0..{self.d_vocab - 1} (d_vocab = {self.d_vocab})")
        return self.W_E[t]


def _named(cls, name="Embed"):
    cls.__name__ = cls.__qualname__ = name
    return cls


@_named
class CorrectEmbed(_EmbedBase):
    pass


def test_a_right_embed_written_another_way_passes():
    passes("Embed", CorrectEmbed)


@pytest.mark.parametrize("seed", SEEDS)
def test_embed_that_accepts_bfloat16_ids_fails(seed):
    """The type check lists float dtypes, and bfloat16 (and complex) are missing: bfloat16 ids
    are cast with .long() and looked up."""
    NOT_INTEGER = (torch.float16, torch.float32, torch.float64, torch.bool)  # WRONG: incomplete

    @_named
    class Embed(_EmbedBase):
        def _type_ok(self, tokens):
            return tokens.dtype not in NOT_INTEGER

    message = failure("Embed", Embed, seed)
    assert "should raise TypeError" in message and "is not an integer dtype" in message
    assert "bfloat16" in message or "complex64" in message


@pytest.mark.parametrize("seed", SEEDS)
def test_embed_that_accepts_complex_ids_fails(seed):
    """`is_floating_point() or bool`: complex tensors are not floating point for torch, so complex
    ids are silently cast to int64 (imaginary part dropped) and looked up."""

    @_named
    class Embed(_EmbedBase):
        def _type_ok(self, tokens):
            return not (tokens.is_floating_point() or tokens.dtype == torch.bool)  # WRONG: misses complex

    message = failure("Embed", Embed, seed)
    assert "complex64 ids" in message and "should raise TypeError" in message
    assert "Hint: complex is not an integer dtype" in message


@pytest.mark.parametrize("seed", SEEDS)
def test_embed_message_that_shows_only_the_first_ids_fails(seed):
    """The ValueError prints the first 5 ids, so a bad id further on is never named."""

    @_named
    class Embed(_EmbedBase):
        def forward(self, tokens):
            if not self._type_ok(tokens):
                raise TypeError(f"token ids must be integers, got {tokens.dtype}")
            t = tokens.long()
            if t.numel() and (t.min() < 0 or t.max() >= self.d_vocab):
                raise ValueError(f"token ids must be in 0..{self.d_vocab - 1} (d_vocab = {self.d_vocab}); "
                                 f"got {t.flatten()[:5].tolist()} ...")  # WRONG: may not show the bad id
            return self.W_E[t]

    message = failure("Embed", Embed, seed)
    assert "rightly raised ValueError, but its message should name" in message
    assert "'-1'" in message or "'50'" in message


@pytest.mark.parametrize("seed", SEEDS)
def test_embed_range_check_in_the_ids_own_dtype_fails(seed):
    """(tokens < 0) | (tokens >= d_vocab) on uint8/int8 ids compares in that dtype: d_vocab = 300
    becomes 44 in uint8, so valid ids are refused."""

    @_named
    class Embed(_EmbedBase):
        def forward(self, tokens):
            if not self._type_ok(tokens):
                raise TypeError(f"token ids must be integers, got {tokens.dtype}")
            bad = (tokens < 0) | (tokens >= self.d_vocab)  # WRONG: compared in uint8/int8
            if bad.any():
                raise ValueError(f"token id {tokens[bad][0].item()} is outside 0..{self.d_vocab - 1} "
                                 f"(d_vocab = {self.d_vocab})")
            return self.W_E[tokens.long()]

    message = failure("Embed", Embed, seed)
    assert "raised ValueError on uint8 ids with d_vocab = 300 (more than uint8 holds)" in message
    assert "Hint: convert the ids with tokens.long() before you compare them with d_vocab" in message


def test_the_reference_itself_compares_ids_as_int64():
    # it used to compare in the ids' dtype too: valid uint8 and int8 ids were refused
    from solutions.embeddings import Embed

    assert Embed(300, 4)(torch.tensor([[100, 255]], dtype=torch.uint8)).shape == (1, 2, 4)
    assert Embed(200, 4)(torch.tensor([[100, 7]], dtype=torch.int8)).shape == (1, 2, 4)
    assert Embed(9, 4)(torch.tensor([[1, 8]]).to(torch.uint16)).shape == (1, 2, 4)
    for dtype in (torch.bfloat16, torch.complex64, torch.float16):
        with pytest.raises(TypeError):
            Embed(9, 4)(torch.tensor([[1, 2]]).to(dtype))


@pytest.mark.parametrize("seed", SEEDS)
def test_embed_that_refuses_uint16_ids_fails(seed):
    """A whitelist of five dtypes (the old reference's): uint16 ids are integers, and refused."""

    @_named
    class Embed(_EmbedBase):
        def _type_ok(self, tokens):
            return tokens.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

    message = failure("Embed", Embed, seed)
    assert "raised TypeError on uint16 ids (an integer dtype too)" in message
    assert "converted to uint16" in message  # how the check made them, and how to try it


@pytest.mark.parametrize("seed", SEEDS)
def test_embed_whose_range_check_takes_the_minimum_of_no_ids_fails(seed):
    """tokens.min() of an empty batch (seq = 0) raises instead of returning (batch, 0, d_model)."""

    @_named
    class Embed(_EmbedBase):
        def forward(self, tokens):
            if not self._type_ok(tokens):
                raise TypeError(f"token ids must be integers, got {tokens.dtype}")
            t = tokens.long()
            if t.min() < 0 or t.max() >= self.d_vocab:  # WRONG: no minimum of no ids
                bad = t[(t < 0) | (t >= self.d_vocab)][0].item()
                raise ValueError(f"token id {bad} is outside 0..{self.d_vocab - 1} (d_vocab = {self.d_vocab})")
            return self.W_E[t]

    message = failure("Embed", Embed, seed)
    assert "no ids at all (seq = 0)" in message and "Hint: with seq = 0 there are no ids" in message


# --- PosEmbed ------------------------------------------------------------------------------------


class _PosEmbedBase(nn.Module):
    def __init__(self, n_ctx, d_model):
        super().__init__()
        self.n_ctx = n_ctx
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))
        nn.init.normal_(self.W_pos, std=0.01)

    def forward(self, tokens):
        batch, seq = tokens.shape
        if seq > self.n_ctx:
            raise ValueError(f"seq = {seq} > n_ctx = {self.n_ctx}")
        return einops.repeat(self.W_pos[:seq], "seq d -> batch seq d", batch=batch)


def test_a_right_posembed_passes():
    passes("PosEmbed", _named(type("PosEmbed", (_PosEmbedBase,), {}), "PosEmbed"))


@pytest.mark.parametrize("seed", SEEDS)
def test_posembed_that_keeps_its_first_output_fails(seed):
    """The first call's output is kept on the module and returned ever after."""

    class PosEmbed(_PosEmbedBase):
        def forward(self, tokens):
            if not hasattr(self, "_cache"):  # WRONG: state kept between calls
                self._cache = super().forward(tokens)
            return self._cache

    message = failure("PosEmbed", PosEmbed, seed)
    assert "the output of a second call of forward (on other inputs) has shape" in message
    assert "Hint: forward must compute its result on every call" in message


# --- sinusoidal_encoding and sinusoidal_shift_matrix ----------------------------------------------


def _sinusoids(n_ctx, d_model, base, dtype):
    if d_model % 2:
        raise ValueError(f"d_model = {d_model} must be even")
    p = torch.arange(n_ctx, dtype=dtype)[:, None]
    w = base ** (-2 * torch.arange(d_model // 2, dtype=dtype) / d_model)
    pe = torch.empty(n_ctx, d_model, dtype=dtype)
    pe[:, 0::2] = torch.sin(p * w)
    pe[:, 1::2] = torch.cos(p * w)
    return pe.float()


def test_right_sinusoids_pass():
    passes("sinusoidal_encoding", lambda n_ctx, d_model, base=10000.0: _sinusoids(n_ctx, d_model, base, torch.float64))


@pytest.mark.parametrize("seed", SEEDS)
def test_sinusoidal_encoding_with_float32_angles_fails(seed):
    """p * w_i in float32 loses its last digits: ~3e-4 off at n_ctx = 8192."""
    message = failure("sinusoidal_encoding", lambda n_ctx, d_model, base=10000.0: _sinusoids(n_ctx, d_model, base, torch.float32), seed)
    assert "8,192 positions (angles in float64)" in message
    assert "Hint: the values are right at the first positions and drift at later ones" in message
    assert "float32" in message


@pytest.mark.parametrize("seed", SEEDS)
def test_sinusoidal_encoding_that_hands_one_cached_tensor_to_every_caller_fails(seed):
    """functools.lru_cache returns the same tensor object to every caller: a caller that changes
    its result in place changes what every later call returns."""

    @functools.lru_cache(maxsize=None)  # WRONG: hands out one mutable tensor to every caller
    def sinusoidal_encoding(n_ctx, d_model, base=10000.0):
        return _sinusoids(n_ctx, d_model, base, torch.float64)

    message = failure("sinusoidal_encoding", sinusoidal_encoding, seed)
    assert "nan instead of" in message and "hands one stored tensor to every caller" in message
    assert "lru_cache" in message

    # a cache that returns a copy is right
    cached = functools.lru_cache(maxsize=None)(lambda n_ctx, d_model, base=10000.0: _sinusoids(n_ctx, d_model, base, torch.float64))
    passes("sinusoidal_encoding", lambda n_ctx, d_model, base=10000.0: cached(n_ctx, d_model, base).clone())


def _blocks(b, d_model):
    M = torch.zeros(d_model, d_model, dtype=torch.float64)
    i = torch.arange(0, d_model, 2)
    M[i, i], M[i, i + 1] = torch.cos(b), -torch.sin(b)
    M[i + 1, i], M[i + 1, i + 1] = torch.sin(b), torch.cos(b)
    return M.float()


@pytest.mark.parametrize("seed", SEEDS)
def test_shift_matrix_with_float32_angles_fails(seed):
    """k * w_i rounded in float32: off by more than the statement's 1e-4 at large offsets."""

    def sinusoidal_shift_matrix(k, d_model, base=10000.0):
        if d_model % 2:
            raise ValueError(f"d_model = {d_model} must be even")
        w = base ** (-2 * torch.arange(d_model // 2, dtype=torch.float32) / d_model)
        return _blocks((k * w).double(), d_model)  # WRONG: k * w rounded in float32

    message = failure("sinusoidal_shift_matrix", sinusoidal_shift_matrix, seed)
    assert "k = 100,000 (angles in float64)" in message
    assert "Hint: your M is close to the block matrix at k = 100,000, but not within 1e-4" in message

    def right(k, d_model, base=10000.0):
        if d_model % 2:
            raise ValueError(f"d_model = {d_model} must be even")
        return _blocks(k * base ** (-2 * torch.arange(d_model // 2, dtype=torch.float64) / d_model), d_model)

    passes("sinusoidal_shift_matrix", right)


@pytest.mark.parametrize("seed", SEEDS)
def test_shift_matrix_that_hands_one_cached_tensor_to_every_caller_fails(seed):
    from solutions.embeddings import sinusoidal_shift_matrix as reference

    cached = functools.lru_cache(maxsize=None)(lambda k, d_model, base=10000.0: reference(k, d_model, base))
    message = failure("sinusoidal_shift_matrix", lambda k, d_model, base=10000.0: cached(k, d_model, base), seed)
    assert "hands one stored tensor to every caller" in message


# --- apply_rope ----------------------------------------------------------------------------------


def _rope(x, dtype, base):
    seq, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"d_head = {d} must be even")
    p = torch.arange(seq, dtype=dtype, device=x.device)[:, None]
    ang = p * base ** (-2 * torch.arange(d // 2, dtype=dtype, device=x.device) / d)
    c, s = torch.cos(ang), torch.sin(ang)
    xe, xo = x[..., 0::2].to(dtype), x[..., 1::2].to(dtype)
    return torch.stack([xe * c - xo * s, xe * s + xo * c], dim=-1).flatten(-2).to(x.dtype)


@pytest.mark.parametrize("seed", SEEDS)
def test_apply_rope_in_float32_whatever_the_input_fails(seed):
    """Angles and rotation in float32, cast back: a float64 input gets a float32-accurate result,
    and long sequences drift."""
    message = failure("apply_rope", lambda x, base=10000.0: _rope(x, torch.float32, base), seed)
    assert "float64 input" in message and "Hint: for a float64 input your result is only as accurate as float32" in message


@pytest.mark.parametrize("seed", SEEDS)
def test_apply_rope_with_float32_angles_on_a_long_sequence_is_told_the_drift(seed):
    def apply_rope(x, base=10000.0):  # float64 input in float64; float32 angles otherwise
        return _rope(x, torch.float64 if x.dtype == torch.float64 else torch.float32, base)

    message = failure("apply_rope", apply_rope, seed)
    assert "8,200 positions" in message and "drift at later ones" in message


# --- cosine_similarity and nearest_neighbours ---------------------------------------------------


def _cosine(a, b):
    na = a.norm(dim=-1).clamp_min(1e-8)
    nb = b.norm(dim=-1).clamp_min(1e-8)
    return (a @ b.T) / (na[:, None] * nb[None, :])


@pytest.mark.parametrize("seed", SEEDS)
def test_cosine_similarity_that_squeezes_fails(seed):
    """.squeeze() turns (1, m) into (m,) and (1, 1) into a 0-d tensor."""
    message = failure("cosine_similarity", lambda a, b: _cosine(a, b).squeeze(), seed)
    assert "one row in a (n = 1): the result has shape (5,), expected (n=1, m=5)" in message
    assert "no .squeeze()" in message
    passes("cosine_similarity", _cosine)


def _nearest(sims, k, d_vocab):
    if not 0 <= k <= d_vocab:
        raise ValueError(f"k = {k} outside 0..{d_vocab}")
    return torch.sort(sims, descending=True, stable=True).indices[:k]


def test_right_nearest_neighbours_pass():
    passes("nearest_neighbours", lambda q, W_E, k: _nearest(_cosine(q[None], W_E)[0], k, W_E.shape[0]))


@pytest.mark.parametrize("seed", SEEDS)
def test_nearest_neighbours_by_f_normalize_fails(seed):
    """F.normalize's eps is 1e-12: a row shorter than 1e-8 gets its full cosine and jumps ahead."""

    def nearest_neighbours(query, W_E, k):
        sims = F.normalize(W_E, dim=-1) @ F.normalize(query, dim=0)  # WRONG: eps 1e-12, not the cosine's
        return _nearest(sims, k, W_E.shape[0])

    message = failure("nearest_neighbours", nearest_neighbours, seed)
    assert "rows shorter than 1e-8 in the query's direction" in message
    assert "Hint: rank by exercise 8's cosine_similarity, eps = 1e-8 included" in message


@pytest.mark.parametrize("seed", SEEDS)
def test_nearest_neighbours_by_topk_with_ties_reordered_fails(seed):
    """topk, then ties re-sorted by id among the k it returned: a tie group that the cut splits
    may lose its smaller ids."""

    def nearest_neighbours(query, W_E, k):
        if not 0 <= k <= W_E.shape[0]:
            raise ValueError(f"k = {k} outside 0..{W_E.shape[0]}")
        vals, ids = torch.topk(_cosine(query[None], W_E)[0], k)  # WRONG at the cut
        order = sorted(range(k), key=lambda j: (-vals[j].item(), ids[j].item()))
        return ids[order]

    message = failure("nearest_neighbours", nearest_neighbours, seed)
    assert "equal rows split by the cut at k" in message
    assert "Hint: equal similarities that the cut at k splits" in message


# --- one_hot_embed -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_one_hot_embed_that_reads_rows_fails(seed):
    """W_E[tokens] is not the product one_hot @ W_E: with inf in W_E the product has nan (0 * inf)."""
    message = failure("one_hot_embed", lambda tokens, W_E: W_E[tokens.long()], seed)
    assert "+inf or -inf" in message and "instead of nan" in message
    assert "Hint: compute the product one_hot @ W_E itself" in message
    passes("one_hot_embed", lambda tokens, W_E: F.one_hot(tokens.long(), num_classes=W_E.shape[0]).to(W_E.dtype) @ W_E)
