"""Tests for solutions/embeddings.py: the references against independent oracles and properties.

Oracles: torch.nn.Embedding (look-up and its gradient), the `math` module (sinusoid values),
complex multiplication (RoPE), Hugging Face LLaMA's rotate_half formulation written out here
(RoPE with the other pairing), torch.nn.functional.cosine_similarity, and a plain sort
(nearest neighbours). Properties: the shift matrix moves every position by k, rotations keep
norms, and RoPE scores depend only on the offset.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions import embeddings as E
from solutions.embeddings import (
    Embed,
    PosEmbed,
    apply_rope,
    cosine_similarity,
    lookup_embed,
    nearest_neighbours,
    one_hot_embed,
    sinusoidal_encoding,
    sinusoidal_shift_matrix,
)

FAST = settings(max_examples=40, deadline=None)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- one-hot and look-up embeddings ----------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    batch=st.integers(1, 3),
    seq=st.integers(1, 6),
    d_vocab=st.integers(1, 12),
    d_model=st.integers(1, 8),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_one_hot_equals_lookup_equals_nn_embedding_with_gradients(batch, seq, d_vocab, d_model, dtype, seed):
    g = generator(seed)
    tokens = torch.randint(0, d_vocab, (batch, seq), generator=g)
    weight = torch.randn(d_vocab, d_model, generator=g, dtype=dtype)
    upstream = torch.randn(batch, seq, d_model, generator=g, dtype=dtype)

    results = []
    for fn in (one_hot_embed, lookup_embed, None):
        W_E = weight.clone().requires_grad_(True)
        if fn is None:  # the oracle: torch's own embedding layer with the same weight
            layer = torch.nn.Embedding(d_vocab, d_model, dtype=dtype)
            layer.weight = torch.nn.Parameter(W_E)
            out = layer(tokens)
            grad_of = layer.weight
        else:
            out = fn(tokens, W_E)
            grad_of = W_E
        (out * upstream).sum().backward()
        results.append((out.detach(), grad_of.grad))

    for out, grad in results:
        assert out.shape == (batch, seq, d_model) and out.dtype == dtype
        torch.testing.assert_close(out, results[-1][0])
        torch.testing.assert_close(grad, results[-1][1])
    # the look-up copies rows exactly; the one-hot product adds zeros, also exact
    assert torch.equal(results[0][0], results[1][0])


def test_one_hot_embed_keeps_w_e_dtype():
    tokens = torch.tensor([[0, 2, 1]])
    W_E = torch.randn(3, 4).to(torch.bfloat16)
    assert one_hot_embed(tokens, W_E).dtype == torch.bfloat16
    assert torch.equal(one_hot_embed(tokens, W_E), W_E[tokens])


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8, torch.uint8])
def test_ids_of_every_integer_dtype_are_ids_never_a_mask(dtype):
    # torch refuses int16/int8 indices and reads a uint8 index as a mask; the references convert
    # the ids to int64 first. Shaped like W_E (and 1-D of length d_vocab), a mask would silently
    # pick entries instead of rows.
    W_E = torch.randn(5, 3, generator=generator(3))
    oracle = torch.nn.Embedding.from_pretrained(W_E)
    embed = Embed(5, 3)
    embed.W_E.data.copy_(W_E)
    for tokens in (torch.tensor([1, 0, 1, 1, 0]), torch.randint(0, 2, (5, 3), generator=generator(4)),
                   torch.tensor([[4, 2], [3, 0]])):
        want = oracle(tokens.long())
        outs = [lookup_embed(tokens.to(dtype), W_E), embed(tokens.to(dtype))]
        if tokens.dim() == 2:  # one_hot_embed's einsum names (batch, seq)
            outs.append(one_hot_embed(tokens.to(dtype), W_E))
        for out in outs:
            assert out.shape == tokens.shape + (3,)
            assert torch.equal(out.detach(), want)


# --- Embed ----------------------------------------------------------------------------------


def test_embed_parameter_shape_and_gpt2_initialisation():
    torch.manual_seed(0)
    embed = Embed(d_vocab=5000, d_model=64)
    assert [name for name, _ in embed.named_parameters()] == ["W_E"]
    assert embed.W_E.shape == (5000, 64) and embed.W_E.dtype == torch.float32
    # 320,000 samples of N(0, 0.02^2): the sample mean and std are within a few standard errors
    assert abs(embed.W_E.mean().item()) < 3 * 0.02 / math.sqrt(320_000)
    assert abs(embed.W_E.std().item() - 0.02) < 2e-4


def test_embed_forward_is_nn_embedding_with_the_same_weight():
    embed = Embed(50, 8)
    oracle = torch.nn.Embedding(50, 8)
    oracle.weight.data.copy_(embed.W_E.data)
    tokens = torch.randint(0, 50, (3, 7), generator=generator(1))
    assert torch.equal(embed(tokens), oracle(tokens))
    assert torch.equal(embed(tokens.to(torch.int32)), oracle(tokens))
    assert torch.equal(embed(torch.tensor([[0, 49]])), embed.W_E[[0, 49]][None])


@pytest.mark.parametrize("bad_id", [50, 51, 1000, -1])
def test_embed_rejects_an_id_outside_the_vocabulary_naming_it_and_d_vocab(bad_id):
    embed = Embed(50, 8)
    tokens = torch.tensor([[3, 7, bad_id, 2]])
    with pytest.raises(ValueError) as info:
        embed(tokens)
    message = str(info.value)
    assert str(bad_id) in message and "50" in message and "d_vocab" in message


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bool])
def test_embed_rejects_tokens_that_are_not_integers(dtype):
    with pytest.raises(TypeError, match="integer"):
        Embed(10, 4)(torch.zeros(1, 3, dtype=dtype))


# --- PosEmbed -------------------------------------------------------------------------------


def test_pos_embed_rows_by_position_broadcast_over_batch_with_gradients():
    pos = PosEmbed(n_ctx=16, d_model=8)
    assert [name for name, _ in pos.named_parameters()] == ["W_pos"]
    assert pos.W_pos.shape == (16, 8)
    tokens = torch.randint(0, 1000, (4, 10), generator=generator(2))
    out = pos(tokens)
    assert out.shape == (4, 10, 8)
    for b in range(4):
        assert torch.equal(out[b], pos.W_pos[:10])
    # the value does not depend on the tokens, only on the positions
    assert torch.equal(pos(torch.zeros(4, 10, dtype=torch.long)), out)
    out.sum().backward()
    expected = torch.zeros(16, 8)
    expected[:10] = 4.0  # every used row gets the gradient of its 4 copies
    assert torch.equal(pos.W_pos.grad, expected)


def test_pos_embed_accepts_exactly_n_ctx_and_rejects_more_naming_seq_and_n_ctx():
    pos = PosEmbed(n_ctx=12, d_model=4)
    assert pos(torch.zeros(2, 12, dtype=torch.long)).shape == (2, 12, 4)
    with pytest.raises(ValueError) as info:
        pos(torch.zeros(2, 13, dtype=torch.long))
    message = str(info.value)
    assert "13" in message and "12" in message and "n_ctx" in message


def test_residual_stream_starts_as_token_plus_position():
    embed, pos = Embed(20, 6), PosEmbed(8, 6)
    tokens = torch.tensor([[4, 4, 19]])
    x = embed(tokens) + pos(tokens)
    # the same token at two positions gets two different vectors: W_E[4] + W_pos[0] and + W_pos[1]
    torch.testing.assert_close(x[0, 1] - x[0, 0], pos.W_pos[1] - pos.W_pos[0])
    torch.testing.assert_close(x[0, 2], embed.W_E[19] + pos.W_pos[2])


def _tensor_factories_without_device(fn) -> list[str]:
    """Calls like torch.arange(...) / torch.zeros(...) in fn's source that have no device=."""
    factories = {"arange", "zeros", "ones", "empty", "full", "tensor", "randn", "rand", "eye", "linspace"}
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    bad = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in factories
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
            and not any(kw.arg == "device" for kw in node.keywords)
        ):
            bad.append(ast.unparse(node))
    return bad


@pytest.mark.parametrize("fn", [PosEmbed.forward, Embed.forward, E.apply_rope, E.nearest_neighbours])
def test_forward_code_creates_tensors_only_on_the_input_device(fn):
    assert _tensor_factories_without_device(fn) == []


# --- sinusoidal encoding --------------------------------------------------------------------


def test_sinusoidal_values_from_the_formula():
    n_ctx, d_model = 2048, 512
    pe = sinusoidal_encoding(n_ctx, d_model)
    assert pe.shape == (n_ctx, d_model) and pe.dtype == torch.float32
    for p in [0, 1, 2, 7, 100, 1023, 2047]:
        for i in [0, 1, 5, 100, 255]:
            angle = p / 10000 ** (2 * i / d_model)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-7)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-7)
    # position 0 is [0, 1, 0, 1, ...]
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0]).repeat(d_model // 2))


def test_sinusoidal_worked_example_and_base():
    pe = sinusoidal_encoding(2, 4)
    expected = [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]
    torch.testing.assert_close(pe[1], torch.tensor(expected))
    pe = sinusoidal_encoding(3, 6, base=100.0)
    assert pe[2, 3].item() == pytest.approx(math.cos(2 / 100 ** (2 / 6)), abs=1e-7)


@pytest.mark.parametrize("fn", [sinusoidal_encoding, sinusoidal_shift_matrix])
def test_sinusoidal_needs_an_even_d_model(fn):
    with pytest.raises(ValueError, match="even"):
        fn(3, 7)


def test_shift_matrix_moves_every_position_by_k():
    d_model, n_ctx = 64, 600
    pe = sinusoidal_encoding(n_ctx, d_model)
    for k in [0, 1, 2, 3, 17, 100, 257, -1, -5, -250]:
        M = sinusoidal_shift_matrix(k, d_model)
        assert M.shape == (d_model, d_model) and M.dtype == torch.float32
        p = torch.arange(max(0, -k), min(n_ctx, n_ctx - k))
        torch.testing.assert_close(pe[p] @ M, pe[p + k], atol=2e-5, rtol=0)


def test_shift_matrix_structure():
    d_model = 16
    M = sinusoidal_shift_matrix(5, d_model)
    # block-diagonal: nothing outside the 2x2 blocks of each frequency
    mask = torch.block_diag(*[torch.ones(2, 2)] * (d_model // 2)).bool()
    assert torch.count_nonzero(M[~mask]) == 0
    # a rotation: orthogonal, determinant 1; shifts compose; shifting by 0 is the identity
    torch.testing.assert_close(M @ M.T, torch.eye(d_model), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(M.double()).float(), torch.tensor(1.0))
    torch.testing.assert_close(M @ sinusoidal_shift_matrix(-5, d_model), torch.eye(d_model), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        sinusoidal_shift_matrix(3, d_model) @ sinusoidal_shift_matrix(4, d_model),
        sinusoidal_shift_matrix(7, d_model), atol=1e-6, rtol=0,
    )
    assert torch.equal(sinusoidal_shift_matrix(0, d_model), torch.eye(d_model))
    # block 0 is the rotation by k radians (w_0 = 1), written for row vectors
    torch.testing.assert_close(M[:2, :2], torch.tensor([[math.cos(5), -math.sin(5)], [math.sin(5), math.cos(5)]]))


@FAST
@given(k=st.integers(-300, 300), p=st.integers(0, 300), half=st.integers(1, 40),
       base=st.sampled_from([10000.0, 500.0]))
def test_shift_property_holds_for_any_p_and_k(k, p, half, base):
    d_model = 2 * half
    pe = sinusoidal_encoding(p + abs(k) + 1 + 300, d_model, base)
    M = sinusoidal_shift_matrix(k, d_model, base)
    start = p + 300 if k < 0 else p  # keep p + k >= 0
    torch.testing.assert_close(pe[start] @ M, pe[start + k], atol=2e-5, rtol=0)


# --- RoPE -----------------------------------------------------------------------------------


def rope_complex(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Oracle: pairs (2i, 2i+1) as complex numbers, times exp(i p theta_i) (RoFormer eq. 15/34)."""
    seq, d_head = x.shape[-2:]
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d_head // 2, 2).contiguous())
    theta = torch.tensor([base ** (-2 * i / d_head) for i in range(d_head // 2)], dtype=torch.float64)
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * theta[None, :]
    rotated = z * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).reshape(x.shape)


def rope_rotate_half(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Oracle: Hugging Face LLaMA's form, which pairs dimension i with i + d_head/2."""
    seq, d_head = x.shape[-2:]
    inv_freq = 1.0 / base ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    freqs = torch.outer(torch.arange(seq, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    x = x.double()
    x1, x2 = x[..., : d_head // 2], x[..., d_head // 2 :]
    rotate_half = torch.cat([-x2, x1], dim=-1)
    return x * emb.cos() + rotate_half * emb.sin()


@FAST
@given(lead=st.lists(st.integers(1, 3), max_size=2), seq=st.integers(1, 40), half=st.integers(1, 16),
       base=st.sampled_from([10000.0, 500000.0, 100.0]), seed=st.integers(0, 2**16))
def test_rope_equals_the_complex_formulation(lead, seq, half, base, seed):
    x = torch.randn(*lead, seq, 2 * half, generator=generator(seed))
    out = apply_rope(x, base)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out.double(), rope_complex(x, base), atol=1e-5, rtol=1e-5)


@FAST
@given(seq=st.integers(1, 40), half=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_rope_is_rotate_half_after_a_fixed_permutation(seq, half, seed):
    d_head = 2 * half
    x = torch.randn(2, seq, d_head, generator=generator(seed))
    perm = torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)])  # evens, then odds
    torch.testing.assert_close(apply_rope(x)[..., perm].double(), rope_rotate_half(x[..., perm]), atol=1e-5, rtol=1e-5)
    # without the permutation the two conventions differ (for d_head > 2)
    if d_head > 2 and seq > 1:
        assert not torch.allclose(apply_rope(x).double(), rope_rotate_half(x), atol=1e-3)


def test_rope_worked_example_and_position_zero():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    out = apply_rope(x)
    torch.testing.assert_close(out[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out[1], torch.tensor([math.cos(1), math.sin(1)]))
    torch.testing.assert_close(out[2], torch.tensor([-math.sin(2), math.cos(2)]))
    y = torch.randn(3, 5, 8, generator=generator(3))
    assert torch.equal(apply_rope(y)[:, 0], y[:, 0])


def test_rope_preserves_norms_and_each_pair_norm():
    x = torch.randn(2, 3, 50, 16, generator=generator(4))
    out = apply_rope(x)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(out.unflatten(-1, (8, 2)).norm(dim=-1), x.unflatten(-1, (8, 2)).norm(dim=-1))


def test_rope_scores_depend_only_on_the_offset():
    d_head, seq = 32, 64
    g = generator(5)
    q, k = torch.randn(d_head, generator=g, dtype=torch.float64), torch.randn(d_head, generator=g, dtype=torch.float64)
    Q = apply_rope(q.expand(seq, d_head))  # the same query at every position 0..seq-1
    K = apply_rope(k.expand(seq, d_head))
    scores = Q @ K.T  # scores[p, s]: query at position p, key at position s
    for offset in range(-seq + 1, seq):
        diagonal = torch.diagonal(scores, offset=-offset)  # entries with p - s == offset
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), atol=1e-4, rtol=0)
    # and it does depend on the offset (a plain dot product would not)
    assert not torch.allclose(scores[0, 0], scores[1, 0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_rope_keeps_the_dtype(dtype):
    x = torch.randn(2, 10, 8, generator=generator(6))
    out = apply_rope(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), apply_rope(x), atol=2e-2, rtol=2e-2)


def test_rope_needs_an_even_d_head_and_does_not_modify_its_input():
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.randn(4, 5))
    x = torch.randn(4, 6)
    before = x.clone()
    apply_rope(x)
    assert torch.equal(x, before)


# --- geometry -------------------------------------------------------------------------------


@FAST
@given(n=st.integers(1, 6), m=st.integers(1, 6), d=st.integers(1, 10), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_cosine_similarity_equals_torch(n, m, d, seed, dtype):
    g = generator(seed)
    a, b = torch.randn(n, d, generator=g, dtype=dtype), torch.randn(m, d, generator=g, dtype=dtype)
    a[0] *= 1e3  # lengths must not matter
    out = cosine_similarity(a, b)
    assert out.shape == (n, m) and out.dtype == dtype
    torch.testing.assert_close(out, F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1))


def test_cosine_similarity_of_a_zero_vector_is_zero_not_nan():
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 0.0], [-2.0, 0.0]])
    out = cosine_similarity(a, b)
    expected = torch.tensor([[0.0, 0.0, 0.0], [1 / math.sqrt(2), 0.0, -1.0]])
    torch.testing.assert_close(out, expected)
    assert not out.isnan().any()
    torch.testing.assert_close(out, F.cosine_similarity(a[:, None], b[None], dim=-1))


def sorted_ids(query, W_E, k):
    sims = cosine_similarity(query[None], W_E)[0].tolist()
    return sorted(range(len(sims)), key=lambda i: (-sims[i], i))[:k]


@FAST
@given(d_vocab=st.integers(1, 30), d_model=st.integers(1, 6), data=st.data(), seed=st.integers(0, 2**16),
       duplicates=st.booleans())
def test_nearest_neighbours_is_a_sort_with_ties_to_the_smaller_id(d_vocab, d_model, data, seed, duplicates):
    g = generator(seed)
    if duplicates:  # few distinct rows, so many exact ties
        W_E = torch.randint(-1, 2, (d_vocab, d_model), generator=g).float()
    else:
        W_E = torch.randn(d_vocab, d_model, generator=g)
    query = torch.randn(d_model, generator=g)
    k = data.draw(st.integers(0, d_vocab))
    out = nearest_neighbours(query, W_E, k)
    assert out.dtype == torch.int64 and out.shape == (k,)
    assert out.tolist() == sorted_ids(query, W_E, k)


def test_nearest_neighbours_ties_and_limits():
    W_E = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert nearest_neighbours(torch.tensor([3.0, 0.0]), W_E, 5).tolist() == [0, 2, 3, 1, 4]
    with pytest.raises(ValueError, match="d_vocab"):
        nearest_neighbours(torch.tensor([3.0, 0.0]), W_E, 6)


# --- word vectors from Tiny Shakespeare -----------------------------------------------------


@pytest.fixture(scope="module")
def word_vectors():
    # Timed on ONE thread: a stronger promise than "fast on this machine", and one that other
    # processes sharing the CPU cannot break by oversubscribing torch's thread pool.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        words, vectors = E.shakespeare_word_vectors()
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return words, vectors, seconds


def test_word_vectors_shape_vocabulary_and_speed(word_vectors):
    words, vectors, seconds = word_vectors
    assert vectors.shape == (2000, 64) and vectors.dtype == torch.float32
    assert len(set(words)) == len(words) == 2000
    assert words[:3] == ["the", "and", "to"]  # the most frequent words come first
    assert not vectors.isnan().any()
    assert seconds < 5, f"shakespeare_word_vectors took {seconds:.1f} s on one thread"


def test_word_vectors_are_deterministic():
    first = E.shakespeare_word_vectors(n_words=300, dim=16)
    again = E.shakespeare_word_vectors(n_words=300, dim=16)
    assert first[0] == again[0] and torch.equal(first[1], again[1])


# (word, words of which at least one must be among its 10 nearest neighbours). Chosen as
# categories a reader would check by eye; each list is broad so that the test does not hang on
# the exact rank of one word.
RELATED = [
    ("father", {"son", "brother", "mother", "daughter"}),
    ("husband", {"wife", "mother", "lady"}),
    ("three", {"two", "four", "five", "twenty"}),
    ("king", {"richard", "edward", "henry", "queen"}),
    ("thou", {"art", "dost", "hast", "wilt", "didst"}),
    ("night", {"day", "morning", "morrow"}),
    ("romeo", {"juliet", "tybalt", "mercutio", "benvolio"}),
]


@pytest.mark.parametrize("word,related", RELATED)
def test_related_words_are_near_neighbours(word_vectors, word, related):
    words, vectors, _ = word_vectors
    index = {w: i for i, w in enumerate(words)}
    ids = nearest_neighbours(vectors[index[word]], vectors, 11).tolist()
    neighbours = [words[i] for i in ids]
    assert neighbours[0] == word  # a vector is its own nearest neighbour
    assert related & set(neighbours[1:]), f"{word}: {neighbours[1:]}"


def test_related_words_are_closer_than_unrelated_ones(word_vectors):
    """A statistical check: related pairs have a clearly higher mean cosine than random pairs."""
    words, vectors, _ = word_vectors
    index = {w: i for i, w in enumerate(words)}
    pairs = [("father", "son"), ("wife", "husband"), ("two", "three"), ("day", "night"),
             ("thou", "thee"), ("king", "queen"), ("eyes", "tears"), ("heaven", "earth")]
    related = torch.stack([cosine_similarity(vectors[[index[a]]], vectors[[index[b]]])[0, 0] for a, b in pairs])
    g = generator(7)
    i, j = torch.randint(0, 2000, (2, 500), generator=g)
    unrelated = (F.normalize(vectors[i], dim=-1) * F.normalize(vectors[j], dim=-1)).sum(-1)
    assert related.mean() > unrelated.mean() + 0.3, (related, unrelated.mean())
