"""Check specs for chapter 6, training and sampling: one :class:`Spec` per exercise.

Every exercise is a function of tensors and numbers, deterministic given its inputs (a random
choice takes its offsets or uniform numbers as an argument), so each is checked exactly, on any
device. Inputs come from a ``torch.Generator`` seeded by the check's seed, on the CPU. Each rule
the notebook states has a targeted case (the shift by one, logits of +-1000, bias correction at
step 1, eps where the gradient is tiny, the end of the warm-up, ties at the k-th logit, the token
that crosses p, a uniform number exactly on a boundary); random cases of several sizes follow.
Every ValueError range a statement gives is tried at its boundary and beyond it (``_outside``: a
guard written for the boundary alone, ``if step == 0``, fails the second); the exercises whose
result keeps its input's dtype are tried in float16 and bfloat16 too (``families``).
"""

from __future__ import annotations

import math
import random

import torch

from solutions import blocks as ref_blocks
from solutions import training as ref
from solutions.checks.core import Case, Mistake, Spec

CHAPTER = "06_training"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _validated(reference, wrong):
    """``wrong``, after the reference's own input checks: a learner who validates as the exercise
    asks and makes this one mistake agrees with it on every case, so the hint can name it."""

    def variant(*args):
        reference(*args)  # raises for the inputs the exercise refuses
        return wrong(*args)

    return variant


def _outside(case_for, first, further, mentions=()):
    """The cases of one stated ValueError range: its first value outside (the boundary: seq = 0,
    step = 0, k = 0, p = 0) and one further out (seq = -2, step = -1, k = -1, p = -0.5). A guard
    written for the boundary alone (``if seq == 0``) refuses the first and lets the second
    through, to a RuntimeError or a silently wrong result; every range an exercise states gets
    both. ``case_for(value)`` makes the case; ``mentions``: what the message must name."""
    cases = []
    for value in (first, further):
        case = case_for(value)
        case.mentions = tuple(mentions)
        cases.append(case)
    return cases


# --- get_batch ----------------------------------------------------------------------------------


def _cases_get_batch(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for _ in range(3):
        n, seq, batch = rng.randint(30, 60), rng.randint(4, 9), rng.randint(2, 3)
        data = torch.randint(0, 65, (n,), generator=g)
        starts = torch.randint(0, n - seq, (batch,), generator=g)
        starts[0] = n - seq - 1  # the last window that still has a target for its last position
        cases.append(Case((data, starts, seq), label="random starts, the last possible one first"))
    data = torch.arange(100, 140, dtype=torch.int32)  # ids equal to positions + 100: a shift shows
    cases.append(Case((data, torch.tensor([0, 7, 33], dtype=torch.int32), 6),
                      label="int32 ids 100, 101, ... and int32 starts; x and y are int64"))
    cases.append(Case((torch.randint(0, 65, (20,), generator=g), torch.tensor([3]), 1), label="seq = 1"))
    # token ids of every integer dtype (a byte-level stream is uint8; nanoGPT keeps its tokens in 16
    # bits), starts too; the wire to the grader carries no uint16, so int16 stands for 16 bits
    cases.append(Case((torch.arange(200, 240).to(torch.uint8), torch.tensor([0, 30], dtype=torch.uint8), 5),
                      label="uint8 ids 200, 201, ... and uint8 starts"))
    cases.append(Case((torch.arange(1000, 1040).to(torch.int16), torch.tensor([9, 2], dtype=torch.int16), 7),
                      label="int16 ids 1000, 1001, ... and int16 starts"))
    cases.append(Case((torch.arange(40).to(torch.int8), torch.tensor([4, 1]), 3), label="int8 ids"))
    # positions start + t past 255 with uint8 starts: made in the starts' dtype they wrap around
    cases.append(Case((torch.arange(300) % 97, torch.tensor([250, 3], dtype=torch.uint8), 10),
                      label="uint8 starts of 250 with seq = 10 (positions up to 260)"))
    # the largest allowed start is 15 (n = 20, seq = 4): the message names it
    cases += _outside(lambda s: Case((torch.arange(20), torch.tensor([2, s]), 4), label=f"a start of {s} (n = 20, seq = 4)"),
                      16, 30, mentions=("15",))
    cases += _outside(lambda s: Case((torch.arange(20), torch.tensor([s, 2]), 4), label=f"a start of {s} (n = 20, seq = 4)"),
                      -1, -6, mentions=("15",))
    cases.append(Case((torch.arange(40).reshape(2, 20), torch.tensor([1, 2]), 4), label="data of two axes"))
    cases.append(Case((torch.arange(20), torch.tensor([[1, 2]]), 4), label="starts of two axes"))
    cases.append(Case((torch.rand(20, generator=g), torch.tensor([1, 2]), 4), label="float data"))
    cases.append(Case((torch.arange(20), torch.tensor([1.0, 2.0]), 4), label="float starts"))
    cases.append(Case((torch.arange(20) % 2 == 0, torch.tensor([1, 2]), 4), label="bool data (not an integer dtype)"))
    cases += _outside(lambda s: Case((torch.arange(20), torch.tensor([1, 2]), s), label=f"seq = {s}"), 0, -2)
    return cases


def _batch_not_shifted(data, starts, seq):
    offsets = starts[:, None] + torch.arange(seq)
    return data[offsets].long(), data[offsets].long()


def _batch_shift_two(data, starts, seq):
    offsets = starts[:, None] + torch.arange(seq)
    return data[offsets].long(), data[(offsets + 2).clamp(max=len(data) - 1)].long()


def _batch_strict_limit(data, starts, seq):
    largest = len(data) - seq - 2  # one window too few: the last start with a target is refused
    if starts.min() < 0 or starts.max() > largest:
        raise ValueError(f"starts must lie in 0..{largest}")
    offsets = starts[:, None] + torch.arange(seq)
    return data[offsets].long(), data[offsets + 1].long()


# --- log_softmax and cross_entropy ------------------------------------------------------------


def _logit_cases(rng: random.Random, g: torch.Generator) -> list[tuple[torch.Tensor, str]]:
    out = []
    for _ in range(3):
        b, s, v = rng.randint(2, 3), rng.randint(4, 6), rng.randint(7, 13)
        out.append((3 * torch.randn(b, s, v, generator=g), "random logits (batch, seq, d_vocab)"))
    big = 1000 * torch.sign(torch.randn(2, 3, 5, generator=g))  # +-1000: exp overflows without the max
    big[0, 0] = torch.tensor([1000.0, 999.0, -1000.0, 998.0, 0.0])
    out.append((big, "logits of +-1000"))
    scales = torch.tensor([[[1000.0, 999.0, 998.0, 990.0], [0.0, -1.0, -2.0, 3.0], [-500.0, -501.0, -499.0, -510.0]]])
    out.append((scales, "rows of very different sizes: each row has its own maximum"))
    # float32 cannot hold them to within 0.005: float64 must be computed in float64
    out.append((torch.randn(2, 4, 9, generator=g, dtype=torch.float64) * 5 - 1e5, "float64 logits near -100,000"))
    return out


def _cases_log_softmax(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = [Case((x,), label=label) for x, label in _logit_cases(rng, g)]
    masked = torch.randn(2, 3, 6, generator=g)
    masked[..., -2:] = float("-inf")  # filtered tokens (top-k): probability 0, log probability -inf
    cases.append(Case((masked,), label="some logits -inf"))
    cases.append(Case((torch.randn(5, 8, generator=g),),  label="two axes (rows, d_vocab)"))
    return cases


def _log_softmax_naive(logits):
    return torch.log(torch.exp(logits) / torch.exp(logits).sum(dim=-1, keepdim=True))


def _log_softmax_no_max(logits):
    return logits - torch.log(torch.exp(logits).sum(dim=-1, keepdim=True))


def _log_softmax_wrong_axis(logits):
    m = logits.max(dim=0, keepdim=True).values
    return logits - m - torch.log(torch.exp(logits - m).sum(dim=0, keepdim=True))


def _cases_cross_entropy(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for logits, label in _logit_cases(rng, g):
        targets = torch.randint(0, logits.shape[-1], logits.shape[:2], generator=g)
        targets[0, 0], targets[-1, -1] = 0, logits.shape[-1] - 1
        cases.append(Case((logits, targets), label=label))
    uniform = torch.zeros(2, 3, 65)
    cases.append(Case((uniform, torch.randint(0, 65, (2, 3), generator=g)), label="equal logits: the loss is ln(65)"))
    # the message names d_vocab's value, 7
    cases += _outside(lambda i: Case((torch.randn(2, 3, 7, generator=g), torch.tensor([[0, 1, i], [2, 3, 4]])),
                                     label=f"a target id of {i} (d_vocab = 7)"), 7, 12, mentions=("7",))
    cases += _outside(lambda i: Case((torch.randn(2, 3, 7, generator=g), torch.tensor([[0, 1, 2], [i, 3, 4]])),
                                     label=f"a target id of {i} (d_vocab = 7)"), -1, -5, mentions=("7",))
    cases.append(Case((torch.randn(2, 3, 7, generator=g), torch.zeros(3, 2, dtype=torch.long)), label="targets (seq, batch)"))
    cases.append(Case((torch.randn(2, 3, 7, generator=g), torch.zeros(2, 3)), label="float targets"))
    cases.append(Case((torch.randn(6, 7, generator=g), torch.zeros(6, dtype=torch.long)), label="logits of two axes"))
    cases.append(Case((torch.randn(2, 3, 1, 7, generator=g), torch.zeros(2, 3, 1, dtype=torch.long)),
                      label="logits of four axes"))
    return cases


def _ce_sum(logits, targets):
    return -ref.log_softmax(logits).gather(-1, targets[..., None]).sum()


def _ce_naive(logits, targets):
    probs = torch.softmax(logits, dim=-1)
    return -torch.log(probs.gather(-1, targets[..., None])).mean()


def _ce_no_minus(logits, targets):
    return ref.log_softmax(logits).gather(-1, targets[..., None]).mean()


def _ce_mean_over_vocab(logits, targets):
    logprobs = ref.log_softmax(logits)
    onehot = torch.nn.functional.one_hot(targets, logits.shape[-1]).to(logits.dtype)
    return -(logprobs * onehot).mean()


# --- adamw_update -------------------------------------------------------------------------------


def _cases_adamw_update(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []

    def case(shape, step, lr, beta1, beta2, eps, wd, label, grad_scale=1.0, fresh=False, zeros=False):
        param = torch.randn(shape, generator=g)
        grad = grad_scale * torch.randn(shape, generator=g)
        if zeros:  # rows of an embedding whose tokens are not in the batch: decay still applies
            grad[::2] = 0.0
        m = torch.zeros(shape) if fresh else 0.1 * torch.randn(shape, generator=g)
        v = torch.zeros(shape) if fresh else (0.1 * torch.randn(shape, generator=g)) ** 2
        if grad_scale < 1e-3 and not fresh:
            m, v = m * grad_scale, v * grad_scale**2
        cases.append(Case((param, grad, m, v, step, lr, beta1, beta2, eps, wd), label=label))

    case((3, 4), 1, 1e-2, 0.9, 0.999, 1e-8, 0.1, "the first step: zero moments, bias correction at its largest", fresh=True)
    case((5,), 2, 3e-3, 0.9, 0.95, 1e-8, 0.1, "step 2, GPT-3's beta2 = 0.95")
    case((2, 3, 4), 10, 1e-3, 0.8, 0.99, 1e-8, 0.0, "step 10, no weight decay")
    case((4, 3), 1000, 6e-4, 0.9, 0.95, 1e-8, 0.1, "step 1000: bias correction near 1")
    case((6,), 3, 0.5, 0.9, 0.999, 1e-8, 0.5, "a large lr and weight decay: decoupled decay shows")
    case((3, 5), 5, 1e-2, 0.9, 0.999, 1e-6, 0.0, "tiny gradients: eps decides the step", grad_scale=1e-7)
    case((4,), 1, 1e-2, 0.0, 0.0, 1e-8, 0.0, "beta1 = beta2 = 0: the sign of the gradient", fresh=True)
    case((6, 3), 4, 0.1, 0.9, 0.999, 1e-8, 0.1, "gradients exactly 0 in some rows: the decay applies to every entry", zeros=True)
    for _ in range(2):
        shape = (rng.randint(2, 5), rng.randint(2, 5))
        case(shape, rng.randint(1, 50), 10 ** rng.uniform(-4, -1), rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999),
             1e-8, rng.choice([0.0, 0.01, 0.1]), "random settings")
    # the defaults (beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0.01): a later step with a large lr
    # shows the betas and the decay, a first step with gradients of 1e-8 shows eps
    shape = (3, 4)
    param, grad = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    m, v = 0.1 * torch.randn(shape, generator=g), (0.1 * torch.randn(shape, generator=g)) ** 2
    cases.append(Case((param, grad, m, v, 3, 0.1), label="step 3, lr 0.1, the default betas, eps and weight_decay"))
    param, grad = torch.randn(shape, generator=g), 1e-8 * torch.randn(shape, generator=g)
    cases.append(Case((param, grad, torch.zeros(shape), torch.zeros(shape), 1, 0.1),
                      label="the first step with gradients near 1e-8 and the default eps"))
    cases += _outside(lambda step: Case((torch.zeros(2), torch.ones(2), torch.zeros(2), torch.zeros(2), step, 1e-3, 0.9,
                                         0.999, 1e-8, 0.0), label=f"step {step} (steps count from 1)"), 0, -1)
    # one shape for all four: every way of splitting them into two groups, the second group of a
    # shape that broadcasts to the first's ((3,) against (2, 3)), so that no comparison of pairs
    # (param with grad, exp_avg with exp_avg_sq) and no broadcasting lets a wrong shape through
    names = ("param", "grad", "exp_avg", "exp_avg_sq")
    for odd in ((0,), (1,), (2,), (3,), (0, 1), (0, 2), (0, 3)):
        tensors = tuple(torch.ones(3) if i in odd else torch.ones(2, 3) for i in range(4))
        cases.append(Case((*tensors, 1, 1e-3), label=f"{' and '.join(names[i] for i in odd)} of shape (3,), "
                                                      f"the others (2, 3)"))
    cases.append(Case((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(1, 3), 1, 1e-3),
                      label="exp_avg_sq (1, 3), the others (2, 3)"))
    return cases


def _adamw(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.01, *, correct=True,
           decay="decoupled", eps_inside=False):  # the defaults of the exercise (some cases leave them out)
    if step < 1:
        raise ValueError("step counts from 1")
    if decay == "l2":  # Adam with L2 regularisation: the decay goes through the moments
        grad = grad + wd * param
    elif decay == "decoupled":
        param = param * (1 - lr * wd)
    elif decay == "no lr":
        param = param * (1 - wd)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat, v_hat = (m / (1 - beta1**step), v / (1 - beta2**step)) if correct else (m, v)
    denom = torch.sqrt(v_hat + eps) if eps_inside else torch.sqrt(v_hat) + eps
    param = param - lr * m_hat / denom
    if decay == "after":
        param = param * (1 - lr * wd)
    return param, m, v


# --- clip_grad_norm -----------------------------------------------------------------------------


def _cases_clip_grad_norm(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for max_norm, label in ((1.0, "a global norm above max_norm"), (100.0, "a global norm below max_norm: unchanged")):
        grads = [torch.randn(rng.randint(2, 4), rng.randint(2, 5), generator=g) for _ in range(3)]
        grads.append(torch.randn(rng.randint(3, 6), generator=g))
        cases.append(Case((grads, max_norm), label=label))
    # each tensor below the limit, the whole above it: only global clipping scales them
    cases.append(Case(([torch.full((4,), 0.4), torch.full((2, 2), 0.4), torch.full((3,), 0.4)], 1.0),
                      label="every tensor under max_norm, all together over it"))
    cases.append(Case(([3 * torch.randn(7, generator=g)], 0.5), label="one tensor"))
    cases.append(Case(([torch.zeros(3), torch.zeros(2, 2)], 1.0), label="zero gradients"))
    cases.append(Case(([], 1.0), label="no gradients"))
    # a global norm near 1e-6 and a smaller max_norm: the 1e-6 in the scale shows
    cases.append(Case(([1e-6 * torch.tensor([0.6, 0.8]), torch.zeros(2)], 1e-7), label="tiny gradients, max_norm 1e-7"))
    # the formula, not "clip only when over the limit": a norm of 1e-6 *under* max_norm = 1.5e-6 is
    # still scaled, by 1.5e-6 / (1e-6 + 1e-6) = 0.75, as torch.nn.utils.clip_grad_norm_ does
    cases.append(Case(([torch.tensor([6e-7, 8e-7]), torch.zeros(3)], 1.5e-6),
                      label="a global norm of 1e-6 under max_norm = 1.5e-6: the + 1e-6 makes the scale 0.75"))
    cases += _outside(lambda limit: Case(([torch.tensor([3.0]), torch.tensor([0.0, 4.0])], limit),
                                         label=f"max_norm = {limit}"), 0.0, -1.0)
    cases += _outside(lambda limit: Case(([], limit), label=f"no gradients and max_norm = {limit}"), 0.0, -1.0)
    # float16 gradients whose squares add up past 65504, float16's largest number: summed in
    # float16 the norm is inf and every gradient becomes 0; measured in float32 it is about 450
    half = [(150 * torch.randn(6, generator=g)).half(), (150 * torch.randn(3, 3, generator=g)).half()]
    cases.append(Case((half, 1.0), label="float16 gradients with a norm of a few hundred (float16 squares overflow)"))
    # float64 gradients keep float64: beyond float32's range, and an ordinary one
    huge = [1e25 * torch.randn(4, generator=g, dtype=torch.float64), 1e25 * torch.randn(2, 2, generator=g, dtype=torch.float64)]
    cases.append(Case((huge, 1.0), label="float64 gradients of about 1e25 (their squares overflow float32)"))
    cases.append(Case(([torch.randn(3, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)], 0.5),
                      label="float64 gradients: a float64 norm"))
    # float64 in the middle of float32 and float16 ones: the norm is float64 when *any* gradient is
    # (not only the first or the last); 1 + 1e-12 shows whether it was measured in float64
    mixed = [torch.randn(4, generator=g), torch.tensor([1.0 + 1e-12, 2.0], dtype=torch.float64),
             torch.randn(3, generator=g).half(), torch.randn(2, 2, generator=g)]
    cases.append(Case((mixed, 0.5), label="float32, float64, float16 and float32 gradients: a float64 norm"))
    return cases


def _clip(grads, max_norm, *, per_tensor=False, scale_up=False, sum_of_norms=False):
    if not grads:
        return [], torch.tensor(0.0)
    norms = torch.stack([g.norm() for g in grads])
    total = norms.sum() if sum_of_norms else norms.norm()
    if per_tensor:
        return [g * torch.clamp(max_norm / (g.norm() + 1e-6), max=1.0) for g in grads], total
    scale = max_norm / (total + 1e-6)
    return [g * (scale if scale_up else torch.clamp(scale, max=1.0)) for g in grads], total


def _clip_over_limit_only(grads, max_norm):
    clipped, total = ref.clip_grad_norm(grads, max_norm)
    if total <= max_norm:  # "under the limit: unchanged", which the formula is not near tiny norms
        return [g.clone() for g in grads], total
    return clipped, total


def _clip_first_dtype(grads, max_norm):
    if not grads:
        return [], torch.tensor(0.0)
    precise = torch.float64 if grads[0].dtype == torch.float64 else torch.float32
    total = torch.stack([g.to(precise).norm() for g in grads]).norm()
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * scale.to(g.dtype) for g in grads], total


def _clip_norm_after(grads, max_norm):
    clipped, _ = ref.clip_grad_norm(grads, max_norm)
    total = torch.stack([g.norm() for g in clipped]).norm() if clipped else torch.tensor(0.0)
    return clipped, total


# --- lr_at ----------------------------------------------------------------------------------------


def _cases_lr_at(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    # (1, 0, 4, 12): integer rates; the result is a float all the same
    schedules = [(6e-4, 6e-5, 10, 100), (1e-3, 0.0, 5, 25), (1.0, 0.1, 0, 20), (3e-4, 3e-5, 8, 8), (1, 0, 4, 12)]
    schedules.append((10 ** rng.uniform(-4, -2), 0.0, rng.randint(2, 20), rng.randint(30, 200)))
    for max_lr, min_lr, warmup, max_steps in schedules:
        last = max_steps + 3
        steps = sorted({0, 1, max(warmup - 1, 0), warmup, warmup + 1, (warmup + max_steps) // 2, max_steps - 1,
                        max_steps, max_steps + 1, last, rng.randint(0, last)})
        for step in steps:
            cases.append(Case((step, max_lr, min_lr, warmup, max_steps),
                              label=f"step {step} of warm-up {warmup}, max_steps {max_steps}"))
    cases += _outside(lambda step: Case((step, 1e-3, 0.0, 5, 20), label=f"step {step}"), -1, -4)
    cases += _outside(lambda warmup: Case((3, 1e-3, 0.0, warmup, 20), label=f"warmup_steps = {warmup}"), -1, -3)
    cases += _outside(lambda last: Case((3, 1e-3, 0.0, 10, last), label=f"max_steps = {last} before the end of the "
                                        f"warm-up (10)"), 9, 2)
    return cases


def _lr(step, max_lr, min_lr, warmup, max_steps, *, from_zero=False, to_zero=False, over_all=False, clamp=True):
    if step < 0 or warmup < 0 or max_steps < warmup:
        raise ValueError("bad schedule")
    if step < warmup:
        return max_lr * (step if from_zero else step + 1) / warmup
    if step >= max_steps and clamp:
        return 0.0 if to_zero else min_lr
    floor = 0.0 if to_zero else min_lr
    ratio = step / max_steps if over_all else (step - warmup) / max(max_steps - warmup, 1)
    return floor + 0.5 * (1 + math.cos(math.pi * ratio)) * (max_lr - floor)


# --- weight_decay_groups ----------------------------------------------------------------------------


def _model_names(**fields) -> list[str]:
    with torch.random.fork_rng(devices=[]):
        model = ref_blocks.GPT(ref_blocks.Config(**fields))
    return [n for n, _ in model.named_parameters()]


def _cases_weight_decay_groups(seed: int) -> list[Case]:
    rng = random.Random(seed)
    small = dict(d_model=8, n_heads=2, d_mlp=16, d_vocab=11, n_ctx=6, n_layers=2)
    gpt2 = _model_names(**small)
    llama = _model_names(**small, norm="rmsnorm", mlp="swiglu", positions="rope", bias=False, tie_embeddings=False)
    shuffled = list(gpt2 + ["W_U"])
    rng.shuffle(shuffled)
    return [
        Case((gpt2,), label="the names of a GPT-2-style model (tied embeddings)"),
        Case((llama,), label="the names of a LLaMA-style model (RMSNorm, SwiGLU, own W_U)"),
        Case((shuffled,), label="the same names in another order: each list keeps the order given"),
        Case((["head.W_U", "W_E", "embed.W_pos", "ln.w", "ln.b", "attn.b_O", "mlp.W_in"],), label="a few names"),
        # the rule, not a list of known names: by the last part of the name only
        Case((["blocks.0.attn.W_proj", "W_x.b_in", "compose.W_in", "pos_mlp.W_out", "embed_proj.W_down", "W_E.w",
               "tok.w_in", "head.W_pos_scale", "head.W_Emb", "blocks.0.attn.W_xpos"],),
             label="names the model does not have, by the rule"),
        # the rule is "starts with W_": a capital W alone does not decay
        Case((["attn.Wqkv", "mlp.W_in", "head.Weight", "W", "ln.w", "blocks.1.WE", "W_out"],),
             label="last parts that start with W but not W_"),
        Case(([],), label="no parameters"),
        Case((["ln_final.w", "ln_final.b"],), label="nothing decays"),
        # a duplicate is an error wherever it is: among the names that decay, those that do not,
        # next to each other or apart
        Case((["a.W_Q", "a.W_Q"],), label="a name that decays, twice"),
        Case((["blocks.0.ln1.w", "blocks.0.attn.W_Q", "blocks.0.ln1.w"],), label="a name that does not decay, twice"),
        Case((["W_E", "blocks.0.mlp.W_in", "W_pos", "W_E"],), label="an embedding twice"),
    ]


def _groups_all_W(names):
    if len(set(names)) != len(names):
        raise ValueError("unique")
    decay = [n for n in names if n.split(".")[-1].startswith("W_")]
    return decay, [n for n in names if n not in decay]


def _groups_all_but_biases(names):
    if len(set(names)) != len(names):
        raise ValueError("unique")
    no = [n for n in names if n.split(".")[-1].startswith("b")]
    return [n for n in names if n not in no], no


def _groups_dup_decay_only(names):
    decay, no_decay = [], []
    for name in names:
        last = name.split(".")[-1]
        if last.startswith("W_") and last not in ("W_E", "W_pos"):
            if name in decay:
                raise ValueError("duplicate")
            decay.append(name)
        else:
            no_decay.append(name)
    return decay, no_decay


def _groups_swapped(names):
    decay, no_decay = ref.weight_decay_groups(names)
    return no_decay, decay


# --- sampling -----------------------------------------------------------------------------------


def _cases_apply_temperature(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = [Case((3 * torch.randn(2, 7, generator=g), t), label=f"temperature {t}") for t in (0.5, 2.0, 1.0)]
    cases.append(Case((torch.randn(2, 3, 9, generator=g, dtype=torch.float64), 0.7), label="float64 (batch, seq, d_vocab)"))
    cases.append(Case((torch.randn(3, 6, generator=g), round(rng.uniform(0.1, 3.0), 3)), label="a random temperature"))
    # a temperature far below 1 is still a division: close logits keep a real choice between them
    close = torch.tensor([[1.0, 1.0001, 0.9999, -2.0], [0.5, 0.5, 0.5002, 0.4]])
    cases.append(Case((close, 1e-4), label="temperature 1e-4, logits 1e-4 apart"))
    # every positive T, however small: no floor (max(T, 1e-5)) and no greedy shortcut below one
    tiny = torch.tensor([[0.0, 1e-8, -2e-8, 3e-8], [-1e-8, 0.0, 0.0, 1e-8]])
    cases.append(Case((tiny, 1e-8), label="temperature 1e-8, logits 1e-8 apart"))
    cases.append(Case((tiny.double() * 1e-4, 1e-12), label="float64, temperature 1e-12, logits 1e-12 apart"))
    # a division, not a product with 1 / T: 1 / 1e-309 overflows to inf (and 0 * inf is nan)
    subnormal = torch.tensor([[0.0, 1e-309, -2e-309], [1e-309, 0.0, 3e-309]], dtype=torch.float64)
    cases.append(Case((subnormal, 1e-309), label="float64, temperature 1e-309 (1 / T overflows)"))
    # the exercise: the message mentions greedy decoding
    cases += _outside(lambda t: Case((torch.randn(2, 5, generator=g), t), label=f"temperature {t}"), 0.0, -1.0,
                      mentions=("greedy",))
    return cases


def _temperature_floor(logits, temperature):
    if temperature <= 0:
        raise ValueError("temperature")
    return logits / max(temperature, 1e-5)


def _temperature_times(logits, temperature):
    if temperature <= 0:
        raise ValueError("temperature")
    return logits * temperature


def _temperature_on_probs(logits, temperature):
    if temperature <= 0:
        raise ValueError("temperature")
    return torch.log(torch.softmax(logits, dim=-1) / temperature)


def _cases_top_k_filter(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for _ in range(3):
        rows, v = rng.randint(2, 4), rng.randint(6, 11)
        cases.append(Case((torch.randn(rows, v, generator=g), rng.randint(2, v - 1)), label="random logits"))
    ties = torch.tensor([[1.0, 3.0, 2.0, 3.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    cases.append(Case((ties, 3), label="ties at the k-th largest value: all of them are kept"))
    logits = torch.randn(3, 7, generator=g)
    cases.append(Case((logits, 1), label="k = 1: only the largest"))
    cases.append(Case((logits, 7), label="k = d_vocab: nothing is removed"))
    cases.append(Case((torch.randn(2, 3, 8, generator=g), 4), label="three axes (batch, seq, d_vocab)"))
    # float64 logits 1e-12 apart around the k-th largest: float32 would make them one value
    near = torch.tensor([[1.0, 1.0 + 1e-12, 0.5, 1.0 - 1e-12, 2.0], [0.3, 0.3 - 1e-12, 0.3 + 2e-12, -1.0, 0.3]],
                        dtype=torch.float64)
    cases.append(Case((near, 2), label="float64 logits 1e-12 apart around the k-th largest"))
    for first, further in ((0, -1), (8, 15)):
        cases += _outside(lambda k: Case((torch.randn(2, 7, generator=g), k), label=f"k = {k} with d_vocab = 7"),
                          first, further, mentions=("7",))
    # three axes: d_vocab is the last one (9), not shape[1] (3)
    case = Case((torch.randn(2, 3, 9, generator=g), 10), label="k = 10 with logits (batch 2, seq 3, d_vocab 9)")
    case.mentions = ("9",)
    cases.append(case)
    return cases


def _topk_by_index(logits, k):
    index = torch.topk(logits, k, dim=-1).indices
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, index, logits.gather(-1, index))


def _topk_float32(logits, k):
    kth = torch.topk(logits.float(), k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits.float() < kth, float("-inf"))


def _topk_zero(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, 0.0)


def _topk_one_less(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits <= kth, float("-inf")) if k > 1 else logits.masked_fill(logits < kth, float("-inf"))


def _probs_row(probs: list[float]) -> torch.Tensor:
    return torch.log(torch.tensor(probs, dtype=torch.float64)).float()


def _cases_top_p_filter(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    order = [3, 0, 4, 1, 2]  # the probabilities are not sorted in the row
    crossing = torch.stack([_probs_row([0.5, 0.3, 0.1, 0.07, 0.03])[order], _probs_row([0.6, 0.2, 0.1, 0.06, 0.04])[order]])
    cases = [
        Case((crossing, 0.65), label="p = 0.65: the token that crosses p is kept"),
        Case((crossing, 0.3), label="p below the top probability: the top token alone"),
        Case((crossing, 1.0), label="p = 1: everything"),
        # e^-200 is 0 in float32: the mass before that token is already 1, which is not below p = 1
        Case((torch.tensor([[0.0, -200.0, 1.0]]), 1.0), label="p = 1 and a token of probability 0 in float32"),
        Case((_probs_row([0.4, 0.4, 0.1, 0.1])[None], 0.5), label="two equal top tokens"),
        Case((_probs_row([0.4, 0.3, 0.3, 0.0001])[None], 0.5), label="a tie with the token that crosses p: both kept"),
        # exp(-ln 2) rounds to exactly 0.5 in float32 (0.03 ulp away), so the probabilities are exactly
        # 0.5, 0.25, 0.25: the mass before the second token *equals* p = 0.5, and it is not kept
        Case((torch.tensor([[0.0, -math.log(2.0), -math.log(2.0)]]), 0.5), label="the mass before a token exactly p"),
    ]
    for _ in range(3):
        rows, v = rng.randint(2, 4), rng.randint(6, 12)
        cases.append(Case((2 * torch.randn(rows, v, generator=g), round(rng.uniform(0.2, 0.95), 2)), label="random logits"))
    cases.append(Case((torch.randn(2, 3, 9, generator=g), 0.7), label="three axes (batch, seq, d_vocab)"))
    # ties are between logits: 1e-8 and 0 are different logits with the same float32 probability 0.5
    cases.append(Case((torch.tensor([[1e-8, 0.0], [0.0, 1e-8]]), 0.5),
                      label="logits 1e-8 and 0 (equal probabilities in float32, different logits), p = 0.5"))
    masked = torch.randn(2, 8, generator=g)
    masked[:, :3] = float("-inf")
    cases.append(Case((masked, 0.9), label="after top-k: some logits already -inf"))
    cases += _outside(lambda p: Case((torch.randn(2, 5, generator=g), p), label=f"p = {p}"), 0.0, -0.5)
    cases += _outside(lambda p: Case((torch.randn(2, 5, generator=g), p), label=f"p = {p}"), math.nextafter(1.0, 2.0), 1.5)
    return cases


def _topp_exclusive(logits, p):
    sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
    cum = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    keep = cum <= p  # stops before the token that crosses p
    keep[..., 0] = True
    cutoff = sorted_logits.gather(-1, keep.sum(dim=-1, keepdim=True) - 1)
    return logits.masked_fill(logits < cutoff, float("-inf"))


def _topp_unsorted(logits, p):
    probs = torch.softmax(logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # in the row's own order, not by probability
    return logits.masked_fill(before >= p, float("-inf"))


def _cases_sample_from_probs(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    probs = torch.tensor([[0.25, 0.25, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5], [0.125, 0.125, 0.25, 0.5]])
    cases = [
        Case((probs, torch.tensor([0.0, 0.0, 0.999])), label="u = 0 and u near 1"),
        # 0.25, 0.5 and 0.5 are exactly values of the cdf: u < cdf[i] picks the next token
        Case((probs, torch.tensor([0.25, 0.5, 0.5])), label="u exactly on a boundary of the cdf"),
        Case((probs, torch.tensor([0.3, 0.49, 0.26])), label="u inside an interval"),
        Case((torch.tensor([[0.3, 0.3, 0.3999999, 0.0]]), torch.tensor([0.99999994])),
             label="rounding: the cdf ends below u; a token of probability 0 is never drawn"),
    ]
    for _ in range(3):
        rows, v = rng.randint(3, 6), rng.randint(5, 10)
        p = torch.softmax(2 * torch.randn(rows, v, generator=g), dim=-1)
        cases.append(Case((p, torch.rand(rows, generator=g)), label="random probabilities"))
    p = torch.softmax(torch.randn(2, 3, 6, generator=g), dim=-1)
    cases.append(Case((p, torch.rand(2, 3, generator=g)), label="three axes (batch, seq, d_vocab)"))
    cases.append(Case((torch.tensor([[0.1, 0.5, 0.3999999, 0.0]]), torch.tensor([0.99999994])),
                      label="rounding: the fallback is the last token of non-zero probability, not the likeliest"))
    # three axes, where each position's last token of non-zero probability differs
    p = torch.tensor([[[0.3, 0.3, 0.3999999, 0.0], [0.25, 0.25, 0.25, 0.25]]])
    cases.append(Case((p, torch.tensor([[0.99999994, 0.6]])), label="three axes, the cdf of one row ending below u"))
    # zeros anywhere in the row (after top-k / top-p they are): the fallback is still the last
    # token of non-zero probability, which is not the number of non-zero tokens minus 1
    p = torch.tensor([[0.3, 0.3, 0.0, 0.3999998, 0.0], [0.0, 0.5, 0.0, 0.0, 0.4999999], [0.0, 0.0, 1.0, 0.0, 0.0]])
    cases.append(Case((p, torch.tensor([0.9999999, 0.99999994, 0.7])),
                      label="zeros before and between the tokens, the cdf ending below u"))
    cases.append(Case((p, torch.tensor([0.3, 0.5, 0.0])), label="zeros before and between the tokens, u on a boundary"))
    # a tiny probability after large ones leaves the float32 cdf unchanged (0.99999994 + 1e-9 rounds
    # to 0.99999994): the last token of non-zero probability is not where the cdf reaches its maximum
    p = torch.tensor([[0.5, 0.49999994, 1e-9, 0.0], [0.25, 0.74999994, 3e-10, 2e-10]])
    cases.append(Case((p, torch.tensor([0.99999994, 0.99999994])),
                      label="a tiny last probability that does not change the float cdf, the cdf ending below u"))
    # float64 probabilities with float32 uniforms: the comparison is made in the probabilities'
    # precision (0.5 + 1e-12 is above u = 0.5; rounded to float32 it is not)
    p = torch.tensor([[0.5 + 1e-12, 0.5 - 1e-12], [0.25 + 1e-13, 0.75 - 1e-13]], dtype=torch.float64)
    cases.append(Case((p, torch.tensor([0.5, 0.25])), label="float64 probabilities 1e-12 from a float32 u"))
    cases.append(Case((torch.full((2, 4), 0.25), torch.rand(3, generator=g)), label="one uniform too many"))
    return cases


def _sample_le(probs, uniforms):
    cdf = torch.cumsum(probs, dim=-1)
    index = (cdf < uniforms[..., None]).sum(dim=-1)  # u <= cdf[i]: a boundary picks the earlier token
    return index.clamp(max=probs.shape[-1] - 1)


def _sample_count_nonzero(probs, uniforms):
    index = (torch.cumsum(probs, dim=-1) <= uniforms[..., None]).sum(dim=-1)
    last = (probs > 0).sum(dim=-1) - 1  # the last non-zero token only when every zero comes after it
    return torch.where(index >= probs.shape[-1], last, index)


def _temperature_greedy_below(logits, temperature):
    if temperature <= 0:
        raise ValueError("temperature")
    if temperature < 1e-3:  # "tiny T is greedy anyway"
        return torch.where(logits == logits.max(-1, keepdim=True).values, 0.0, float("-inf"))
    return logits / temperature


def _groups_capital_W(names):
    if len(set(names)) != len(names):
        raise ValueError("unique")
    decay = [n for n in names if n.split(".")[-1].startswith("W") and n.split(".")[-1] not in ("W_E", "W_pos")]
    return decay, [n for n in names if n not in decay]


def _sample_cdf_argmax(probs, uniforms):
    cdf = torch.cumsum(probs, dim=-1)
    index = (cdf <= uniforms[..., None]).sum(dim=-1)
    return torch.where(index >= probs.shape[-1], cdf.argmax(dim=-1), index)


def _sample_argmax(probs, uniforms):
    return probs.argmax(dim=-1)


def _sample_no_guard(probs, uniforms):
    cdf = torch.cumsum(probs, dim=-1)
    return (cdf <= uniforms[..., None]).sum(dim=-1).clamp(max=probs.shape[-1] - 1)


# ----------------------------------------------------------------------------------------------

SPECS = [
    Spec(
        name="get_batch",
        chapter=CHAPTER,
        reference=ref.get_batch,
        make_cases=_cases_get_batch,
        gradients=False,  # ids
        mistakes=[
            Mistake("not shifted", "the target of x[b, t] is the *next* token: y[b, t] = data[starts[b] + t + 1].", _validated(ref.get_batch, _batch_not_shifted)),
            Mistake("shifted by two", "y is x shifted by one token, not two.", _validated(ref.get_batch, _batch_shift_two)),
            Mistake("limit one too strict", "the largest allowed start is n - seq - 1: its window's last target is "
                    "data[n - 1], the last token.", _batch_strict_limit),
        ],
    ),
    Spec(
        name="log_softmax",
        chapter=CHAPTER,
        reference=ref.log_softmax,
        make_cases=_cases_log_softmax,
        families={0: ("float16", "bfloat16")},  # same dtype as the input: half-precision logits stay half
        forbids={name: "the exercise is the log-sum-exp trick itself: subtract the row's maximum, then "
                       "log(sum(exp(z - m))), with torch.max, torch.exp, torch.sum and torch.log."
                 for name in ("log_softmax", "special_log_softmax", "logsumexp", "special_logsumexp", "cross_entropy")},
        mistakes=[
            Mistake("naive", "log(softmax(z)) overflows (exp(1000) = inf) and underflows (log 0): compute "
                    "z - m - log(sum(exp(z - m))) with m the row's maximum.", _validated(ref.log_softmax, _log_softmax_naive)),
            Mistake("no max", "subtract the row's maximum before exp (log-sum-exp), so that no exp overflows.", _validated(ref.log_softmax, _log_softmax_no_max)),
            Mistake("wrong axis", "the softmax is over the vocabulary: the last axis, dim=-1.", _validated(ref.log_softmax, _log_softmax_wrong_axis)),
        ],
    ),
    Spec(
        name="cross_entropy",
        chapter=CHAPTER,
        reference=ref.cross_entropy,
        make_cases=_cases_cross_entropy,
        families={0: ("float16", "bfloat16")},  # a loss of the logits' dtype, half precision included
        forbids={
            **{name: "use your log_softmax (the exercise before) and pick each target's entry with gather: "
                     "F.cross_entropy and F.nll_loss are what the check compares with, not an answer."
               for name in ("cross_entropy", "nll_loss")},
            **{name: "use your own log_softmax, the exercise before, not torch's."
               for name in ("log_softmax", "special_log_softmax", "logsumexp", "special_logsumexp")},
        },
        uses={"log_softmax": ref.log_softmax},
        mistakes=[
            Mistake("sum", "the loss is the *mean* over the batch * seq positions, not the sum.", _validated(ref.cross_entropy, _ce_sum)),
            Mistake("naive", "take the log of the probabilities with log_softmax (log-sum-exp), not log(softmax(z)): "
                    "a probability that underflows to 0 gives inf.", _validated(ref.cross_entropy, _ce_naive)),
            Mistake("no minus", "the loss is the *negative* log-likelihood: -mean(log p(target)).", _validated(ref.cross_entropy, _ce_no_minus)),
            Mistake("mean over the vocabulary", "average over the positions only: pick each target's log probability "
                    "first, then take the mean of those batch * seq numbers.", _validated(ref.cross_entropy, _ce_mean_over_vocab)),
        ],
    ),
    Spec(
        name="adamw_update",
        chapter=CHAPTER,
        reference=ref.adamw_update,
        make_cases=_cases_adamw_update,
        gradients=False,  # an optimiser step: it runs on numbers outside the graph
        result_names=("the new param", "the new exp_avg", "the new exp_avg_sq"),
        # as torch.optim.AdamW: a half-precision parameter and its moments stay in its dtype
        families={0: ("float16", "bfloat16")},
        mistakes=[
            Mistake("no bias correction", "divide m by 1 - beta1^step and v by 1 - beta2^step (bias correction): both "
                    "start at 0.", _validated(ref.adamw_update, lambda *a: _adamw(*a, correct=False))),
            Mistake("L2, not decoupled", "AdamW's decay is decoupled: multiply param by (1 - lr * weight_decay); do not "
                    "add weight_decay * param to the gradient.", _validated(ref.adamw_update, lambda *a: _adamw(*a, decay="l2"))),
            Mistake("decay without lr", "the decay is scaled by the learning rate: param * (1 - lr * weight_decay).",
                    _validated(ref.adamw_update, lambda *a: _adamw(*a, decay="no lr"))),
            Mistake("decay after the step", "decay the parameter before the Adam step, as torch.optim.AdamW does.",
                    _validated(ref.adamw_update, lambda *a: _adamw(*a, decay="after"))),
            Mistake("eps inside", "eps is added to sqrt(v_hat), outside the square root.", _validated(ref.adamw_update, lambda *a: _adamw(*a, eps_inside=True))),
        ],
        points=2,
        tolerance=(1e-5, 1e-7),
    ),
    Spec(
        name="clip_grad_norm",
        chapter=CHAPTER,
        reference=ref.clip_grad_norm,
        make_cases=_cases_clip_grad_norm,
        result_names=("the clipped gradients", "total_norm"),
        gradients=False,  # it rescales gradients, outside the graph
        mistakes=[
            Mistake("per tensor", "clip by the *global* norm: one scale for all tensors, from the norm of all their "
                    "numbers together.", _validated(ref.clip_grad_norm, lambda *a: _clip(*a, per_tensor=True))),
            Mistake("always scaled", "the scale is never above 1: scale = min(1, max_norm / (total + 1e-6)), so "
                    "gradients well under max_norm keep their values.",
                    _validated(ref.clip_grad_norm, lambda *a: _clip(*a, scale_up=True))),
            Mistake("only over the limit", "compute scale = min(1, max_norm / (total_norm + 1e-6)) whatever the norm, "
                    "not only when total_norm > max_norm: near tiny norms the + 1e-6 decides (a norm of 1e-6 under "
                    "max_norm = 1.5e-6 is scaled by 0.75, as torch.nn.utils.clip_grad_norm_ does).",
                    _validated(ref.clip_grad_norm, _clip_over_limit_only)),
            Mistake("norm dtype from one gradient", "the norm is float64 when *any* gradient is float64 (float32 "
                    "otherwise): look at every gradient's dtype, not the first one's.",
                    _validated(ref.clip_grad_norm, _clip_first_dtype)),
            Mistake("sum of norms", "the global norm is sqrt(sum of every squared number), not the sum of the tensors' norms.",
                    _validated(ref.clip_grad_norm, lambda *a: _clip(*a, sum_of_norms=True))),
            Mistake("norm after clipping", "return the total norm *before* clipping (what clip_grad_norm_ returns).",
                    _clip_norm_after),
        ],
        # gradients of 1e-7 in one case (where the 1e-6 of the scale shows): an absolute tolerance
        # far below them; the others are of order 1, where the relative one decides
        tolerance=(1e-4, 1e-12),
    ),
    Spec(
        name="lr_at",
        chapter=CHAPTER,
        reference=ref.lr_at,
        make_cases=_cases_lr_at,
        float_not_int=True,  # the exercise: "returning a Python float"
        mistakes=[
            Mistake("warm-up from 0", "the warm-up gives max_lr * (step + 1) / warmup_steps: step 0 already learns.",
                    _validated(ref.lr_at, lambda *a: _lr(*a, from_zero=True))),
            Mistake("decays to 0", "the cosine ends at min_lr, not 0: min_lr + 0.5 (1 + cos(pi ratio)) (max_lr - min_lr).",
                    _validated(ref.lr_at, lambda *a: _lr(*a, to_zero=True))),
            Mistake("ratio over all steps", "the cosine's ratio counts from the end of the warm-up: "
                    "(step - warmup_steps) / (max_steps - warmup_steps).", _validated(ref.lr_at, lambda *a: _lr(*a, over_all=True))),
            Mistake("no floor", "after max_steps the rate stays at min_lr; the cosine would rise again.",
                    _validated(ref.lr_at, lambda *a: _lr(*a, clamp=False))),
        ],
    ),
    Spec(
        name="weight_decay_groups",
        chapter=CHAPTER,
        reference=ref.weight_decay_groups,
        make_cases=_cases_weight_decay_groups,
        result_names=("the names that decay", "the names that do not decay"),
        mistakes=[
            Mistake("embeddings decay", "the embeddings W_E and W_pos do not decay, although their names start with W_.", _groups_all_W),
            Mistake("norms decay", "only the W_ matrices of linear maps decay: norm scales (w) and shifts do not.",
                    _groups_all_but_biases),
            Mistake("swapped", "return (decay, no_decay) in this order.", _groups_swapped),
            Mistake("duplicates among decayed names only", "a name given twice is a ValueError wherever it is: "
                    "compare len(set(names)) with len(names) before sorting the names, not only when appending to "
                    "decay.", _groups_dup_decay_only),
            Mistake("capital W", "the rule is a last part that starts with W_ (with the underscore): Wqkv, Weight or "
                    "a lone W do not decay.", _groups_capital_W),
        ],
    ),
    Spec(
        name="apply_temperature",
        chapter=CHAPTER,
        reference=ref.apply_temperature,
        make_cases=_cases_apply_temperature,
        gradients=False,  # sampling: no gradient flows through it
        families={0: ("float16", "bfloat16")},  # same shape and dtype
        mistakes=[
            Mistake("times", "divide the logits by the temperature: a temperature below 1 makes them larger and the "
                    "distribution sharper.", _temperature_times),
            Mistake("on probabilities", "the temperature divides the *logits*, before the softmax; dividing the "
                    "probabilities only shifts every log probability by the same amount.", _temperature_on_probs),
            Mistake("greedy below a small T", "divide by the temperature for every T > 0, however small: logits "
                    "1e-4 apart at T = 1e-4 still give probabilities 0.27 and 0.73, not 0 and 1 (greedy decoding "
                    "is T = 0, which the sampler does separately).", _temperature_greedy_below),
            Mistake("a floor on T", "divide by the temperature itself for every T > 0, however small: a floor such "
                    "as max(T, 1e-5) changes every smaller T (logits 1e-8 apart at T = 1e-8 give probabilities "
                    "0.27 and 0.73, not 0.5 and 0.5).", _temperature_floor),
        ],
    ),
    Spec(
        name="top_k_filter",
        chapter=CHAPTER,
        reference=ref.top_k_filter,
        make_cases=_cases_top_k_filter,
        families={0: ("float64", "bfloat16")},
        gradients=False,  # sampling: no gradient flows through it
        mistakes=[
            Mistake("ties broken", "keep every logit >= the k-th largest value: ties with it are kept too (so more than "
                    "k may remain).", _validated(ref.top_k_filter, _topk_by_index)),
            Mistake("zero, not -inf", "removed logits become -inf (probability 0 after softmax), not 0.", _validated(ref.top_k_filter, _topk_zero)),
            Mistake("k - 1", "keep the k largest: compare with >= the k-th largest value, not >.", _validated(ref.top_k_filter, _topk_one_less)),
            Mistake("float32 threshold", "find the k-th largest value and compare in the logits' own dtype: float64 "
                    "logits 1e-12 apart are different values, which float32 rounds to one.",
                    _validated(ref.top_k_filter, _topk_float32)),
        ],
    ),
    Spec(
        name="top_p_filter",
        chapter=CHAPTER,
        reference=ref.top_p_filter,
        make_cases=_cases_top_p_filter,
        families={0: ("float64",)},
        gradients=False,  # sampling: no gradient flows through it
        mistakes=[
            Mistake("crossing token dropped", "keep the token that crosses p: a token stays when the mass *before* it "
                    "is below p.", _validated(ref.top_p_filter, _topp_exclusive)),
            Mistake("unsorted", "sort the probabilities in decreasing order before accumulating them.", _validated(ref.top_p_filter, _topp_unsorted)),
        ],
    ),
    Spec(
        name="sample_from_probs",
        chapter=CHAPTER,
        reference=ref.sample_from_probs,
        make_cases=_cases_sample_from_probs,
        gradients=False,  # ids
        mistakes=[
            Mistake("u <= cdf", "choose the first i with u < cdf[i] (strictly): a u exactly on a boundary belongs to the "
                    "next token.", _validated(ref.sample_from_probs, _sample_le)),
            Mistake("argmax", "draw with the uniforms (inverse CDF), do not take the most likely token.", _validated(ref.sample_from_probs, _sample_argmax)),
            Mistake("probability 0 drawn", "when rounding leaves the cdf below u, choose the last token whose "
                    "probability is not 0.", _validated(ref.sample_from_probs, _sample_no_guard)),
            Mistake("fallback from the cdf", "the fallback is the last token whose probability is not 0, found from "
                    "probs (probs > 0), not from the cdf: a tiny probability after large ones leaves the float cdf "
                    "unchanged, so the first index of the cdf's largest value stops before that token.",
                    _validated(ref.sample_from_probs, _sample_cdf_argmax)),
            Mistake("count of non-zeros", "the fallback is the last token whose probability is not 0, wherever the "
                    "zeros are: the number of non-zero tokens minus 1 is that token only when every zero comes after "
                    "it (after top-k or top-p they may sit anywhere).", _validated(ref.sample_from_probs, _sample_count_nonzero)),
        ],
    ),
]
