"""Embeddings: from token ids to the first vectors of the residual stream (chapter 2).

A Transformer's first layer turns each token id into a vector of ``d_model`` numbers, and adds
a second vector that says where in the sequence the token stands:

* the **token embedding** ``W_E`` (d_vocab, d_model): row t is the vector of token t. Reading
  row t is the same as multiplying the one-hot vector of t by ``W_E``, only much cheaper;
* a **positional embedding**: either learned, ``W_pos`` (n_ctx, d_model) as in GPT-2, or the
  fixed sinusoids of the original Transformer, or rotary embeddings (RoPE), which rotate the
  queries and keys of attention instead of adding anything to the residual stream;
* the **geometry** of an embedding: cosine similarity and nearest neighbours, tried on small
  word vectors computed from Tiny Shakespeare.

The first part holds the exercises, the second the helpers the chapter page uses.

Shapes use the course's dimension names: batch, seq, d_model, d_vocab, n_ctx, n_heads, d_head.
Conventions, used everywhere in this file:

* vectors are rows: an embedding is ``one_hot(t) @ W_E``, a linear map acts as ``x @ M``;
* sinusoids and RoPE pair dimension 2i with 2i + 1 (interleaved), as Vaswani et al. (2017)
  and Su et al. (2021) write them; the frequency of pair i is ``base ** (-2i / d)``.
"""

from __future__ import annotations

import re
from collections import Counter

import einops
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from solutions.tokenization import load_tiny_shakespeare


# ----------------------------------------------------------------------------------------------
# Part 1: the exercises
# ----------------------------------------------------------------------------------------------


def one_hot_embed(tokens: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
    """Embed ``tokens`` by multiplying their one-hot vectors with ``W_E``.

    tokens: integer (batch, seq), ids in 0..d_vocab-1, of any integer dtype (int64, int32,
            int16, int8, uint8): converted to int64 first, since F.one_hot takes int64 only
    W_E:    float (d_vocab, d_model)
    returns (batch, seq, d_model), of W_E's dtype

    Row t of the result's last two axes is one_hot(t) @ W_E: a weighted sum of the rows of W_E
    in which only row t has weight 1. Correct, but it multiplies d_vocab - 1 zeros per number.
    """
    d_vocab = W_E.shape[0]
    one_hot = F.one_hot(tokens.long(), num_classes=d_vocab).to(W_E.dtype)
    return einops.einsum(one_hot, W_E, "batch seq d_vocab, d_vocab d_model -> batch seq d_model")


def lookup_embed(tokens: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
    """Embed ``tokens`` by reading rows of ``W_E``: the same result as ``one_hot_embed``.

    tokens: integer (batch, seq), of any integer dtype; W_E: float (d_vocab, d_model); returns
    (batch, seq, d_model). Indexing with a tensor of ids copies the rows it names (a "gather");
    this is what ``torch.nn.Embedding`` does. The ids are converted to int64 first: torch indexes
    with int64 or int32 ids only (int16 and int8 are an IndexError), and it reads a uint8 (or
    bool) index as a *mask* that picks the rows where it is nonzero, not as ids.
    """
    return W_E[tokens.long()]


class Embed(nn.Module):
    """Token embedding: a learned table ``W_E`` (d_vocab, d_model), one row per token id.

    Initialised from N(0, 0.02^2), as GPT-2 does. ``forward`` checks its input, so a wrong id
    gives an error that names the id and the vocabulary size instead of an IndexError (or, on a
    GPU, a device-side assert) from deep inside torch.
    """

    def __init__(self, d_vocab: int, d_model: int):
        super().__init__()
        self.d_vocab = d_vocab
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))
        nn.init.normal_(self.W_E, mean=0.0, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: integer (batch, seq) -> (batch, seq, d_model); seq may be 0.

        Any integer dtype (int64, int32, int16, int8, uint8, and uint16/32/64) is an id tensor;
        anything else (floating point of any precision, complex, bool) is a TypeError. The ids are
        read as int64 before anything else: torch would refuse int16/int8 indices, would take a
        uint8 index as a mask, and would compare small ids with d_vocab in their own dtype
        (d_vocab = 300 is 44 in uint8). The message names the first bad id, wherever it stands.
        """
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise TypeError(f"tokens must be an integer tensor of token ids, got dtype {tokens.dtype}")
        ids = tokens.long()
        # Checking costs a read-back from the GPU on every call; large-scale code often skips it.
        bad = ids[(ids < 0) | (ids >= self.d_vocab)]
        if bad.numel() > 0:
            raise ValueError(
                f"token id {bad[0].item()} is outside the vocabulary: ids must be in "
                f"0..{self.d_vocab - 1} (d_vocab = {self.d_vocab})"
            )
        return self.W_E[ids]


class PosEmbed(nn.Module):
    """Learned positional embedding: a table ``W_pos`` (n_ctx, d_model), one row per position.

    The model can only be used on sequences of at most n_ctx tokens: there is no row for
    position n_ctx. Initialised from N(0, 0.01^2), as in GPT-2's released code (its token
    embedding uses 0.02).
    """

    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.n_ctx = n_ctx
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))
        nn.init.normal_(self.W_pos, mean=0.0, std=0.01)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (batch, seq) -> (batch, seq, d_model): row p of W_pos at position p.

        Only the shape of ``tokens`` matters: the position embedding does not depend on which
        tokens stand where.
        """
        batch, seq = tokens.shape
        if seq > self.n_ctx:
            raise ValueError(
                f"the sequence has {seq} positions but the model has only n_ctx = {self.n_ctx}: "
                f"positions 0..{self.n_ctx - 1} have an embedding"
            )
        positions = torch.arange(seq, device=tokens.device)
        return einops.repeat(self.W_pos[positions], "seq d_model -> batch seq d_model", batch=batch)


def sinusoidal_encoding(n_ctx: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed positional encoding of Vaswani et al. (2017), section 3.5. float32 (n_ctx, d_model).

        PE[p, 2i]     = sin(p * w_i)
        PE[p, 2i + 1] = cos(p * w_i),     w_i = base ** (-2i / d_model),  i = 0 .. d_model/2 - 1

    Pair i turns at frequency w_i: from one radian per position (i = 0) down to almost 1/base.
    Computed in float64 and rounded to float32 once, so every value is within float32 rounding
    of the formula, also at large positions.
    """
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even (sin and cos come in pairs), got {d_model}")
    positions = torch.arange(n_ctx, dtype=torch.float64)
    freqs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = einops.einsum(positions, freqs, "n_ctx, half -> n_ctx half")
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1)
    return einops.rearrange(pe, "n_ctx half two -> n_ctx (half two)").float()


def sinusoidal_shift_matrix(k: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The matrix M (d_model, d_model), float32, with PE[p + k] = PE[p] @ M for every position p.

    For pair i, with a = p * w_i and b = k * w_i, the angle addition formulas give

        [sin(a + b), cos(a + b)] = [sin a, cos a] @ [[ cos b, -sin b],
                                                     [ sin b,  cos b]]

    so M is block-diagonal with this 2x2 rotation in rows and columns 2i, 2i + 1. It depends on
    the offset k, never on p: "k positions later" is the same linear map at every position.
    """
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even (sin and cos come in pairs), got {d_model}")
    freqs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    cos, sin = (k * freqs).cos(), (k * freqs).sin()
    M = torch.zeros(d_model, d_model, dtype=torch.float64)
    M[0::2, 0::2] = torch.diag(cos)
    M[0::2, 1::2] = torch.diag(-sin)
    M[1::2, 0::2] = torch.diag(sin)
    M[1::2, 1::2] = torch.diag(cos)
    return M.float()


def apply_rope(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (RoPE; Su et al. 2021, RoFormer, section 3.4.2, eq. 34).

    x: float (..., seq, d_head), a query or key per position; positions are 0 .. seq-1.
    Returns the same shape and dtype. For each pair i = 0 .. d_head/2 - 1, the two numbers
    (x[..., p, 2i], x[..., p, 2i + 1]) are rotated by the angle p * theta_i, with

        theta_i = base ** (-2i / d_head)        (base = 10,000 in RoFormer and LLaMA)

        x'[2i]     = x[2i] cos(p theta_i) - x[2i + 1] sin(p theta_i)
        x'[2i + 1] = x[2i] sin(p theta_i) + x[2i + 1] cos(p theta_i)

    A rotation keeps lengths, and the dot product of a query rotated by angle p*theta with a
    key rotated by q*theta depends only on (p - q)*theta: attention scores see offsets.

    Pairing convention: this is the paper's interleaved pairing (2i, 2i + 1). Hugging Face's
    LLaMA (``rotate_half``) pairs dimension i with i + d_head/2 instead; that is the same
    rotation after a fixed permutation of the dimensions (even ones first, then odd ones), so
    weights trained with one convention must be permuted to be used with the other.

    The angles p * theta_i are computed in float64 (float32 keeps about 7 digits: at position
    8,192 its angles are off by about 1e-3, and the rotation with them), then the rotation in
    x's dtype, float32 at least; the result is cast back to x's dtype. Apple's MPS has no float64:
    there the table is made on the CPU and moved.
    """
    seq, d_head = x.shape[-2], x.shape[-1]
    if d_head % 2 != 0:
        raise ValueError(f"d_head must be even (dimensions are rotated in pairs), got {d_head}")
    table_device = "cpu" if x.device.type == "mps" else x.device
    theta = base ** (-torch.arange(0, d_head, 2, device=table_device, dtype=torch.float64) / d_head)
    positions = torch.arange(seq, device=table_device, dtype=torch.float64)
    angles = einops.einsum(positions, theta, "seq, half -> seq half")
    compute = torch.promote_types(x.dtype, torch.float32)  # float16/bfloat16 rotate in float32
    cos, sin = angles.cos().to(x.device, compute), angles.sin().to(x.device, compute)
    pairs = einops.rearrange(x.to(compute), "... seq (half two) -> ... seq half two", two=2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return einops.rearrange(rotated, "... seq half two -> ... seq (half two)").to(x.dtype)


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All cosine similarities between the rows of ``a`` (n, d) and of ``b`` (m, d): (n, m).

        cos(a_i, b_j) = a_i . b_j / (max(|a_i|, eps) * max(|b_j|, eps)),   eps = 1e-8

    The clamp keeps a zero vector from giving 0 / 0 = nan: its similarity is 0. (Vectors
    shorter than eps are divided by eps and get similarities closer to 0 than they should;
    torch.nn.functional.cosine_similarity, whose default eps is also 1e-8, does the same.)
    """
    eps = 1e-8  # only a zero (or tiny) vector ever reaches the clamp
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)
    return einops.einsum(a, b, "n d, m d -> n m")


def nearest_neighbours(query: torch.Tensor, W_E: torch.Tensor, k: int) -> torch.Tensor:
    """The ids of the ``k`` rows of ``W_E`` most cosine-similar to ``query``: int64 (k,).

    query: (d_model,); W_E: (d_vocab, d_model). Most similar first; equal similarities go to
    the smaller id. If ``query`` is itself a row of W_E, that row is among the answers (to
    find a token's neighbours, ask for k + 1 and drop the token). k > d_vocab is a ValueError.
    """
    d_vocab = W_E.shape[0]
    if not 0 <= k <= d_vocab:
        raise ValueError(f"k must be between 0 and d_vocab = {d_vocab}, got {k}")
    sims = cosine_similarity(query[None, :], W_E)[0]
    # a stable sort keeps equal similarities in id order; torch.topk promises no order for ties
    order = torch.sort(sims, descending=True, stable=True).indices
    return order[:k]


# ----------------------------------------------------------------------------------------------
# Part 2: helpers for the chapter page
# ----------------------------------------------------------------------------------------------


def shakespeare_words(text: str | None = None) -> list[str]:
    """The words of Tiny Shakespeare (or ``text``), lower-cased: runs of letters and apostrophes."""
    if text is None:
        text = load_tiny_shakespeare()
    return re.findall(r"[a-z]+(?:'[a-z]+)*", text.lower())


def shakespeare_word_vectors(
    n_words: int = 2000, window: int = 4, dim: int = 64, text: str | None = None
) -> tuple[list[str], torch.Tensor]:
    """Small word vectors from Tiny Shakespeare: co-occurrence counts, PPMI, truncated SVD.

    The recipe of count-based word vectors (Levy, Goldberg and Dagan 2015, "Improving
    distributional similarity with lessons learned from word embeddings"):

    1. keep the ``n_words`` most frequent words (ties in frequency: alphabetical order);
    2. count how often word j occurs within ``window`` words of word i (both directions, a
       pair at distance d weighted 1/d); words outside the vocabulary are skipped, not removed;
    3. positive pointwise mutual information, PPMI_ij = max(0, log P(i, j) / (P(i) P_a(j))),
       where P_a(j) is the context distribution raised to the power 0.75 and renormalised
       (it keeps rare contexts from getting huge PMI);
    4. truncated SVD, PPMI ~ U S V^T with the ``dim`` largest singular values: word i's vector
       is row i of U * sqrt(S) (the square root weighting that Levy et al. recommend).

    Returns (words, vectors): ``words[i]`` is the word of row i of ``vectors``, float32
    (n_words, dim), most frequent word first. Takes about a second on a laptop CPU.
    """
    words = shakespeare_words(text)
    counts = Counter(words)
    vocab = sorted(counts, key=lambda w: (-counts[w], w))[:n_words]
    index = {w: i for i, w in enumerate(vocab)}
    n = len(vocab)
    ids = np.array([index.get(w, -1) for w in words], dtype=np.int64)

    cooc = np.zeros(n * n, dtype=np.float64)
    for d in range(1, window + 1):
        left, right = ids[:-d], ids[d:]
        keep = (left >= 0) & (right >= 0)
        flat = left[keep] * n + right[keep]
        cooc += np.bincount(flat, minlength=n * n) / d
    cooc = cooc.reshape(n, n)
    cooc = cooc + cooc.T  # a word d positions to the right is d positions to the left, too

    C = torch.from_numpy(cooc)
    total = C.sum()
    p_word = C.sum(dim=1) / total
    context = C.sum(dim=0) ** 0.75
    p_context = context / context.sum()
    # log 0 = -inf where a pair never occurs; the clamp makes it 0, as PPMI wants
    pmi = torch.log((C / total) / torch.outer(p_word, p_context))
    ppmi = pmi.clamp_min(0.0).nan_to_num(0.0).float()  # nan: a word with no neighbours at all

    U, S = _truncated_svd(ppmi, dim)
    return vocab, U * S.sqrt()


def _truncated_svd(A: torch.Tensor, rank: int, oversample: int = 16, n_iter: int = 4):
    """The top ``rank`` singular vectors and values of A (n, m): (U (n, rank), S (rank,)).

    A full SVD of a 2000 x 2000 matrix takes seconds on a CPU; we only need the first few
    dozen directions. The randomized range finder of Halko, Martinsson and Tropp (2011): find an
    orthonormal basis Q of A's dominant column space from A times a random matrix (a few power
    iterations sharpen it), then take the exact SVD of the small matrix Q^T A with
    torch.linalg.svd. A fixed seed makes the result the same on every run.
    """
    generator = torch.Generator(device=A.device).manual_seed(0)
    omega = torch.randn(A.shape[1], rank + oversample, generator=generator, device=A.device, dtype=A.dtype)
    Q = torch.linalg.qr(A @ omega).Q
    for _ in range(n_iter):
        Q = torch.linalg.qr(A @ torch.linalg.qr(A.T @ Q).Q).Q
    U_small, S, _ = torch.linalg.svd(Q.T @ A, full_matrices=False)
    return (Q @ U_small)[:, :rank], S[:rank]
