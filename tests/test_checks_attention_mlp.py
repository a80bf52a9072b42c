"""Chapters 3 and 4: wrong answers an adversarial learner found passing; each must now fail."""

import einops
import pytest
import torch
import torch.nn.functional as F

from solutions import attention as ref
from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function


def fails(name, answer, match=None):
    for seed in (0, 424242):
        with pytest.raises(CheckFailure, match=match):
            check_function(SPECS[name], answer, seed=seed, device="cpu")


def _attention_class(forward):
    cls = type("Attention", (ref.Attention,), {"forward": forward})
    cls.__module__ = "learner"
    return cls


def _project(self, x, source):
    q = torch.einsum("bsm,hmd->bhsd", x, self.W_Q) + self.b_Q[:, None, :]
    k = torch.einsum("bsm,hmd->bhsd", source, self.W_K) + self.b_K[:, None, :]
    v = torch.einsum("bsm,hmd->bhsd", source, self.W_V) + self.b_V[:, None, :]
    return q, k, v


def _out(self, z):
    return torch.einsum("bhsd,hdm->bsm", z, self.W_O) + self.b_O


@pytest.mark.parametrize("always_fused", [False, True])
def test_attention_that_ignores_the_fused_switch_fails(always_fused):
    def forward(self, x, context=None, key_padding_mask=None):
        source = x if context is None else context
        q, k, v = _project(self, x, source)
        causal = self.causal and context is None
        attend = ref.fused_attention if always_fused else ref.scaled_dot_product_attention
        return _out(self, attend(q, k, v, causal, key_padding_mask))

    fails("Attention", _attention_class(forward), match="whether forward called torch's scaled_dot_product_attention")


def test_attention_where_padding_forces_a_causal_mask_fails():
    def forward(self, x, context=None, key_padding_mask=None):
        source = x if context is None else context
        q, k, v = _project(self, x, source)
        causal = (self.causal and context is None) or key_padding_mask is not None
        attend = ref.fused_attention if self.fused else ref.scaled_dot_product_attention
        return _out(self, attend(q, k, v, causal, key_padding_mask))

    fails("Attention", _attention_class(forward))


def message_of(name, answer):
    with pytest.raises(CheckFailure) as info:
        check_function(SPECS[name], answer, device="cpu")
    return str(info.value)


def test_fused_path_with_attn_mask_and_is_causal_is_told_what_happened_not_a_device_problem():
    def forward(self, x, context=None, key_padding_mask=None):
        q, k, v = _project(self, x, x if context is None else context)
        causal = self.causal and context is None
        if not self.fused:
            return _out(self, ref.scaled_dot_product_attention(q, k, v, causal, key_padding_mask))
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        return _out(self, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal))

    message = message_of("Attention", _attention_class(forward))
    assert "Hint: F.scaled_dot_product_attention does not take attn_mask together with is_causal=True" in message


def test_an_ignore_buffer_is_refused_by_name_with_its_hint():
    class Attention(ref.Attention):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.register_buffer("IGNORE", torch.tensor(float("-inf")))

    Attention.__module__ = "learner"
    message = message_of("Attention", Attention)
    assert "parameter or buffer 'IGNORE'" in message and "persistent=False" in message


@pytest.mark.parametrize("exercise", ["split_heads", "merge_heads"])
def test_heads_interleaved_as_d_h_get_their_hint(exercise):
    def split_heads(x, n_heads):
        if x.shape[-1] % n_heads:
            raise ValueError("d_model is not divisible by n_heads")
        return einops.rearrange(x, "b s (d h) -> b h s d", h=n_heads)

    def merge_heads(x):
        return einops.rearrange(x, "b h s d -> b s (d h)")

    message = message_of(exercise, split_heads if exercise == "split_heads" else merge_heads)
    assert "Hint: the heads are interleaved" in message


def test_forward_cached_that_never_uses_the_cache_fails():
    def forward_cached(attn, x_new, cache):
        X = x_new if not hasattr(cache, "_x") else torch.cat([cache._x, x_new], 1)
        cache._x = X
        q = einops.einsum(X, attn.W_Q, "b s d, h d e -> b h s e") + attn.b_Q[:, None, :]
        k = einops.einsum(X, attn.W_K, "b s d, h d e -> b h s e") + attn.b_K[:, None, :]
        v = einops.einsum(X, attn.W_V, "b s d, h d e -> b h s e") + attn.b_V[:, None, :]
        z = ref.scaled_dot_product_attention(q, k, v, causal=True)
        return (einops.einsum(z, attn.W_O, "b h s e, h e d -> b s d") + attn.b_O)[:, -x_new.shape[1]:]

    fails("forward_cached", forward_cached, match=r"len\(cache\)")


def test_forward_cached_that_caches_keys_without_their_bias_fails():
    def forward_cached(attn, x_new, cache):
        q = einops.einsum(x_new, attn.W_Q, "b s d, h d e -> b h s e") + attn.b_Q[:, None, :]
        k = einops.einsum(x_new, attn.W_K, "b s d, h d e -> b h s e")
        v = einops.einsum(x_new, attn.W_V, "b s d, h d e -> b h s e") + attn.b_V[:, None, :]
        k, v = cache.update(k, v)
        z = ref.scaled_dot_product_attention(q, k, v, causal=True)
        return einops.einsum(z, attn.W_O, "b h s e, h e d -> b s d") + attn.b_O

    fails("forward_cached", forward_cached, match="the keys the cache holds")


def test_kv_cache_with_a_fixed_buffer_fails():
    class KVCache:
        def __init__(self):
            self.k = self.v = None
            self.n = 0

        def update(self, k_new, v_new):
            if self.k is None:
                shape = list(k_new.shape)
                shape[-2] = 16
                self.k, self.v = k_new.new_zeros(shape), v_new.new_zeros(shape)
            n = min(k_new.shape[-2], 16 - self.n)
            self.k[..., self.n:self.n + n, :] = k_new[..., :n, :]
            self.v[..., self.n:self.n + n, :] = v_new[..., :n, :]
            self.n += n
            return self.k[..., :self.n, :], self.v[..., :self.n, :]

        def __len__(self):
            return self.n

    fails("KVCache", KVCache)


def _probe_answer(compare):
    def changed_positions(module, x, position):
        with torch.no_grad():
            before = module(x)
            c = x.clone()
            c[:, position] += 1.0
            return compare(module(c), before)

    return changed_positions


@pytest.mark.parametrize("compare", [
    lambda a, b: (a != b).all(dim=-1),
    lambda a, b: ~torch.isclose(a, b, atol=1e-3).all(dim=-1),
], ids=["all features", "isclose"])
def test_changed_positions_that_compares_loosely_fails(compare):
    fails("changed_positions", _probe_answer(compare))


def test_changed_positions_that_probes_one_sequence_or_guesses_fails():
    def first_row_only(module, x, position):
        with torch.no_grad():
            before = module(x[:1])
            c = x[:1].clone()
            c[:, position] += 1.0
            return (module(c) != before).any(-1).expand(x.shape[0], -1)

    def guess(module, x, position):
        b, s = x.shape[:2]
        p = position % s
        out = torch.zeros(b, s, dtype=torch.bool, device=x.device)
        if len(list(module.parameters())):
            out[:, p] = True
        elif type(module).__name__ == "RunningMean":
            out[:, p:] = True
        else:
            out[:, max(p - 1, 0):p + 1] = True
        return out

    fails("changed_positions", first_row_only)
    fails("changed_positions", guess)


def test_dtype_and_device_slips_fail():
    fails("causal_mask", lambda s: ref.causal_mask(s.float()))
    fails("attention_output", lambda p, v: p.float() @ v.float())
    fails("relu", lambda x: torch.maximum(x, torch.zeros(x.shape, dtype=x.dtype)))
