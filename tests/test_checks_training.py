"""Chapter 6: wrong answers an adversarial learner found passing; each must now fail."""

import pytest
import torch

from solutions import training as ref
from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function, without_hints


def fails(name, answer):
    for seed in (0, 424242):
        with without_hints(), pytest.raises(CheckFailure):
            check_function(SPECS[name], answer, seed=seed, device="cpu")


def _log_softmax_global_max(z):  # one maximum for the whole tensor: a row far below it underflows
    m = z.max()
    return z - m - torch.log(torch.exp(z - m).sum(-1, keepdim=True))


def _cross_entropy_any_rank(logits, targets):  # no check that logits are (batch, seq, d_vocab)
    if targets.shape != logits.shape[:-1] or targets.is_floating_point():
        raise ValueError("shape")
    d_vocab = logits.shape[-1]
    if targets.numel() and (targets.min() < 0 or targets.max() >= d_vocab):
        raise ValueError(f"d_vocab = {d_vocab}")
    return -ref.log_softmax(logits).gather(-1, targets[..., None].long())[..., 0].mean()


def _cross_entropy_in_float32(logits, targets):
    ref.cross_entropy(logits, targets)  # its checks
    return ref.cross_entropy(logits.float(), targets).to(logits.dtype)


def _adamw_moments_unchecked(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                             weight_decay=0.01):
    if step < 1 or param.shape != grad.shape:
        raise ValueError("step or shape")
    p = param * (1 - lr * weight_decay)
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad**2
    return p - lr * (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + eps), m, v


_KNOWN = {"W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_gate", "W_up", "W_down", "W_U"}


def _groups(rule):
    def weight_decay_groups(names):
        if len(set(names)) != len(names):
            raise ValueError("duplicate names")
        decay = [n for n in names if rule(n)]
        return decay, [n for n in names if n not in decay]

    return weight_decay_groups


def _top_p_at_most(logits, p):  # keeps a token whose mass before it equals p
    if not 0 < p <= 1:
        raise ValueError("p")
    sl, _ = torch.sort(logits, -1, descending=True)
    pr = torch.softmax(sl, -1)
    keep = (pr.cumsum(-1) - pr) <= p
    cut = sl.gather(-1, keep.sum(-1, keepdim=True) - 1)
    return logits.masked_fill(logits < cut, float("-inf"))


def _top_p_ties_broken(logits, p):
    if not 0 < p <= 1:
        raise ValueError("p")
    sl, idx = torch.sort(logits, -1, descending=True)
    pr = torch.softmax(sl, -1)
    remove = torch.zeros_like(pr, dtype=torch.bool).scatter(-1, idx, ~((pr.cumsum(-1) - pr) < p))
    return logits.masked_fill(remove, float("-inf"))


def _sample_fallback_argmax(probs, uniforms):
    if uniforms.shape != probs.shape[:-1]:
        raise ValueError("shape")
    index = (probs.cumsum(-1) <= uniforms[..., None]).sum(-1)
    return torch.where(index >= probs.shape[-1], probs.argmax(-1), index).long()


def _get_batch_int64_only(data, starts, seq):
    if starts.dtype != torch.int64:
        raise ValueError("starts must be int64")
    return ref.get_batch(data, starts, seq)


@pytest.mark.parametrize("name, answer", [
    ("log_softmax", _log_softmax_global_max),
    ("cross_entropy", _cross_entropy_any_rank),
    ("cross_entropy", _cross_entropy_in_float32),
    ("adamw_update", _adamw_moments_unchecked),
    ("weight_decay_groups", _groups(lambda n: n.split(".")[-1] in _KNOWN)),
    ("weight_decay_groups", _groups(lambda n: "W_" in n and "W_E" not in n and "W_pos" not in n)),
    ("weight_decay_groups", _groups(lambda n: n.split(".")[-1].lower().startswith("w_") and "W_E" not in n and "pos" not in n)),
    ("weight_decay_groups", _groups(lambda n: n.split(".")[-1].startswith("W_") and not n.split(".")[-1].startswith(("W_E", "W_pos")))),
    ("top_p_filter", _top_p_at_most),
    ("top_p_filter", _top_p_ties_broken),
    ("sample_from_probs", _sample_fallback_argmax),
    ("get_batch", _get_batch_int64_only),
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", "answer"))
def test_wrong_answers_found_by_a_learner_fail(name, answer):
    fails(name, answer)


def test_a_learner_who_validates_and_forgets_the_shift_gets_the_hint():
    def get_batch(data, starts, seq):
        ref.get_batch(data, starts, seq)  # the checks the exercise asks for
        x = data[starts[:, None] + torch.arange(seq)].long()
        return x, x.clone()

    with pytest.raises(CheckFailure, match="the \\*next\\* token"):
        check_function(SPECS["get_batch"], get_batch, device="cpu")
