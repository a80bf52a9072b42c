"""Chapter 6: wrong answers by learners who had not seen the references, which passed the checks of
training and sampling (third round). Each is kept here with why it is wrong; each must now fail,
with a message (or hint) that leads to the mistake. The kinds, each closed by a mechanism rather
than one more case where one fits: ValueError ranges tried only at their boundary (every stated
range now gets a case beyond it too, ``_outside`` in solutions/checks/training.py), results not
kept in half precision (float16 / bfloat16 families), integer dtypes other than int32/int64,
shapes that broadcast, mixed-precision gradients, the + 1e-6 of the clipping scale, duplicates
anywhere, temperatures below any floor, float64 near-ties, and the sampler's fallback."""

import json
import math
from pathlib import Path

import pytest
import torch

from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function

NOTEBOOK = Path(__file__).resolve().parents[1] / "chapters" / "06_training" / "06_training.ipynb"


def failure(name, answer, seed=0, device="cpu"):
    """The message of the check's failure (hints on: they are part of what leads the learner)."""
    with pytest.raises(CheckFailure) as raised:
        check_function(SPECS[name], answer, seed=seed, device=device)
    return str(raised.value)


def _lsm(logits):
    m = logits.max(dim=-1, keepdim=True).values
    return logits - m - torch.log(torch.exp(logits - m).sum(dim=-1, keepdim=True))


# --- get_batch ----------------------------------------------------------------------------------


def _windows(data, starts, seq):
    n = data.shape[0]
    hi = n - seq - 1
    if starts.numel() and (starts.min() < 0 or starts.long().max() > hi):
        raise ValueError(f"every start must be in 0..{hi} (n - seq - 1)")
    pos = starts.to(data.device)[:, None] + torch.arange(seq, device=data.device)
    return data[pos].long(), data[pos + 1].long()


def get_batch_seq_negative(data, starts, seq):
    """`if seq == 0`: seq = -2 passes the guard and torch.arange raises a RuntimeError."""
    if data.ndim != 1 or starts.ndim != 1:
        raise ValueError("data and starts must be 1-D")
    for t in (data, starts):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError("data and starts must be integer tensors")
    if seq == 0:  # WRONG: the statement says seq at least 1
        raise ValueError("seq must be at least 1")
    return _windows(data, starts, seq)


def get_batch_dtype_whitelist(data, starts, seq):
    """Integer dtypes by a list of two: uint8 and int16 token streams are refused."""
    if data.ndim != 1 or starts.ndim != 1:
        raise ValueError("data and starts must be 1-D")
    if data.dtype not in (torch.int32, torch.int64) or starts.dtype not in (torch.int32, torch.int64):
        raise ValueError("data and starts must be integer tensors")  # WRONG: too narrow
    if seq < 1:
        raise ValueError("seq must be at least 1")
    return _windows(data, starts, seq)


def get_batch_cpu_result(data, starts, seq):
    """The batch is built on the CPU whatever data's device (data.cpu()): wrong on a GPU."""
    if data.ndim != 1 or starts.ndim != 1:
        raise ValueError("data and starts must be 1-D")
    for t in (data, starts):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError("data and starts must be integer tensors")
    if seq < 1:
        raise ValueError("seq must be at least 1")
    hi = data.shape[0] - seq - 1
    s = starts.tolist()
    if any(not 0 <= v <= hi for v in s):
        raise ValueError(f"every start must be in 0..{hi} (n - seq - 1)")
    d = data.cpu()  # WRONG: the result leaves data's device
    return torch.stack([d[v:v + seq] for v in s]).long(), torch.stack([d[v + 1:v + seq + 1] for v in s]).long()


def get_batch_float_only(data, starts, seq):
    """Only floats refused: bool data (not an integer dtype, the statement says) is taken as ids."""
    if data.ndim != 1 or starts.ndim != 1:
        raise ValueError("data and starts must be 1-D")
    if data.is_floating_point() or starts.is_floating_point():
        raise ValueError("data and starts must be integer tensors")
    if seq < 1:
        raise ValueError("seq must be at least 1")
    return _windows(data, starts, seq)


def test_get_batch_refuses_a_negative_seq_with_a_value_error():
    text = failure("get_batch", get_batch_seq_negative)
    assert "seq = -2" in text and "should raise ValueError" in text and "RuntimeError" in text


def test_get_batch_takes_token_ids_of_every_integer_dtype():
    text = failure("get_batch", get_batch_dtype_whitelist)
    assert "raised ValueError on uint8 ids" in text


def test_get_batch_refuses_bool_data():
    text = failure("get_batch", get_batch_float_only)
    assert "bool data" in text and "should raise ValueError" in text


def test_get_batch_on_the_cpu_passes_on_the_cpu_and_its_reference_cannot_run_on_meta():
    # Not caught without a GPU: every case is on the CPU, where data.cpu() changes nothing. A meta
    # case cannot stand in: the stated range check (0 <= start <= n - seq - 1) needs the starts'
    # values, which meta tensors do not have, so the reference (and every right answer) fails there.
    from solutions import training as ref

    check_function(SPECS["get_batch"], get_batch_cpu_result, seed=0, device="cpu")
    with pytest.raises((RuntimeError, NotImplementedError)):
        ref.get_batch(torch.arange(20, device="meta"), torch.tensor([1, 2], device="meta"), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: on the CPU the device cannot differ")
def test_get_batch_on_the_cpu_fails_on_a_gpu():
    text = failure("get_batch", get_batch_cpu_result, device="cuda")
    assert "on device cpu" in text


# --- log_softmax and cross_entropy ------------------------------------------------------------


def log_softmax_upcast(logits):
    """Computed in at least float32 and never cast back: float16 logits give a float32 result."""
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # WRONG: never cast back
    return _lsm(x)


def log_softmax_aten(logits):
    """torch's own log-softmax kernel through the operator registry."""
    return torch.ops.aten._log_softmax(logits, -1, False)


def _validate_ce(logits, targets):
    if logits.ndim != 3:
        raise ValueError("logits must be 3-D (batch, seq, d_vocab)")
    if targets.shape != logits.shape[:2]:
        raise ValueError("targets must have shape logits.shape[:2]")
    if targets.is_floating_point():
        raise ValueError("targets must be integer ids")
    v = logits.shape[-1]
    if targets.numel() and (targets.min() < 0 or targets.max() >= v):
        raise ValueError(f"target ids must be in 0..d_vocab-1, d_vocab = {v}")


def cross_entropy_upcast(logits, targets):
    """The loss in float32 for half-precision logits: not of the logits' dtype."""
    _validate_ce(logits, targets)
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # WRONG: result keeps float32
    return -_lsm(x).gather(-1, targets.long()[..., None]).mean()


def cross_entropy_aten(logits, targets):
    """F.cross_entropy by its aten name."""
    _validate_ce(logits, targets)
    return torch.ops.aten.cross_entropy_loss(logits.flatten(0, 1), targets.flatten())


def cross_entropy_nll_nd(logits, targets):
    """F.nll_loss by its aten name, on its own log-softmax."""
    _validate_ce(logits, targets)
    return torch.ops.aten.nll_loss_nd(_lsm(logits).flatten(0, 1), targets.flatten())


def cross_entropy_lsm_aten(logits, targets):
    """torch's log-softmax kernel in place of its own."""
    _validate_ce(logits, targets)
    return -torch.ops.aten._log_softmax(logits, -1, False).gather(-1, targets.long()[..., None]).mean()


@pytest.mark.parametrize("name, answer", [("log_softmax", log_softmax_upcast), ("cross_entropy", cross_entropy_upcast)])
def test_half_precision_logits_keep_their_dtype(name, answer):
    text = failure(name, answer)
    assert "in float16" in text and "has dtype torch.float32, expected torch.float16" in text


@pytest.mark.parametrize("name, answer, called", [
    ("log_softmax", log_softmax_aten, "log_softmax"),
    ("cross_entropy", cross_entropy_aten, "cross_entropy"),
    ("cross_entropy", cross_entropy_nll_nd, "nll_loss"),
    ("cross_entropy", cross_entropy_lsm_aten, "log_softmax"),
])
def test_forbidden_kernels_by_their_aten_names_are_refused(name, answer, called):
    text = failure(name, answer)
    assert f"calls torch's `{called}`" in text and "asks you not to use" in text


# --- adamw_update -------------------------------------------------------------------------------


def _adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    p = param * (1 - lr * weight_decay)
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad**2
    p = p - lr * (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + eps)
    return p, m, v


def adamw_shape_pairs(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """Shapes compared in pairs: moments of shape (3,) for a (2, 3) parameter broadcast."""
    if step < 1:
        raise ValueError("step counts from 1")
    if param.shape != grad.shape or exp_avg.shape != exp_avg_sq.shape:  # WRONG: pairs only
        raise ValueError("param, grad, exp_avg and exp_avg_sq must have the same shape")
    return _adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)


def adamw_step_zero_only(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                         weight_decay=0.01):
    """`if step == 0`: step = -1 gives a parameter of nan."""
    if step == 0:  # WRONG: the statement says step < 1
        raise ValueError("step counts from 1")
    if not (param.shape == grad.shape == exp_avg.shape == exp_avg_sq.shape):
        raise ValueError("param, grad, exp_avg and exp_avg_sq must have the same shape")
    return _adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)


def adamw_upcast(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """Computed in at least float32 and never cast back: a float16 parameter comes back float32."""
    if step < 1:
        raise ValueError("step counts from 1")
    if not (param.shape == grad.shape == exp_avg.shape == exp_avg_sq.shape):
        raise ValueError("param, grad, exp_avg and exp_avg_sq must have the same shape")
    up = lambda t: t.to(torch.promote_types(t.dtype, torch.float32))  # WRONG: never cast back
    return _adamw_step(*map(up, (param, grad, exp_avg, exp_avg_sq)), step, lr, beta1, beta2, eps, weight_decay)


def test_adamw_moments_of_a_broadcasting_shape_are_refused():
    text = failure("adamw_update", adamw_shape_pairs)
    assert "of shape (3,), the others (2, 3) should raise ValueError" in text


def test_adamw_refuses_a_negative_step():
    text = failure("adamw_update", adamw_step_zero_only)
    assert "step -1" in text and "should raise ValueError" in text


def test_adamw_keeps_the_parameters_dtype():
    text = failure("adamw_update", adamw_upcast)
    assert "in float16" in text and "the new param has dtype torch.float32, expected torch.float16" in text


# --- clip_grad_norm -----------------------------------------------------------------------------


def _global_norm(grads, acc):
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.to(acc)) for g in grads]))


def clip_first_dtype(grads, max_norm):
    """The norm's precision from the first gradient only."""
    if max_norm <= 0:
        raise ValueError("max_norm must be positive")
    if not grads:
        return [], torch.tensor(0.0)
    acc = torch.float64 if grads[0].dtype == torch.float64 else torch.float32  # WRONG: first only
    total = torch.zeros((), dtype=acc)
    for g in grads:
        total = total + (g.to(acc) ** 2).sum()
    total = total.sqrt().to(acc)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * scale for g in grads], total


def clip_guard_tiny(grads, max_norm):
    """"Under the limit: unchanged", where the formula (and torch) scale a norm of 1e-6 under
    max_norm 1.5e-6 by 0.75."""
    if max_norm <= 0:
        raise ValueError("max_norm must be positive")
    if not grads:
        return [], torch.tensor(0.0)
    acc = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    total = _global_norm(grads, acc)
    if total <= max_norm:  # WRONG for tiny norms
        return [g.clone() for g in grads], total
    scale = max_norm / (total + 1e-6)
    return [g * scale.to(g.dtype) for g in grads], total


def clip_zero_only(grads, max_norm):
    """`if max_norm == 0`: max_norm = -1 reverses every gradient."""
    if max_norm == 0:  # WRONG: the statement says max_norm <= 0
        raise ValueError("max_norm must be positive")
    if not grads:
        return [], torch.tensor(0.0)
    acc = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    total = _global_norm(grads, acc)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * scale.to(g.dtype) for g in grads], total


def test_clip_norm_is_float64_when_any_gradient_is():
    text = failure("clip_grad_norm", clip_first_dtype)
    assert "float32, float64, float16 and float32 gradients" in text
    assert "*any* gradient is float64" in text  # the hint


def test_clip_scale_is_the_formula_also_under_the_limit():
    text = failure("clip_grad_norm", clip_guard_tiny)
    assert "1e-6 under max_norm = 1.5e-6" in text and "4.5e-07" in text
    assert "not only when total_norm > max_norm" in text  # the hint


def test_clip_refuses_a_negative_max_norm():
    text = failure("clip_grad_norm", clip_zero_only)
    assert "max_norm = -1.0" in text and "should raise ValueError" in text


# --- weight_decay_groups --------------------------------------------------------------------------


def _decays(name):
    last = name.split(".")[-1]
    return last.startswith("W_") and last not in ("W_E", "W_pos")


def groups_dup_decay_only(names):
    """Duplicates caught only among the names that decay."""
    decay, no_decay = [], []
    for n in names:
        if _decays(n):
            if n in decay:  # WRONG: only duplicates of decayed names are caught
                raise ValueError(f"duplicate parameter name {n!r}")
            decay.append(n)
        else:
            no_decay.append(n)
    return decay, no_decay


def groups_alias(names):
    """When nothing decays, no_decay is the caller's list itself."""
    if len(set(names)) != len(names):
        raise ValueError("duplicate parameter names")
    decay = [n for n in names if _decays(n)]
    if not decay:
        return decay, names  # WRONG: the caller's list itself
    return decay, [n for n in names if n not in decay]


def test_weight_decay_groups_refuses_duplicates_anywhere():
    text = failure("weight_decay_groups", groups_dup_decay_only)
    assert "a name that does not decay, twice" in text and "should raise ValueError" in text
    assert "wherever it is" in text  # the hint


def test_weight_decay_groups_returns_new_lists():
    text = failure("weight_decay_groups", groups_alias)
    assert "returned its input (`names`) itself" in text, text


# --- sampling -----------------------------------------------------------------------------------


def temperature_floor(logits, temperature):
    """A floor on T: every T below 1e-5 divides by 1e-5."""
    if temperature <= 0:
        raise ValueError("temperature must be positive; for T = 0 use greedy decoding (argmax)")
    return logits / max(temperature, 1e-5)  # WRONG: floor


def temperature_float32_t(logits, temperature):
    """T as a float32 tensor: float64 logits divided by T rounded to float32."""
    if temperature <= 0:
        raise ValueError("temperature must be positive; for T = 0 use greedy decoding (argmax)")
    return logits / torch.tensor(temperature)  # WRONG: T rounded to float32


def temperature_upcast(logits, temperature):
    """Divided in at least float32: half-precision logits come back float32."""
    if temperature <= 0:
        raise ValueError("temperature must be positive; for T = 0 use greedy decoding (argmax)")
    return logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # WRONG dtype


def top_k_float32_kth(logits, k):
    """The k-th largest found and compared in float32 for float64 logits."""
    v = logits.shape[-1]
    if not 1 <= k <= v:
        raise ValueError(f"k must be in 1..d_vocab = {v}, got {k}")
    kth = torch.topk(logits.float(), k).values[..., -1:]  # WRONG: threshold in float32
    return logits.masked_fill(logits.float() < kth, float("-inf"))


def top_k_negative(logits, k):
    """`if k == 0 or k > d_vocab`: k = -1 reaches torch.topk, a RuntimeError."""
    v = logits.shape[-1]
    if k == 0 or k > v:  # WRONG: negative k slips through
        raise ValueError(f"k must be in 1..d_vocab = {v}, got {k}")
    kth = torch.topk(logits, k).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_negative(logits, p):
    """`if p == 0 or p > 1`: p = -0.5 filters silently."""
    if p == 0 or p > 1:  # WRONG: negative p slips through
        raise ValueError("p must be in (0, 1]")
    probs = torch.softmax(logits, -1)
    sl, si = torch.sort(logits, -1, descending=True)  # sorted by logit: ties are between logits
    sp = torch.gather(probs, -1, si)
    n = ((torch.cumsum(sp, -1) - sp) < p).sum(-1, keepdim=True)
    cut = torch.gather(sl, -1, (n - 1).clamp(min=0))
    return logits.masked_fill(logits < cut, float("-inf"))


def sample_cdf_argmax(probs, uniforms):
    """The fallback at the first index of the cdf's largest value, not the last token of non-zero
    probability: a tiny probability after large ones does not change the float cdf."""
    if uniforms.shape != probs.shape[:-1]:
        raise ValueError("uniforms must have shape probs.shape[:-1]")
    cdf = probs.cumsum(-1)
    idx = (cdf <= uniforms[..., None]).sum(-1)
    return torch.where(idx >= probs.shape[-1], cdf.argmax(-1), idx)  # WRONG fallback


def test_temperature_has_no_floor():
    text = failure("apply_temperature", temperature_floor)
    assert "temperature 1e-8" in text and "max(T, 1e-5)" in text


def test_temperature_in_float64_is_not_rounded_to_float32():
    text = failure("apply_temperature", temperature_float32_t)
    assert "float64" in text and "differs" in text


def test_temperature_keeps_half_precision():
    text = failure("apply_temperature", temperature_upcast)
    assert "in float16" in text and "has dtype torch.float32, expected torch.float16" in text


def test_top_k_compares_float64_logits_in_float64():
    text = failure("top_k_filter", top_k_float32_kth)
    assert "float64 logits 1e-12 apart" in text and "own dtype" in text


def test_top_k_refuses_a_negative_k_with_a_value_error():
    text = failure("top_k_filter", top_k_negative)
    assert "k = -1" in text and "should raise ValueError" in text


def test_top_p_refuses_a_negative_p():
    text = failure("top_p_filter", top_p_negative)
    assert "p = -0.5" in text and "should raise ValueError" in text


def test_sampler_falls_back_to_the_last_token_of_non_zero_probability():
    text = failure("sample_from_probs", sample_cdf_argmax)
    assert "does not change the float cdf" in text and "1 instead of 2" in text
    assert "probs > 0" in text  # the hint


# --- every stated ValueError range, beyond its boundary too ---------------------------------------


def _labels(name):
    return [c.label for c in SPECS[name].make_cases(0)]


@pytest.mark.parametrize("name, labels", [
    ("get_batch", ["seq = 0", "seq = -2", "a start of 16 (n = 20, seq = 4)", "a start of 30 (n = 20, seq = 4)",
                   "a start of -1 (n = 20, seq = 4)", "a start of -6 (n = 20, seq = 4)"]),
    ("cross_entropy", ["a target id of 7 (d_vocab = 7)", "a target id of 12 (d_vocab = 7)",
                       "a target id of -1 (d_vocab = 7)", "a target id of -5 (d_vocab = 7)"]),
    ("adamw_update", ["step 0 (steps count from 1)", "step -1 (steps count from 1)"]),
    ("clip_grad_norm", ["max_norm = 0.0", "max_norm = -1.0"]),
    ("lr_at", ["step -1", "step -4", "warmup_steps = -1", "warmup_steps = -3"]),
    ("apply_temperature", ["temperature 0.0", "temperature -1.0"]),
    ("top_k_filter", ["k = 0 with d_vocab = 7", "k = -1 with d_vocab = 7", "k = 8 with d_vocab = 7",
                      "k = 15 with d_vocab = 7"]),
    ("top_p_filter", ["p = 0.0", "p = -0.5", f"p = {math.nextafter(1.0, 2.0)}", "p = 1.5"]),
])
def test_every_stated_range_is_tried_at_its_boundary_and_beyond(name, labels):
    assert set(labels) <= set(_labels(name))


# --- the statements ---------------------------------------------------------------------------


def _statement(cell_id):
    cells = {c.get("id"): c for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]}
    return " ".join("".join(cells[cell_id]["source"]).split())


def test_statements_say_what_the_checks_demand():
    assert "when `targets` are floats" in _statement("ex-cross_entropy")
    assert "names `d_vocab` and its value" in _statement("ex-cross_entropy")
    clip = _statement("ex-clip_grad_norm")
    assert "left as they are" not in clip and "never above 1" in clip and "scaled by 0.75" in clip
    assert "`param`'s dtype" in _statement("ex-adamw_update") and "broadcast" in _statement("ex-adamw_update")
    assert "two new lists" in _statement("ex-weight_decay_groups")
    assert "wherever it is" in _statement("ex-weight_decay_groups")
    assert "`uint8`" in _statement("ex-get_batch") and "`bool` is not one" in _statement("ex-get_batch")
    assert "no floor" in _statement("ex-apply_temperature")


# --- the grader's kind of seed ------------------------------------------------------------------


@pytest.mark.parametrize("name, answer", [
    ("get_batch", get_batch_seq_negative), ("get_batch", get_batch_dtype_whitelist), ("get_batch", get_batch_float_only),
    ("log_softmax", log_softmax_upcast), ("log_softmax", log_softmax_aten),
    ("cross_entropy", cross_entropy_upcast), ("cross_entropy", cross_entropy_aten),
    ("cross_entropy", cross_entropy_nll_nd), ("cross_entropy", cross_entropy_lsm_aten),
    ("adamw_update", adamw_shape_pairs), ("adamw_update", adamw_step_zero_only), ("adamw_update", adamw_upcast),
    ("clip_grad_norm", clip_first_dtype), ("clip_grad_norm", clip_guard_tiny), ("clip_grad_norm", clip_zero_only),
    ("weight_decay_groups", groups_dup_decay_only),
    ("apply_temperature", temperature_floor), ("apply_temperature", temperature_float32_t),
    ("apply_temperature", temperature_upcast),
    ("top_k_filter", top_k_float32_kth), ("top_k_filter", top_k_negative), ("top_p_filter", top_p_negative),
    ("sample_from_probs", sample_cdf_argmax),
], ids=lambda v: getattr(v, "__name__", v))
def test_every_finding_fails_on_a_hidden_seed_too(name, answer):
    failure(name, answer, seed=424242)
