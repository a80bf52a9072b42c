"""Tests for solutions/training.py: the references against PyTorch's own and against statistics.

Oracles: F.cross_entropy and F.log_softmax (values, gradients, float32 and float64);
torch.optim.AdamW step for step over many steps with several parameter groups;
torch.nn.utils.clip_grad_norm_; torch.topk; torch.multinomial and the target distribution for
sampling (chi-square tests, see below); the training loop against itself (an interrupted and
resumed run gives bit-identical losses) and, in test_torchrun.py, against two processes.

Sampling statistics. A sampler is tested by drawing N tokens and comparing the counts with the
distribution it should follow (Pearson's chi-square, p-value from the chi-square distribution via
torch.special.gammaincc). Each test uses a fixed seed, so it is deterministic; the *false-failure
rate* is the chance that a correct sampler fails with a seed chosen at random: ALPHA = 1e-3 per
test. ``test_chi_square_false_failure_rate_is_measured`` measures it over 2,000 seeds at a
level of 1 % (expected 20 failures, accepted 8..35, three standard deviations) and shows that
plausible wrong samplers fail almost always.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from solutions import training as T
from solutions.blocks import GPT, Config
from solutions.training import (
    AdamW, TrainConfig, adamw_update, apply_temperature, clip_grad_norm, cross_entropy, generate,
    get_batch, log_softmax, lr_at, random_starts, sample_from_probs, sample_next, top_k_filter,
    top_p_filter, train, weight_decay_groups,
)

ALPHA = 1e-3


@pytest.fixture(autouse=True)
def one_thread():
    # tiny models: one thread is faster than two, and steadier on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_config(**changes) -> Config:
    return dataclasses.replace(Config(d_model=16, n_heads=2, d_mlp=32, d_vocab=65, n_ctx=16, n_layers=1, fused=True),
                               **changes)


# --- data -------------------------------------------------------------------------------------


def test_get_batch_targets_are_the_inputs_shifted_by_one():
    data = torch.arange(100, 130)
    x, y = get_batch(data, torch.tensor([0, 5, 23]), seq=6)
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (3, 6)
    assert x[1].tolist() == [105, 106, 107, 108, 109, 110]
    assert y[1].tolist() == [106, 107, 108, 109, 110, 111]
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert y[2, -1].item() == 129  # the largest start reaches the last token exactly


def test_get_batch_refuses_windows_past_the_end_and_bad_shapes():
    data = torch.arange(30, dtype=torch.int32)
    with pytest.raises(ValueError, match="0..23"):
        get_batch(data, torch.tensor([24]), seq=6)
    with pytest.raises(ValueError, match="0..23"):
        get_batch(data, torch.tensor([-1]), seq=6)
    with pytest.raises(ValueError, match="1-D"):
        get_batch(data[None], torch.tensor([0]), seq=6)
    with pytest.raises(ValueError, match="integer"):
        get_batch(data.float(), torch.tensor([0]), seq=6)
    with pytest.raises(ValueError, match="seq"):
        get_batch(data, torch.tensor([0]), seq=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
                         + ([torch.uint16] if hasattr(torch, "uint16") else []))
def test_get_batch_takes_ids_and_starts_of_every_integer_dtype(dtype):
    data = torch.arange(100, 127).to(dtype)
    # uint16 token files are nanoGPT's; torch has no min() of uint16, so its starts stay int64 here
    starts = torch.tensor([0, 20]).to(torch.int64 if dtype == getattr(torch, "uint16", None) else dtype)
    x, y = get_batch(data, starts, seq=6)
    assert x.dtype == y.dtype == torch.int64
    assert x[1].tolist() == list(range(120, 126)) and y[1].tolist() == list(range(121, 127))


def test_get_batch_refuses_what_is_not_an_integer_and_any_seq_below_1():
    data = torch.arange(30)
    for bad in (data % 2 == 0, data.to(torch.complex64)):
        with pytest.raises(ValueError, match="integer"):
            get_batch(bad, torch.tensor([0]), seq=6)
    with pytest.raises(ValueError, match="integer"):
        get_batch(data, torch.tensor([True]), seq=6)
    for seq in (0, -2):
        with pytest.raises(ValueError, match="seq"):
            get_batch(data, torch.tensor([0]), seq=seq)


def test_random_starts_cover_every_valid_start_and_repeat_with_a_seed():
    starts = random_starts(20, 5000, 6, generator(0))
    assert starts.dtype == torch.int64 and set(starts.tolist()) == set(range(14))  # 0..n-seq-1
    assert torch.equal(random_starts(20, 50, 6, generator(1)), random_starts(20, 50, 6, generator(1)))
    x, y = get_batch(torch.arange(20), starts, 6)  # every one of them is a valid window
    assert y.max() == 19


def test_train_val_split_is_contiguous():
    train_data, val_data = T.train_val_split(torch.arange(100), 0.1)
    assert train_data.tolist() == list(range(90)) and val_data.tolist() == list(range(90, 100))


# --- the loss ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_matches_torch_values_and_gradients(dtype):
    g = generator(0)
    logits = (torch.randn(3, 7, 11, generator=g, dtype=dtype) * 4).requires_grad_(True)
    targets = torch.randint(0, 11, (3, 7), generator=g)
    ours = cross_entropy(logits, targets)
    theirs = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert ours.shape == () and ours.dtype == dtype
    torch.testing.assert_close(ours, theirs)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(log_softmax(logits), F.log_softmax(logits, dim=-1))


def test_cross_entropy_is_exact_for_huge_logits_where_the_naive_formula_breaks():
    logits = torch.tensor([[[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]]])
    assert cross_entropy(logits, torch.tensor([[0, 2]])).item() == 0.0
    assert cross_entropy(logits, torch.tensor([[1, 0]])).item() == 2000.0
    assert torch.isfinite(log_softmax(logits)).all()
    naive = -torch.log(torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True))
    assert not torch.isfinite(naive).all()  # exp(1000) = inf: inf / inf = nan


def test_loss_of_an_untrained_model_is_about_ln_d_vocab():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    x = torch.randint(0, 65, (4, 16))
    loss = cross_entropy(model(x), torch.randint(0, 65, (4, 16))).item()
    assert abs(loss - math.log(65)) < 0.05  # small init: nearly uniform predictions


def test_cross_entropy_refuses_bad_shapes_and_ids():
    with pytest.raises(ValueError, match="batch, seq, d_vocab"):
        cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="batch, seq"):
        cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="0..4"):
        cross_entropy(torch.zeros(2, 3, 5), torch.full((2, 3), 5))


# --- the optimiser ----------------------------------------------------------------------------


def test_adamw_update_is_pure_and_its_first_step_has_size_lr():
    p, grad = torch.tensor([1.0, -2.0]), torch.tensor([0.5, -3.0])
    m, v = torch.zeros(2), torch.zeros(2)
    before = [t.clone() for t in (p, grad, m, v)]
    new_p, new_m, new_v = adamw_update(p, grad, m, v, step=1, lr=0.1, weight_decay=0.0)
    for t, b in zip((p, grad, m, v), before):
        assert torch.equal(t, b)
    # bias correction: m_hat = grad, v_hat = grad^2, so the first step is lr * sign(grad)
    torch.testing.assert_close(new_p, p - 0.1 * grad.sign())
    torch.testing.assert_close(new_m, 0.1 * grad) and torch.testing.assert_close(new_v, 0.001 * grad**2)
    with pytest.raises(ValueError, match="from 1"):
        adamw_update(p, grad, m, v, step=0, lr=0.1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_adamw_update_keeps_a_half_precision_parameter_in_its_dtype_as_torch_does(dtype):
    g = generator(5)
    param, grad = torch.randn(3, 4, generator=g).to(dtype), torch.randn(3, 4, generator=g).to(dtype)
    p = torch.nn.Parameter(param.clone())
    optimizer = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.1, foreach=False)
    p.grad = grad.clone()
    optimizer.step()
    state = optimizer.state[p]
    new = adamw_update(param, grad, torch.zeros_like(param), torch.zeros_like(param), 1, 1e-2, weight_decay=0.1)
    assert [t.dtype for t in new] == [dtype] * 3 == [p.dtype, state["exp_avg"].dtype, state["exp_avg_sq"].dtype]
    for ours, theirs in zip(new, (p.detach(), state["exp_avg"], state["exp_avg_sq"])):
        torch.testing.assert_close(ours, theirs)


def test_adamw_update_refuses_shapes_that_would_broadcast_and_any_step_below_1():
    full, row = torch.ones(2, 3), torch.ones(3)
    for tensors in ((full, full, row, row), (row, row, full, full), (row, full, full, full)):
        with pytest.raises(ValueError, match="shape"):
            adamw_update(*tensors, 1, 1e-3)
    for step in (0, -1):
        with pytest.raises(ValueError, match="step"):
            adamw_update(full, full, full, full, step, 1e-3)


def test_adamw_weight_decay_is_decoupled_not_l2():
    # with a zero gradient, AdamW still shrinks the weights by lr * wd; Adam + L2 would put the
    # decay into the gradient and move every weight by about lr (the sign of the weight)
    p = torch.tensor([2.0, -0.5])
    new_p, _, _ = adamw_update(p, torch.zeros(2), torch.zeros(2), torch.zeros(2), step=1, lr=0.1, weight_decay=0.5)
    torch.testing.assert_close(new_p, p * (1 - 0.1 * 0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adamw_matches_torch_step_for_step_with_parameter_groups(dtype):
    g = generator(1)
    shapes = [(4, 3), (3,), (2, 5, 2), (1,)]
    start = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    ours = [t.clone().requires_grad_(True) for t in start]
    theirs = [t.clone().requires_grad_(True) for t in start]

    def groups(params):
        return [{"params": params[:2], "weight_decay": 0.1},
                {"params": params[2:], "weight_decay": 0.0, "lr": 3e-2, "betas": (0.8, 0.95), "eps": 1e-6}]

    opt_ours = AdamW(groups(ours), lr=1e-2, betas=(0.9, 0.99))
    opt_theirs = torch.optim.AdamW(groups(theirs), lr=1e-2, betas=(0.9, 0.99), foreach=False)
    for step in range(60):
        grads = [torch.randn(s, generator=g, dtype=dtype) * (10 if step % 7 == 0 else 1) for s in shapes]
        for group in opt_ours.param_groups + opt_theirs.param_groups:  # a schedule, as in training
            group["lr"] = group["lr"] * 0.98
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            for p, grad in zip(params, grads):
                p.grad = grad.clone()
            opt.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=1e-7)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(opt_ours.state[a]["exp_avg_sq"], opt_theirs.state[b]["exp_avg_sq"])


def test_adamw_without_bias_correction_would_differ():
    # the reason the correction exists: m and v start at zero, so early raw moments are too small
    p, grad = torch.zeros(1), torch.ones(1)
    new_p, m, v = adamw_update(p, grad, torch.zeros(1), torch.zeros(1), 1, lr=1.0, weight_decay=0.0)
    uncorrected = p - 1.0 * m / (v.sqrt() + 1e-8)
    assert new_p.item() == pytest.approx(-1.0) and uncorrected.item() == pytest.approx(-0.1 / math.sqrt(0.001))


@pytest.mark.parametrize("max_norm", [0.5, 5.0, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    g = generator(2)
    grads = [torch.randn(s, generator=g) for s in [(4, 3), (7,), (2, 2, 2)]]
    before = [t.clone() for t in grads]
    clipped, total = clip_grad_norm(grads, max_norm)
    params = [torch.zeros_like(t, requires_grad=True) for t in grads]
    for p, t in zip(params, grads):
        p.grad = t.clone()
    expected_total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    torch.testing.assert_close(total, expected_total)
    for c, p, b, t in zip(clipped, params, before, grads):
        torch.testing.assert_close(c, p.grad)
        assert torch.equal(t, b)  # inputs unchanged
    norm_after = torch.stack([c.norm() for c in clipped]).norm()
    assert norm_after <= max_norm * (1 + 1e-5) and (total <= max_norm) == torch.allclose(norm_after, total)


def test_clip_grad_norm_near_tiny_norms_is_the_formula_as_in_torch():
    # a norm of 1e-6 under max_norm = 1.5e-6: the + 1e-6 makes the scale 0.75, in torch too
    grads = [torch.tensor([6e-7, 8e-7])]
    clipped, total = clip_grad_norm(grads, 1.5e-6)
    param = torch.zeros(2, requires_grad=True)
    param.grad = grads[0].clone()
    torch.nn.utils.clip_grad_norm_([param], 1.5e-6)
    torch.testing.assert_close(clipped[0], param.grad, rtol=1e-6, atol=0)
    torch.testing.assert_close(clipped[0], 0.75 * grads[0], rtol=1e-5, atol=0)
    for max_norm in (0.0, -1.0):
        with pytest.raises(ValueError):
            clip_grad_norm(grads, max_norm)


def test_clip_grad_norm_is_float64_when_any_gradient_is():
    grads = [torch.tensor([1.0]), torch.tensor([1.0 + 1e-12], dtype=torch.float64), torch.tensor([0.5]).half()]
    clipped, total = clip_grad_norm(grads, 10.0)
    assert total.dtype == torch.float64 and [c.dtype for c in clipped] == [g.dtype for g in grads]
    assert total.item() == math.sqrt(1.0 + (1.0 + 1e-12) ** 2 + 0.25)


def test_clip_grad_norm_keeps_the_direction_of_the_whole_update():
    clipped, total = clip_grad_norm([torch.tensor([3.0]), torch.tensor([0.0, 4.0])], 1.0)
    assert total.item() == 5.0
    torch.testing.assert_close(torch.cat(clipped), torch.tensor([0.6, 0.0, 0.8]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        clip_grad_norm([torch.ones(1)], 0.0)


def test_lr_schedule_warms_up_then_decays_along_a_cosine():
    kw = dict(max_lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, **kw) == pytest.approx(0.1) and lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # half-way: the mean of max and min
    assert lr_at(110, **kw) == pytest.approx(0.1) and lr_at(500, **kw) == 0.1
    rates = [lr_at(s, **kw) for s in range(120)]
    assert all(a <= b for a, b in zip(rates[:10], rates[1:11]))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert lr_at(3, 1.0, 0.0, 0, 0) == 0.0 and lr_at(0, 1.0, 0.1, 0, 10) == 1.0
    with pytest.raises(ValueError):
        lr_at(0, 1.0, 0.1, 10, 5)


def test_weight_decay_only_on_the_matrices_of_linear_maps():
    names = [n for n, _ in GPT(tiny_config()).named_parameters()]
    decay, no_decay = weight_decay_groups(names)
    assert decay == [n for n in names if n.split(".")[-1] in ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")]
    assert "embed.W_E" in no_decay and "pos_embed.W_pos" in no_decay
    assert "blocks.0.attn.b_Q" in no_decay and "blocks.0.ln1.w" in no_decay
    assert sorted(decay + no_decay) == sorted(names)
    llama = GPT(tiny_config(norm="rmsnorm", mlp="swiglu", positions="rope", bias=False, tie_embeddings=False))
    decay, _ = weight_decay_groups([n for n, _ in llama.named_parameters()])
    assert "W_U" in decay and "blocks.0.mlp.W_gate" in decay and "embed.W_E" not in decay


# --- sampling ---------------------------------------------------------------------------------


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square goodness of fit over the tokens with non-zero probability."""
    n = counts.sum()
    support = probs > 0
    expected = n * probs[support].double()
    stat = ((counts[support].double() - expected) ** 2 / expected).sum()
    df = int(support.sum()) - 1
    return torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat / 2).item()


def draw(probs: torch.Tensor, n: int, seed: int, sampler=sample_from_probs) -> torch.Tensor:
    uniforms = torch.rand(n, generator=generator(seed))
    return torch.bincount(sampler(probs.expand(n, -1), uniforms), minlength=probs.shape[-1])


PROBS = torch.tensor([0.3, 0.0, 0.25, 0.2, 0.1, 0.08, 0.05, 0.0, 0.015, 0.005])


def test_sample_from_probs_is_the_inverse_cdf():
    probs = torch.tensor([[0.5, 0.0, 0.25, 0.25]])
    cases = {0.0: 0, 0.49: 0, 0.5: 2, 0.74: 2, 0.75: 3, 0.999: 3}
    for u, token in cases.items():
        assert sample_from_probs(probs, torch.tensor([u])).tolist() == [token], u
    # a zero-probability token is never drawn, even at the boundary and after rounding
    assert sample_from_probs(torch.tensor([0.0, 1.0, 0.0]), torch.tensor(0.0)).item() == 1
    assert sample_from_probs(torch.tensor([0.4, 0.5999, 0.0]), torch.tensor(0.99995)).item() == 1
    out = sample_from_probs(torch.full((2, 3, 4), 0.25), torch.rand(2, 3, generator=generator(0)))
    assert out.shape == (2, 3) and out.dtype == torch.int64
    with pytest.raises(ValueError, match="uniforms"):
        sample_from_probs(probs, torch.rand(2))


def test_sample_from_probs_follows_the_distribution_and_agrees_with_multinomial():
    n = 50_000
    counts = draw(PROBS, n, seed=0)
    assert counts[PROBS == 0].sum() == 0
    assert chi_square_p_value(counts, PROBS) > ALPHA
    # torch.multinomial draws from the same distribution (its own random numbers)
    theirs = torch.bincount(torch.multinomial(PROBS, n, replacement=True, generator=generator(1)), minlength=10)
    assert chi_square_p_value(theirs, PROBS) > ALPHA
    # two samples, one test: pooled frequencies as the expected distribution (df = support - 1)
    pooled = (counts + theirs).double() / (2 * n)
    assert chi_square_p_value(counts, pooled) > ALPHA and chi_square_p_value(theirs, pooled) > ALPHA


def _off_by_one(probs, uniforms):
    return torch.clamp(sample_from_probs(probs, uniforms) + 1, max=probs.shape[-1] - 1)


def _first_cdf_at_least_u(probs, uniforms):  # u <= cdf instead of u < cdf; also picks 0-prob tokens at u = 0
    return (torch.cumsum(probs, -1) < uniforms[..., None]).sum(-1)


def _temperature_after_softmax(probs, uniforms):  # p / T without renormalising (T = 0.5)
    return sample_from_probs(probs / 0.5, uniforms)


def test_chi_square_false_failure_rate_is_measured():
    level, n_seeds, n = 0.01, 2000, 2000
    failures = sum(chi_square_p_value(draw(PROBS, n, seed), PROBS) < level for seed in range(n_seeds))
    assert 8 <= failures <= 35, failures  # expected 20 (1 %); the test's own rate is what it says
    for wrong in (_off_by_one, _temperature_after_softmax):
        caught = sum(chi_square_p_value(draw(PROBS, n, seed, wrong), PROBS) < ALPHA for seed in range(20))
        assert caught == 20, wrong.__name__
    # u <= cdf differs from u < cdf only on a set of probability zero: not a statistical matter,
    # which is why the inverse-CDF test above probes the boundaries themselves
    assert _first_cdf_at_least_u(torch.tensor([[0.0, 1.0]]), torch.tensor([0.0])).item() == 0


def test_top_k_keeps_the_k_largest_and_ties_with_the_kth():
    logits = torch.tensor([[1.0, 5.0, 3.0, 3.0, -2.0], [0.0, 0.1, 0.2, 0.3, 0.4]])
    out = top_k_filter(logits, 2)
    assert torch.isinf(out).tolist() == [[True, False, False, False, True], [True, True, True, False, False]]
    assert torch.equal(out[~torch.isinf(out)], logits[~torch.isinf(out)])
    g = generator(3)
    x = torch.randn(4, 6, 50, generator=g)
    kept = ~torch.isinf(top_k_filter(x, 7))
    assert torch.equal(kept, torch.zeros_like(kept).scatter(-1, torch.topk(x, 7).indices, True))
    assert torch.equal(top_k_filter(x, 50), x)
    for k in (0, 51):
        with pytest.raises(ValueError, match="1..d_vocab"):
            top_k_filter(x, k)


def test_top_p_keeps_the_token_that_crosses_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    kept = lambda p: (~torch.isinf(top_p_filter(logits, p))).tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False]  # 0.5 reaches p exactly: nothing more needed
    assert kept(0.6) == [True, True, False, False]  # 0.5 < 0.6: the 0.3 that crosses it is kept
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(0.01) == [True, False, False, False]  # the most likely token always survives
    assert kept(1.0) == [True, True, True, True]
    # order in the row does not matter, ties with the last kept token are kept
    shuffled = torch.tensor([0.15, 0.5, 0.05, 0.3]).log()
    assert (~torch.isinf(top_p_filter(shuffled, 0.6))).tolist() == [False, True, False, True]
    ties = torch.tensor([0.4, 0.2, 0.2, 0.2]).log()
    assert (~torch.isinf(top_p_filter(ties, 0.5))).all()
    with pytest.raises(ValueError):
        top_p_filter(logits, 0.0)


def test_top_p_matches_a_sort_free_oracle():
    g = generator(4)
    logits = torch.randn(50, 30, generator=g) * 3
    for p in (0.1, 0.5, 0.9, 0.99):
        probs = logits.softmax(-1)
        # token i is kept when the tokens strictly more likely than it hold less than p
        above = (probs[:, None, :] * (probs[:, None, :] > probs[:, :, None])).sum(-1)
        assert torch.equal(~torch.isinf(top_p_filter(logits, p)), above < p)


def test_filtered_sampling_follows_the_renormalised_distribution():
    logits = PROBS.clamp_min(1e-9).log()
    for kwargs in ({"top_k": 3}, {"top_p": 0.7}, {"temperature": 0.5}, {"temperature": 2.0, "top_k": 5}):
        n = 20_000
        tokens = sample_next(logits.expand(n, -1), torch.rand(n, generator=generator(5)), **kwargs)
        z = logits / kwargs.get("temperature", 1.0)
        if "top_k" in kwargs:
            z = torch.where(z >= torch.topk(z, kwargs["top_k"]).values[-1], z, float("-inf"))
        if "top_p" in kwargs:
            z = torch.where(torch.isin(torch.arange(10), torch.tensor([0, 2, 3])), z, float("-inf"))  # 0.3, 0.25, then 0.2 crosses 0.7
        target = z.softmax(-1)
        counts = torch.bincount(tokens, minlength=10)
        assert counts[target == 0].sum() == 0, kwargs
        assert chi_square_p_value(counts, target) > ALPHA, kwargs


def test_temperature_divides_logits_and_zero_is_greedy():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    torch.testing.assert_close(apply_temperature(logits, 0.5), logits * 2)
    assert sample_next(logits, torch.tensor([0.99]), temperature=0).item() == 1
    with pytest.raises(ValueError, match="greedy"):
        apply_temperature(logits, 0.0)
    # low temperature concentrates on the argmax, high flattens towards uniform
    for t, lo, hi in ((0.1, 0.99, 1.0), (100.0, 0.33, 0.34)):
        p = apply_temperature(logits, t).softmax(-1)[0, 1].item()
        assert lo <= p <= hi


def test_generate_is_repeatable_and_keeps_to_the_context():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    prompt = torch.randint(0, 65, (2, 3))
    a = generate(model, prompt, 20, temperature=1.0, top_k=10, generator=generator(7))
    b = generate(model, prompt, 20, temperature=1.0, top_k=10, generator=generator(7))
    assert a.shape == (2, 23) and torch.equal(a, b) and torch.equal(a[:, :3], prompt)
    greedy = generate(model, prompt, 5, temperature=0)
    from solutions.blocks import generate_greedy

    assert torch.equal(greedy, generate_greedy(model, prompt, 5))


# --- training ---------------------------------------------------------------------------------


def _data():
    torch.manual_seed(0)
    return torch.randint(0, 65, (5000,)), torch.randint(0, 65, (1000,))


def _run(tmp_path, name, **kwargs):
    torch.manual_seed(0)
    model = GPT(tiny_config())
    config = TrainConfig(batch=4, seq=16, steps=12, max_lr=1e-2, warmup_steps=3, eval_interval=4,
                         eval_batches=2, checkpoint_interval=0)
    train_data, val_data = _data()
    history = train(model, train_data, val_data, config, checkpoint=tmp_path / name, progress=False, **kwargs)
    return model, history


def test_linear_schedule_warms_up_like_the_cosine_then_falls_in_a_straight_line():
    kw = dict(max_lr=1.0, min_lr=0.0, warmup_steps=10, max_steps=110)
    assert [T.lr_linear(s, **kw) for s in range(11)] == [lr_at(s, **kw) for s in range(11)]
    assert T.lr_linear(60, **kw) == pytest.approx(0.5) and T.lr_linear(85, **kw) == pytest.approx(0.25)
    assert T.lr_linear(110, **kw) == 0.0 and T.lr_linear(500, 1.0, 0.1, 10, 110) == 0.1
    rates = [T.lr_linear(s, **kw) for s in range(10, 111)]
    steps = {round(a - b, 12) for a, b in zip(rates, rates[1:])}
    assert steps == {0.01}  # the same decrement every step
    with pytest.raises(ValueError):
        T.lr_linear(0, 1.0, 0.1, 10, 5)


def test_train_follows_the_schedule_it_is_given(tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(batch=4, seq=16, steps=10, max_lr=1e-2, min_lr=0.0, warmup_steps=2, eval_batches=0,
                         schedule="linear")
    history = train(GPT(tiny_config()), *_data(), config, progress=False)
    assert history["lr"] == [T.lr_linear(s, 1e-2, 0.0, 2, 10) for s in range(10)]
    with pytest.raises(ValueError, match="schedule must be one of"):
        train(GPT(tiny_config()), *_data(), dataclasses.replace(config, schedule="step"), progress=False)


def test_training_lowers_the_loss_and_records_its_history(tmp_path):
    text = T.load_tiny_shakespeare()[:20_000]
    tokenizer = T.CharTokenizer(text)
    data = torch.tensor(tokenizer.encode(text))
    torch.manual_seed(0)
    model = GPT(tiny_config(d_vocab=tokenizer.vocab_size))
    config = TrainConfig(batch=8, seq=16, steps=40, max_lr=2e-2, min_lr=2e-3, warmup_steps=5,
                         eval_interval=20, eval_batches=3)
    history = train(model, data[:18_000], data[18_000:], config, progress=False)
    assert len(history["loss"]) == len(history["lr"]) == 40 and history["step"] == 40
    assert [e["step"] for e in history["eval"]] == [20, 40]
    assert history["loss"][0] == pytest.approx(math.log(tokenizer.vocab_size), abs=0.1)
    assert history["eval"][-1]["train"] < 3.3 < math.log(tokenizer.vocab_size)
    assert history["lr"][:2] == [lr_at(0, 2e-2, 2e-3, 5, 40), lr_at(1, 2e-2, 2e-3, 5, 40)]


def test_resuming_after_an_interruption_gives_the_same_losses(tmp_path):
    full_model, full = _run(tmp_path, "full.pt")
    _, first = _run(tmp_path, "resumed.pt", stop_at=5)
    assert len(first["loss"]) == 5
    resumed_model, resumed = _run(tmp_path, "resumed.pt", resume=True)  # a fresh model, restored
    assert resumed["loss"] == full["loss"]  # bit for bit
    assert [e["step"] for e in resumed["eval"]] == [4, 8, 12]
    for a, b in zip(resumed["eval"], full["eval"]):
        assert (a["train"], a["val"]) == (b["train"], b["val"])
        assert a["seconds"] >= 0 and b["seconds"] >= 0
    assert resumed["seconds"] >= first["seconds"]  # training time adds up across the interruption
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    _, full = _run(tmp_path, "full.pt")
    calls = {"n": 0}
    original = T.lr_at

    def interrupt_at_step_7(step, *args):
        calls["n"] += 1
        if step == 7:
            raise KeyboardInterrupt
        return original(step, *args)

    monkeypatch.setattr(T, "lr_at", interrupt_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "ctrl_c.pt")
    monkeypatch.setattr(T, "lr_at", original)
    state = torch.load(tmp_path / "ctrl_c.pt", weights_only=True)
    assert state["step"] == 7 and len(state["history"]["loss"]) == 7
    _, resumed = _run(tmp_path, "ctrl_c.pt", resume=True)
    assert resumed["loss"] == full["loss"]


def test_our_adamw_trains_like_torchs(tmp_path):
    _, theirs = _run(tmp_path, "a.pt")
    _, ours = _run(tmp_path, "b.pt", optimizer_class=AdamW)
    torch.testing.assert_close(torch.tensor(ours["loss"]), torch.tensor(theirs["loss"]), rtol=1e-5, atol=1e-5)


def test_train_refuses_a_window_longer_than_the_context(tmp_path):
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match="n_ctx = 16"):
        train(model, *_data(), TrainConfig(seq=32, steps=1), progress=False)


# --- the shipped checkpoint -------------------------------------------------------------------


def test_shipped_checkpoint_is_small_loads_and_writes_shakespeare():
    from solutions.tokenization import _data_file

    path = _data_file(T.CHECKPOINT)
    if not path.is_file():
        pytest.skip("the trained checkpoint is not shipped in this checkout")
    assert path.stat().st_size < 4 * 2**20
    model, tokenizer, meta = T.load_checkpoint_model()
    assert tokenizer.vocab_size == 65 and model.config.d_vocab == 65
    assert meta["val_loss"] <= 1.8 and len(meta["history"]["loss"]) == meta["step"]
    _, _, val_data = T.shakespeare_data()
    loss = T.estimate_loss(model, val_data, 12, model.config.n_ctx, 5, seed=2)
    assert loss < 1.9

    def common_word_share(m) -> float:
        """The share of the common English words in 5 samples of 200 characters (one sample alone
        is too noisy to judge a model by: the shipped one gives 3 to 9 of about 40 words)."""
        words = []
        for seed in range(5):
            ids = generate(m, torch.tensor([tokenizer.encode("ROMEO:")]), 200, temperature=0.8, generator=generator(seed))
            words += tokenizer.decode(ids[0]).split()
        common = {"the", "and", "i", "to", "of", "my", "you", "a"}
        return sum(w.strip(".,;:!?'").lower() in common for w in words) / max(len(words), 1)

    assert common_word_share(model) >= 0.08  # about 0.15 for the shipped model
    torch.manual_seed(0)
    assert common_word_share(GPT(model.config).eval()) < 0.05  # untrained: only "a" and "i" by chance (0.025)
