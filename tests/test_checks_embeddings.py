"""Chapter-2 checks against the wrong answers a learner who had not seen the reference wrote.

Each of these once passed its check (an adversarial learner found them); each must now fail,
and where a known mistake explains it, with the right hint.
"""

import pytest
import torch
from torch import nn

from solutions import checks as check
from solutions.checks.core import CheckFailure, check_function
from solutions.embeddings import cosine_similarity as reference_cosine


def fails(name, answer, match=None):
    with pytest.raises(CheckFailure, match=match) as info:
        check_function(check.SPECS[name], answer, device="cpu")
    for seed in (1, 424242):  # and with the grader's kind of hidden inputs
        with pytest.raises(CheckFailure):
            check_function(check.SPECS[name], answer, seed=seed, device="cpu")
    return str(info.value)


# --- cosine_similarity: zero and tiny rows on both sides ----------------------------------------


def test_cosine_without_a_clamp_on_a_fails():
    fails("cosine_similarity", lambda a, b: (a / a.norm(dim=-1, keepdim=True)) @ (b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)).T)


def test_cosine_with_a_large_eps_fails():
    fails("cosine_similarity", lambda a, b: (a / a.norm(dim=-1, keepdim=True).clamp_min(1e-3)) @ (b / b.norm(dim=-1, keepdim=True).clamp_min(1e-3)).T)


def test_cosine_clamping_the_product_fails():
    fails("cosine_similarity", lambda a, b: (a @ b.T) / (a.norm(dim=-1)[:, None] * b.norm(dim=-1)[None, :]).clamp_min(1e-8))


# --- nearest_neighbours: ties among many rows, near ties ----------------------------------------


def test_unstable_sort_fails_on_a_tie_among_many_rows():
    def unstable(query, W_E, k):
        if not 0 <= k <= W_E.shape[0]:
            raise ValueError(f"k={k}")
        return torch.argsort(reference_cosine(query[None], W_E)[0], descending=True)[:k]

    fails("nearest_neighbours", unstable)


def test_epsilon_tie_break_fails_on_a_near_tie():
    def nudged(query, W_E, k):
        if not 0 <= k <= W_E.shape[0]:
            raise ValueError(f"k={k}")
        s = reference_cosine(query[None], W_E)[0] - 1e-4 * torch.arange(W_E.shape[0])
        return torch.topk(s, k).indices

    fails("nearest_neighbours", nudged)


# --- Embed / PosEmbed: distribution, messages, every sequence, int32 -----------------------------


class _Embed(nn.Module):
    """A correct Embed whose parts the tests below replace one at a time."""

    def __init__(self, d_vocab, d_model):
        super().__init__()
        self.d_vocab = d_vocab
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))
        self.init()

    def init(self):
        nn.init.normal_(self.W_E, 0.0, 0.02)

    def validate(self, tokens):
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise TypeError("tokens must be integers")
        ids = tokens.to(torch.int64)  # compared in uint8, d_vocab = 300 would be 44
        bad = ids[(ids < 0) | (ids >= self.d_vocab)]
        if bad.numel():
            raise ValueError(f"token id {bad[0].item()} is outside 0..{self.d_vocab - 1} (d_vocab={self.d_vocab})")

    def forward(self, tokens):
        self.validate(tokens)
        return self.W_E[tokens.to(torch.int64)]


def _named(cls):
    cls.__name__ = "Embed"
    return cls


def test_a_correct_embed_written_differently_passes():
    check_function(check.SPECS["Embed"], _named(type("Embed", (_Embed,), {})), device="cpu")


def test_uniform_initialisation_with_the_right_std_fails():
    class Uniform(_Embed):
        def init(self):
            nn.init.uniform_(self.W_E, -0.02 * 3**0.5, 0.02 * 3**0.5)

    assert "kurtosis" in fails("Embed", _named(Uniform))


def test_sorted_normal_initialisation_fails():
    class Sorted(_Embed):
        def init(self):
            with torch.no_grad():
                self.W_E.copy_(torch.randn(self.W_E.numel()).sort().values.view_as(self.W_E) * 0.02)

    assert "neighbour correlation" in fails("Embed", _named(Sorted))


def test_only_int64_ids_fails_on_int32():
    class Int64Only(_Embed):
        def validate(self, tokens):
            if tokens.dtype != torch.int64:
                raise TypeError("need int64")
            super().validate(tokens)

    fails("Embed", _named(Int64Only))


def test_a_message_that_names_neither_the_id_nor_d_vocab_fails():
    class Vague(_Embed):
        def validate(self, tokens):
            if tokens.dtype.is_floating_point:
                raise TypeError("no")
            if tokens.min() < 0 or tokens.max() >= self.d_vocab:
                raise ValueError("bad token id")

    assert "message should name" in fails("Embed", _named(Vague))


def test_validating_only_the_first_sequence_fails():
    class FirstOnly(_Embed):
        def validate(self, tokens):
            super().validate(tokens[:1])

    fails("Embed", _named(FirstOnly))


def test_naming_the_largest_id_when_the_bad_one_is_negative_fails():
    class WrongId(_Embed):
        def validate(self, tokens):
            if tokens.dtype.is_floating_point:
                raise TypeError("no")
            if tokens.min() < 0 or tokens.max() >= self.d_vocab:
                raise ValueError(f"token id {tokens.max().item()} d_vocab {self.d_vocab}")

    assert "message should name '-1'" in fails("Embed", _named(WrongId))


def test_posembed_uniform_init_and_vague_message_fail():
    from solutions.embeddings import PosEmbed as Reference

    class Uniform(nn.Module):
        def __init__(self, n_ctx, d_model):
            super().__init__()
            self.n_ctx = n_ctx
            self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))
            nn.init.uniform_(self.W_pos, -0.01 * 3**0.5, 0.01 * 3**0.5)

        forward = Reference.forward

    Uniform.__name__ = "PosEmbed"
    fails("PosEmbed", Uniform)

    class Vague(nn.Module):
        def __init__(self, n_ctx, d_model):
            super().__init__()
            self.n_ctx = n_ctx
            self.W_pos = nn.Parameter(torch.randn(n_ctx, d_model) * 0.01)

        def forward(self, tokens):
            if tokens.shape[1] > self.n_ctx:
                raise ValueError("too long")
            return self.W_pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)

    Vague.__name__ = "PosEmbed"
    assert "message should name" in fails("PosEmbed", Vague)


# --- apply_rope: long sequences; device bugs seen on the meta case ------------------------------


def _rope(x, base=10000.0, cap=None, to_cpu=False):
    d = x.shape[-1]
    if d % 2:
        raise ValueError("odd")
    device = "cpu" if to_cpu else x.device
    p = torch.arange(x.shape[-2], device=device)
    if cap:
        p = p % cap
    i = torch.arange(d // 2, dtype=torch.float64, device=device)
    a = p[:, None].double() * base ** (-2 * i / d)
    work = torch.promote_types(x.dtype, torch.float32)  # half precision rotates in float32
    c, s = a.cos().to(work), a.sin().to(work)
    x0, x1 = x[..., 0::2].to(work), x[..., 1::2].to(work)
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], -1).flatten(-2).to(x.dtype)


def test_rope_with_a_capped_position_table_fails():
    check_function(check.SPECS["apply_rope"], _rope, device="cpu")  # the uncapped one is right
    fails("apply_rope", lambda x, base=10000.0: _rope(x, base, cap=16))


def test_rope_computed_on_the_cpu_is_named_as_a_device_bug_not_as_unfinished():
    message = fails("apply_rope", lambda x, base=10000.0: _rope(x.cpu(), base).to(x.device))
    assert "not implemented yet" not in message and "device" in message


# --- sinusoidal_shift_matrix ---------------------------------------------------------------------


def test_a_fitted_shift_matrix_with_the_property_passes_and_abs_k_is_named():
    from solutions.embeddings import sinusoidal_shift_matrix

    def pe_at(positions, d_model, base):  # the encoding at any positions, in float64
        w = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        angles = positions.double()[:, None] * w
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)

    def fitted(k, d_model, base=10000.0):
        if d_model % 2:
            raise ValueError("odd")
        # positions spread far apart, so that every frequency turns (200 neighbouring positions
        # leave the slowest pairs undetermined: such a fit has the property only near them, and
        # fails the check's offsets of 100,000)
        p = torch.arange(0, 400) * 997 + 200_000
        M = torch.linalg.lstsq(pe_at(p, d_model, base), pe_at(p + k, d_model, base)).solution
        return (M + 1e-5 * (torch.rand_like(M) - 0.5)).float()  # off-block entries a little off 0

    check_function(check.SPECS["sinusoidal_shift_matrix"], fitted, device="cpu")
    message = fails("sinusoidal_shift_matrix", lambda k, d, base=10000.0: sinusoidal_shift_matrix(abs(k), d, base))
    assert "wrong way" in message
    message = fails("sinusoidal_shift_matrix", lambda k, d, base=10000.0: sinusoidal_shift_matrix(k, d, base).double())
    assert "dtype" in message and "wrong way" not in message


# --- handing in the reference --------------------------------------------------------------------


def test_the_reference_itself_earns_nothing_in_the_notebook():
    from solutions import embeddings as reference

    with pytest.raises(CheckFailure, match="the course's reference"):
        check.apply_rope(reference.apply_rope)

    class Embed(reference.Embed):
        pass

    with pytest.raises(CheckFailure, match="the course's reference"):
        check.Embed(Embed)


# --- issue 19: named mistakes that had no hint, and messages that blamed the check -------------


def test_rope_in_llamas_rotate_half_layout_gets_the_pairing_hint():
    def rotate_half(x):
        return torch.cat((-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]), dim=-1)

    def apply_rope(x, base=10000.0):
        seq, d = x.shape[-2], x.shape[-1]
        if d % 2:
            raise ValueError("odd d_head")
        # angles in float64, as the exercise asks; only the pairing is LLaMA's
        inv = 1.0 / base ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float64) / d)
        freqs = torch.outer(torch.arange(seq, device=x.device, dtype=torch.float64), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        work = torch.promote_types(x.dtype, torch.float32)
        xw = x.to(work)
        return (xw * emb.cos().to(work) + rotate_half(xw) * emb.sin().to(work)).to(x.dtype)

    message = check_function_message("apply_rope", apply_rope)
    assert "Hint: RoFormer pairs neighbouring dimensions (2i, 2i+1)" in message


def test_posembed_with_batch_and_seq_swapped_is_told_the_axes_not_a_backward_error():
    from solutions.embeddings import PosEmbed as Reference

    class PosEmbed(Reference):
        def forward(self, tokens):
            batch, seq = tokens.shape
            if seq > self.n_ctx:
                raise ValueError(f"seq = {seq} > n_ctx = {self.n_ctx}")
            return self.W_pos[:seq, None, :].expand(seq, batch, -1)

    message = check_function_message("PosEmbed", PosEmbed)
    assert "yours look like (seq, batch, d_model)" in message and "backward" not in message


def test_a_parameter_left_as_torch_empty_is_named_as_never_initialised():
    class Embed(_Embed):
        def init(self):
            pass  # torch.empty's memory, as it was

    message = check_function_message("Embed", _named(Embed))
    assert "Hint: W_E is never initialised: torch.empty(...)" in message


def test_lookup_of_int8_or_uint8_ids_as_given_gets_the_int64_hint():
    message = check_function_message("lookup_embed", lambda tokens, W_E: W_E[tokens])
    assert "int16 ids" in message and "tokens.long()" in message


def check_function_message(name, answer):
    with pytest.raises(CheckFailure) as info:
        check_function(check.SPECS[name], answer, device="cpu")
    return str(info.value)
