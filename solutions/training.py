"""Training, sampling and scaling out (chapter 6).

A language model learns to predict the next token. Training shows it many windows of a token
stream, measures how surprised it was by the token that really came next (cross-entropy), and
nudges every weight against the gradient of that surprise (AdamW). Sampling then runs it
forward: pick a next token from its distribution, append, repeat.

This file holds, in the order the chapter teaches them:

* data: ``get_batch`` ((input, target) windows shifted by one), ``random_starts``,
  ``train_val_split``;
* the loss: ``log_softmax`` and ``cross_entropy`` written from the formula with log-sum-exp;
* the optimiser: ``adamw_update`` (one AdamW step on one tensor, pure), the ``AdamW`` optimiser
  built on it, ``clip_grad_norm`` (by the global norm), ``lr_at`` (warm-up, then cosine decay;
  ``lr_linear``, its linear sibling), ``weight_decay_groups`` (which parameters decay);
* sampling: ``apply_temperature``, ``top_k_filter``, ``top_p_filter``, ``sample_from_probs``,
  ``sample_next``, ``generate``;
* the training loop ``train`` (progress bar, periodic evaluation, checkpoints that survive an
  interruption, mixed precision on GPUs, data-parallel under ``torchrun``), its ``TrainConfig``
  presets, the command line ``python -m solutions.training``, and the shipped checkpoint.

Every exercise is a function of tensors and plain numbers that returns tensors or plain numbers,
deterministic given its inputs (random choices take their uniforms or offsets as arguments).
Shapes use the course's names: batch, seq, d_vocab, n_ctx.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from solutions.blocks import GPT, Config, FastGPT
from solutions.tokenization import CharTokenizer, load_tiny_shakespeare


# ----------------------------------------------------------------------------------------------
# Part 1: the exercises
# ----------------------------------------------------------------------------------------------

# --- data -------------------------------------------------------------------------------------


def get_batch(data: torch.Tensor, starts: torch.Tensor, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of a token stream and their next tokens: (input, target) pairs shifted by one.

    data: integer (n,), the token stream; starts: integer (batch,), where each window begins (any
    integer dtype: uint8, int16, ..., int64); seq: the window length. Returns x, y int64 (batch,
    seq), on data's device:

        x[b, t] = data[starts[b] + t]          y[b, t] = data[starts[b] + t + 1]

    so y[b, t] is the token that follows x[b, :t+1]: one window of seq + 1 tokens gives seq
    training examples at once. A start must leave room for the target of the last position:
    0 <= start <= n - seq - 1, otherwise ValueError (naming the largest allowed start). Also
    ValueError: data or starts not 1-D or not of an integer dtype (bool is not one), seq < 1.
    """
    if data.ndim != 1 or starts.ndim != 1:
        raise ValueError(f"data must be 1-D (n,) and starts 1-D (batch,), got shapes "
                         f"{tuple(data.shape)} and {tuple(starts.shape)}")
    if any(t.is_floating_point() or t.is_complex() or t.dtype == torch.bool for t in (data, starts)):  # not integers
        raise ValueError(f"data and starts must be integer tensors (token ids and offsets), got {data.dtype} and {starts.dtype}")
    if seq < 1:
        raise ValueError(f"seq must be at least 1, got {seq}")
    largest = data.shape[0] - seq - 1
    if starts.numel() and (starts.min() < 0 or starts.long().max() > largest):  # 289 is 33 in uint8
        raise ValueError(f"starts must lie in 0..{largest} (n - seq - 1, so that the target of the "
                         f"last position exists), got {starts.min().item()}..{starts.max().item()}")
    offsets = starts.to(data.device)[:, None] + torch.arange(seq, device=data.device)  # (batch, seq)
    return data[offsets].long(), data[offsets + 1].long()


def random_starts(n: int, batch: int, seq: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``batch`` window starts drawn uniformly from 0..n - seq - 1 (int64 (batch,), on the CPU).

    Random offsets rather than consecutive windows: every batch is a fresh sample of the text,
    so the gradient of one step is an unbiased estimate of the gradient over the whole stream.
    Pass a seeded ``torch.Generator`` to make the draws repeatable (and resumable: its state
    goes into the checkpoint).
    """
    if n - seq < 1:
        raise ValueError(f"a stream of {n} tokens has no window of {seq} + 1 tokens")
    return torch.randint(0, n - seq, (batch,), generator=generator)


def train_val_split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The first (1 - val_fraction) of the stream for training, the rest held out.

    A contiguous split, not a random one: neighbouring windows overlap, so windows drawn at
    random from one stream would put the same text on both sides.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    cut = int(len(data) * (1 - val_fraction))
    return data[:cut], data[cut:]


# --- the loss ---------------------------------------------------------------------------------


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log softmax over the last axis (d_vocab), numerically stable. Same shape and dtype.

        log softmax(z)_i = z_i - log sum_j exp(z_j) = z_i - m - log sum_j exp(z_j - m)

    with m = max_j z_j (the log-sum-exp trick): every exp(z_j - m) is at most 1, so nothing
    overflows, and the largest term is exactly 1, so the sum is at least 1 and its log is
    finite. Logits of +-1000 give exact results where exp(1000) = inf would give nan.
    """
    m = logits.max(dim=-1, keepdim=True).values
    return logits - m - torch.log(torch.exp(logits - m).sum(dim=-1, keepdim=True))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean negative log-likelihood of the targets: the language-modelling loss.

    logits: float (batch, seq, d_vocab), the model's output; targets: integer (batch, seq), ids
    in 0..d_vocab-1. Returns a 0-d tensor of logits' dtype:

        loss = -1/(batch * seq) * sum_{b,t} log softmax(logits[b, t])[targets[b, t]]

    computed with ``log_softmax`` (log-sum-exp), never as log(softmax(z)), which is -inf or nan
    once a probability underflows. An untrained model predicts nearly uniformly, so its loss is
    close to ln(d_vocab) (4.17 for 65 characters). Wrong shapes or an id outside the
    vocabulary (the message names d_vocab and its value) or float targets: ValueError. Equals
    ``F.cross_entropy(logits.flatten(0, 1), targets.flatten())``.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (batch, seq, d_vocab) and targets (batch, seq); got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    if targets.is_floating_point():
        raise ValueError("targets must be integer ids")
    d_vocab = logits.shape[-1]
    if targets.numel() and (targets.min() < 0 or targets.max() >= d_vocab):
        raise ValueError(f"targets must be ids in 0..{d_vocab - 1} (d_vocab = {d_vocab})")
    logprobs = log_softmax(logits)  # (batch, seq, d_vocab)
    picked = logprobs.gather(-1, targets[..., None].long()).squeeze(-1)  # (batch, seq)
    return -picked.mean()


# --- the optimiser ----------------------------------------------------------------------------


def adamw_update(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                 step: int, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One AdamW step for one tensor; returns (new_param, new_exp_avg, new_exp_avg_sq).

    Pure: the inputs are not changed. All tensors have param's shape, and the results param's
    dtype (a float16 parameter and its moments stay float16, as in torch.optim.AdamW); ``step``
    counts updates from 1 (the first call has step = 1). The update, as ``torch.optim.AdamW`` computes it:

        param    <- param * (1 - lr * weight_decay)          decoupled weight decay
        m        <- beta1 * m + (1 - beta1) * grad             first moment (Kingma & Ba 2015)
        v        <- beta2 * v + (1 - beta2) * grad^2           second moment
        m_hat    =  m / (1 - beta1^step)                       bias correction (Kingma & Ba 2015,
        v_hat    =  v / (1 - beta2^step)                         section 3): m and v start at 0
        param    <- param - lr * m_hat / (sqrt(v_hat) + eps)

    Weight decay is *decoupled* (Loshchilov & Hutter 2019, Algorithm 2): it shrinks the weights
    directly instead of adding weight_decay * param to the gradient, which Adam would then divide
    by sqrt(v) (that is Adam with L2 regularisation, a different algorithm). As in PyTorch the
    decay is scaled by lr (the paper scales it by the schedule multiplier only). step < 1 or
    tensors of different shapes: ValueError.
    """
    if step < 1:
        raise ValueError(f"step counts updates from 1, got {step}")
    if not (param.shape == grad.shape == exp_avg.shape == exp_avg_sq.shape):
        raise ValueError(f"param, grad, exp_avg and exp_avg_sq must have one shape, got {tuple(param.shape)}, "
                         f"{tuple(grad.shape)}, {tuple(exp_avg.shape)}, {tuple(exp_avg_sq.shape)}")
    param = param * (1 - lr * weight_decay)
    exp_avg = exp_avg.lerp(grad, 1 - beta1)  # beta1 * m + (1 - beta1) * grad, as PyTorch rounds it
    exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    denom = exp_avg_sq.sqrt() / math.sqrt(bias_correction2) + eps
    param = param - (lr / bias_correction1) * (exp_avg / denom)
    return param, exp_avg, exp_avg_sq


class AdamW(torch.optim.Optimizer):
    """AdamW (Loshchilov & Hutter 2019) built on ``adamw_update``: the same steps as
    ``torch.optim.AdamW`` (amsgrad=False), parameter groups included.

    State per parameter: "step" (an int), "exp_avg", "exp_avg_sq". It is slower than PyTorch's
    (one tensor at a time, new tensors every step); the training loop uses PyTorch's, the tests
    show the two agree step for step.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid AdamW settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                new_p, state["exp_avg"], state["exp_avg_sq"] = adamw_update(
                    p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"], group["lr"],
                    beta1, beta2, group["eps"], group["weight_decay"])
                p.copy_(new_p)
        return loss


def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scale a list of gradients so that their *global* L2 norm is at most max_norm.

        total_norm = sqrt(sum over every tensor g and every number of g^2)
        scale      = min(1, max_norm / (total_norm + 1e-6))

    Returns (the gradients times scale, each in its own dtype; total_norm before clipping as a 0-d
    tensor, float32, or float64 when a gradient is float64: the squares of float16 numbers
    overflow above 256, so half-precision gradients are measured in float32), like
    ``torch.nn.utils.clip_grad_norm_`` (which does it in place; here the inputs are left
    unchanged). One scale for all tensors keeps the direction of the whole update and only
    shortens it; clipping each tensor on its own would change the direction. The scale is never
    above 1 (gradients well under the limit keep their values, never scaled up), and it is the
    formula whatever the norm: near tiny norms the + 1e-6 decides (a norm of 1e-6 under max_norm
    1.5e-6 is scaled by 0.75, as torch does). max_norm <= 0: ValueError.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    if not grads:
        return [], torch.tensor(0.0)
    # the squares in float32 at least: a float16 square overflows above 256 (65504 is float16's
    # largest number), and a float64 gradient keeps float64 (as clip_grad_norm_ does for it)
    precise = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    norms = torch.stack([g.detach().to(precise).norm(2) for g in grads])  # one norm per tensor
    total_norm = norms.norm(2)  # sqrt of the sum of squares of all numbers
    scale = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    return [g * scale.to(g.dtype) for g in grads], total_norm


def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """The learning rate at ``step`` (counted from 0): linear warm-up, then cosine decay.

        step < warmup_steps:          max_lr * (step + 1) / warmup_steps
        warmup_steps <= step <= max_steps:
            ratio = (step - warmup_steps) / (max_steps - warmup_steps)
            min_lr + 0.5 * (1 + cos(pi * ratio)) * (max_lr - min_lr)
        step > max_steps:             min_lr

    The warm-up reaches max_lr at step warmup_steps - 1 and never uses a zero rate (step 0 gets
    max_lr / warmup_steps); the cosine starts at max_lr at step warmup_steps and ends at min_lr
    at step max_steps (Loshchilov & Hutter 2017, SGDR, one cycle; as in nanoGPT and GPT-3,
    Brown et al. 2020, appendix B). Always a Python float, also for integer arguments. Negative
    step, warmup_steps or max_steps < warmup_steps: ValueError.
    """
    if step < 0 or warmup_steps < 0 or max_steps < warmup_steps:
        raise ValueError(f"need step >= 0 and 0 <= warmup_steps <= max_steps, got step={step}, "
                         f"warmup_steps={warmup_steps}, max_steps={max_steps}")
    if step < warmup_steps:
        return float(max_lr * (step + 1) / warmup_steps)
    if step >= max_steps:  # also covers warmup_steps == max_steps, where there is no decay phase
        return float(min_lr)  # a float even when min_lr is given as the int 0
    ratio = (step - warmup_steps) / (max_steps - warmup_steps)
    return float(min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr))


def lr_linear(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """``lr_at``'s warm-up, then a straight line from max_lr at step warmup_steps to min_lr at
    step max_steps (min_lr after). Not an exercise: the schedule of the chapter's CPU run.

    For a run of a known length, decaying linearly to zero matches or beats the cosine
    (Defazio, Cutkosky, Mehta & Mishchenko 2023, "Optimal linear decay learning rate schedules
    and further refinements", arXiv:2310.07831: optimal in their worst-case analysis, and
    measured on 10 deep-learning problems and LLMs); on the chapter's model it gives 1.75
    instead of 1.78 after the same 2,000 steps (bench/README.md). Same errors as ``lr_at``.
    """
    rate = lr_at(step, max_lr, min_lr, warmup_steps, max_steps)  # checks; the warm-up and the end agree
    if warmup_steps <= step < max_steps:
        rate = max_lr + (min_lr - max_lr) * (step - warmup_steps) / (max_steps - warmup_steps)
    return rate


SCHEDULES = ("cosine", "linear")  # TrainConfig.schedule: lr_at or lr_linear


def weight_decay_groups(names: list[str]) -> tuple[list[str], list[str]]:
    """Which parameters get weight decay: (decay, no_decay), each in the order of ``names``.

    The rule, by the last part of the name: a parameter decays when it is the weight matrix of
    a linear map, named ``W_...`` (W_Q, W_K, W_V, W_O, W_in, W_out, W_gate, W_up, W_down, W_U),
    except the embeddings W_E and W_pos. Biases (b_...), norm scales and shifts (w, b) and the
    embeddings do not decay. Why: decay pulls weights towards 0, which regularises a map's
    *matrix*; a bias or a norm scale set to 0 is just a wrong offset or a switched-off feature,
    and an embedding row is only updated when its token appears, so decay would shrink rare
    tokens' rows every step for nothing.

    A rule by shape (decay every tensor with two or more axes, nanoGPT's) does not fit this
    model: the per-head biases b_Q, b_K, b_V are (n_heads, d_head) and the embeddings are
    matrices too. Duplicate names: ValueError.
    """
    if len(set(names)) != len(names):
        raise ValueError("parameter names must be unique")
    decay, no_decay = [], []
    for name in names:
        last = name.split(".")[-1]
        if last.startswith("W_") and last not in ("W_E", "W_pos"):  # the embeddings do not decay
            decay.append(name)
        else:
            no_decay.append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimiser parameter groups for ``model``: the decaying weights, then the rest (decay 0)."""
    params = dict(model.named_parameters())
    decay, no_decay = weight_decay_groups(list(params))
    return [{"params": [params[n] for n in decay], "weight_decay": weight_decay},
            {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]


# --- sampling ---------------------------------------------------------------------------------


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature, before the softmax. Same shape and dtype.

    temperature < 1 sharpens the distribution (towards the argmax), > 1 flattens it (towards
    uniform), 1 leaves it. It divides the *logits*: softmax(z / T) is p_i^(1/T) renormalised,
    not p / T. temperature <= 0: ValueError (greedy decoding is the limit T -> 0; use argmax).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (use greedy decoding for 0), got {temperature}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of every row (last axis, d_vocab); the others become -inf.

    logits: float (..., d_vocab). A logit equal to the k-th largest is kept too, so ties can
    keep more than k (the rule: keep z_i >= the k-th largest value of the row). Returns a new
    tensor; the input is unchanged. k outside 1..d_vocab: ValueError.
    """
    d_vocab = logits.shape[-1]
    if not 1 <= k <= d_vocab:
        raise ValueError(f"k must be in 1..d_vocab = {d_vocab}, got {k}")
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest value
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the most likely tokens up to mass p.

    Per row (last axis): sort the probabilities softmax(logits) in decreasing order and keep the
    smallest prefix whose total is at least p, i.e. a token is kept when the probability of the
    tokens *before* it is still below p; so the token that crosses p is kept, and the most
    likely token always is. Tokens tied with the last kept one are kept too (the rule: keep
    z_i >= the logit of the last kept token). The others become -inf. Returns a new tensor.
    p outside (0, 1]: ValueError.
    """
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # the mass of the tokens ranked above each one
    keep = before < p  # a prefix: `before` grows along the sorted row; keep[..., 0] is always True
    n_keep = keep.sum(dim=-1, keepdim=True)  # (..., 1)
    cutoff = sorted_logits.gather(-1, n_keep - 1)  # the logit of the last kept token
    return logits.masked_fill(logits < cutoff, float("-inf"))


def sample_from_probs(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one token per row by inverse-CDF sampling with the given uniform numbers.

    probs: float (..., d_vocab), non-negative, each row summing to 1 (up to rounding);
    uniforms: float (...), in [0, 1). Returns int64 (...): for each row the smallest index i
    with u < cdf[i], where cdf = cumsum(probs) over the last axis. Token i is then chosen
    exactly when cdf[i-1] <= u < cdf[i], an interval of length probs[i]: with u uniform, token
    i comes with probability probs[i], and a token of probability 0 never comes. If rounding
    leaves cdf's last value at or below u, the last token with a non-zero probability is chosen.
    The uniforms are an argument so that the draw is exact and repeatable on any device;
    ``torch.multinomial`` does the same job with its own random numbers. Shapes that do not fit:
    ValueError.
    """
    if uniforms.shape != probs.shape[:-1]:
        raise ValueError(f"uniforms must have shape {tuple(probs.shape[:-1])} (probs without its last "
                         f"axis), got {tuple(uniforms.shape)}")
    cdf = torch.cumsum(probs, dim=-1)
    u = uniforms.to(cdf.dtype)[..., None]
    index = (cdf <= u).sum(dim=-1)  # how many cdf values are <= u: the first index with u < cdf
    last_nonzero = probs.shape[-1] - 1 - (probs.flip(-1) > 0).long().argmax(dim=-1)
    return torch.minimum(index, last_nonzero)


def sample_next(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """The next token of every row: logits (batch, d_vocab), uniforms (batch,) -> int64 (batch,).

    temperature == 0 is greedy decoding: the argmax (the first one on ties), uniforms unused.
    Otherwise, in this order: divide by the temperature, keep the top k (if top_k), keep the
    nucleus p (if top_p), softmax, and draw with ``sample_from_probs``. Temperature comes first
    because it changes which tokens fall inside the nucleus.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return sample_from_probs(torch.softmax(logits.float(), dim=-1), uniforms)


@torch.no_grad()
def generate(model: nn.Module, tokens: torch.Tensor, n_new: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Append n_new sampled tokens to tokens (batch, seq); returns (batch, seq + n_new).

    Each step runs the model on the last n_ctx tokens (no KV cache: simple, and fast enough for a
    small model), takes the logits of the last position and calls ``sample_next``. The uniforms
    come from ``generator`` on the CPU, so a seed gives the same text on CPU and GPU up to the
    model's own rounding.
    """
    n_ctx = model.config.n_ctx
    was_training = model.training
    model.eval()
    for _ in range(n_new):
        logits = model(tokens[:, -n_ctx:])[:, -1].float()  # (batch, d_vocab)
        uniforms = torch.rand(tokens.shape[0], generator=generator).to(logits.device)
        next_token = sample_next(logits, uniforms, temperature, top_k, top_p)
        tokens = torch.cat([tokens, next_token[:, None].to(tokens.dtype)], dim=1)
    model.train(was_training)
    return tokens


# ----------------------------------------------------------------------------------------------
# Part 2: the training loop
# ----------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything the training loop needs besides the model and the data.

    ``batch`` is the *global* batch: under torchrun every one of the world_size processes takes
    batch / world_size of its rows. ``steps`` counts optimiser updates; the learning rate warms
    up for ``warmup_steps`` and decays to ``min_lr`` at step ``steps``: along a cosine
    (``schedule="cosine"``, ``lr_at``) or a straight line (``"linear"``, ``lr_linear``).
    ``eval_interval`` 0 means no evaluation during training (one at the end still happens when
    eval_batches > 0). ``amp``: autocast on CUDA (bfloat16 where supported, else float16 with a
    gradient scaler); the CPU always trains in float32.
    """

    batch: int = 12
    seq: int = 64
    steps: int = 2000
    max_lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_batches: int = 20
    checkpoint_interval: int = 0  # 0: only at the end (and on an interruption)
    seed: int = 1337
    amp: bool = True


@dataclass
class Preset:
    model: Config
    train: TrainConfig


def char_config(d_vocab: int = 65, **changes) -> Config:
    """The character-level model of the chapter: nanoGPT's CPU configuration of shakespeare_char
    (4 layers, 4 heads, d_model 128, n_ctx 64), with the fused attention kernel."""
    base = dict(d_model=128, n_heads=4, d_mlp=512, d_vocab=d_vocab, n_ctx=64, n_layers=4, fused=True)
    return Config(**(base | changes))


PRESETS = {
    # trains in a few minutes on a laptop CPU (2 cores); the shipped checkpoint is this run.
    # nanoGPT's hyper-parameters (lr 1e-3 -> 1e-4 along a cosine, warm-up 100) reach a validation
    # loss of about 1.88 in 2,000 steps. With no dropout and clipping at 1.0 this small pre-LN
    # model takes a 5x larger peak rate, and a straight decay to 0 beats the cosine (validation
    # loss after 2,000 steps, one seed each: cosine 5e-3 -> 5e-5: 1.78; linear 5e-3 -> 0: 1.75;
    # bench/README.md has the whole sweep)
    "cpu": lambda d_vocab: Preset(char_config(d_vocab),
                                  TrainConfig(batch=12, seq=64, steps=2000, max_lr=5e-3, min_lr=0.0,
                                              schedule="linear", warmup_steps=100, weight_decay=0.1,
                                              beta2=0.99)),
    # a Colab GPU: nanoGPT's shakespeare_char configuration (10.7M parameters, 256 characters of
    # context), mixed precision
    "gpu": lambda d_vocab: Preset(Config(d_model=384, n_heads=6, d_mlp=1536, d_vocab=d_vocab, n_ctx=256,
                                         n_layers=6, fused=True),
                                  TrainConfig(batch=64, seq=256, steps=5000, max_lr=1e-3, min_lr=1e-4,
                                              warmup_steps=100, weight_decay=0.1, beta2=0.99,
                                              eval_interval=500, eval_batches=50)),
    # seconds: tests and the notebook
    "tiny": lambda d_vocab: Preset(Config(d_model=32, n_heads=2, d_mlp=128, d_vocab=d_vocab, n_ctx=32,
                                          n_layers=2, fused=True),
                                   TrainConfig(batch=8, seq=32, steps=50, max_lr=3e-3, min_lr=3e-4,
                                               warmup_steps=5, eval_interval=25, eval_batches=4)),
}


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a device: bfloat16 on GPUs that have it natively (compute
    capability 8.0 and later: A100, H100, RTX 30xx), float16 on older ones (T4, V100), None on
    the CPU (bfloat16 matmuls on most CPUs are slower than float32 ones)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16


def _distributed() -> tuple[int, int]:
    """(rank, world_size): (0, 1) unless torch.distributed has been initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@torch.no_grad()
def estimate_loss(model: nn.Module, data: torch.Tensor, batch: int, seq: int, n_batches: int,
                  seed: int = 0, amp: torch.dtype | None = None) -> float:
    """The mean loss over n_batches random batches of ``data``, the same batches on every call
    (a fixed seed), so that evaluations at different steps compare the model, not the sample."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(n_batches):
        x, y = get_batch(data, random_starts(len(data), batch, seq, generator), seq)
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(x)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten()).item()
    model.train(was_training)
    return total / n_batches


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                    step: int, generator: torch.Generator, history: dict, config: TrainConfig,
                    extra: dict | None = None) -> None:
    """Everything needed to continue exactly where training stopped, written atomically.

    The model's and the optimiser's state (AdamW's moments and step counts), the number of steps
    done, the state of the generator that draws the batches (so a resumed run draws the very
    batches the uninterrupted one would have), the loss history and the configurations. The
    file is written next to its destination and renamed over it, so an interruption during the
    save leaves the previous checkpoint intact.
    """
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "generator": generator.get_state(), "history": history,
             "train_config": dataclasses.asdict(config),
             "model_config": dataclasses.asdict(model.config)} | (extra or {})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(model: GPT, train_data: torch.Tensor, val_data: torch.Tensor | None, config: TrainConfig,
          checkpoint: str | os.PathLike | None = None, resume: bool = False, stop_at: int | None = None,
          progress: bool = True, optimizer_class: type = torch.optim.AdamW) -> dict:
    """Train ``model`` on random windows of ``train_data``; returns the history.

    Each step: draw the batch's offsets (a seeded generator), forward under autocast on GPUs,
    cross-entropy, backward, clip the global gradient norm, set the learning rate from
    ``lr_at``, AdamW step (weight decay only on ``weight_decay_groups``'s matrices). Every
    ``eval_interval`` steps (and at the end) the loss on fixed batches of train_data and
    val_data. A tqdm progress bar shows the loss.

    checkpoint: a file path; the state is saved every ``checkpoint_interval`` steps, at the end,
    and when the run is interrupted (Ctrl-C: saved, then re-raised). resume=True continues from
    that file if it exists: the losses that follow are bit-identical to a run that never
    stopped (same device and thread count). stop_at: stop after that many steps, as if
    interrupted (for tests and demonstrations).

    Under torchrun (torch.distributed initialised) the model is wrapped in
    DistributedDataParallel: every process draws the same global batch and trains on its own
    slice of rows; DDP averages the gradients, so the update equals one process's on the whole
    batch. Only rank 0 shows progress and writes the checkpoint.

    History: "step", "loss" (the training loss of every step, averaged over processes), "lr",
    "eval" (a list of {"step", "seconds", "train", "val"}), "seconds" (time spent training,
    evaluations left out, resumed runs included).
    """
    c = config
    if c.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {c.schedule!r}")
    schedule = lr_at if c.schedule == "cosine" else lr_linear
    rank, world = _distributed()
    if c.batch % world:
        raise ValueError(f"the global batch {c.batch} must divide among {world} processes")
    if c.seq > model.config.n_ctx:
        raise ValueError(f"seq = {c.seq} is longer than the model's context n_ctx = {model.config.n_ctx}")
    device = next(model.parameters()).device
    amp = amp_dtype(device) if c.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    optimizer = _optimizer(optimizer_class, param_groups(model, c.weight_decay), lr=c.max_lr, betas=(c.beta1, c.beta2))
    generator = torch.Generator().manual_seed(c.seed)
    history = {"step": 0, "loss": [], "lr": [], "eval": [], "seconds": 0.0}
    step = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, history = state["step"], state["history"]
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    rows = slice(rank * c.batch // world, (rank + 1) * c.batch // world)  # this process's share

    # training time, evaluations left out: the resumed runs' (base), plus this run's so far
    clock = {"base": history["seconds"], "start": time.perf_counter(), "eval": 0.0}

    def training_seconds() -> float:
        return clock["base"] + time.perf_counter() - clock["start"] - clock["eval"]

    def evaluate():
        if c.eval_batches and val_data is not None:
            began = time.perf_counter()
            record = {"step": step, "seconds": training_seconds(),
                      "train": estimate_loss(model, train_data, c.batch, c.seq, c.eval_batches, seed=1, amp=amp),
                      "val": estimate_loss(model, val_data, c.batch, c.seq, c.eval_batches, seed=2, amp=amp)}
            history["eval"].append(record)
            clock["eval"] += time.perf_counter() - began
            return record

    def save():
        if checkpoint is not None and rank == 0:
            history["step"], history["seconds"] = step, training_seconds()
            save_checkpoint(checkpoint, model, optimizer, step, generator, history, c)

    last = c.steps if stop_at is None else min(stop_at, c.steps)
    bar = _progress(range(step, last), enabled=progress and rank == 0, initial=step, total=c.steps)
    model.train()
    clock["start"] = time.perf_counter()  # the progress bar's start-up is not training
    try:
        for step in bar:
            if c.eval_interval and step % c.eval_interval == 0 and step > 0:
                record = evaluate()
                if record and rank == 0 and hasattr(bar, "write"):
                    bar.write(f"step {step}: train loss {record['train']:.4f}, val loss {record['val']:.4f}")
            lr = schedule(step, c.max_lr, c.min_lr, c.warmup_steps, c.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # the same global batch on every process; each takes its rows
            starts = random_starts(len(train_data), c.batch, c.seq, generator)[rows]
            x, y = get_batch(train_data, starts, c.seq)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = net(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            loss = loss.detach()
            if world > 1:  # log the loss of the whole global batch
                torch.distributed.all_reduce(loss)
                loss /= world
            history["loss"].append(loss.item())
            history["lr"].append(lr)
            if hasattr(bar, "set_postfix") and step % 10 == 0:
                bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", lr=f"{lr:.1e}")
            step += 1
            if c.checkpoint_interval and step % c.checkpoint_interval == 0:
                save()
    except KeyboardInterrupt:
        step = len(history["loss"])  # the updates done: resuming continues with the next one
        save()
        raise
    finally:
        if hasattr(bar, "close"):
            bar.close()
    step = len(history["loss"])  # the updates done, this run and the ones it resumed
    if step == c.steps and (not history["eval"] or history["eval"][-1]["step"] != step):
        evaluate()
    history["step"], history["seconds"] = step, training_seconds()
    save()
    return history


def _optimizer(optimizer_class: type, groups: list[dict], **settings) -> torch.optim.Optimizer:
    """torch.optim.AdamW with fused=True (one kernel updates every tensor: about 6 % of a step on
    the CPU, more on a GPU), or without where this torch has no fused kernel for the device
    (the CPU's came in torch 2.4). Any other class is built as it is."""
    if optimizer_class is torch.optim.AdamW:
        try:
            return optimizer_class(groups, fused=True, **settings)
        except (RuntimeError, ValueError):
            pass
    return optimizer_class(groups, **settings)


def _progress(steps: range, enabled: bool, initial: int, total: int):
    if not enabled:
        return steps
    from tqdm.auto import tqdm  # a notebook gets a widget bar, a terminal a text one

    return tqdm(steps, initial=initial, total=total, unit="step", dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------
# Part 3: the character-level model, the shipped checkpoint, the command line
# ----------------------------------------------------------------------------------------------

CHECKPOINT = "shakespeare_char.pt"


def shakespeare_data(n_chars: int | None = None) -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """Chapter 1's character tokenizer on Tiny Shakespeare, the encoded stream split 90/10.

    The vocabulary is always built from the whole text (65 characters), so a model trained on
    the first n_chars characters only can still read all of it.
    """
    text = load_tiny_shakespeare()
    tokenizer = CharTokenizer(text)
    ids = torch.tensor(tokenizer.encode(text[:n_chars] if n_chars else text), dtype=torch.long)
    train_data, val_data = train_val_split(ids, 0.1)
    return tokenizer, train_data, val_data


def load_checkpoint_model(path: str | os.PathLike | None = None, device: str = "cpu") -> tuple[GPT, CharTokenizer, dict]:
    """The trained character-level model shipped with the package (or one from ``path``).

    Returns (model in eval mode, its tokenizer, the checkpoint's other contents: "history",
    "train_config", "model_config", "val_loss", ...). Loaded with weights_only=True: a checkpoint
    holds tensors, numbers, strings, lists and dicts, nothing that runs code.
    """
    if path is None:
        from solutions.tokenization import _data_file

        with _data_file(CHECKPOINT).open("rb") as f:
            state = torch.load(f, map_location=device, weights_only=True)
    else:
        state = torch.load(path, map_location=device, weights_only=True)
    model = GPT(Config(**state["model_config"])).to(device)
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    model.eval()
    tokenizer = CharTokenizer(state["vocab"]) if "vocab" in state else shakespeare_data()[0]
    return model, tokenizer, {k: v for k, v in state.items() if k not in ("model", "optimizer")}


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, tokenizer: CharTokenizer,
                      val_loss: float | None = None) -> int:
    """A small file for shipping: the model's weights in float16 (no optimiser state), its
    config, the vocabulary (the characters in id order) and the loss history. Returns its size."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    small = {"model": {k: v.half() for k, v in state["model"].items()},
             "model_config": state["model_config"], "train_config": state["train_config"],
             "history": state["history"], "step": state["step"],
             "vocab": "".join(tokenizer.itos[i] for i in range(tokenizer.vocab_size))}
    if val_loss is not None:
        small["val_loss"] = val_loss
    torch.save(small, dst)
    return Path(dst).stat().st_size


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m solutions.training``: train the character-level model on Tiny Shakespeare.

    Data-parallel on several processes: ``torchrun --nproc_per_node 2 -m solutions.training ...``
    (gloo on the CPU, nccl on GPUs: one GPU per process).
    """
    parser = argparse.ArgumentParser(prog="python -m solutions.training", description=main.__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the preset's)")
    parser.add_argument("--batch", type=int, help="global batch (default: the preset's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (min_lr: max_lr / 10 unless --min-lr)")
    parser.add_argument("--min-lr", type=float, help="final learning rate")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default: the preset's)")
    parser.add_argument("--eval-interval", type=int)
    parser.add_argument("--eval-batches", type=int)
    parser.add_argument("--n-chars", type=int, help="train on the first N characters only")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, help="torch threads per process")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for ckpt.pt and history.json")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--sample", type=int, default=300, help="characters to sample at the end (0: none)")
    args = parser.parse_args(argv)

    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ  # set by torchrun
    device = torch.device(args.device)
    if distributed:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    rank, world = _distributed()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer, train_data, val_data = shakespeare_data(args.n_chars)
    preset = PRESETS[args.preset](tokenizer.vocab_size)
    changes = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("eval_interval", args.eval_interval),
                                 ("eval_batches", args.eval_batches), ("warmup_steps", args.warmup))
               if v is not None}
    if args.lr:
        changes |= {"max_lr": args.lr, "min_lr": args.lr / 10}
    if args.min_lr is not None:
        changes["min_lr"] = args.min_lr
    config = dataclasses.replace(preset.train, seed=args.seed, **changes)
    torch.manual_seed(args.seed)  # the same initial weights in every process
    model = FastGPT(preset.model).to(device)  # GPT's parameters through fused kernels: faster
    args.out.mkdir(parents=True, exist_ok=True)
    history = train(model, train_data.to(device), val_data.to(device), config, checkpoint=args.out / "ckpt.pt",
                    resume=args.resume, progress=not args.no_progress)
    if rank == 0:
        (args.out / "history.json").write_text(json.dumps(history))
        last = history["eval"][-1] if history["eval"] else None
        tokens = len(history["loss"]) * config.batch * config.seq
        print(f"{len(history['loss'])} steps in {history['seconds']:.1f} s "
              f"({tokens / max(history['seconds'], 1e-9):,.0f} tokens/s, {world} process(es))"
              + (f"; train loss {last['train']:.4f}, val loss {last['val']:.4f}" if last else ""))
        if args.sample:
            prompt = torch.tensor([tokenizer.encode("\n")], device=device)
            out = generate(model, prompt, args.sample, temperature=0.8, generator=torch.Generator().manual_seed(0))
            print(tokenizer.decode(out[0, 1:]))
    if distributed:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
