"""Benchmark of chapter 6's training: throughput, model FLOPs utilisation, loss against time.

Run from the repository root:  python bench/bench_training.py [--quick] [--steps 2000] [--baseline-run]

1. The machine's matmul peak: float32 (1024 x 1024) @ (1024 x 1024), best of several, with 2
   threads and with 1.
2. Throughput of one full training step (forward, cross-entropy, backward, clip the gradient
   norm, AdamW step) in tokens per second, for nanoGPT's CPU configuration of shakespeare_char
   (n_layers 4, n_heads 4, d_model 128, n_ctx 64, batch 12, 65 characters), with 2 threads and
   with 1: ``FastGPT`` with fused AdamW (what ``train`` runs), the course's ``GPT`` on the fused
   attention path (``Config(fused=True)``) and on the step-by-step path, and a plain-PyTorch
   baseline measured in the same run (the minimal-GPT style: nn.Linear with a fused qkv,
   nn.LayerNorm, F.gelu, F.scaled_dot_product_attention, torch.optim.AdamW), interleaved so that
   a change in the machine's load hits all of them. Then the share of FastGPT's step spent in
   matmul kernels (torch.profiler): the ceiling on tokens/s if everything else took no time.
3. Model FLOPs utilisation: FLOPs per token = 6 N + 6 n_layers n_ctx d_model (forward and
   backward of every weight, N without W_pos; attention's scores and weighted sum, which have
   no parameters: 2 matmuls of 2 n_ctx d_model FLOPs per token per layer forward, times 3 with
   the backward, halved because the fused kernel skips the masked half (nanoGPT's estimate_mfu
   counts 12 n_layers n_ctx d_model without the halving). MFU = FLOPs/token x tokens/s divided
   by the measured matmul peak at the same thread count.
4. The chapter's training run (``PRESETS["cpu"]``, ``FastGPT``): validation loss after --steps
   steps, the wall time it took, and the validation loss reached after a fixed number of minutes
   (from the eval records). With --baseline-run also the same run with a cosine schedule, and
   nanoGPT's hyper-parameters (lr 1e-3 -> 1e-4 along a cosine, warm-up 100), for comparison.

The load average is printed beside every figure: the machine is shared, and another process
slows every figure; compare ratios measured in the same run more than absolute numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from solutions.blocks import GPT, FastGPT  # noqa: E402
from solutions.training import PRESETS, _optimizer, char_config, param_groups, shakespeare_data, train  # noqa: E402

BATCH, SEQ, VOCAB = 12, 64, 65
FAST = "FastGPT + fused AdamW (train's path)"
BASELINE = "baseline: minimal plain-PyTorch GPT"


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def matmul_peak(threads: int, n: int = 1024, repeat: int = 20) -> float:
    """Best float32 matmul rate in FLOP/s (2 n^3 per product)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


class MinimalGPT(nn.Module):
    """The baseline: a minimal GPT in plain PyTorch, same sizes and initialisation scale."""

    def __init__(self, n_layers=4, n_heads=4, d_model=128, n_ctx=64, d_vocab=VOCAB):
        super().__init__()
        self.n_heads = n_heads
        self.wte, self.wpe = nn.Embedding(d_vocab, d_model), nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList()
        for _ in range(n_layers):
            self.blocks.append(nn.ModuleDict(dict(
                ln1=nn.LayerNorm(d_model), qkv=nn.Linear(d_model, 3 * d_model), proj=nn.Linear(d_model, d_model),
                ln2=nn.LayerNorm(d_model), fc=nn.Linear(d_model, 4 * d_model), out=nn.Linear(4 * d_model, d_model))))
        self.ln_f = nn.LayerNorm(d_model)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx):
        batch, seq = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(seq))
        for b in self.blocks:
            q, k, v = b["qkv"](b["ln1"](x)).split(x.shape[-1], dim=2)
            q, k, v = (t.view(batch, seq, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(batch, seq, -1)
            x = x + b["proj"](y)
            x = x + b["out"](F.gelu(b["fc"](b["ln2"](x)), approximate="tanh"))
        return self.ln_f(x) @ self.wte.weight.T


def make_step(model: nn.Module, groups, fused_adamw: bool = False):
    """One full training step on a fixed batch. fused_adamw: the optimiser ``train`` builds
    (torch.optim.AdamW with fused=True where this torch has it); otherwise AdamW's default,
    which on the CPU is the per-tensor loop (what the baseline implementation uses there)."""
    settings = dict(lr=1e-3, betas=(0.9, 0.99))
    optimizer = _optimizer(torch.optim.AdamW, groups, **settings) if fused_adamw else torch.optim.AdamW(groups, **settings)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g), torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)

    def step():
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def throughput(threads: int, rounds: int, steps: int) -> dict[str, float]:
    """tokens/s of a full step, median over rounds; the models take turns within each round."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fast = FastGPT(char_config(VOCAB))
    ours = GPT(char_config(VOCAB))
    teaching = GPT(char_config(VOCAB, fused=False))
    minimal = MinimalGPT()
    decay = [p for p in minimal.parameters() if p.dim() == 2]
    steps_of = {
        FAST: make_step(fast, param_groups(fast, 0.1), fused_adamw=True),
        "GPT, fused attention": make_step(ours, param_groups(ours, 0.1)),
        "GPT, step-by-step attention": make_step(teaching, param_groups(teaching, 0.1)),
        BASELINE: make_step(minimal, [
            {"params": decay, "weight_decay": 0.1},
            {"params": [p for p in minimal.parameters() if p.dim() < 2], "weight_decay": 0.0}]),
    }
    samples = {name: [] for name in steps_of}
    for fn in steps_of.values():  # warm-up
        for _ in range(5):
            fn()
    for _ in range(rounds):
        for name, fn in steps_of.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            samples[name].append(steps * BATCH * SEQ / (time.perf_counter() - start))
    return {name: sorted(v)[len(v) // 2] for name, v in samples.items()}


def matmul_share(threads: int, steps: int = 10) -> tuple[float, float]:
    """(seconds per step, seconds per step inside matmul kernels) of FastGPT's training step,
    from torch.profiler: the matmuls' time is a ceiling on how fast the step can get with this
    BLAS, if everything else (attention, norms, GELU, the optimiser) took no time at all."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = FastGPT(char_config(VOCAB))
    step = make_step(model, param_groups(model, 0.1), fused_adamw=True)
    for _ in range(5):
        step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    total = (time.perf_counter() - start) / steps
    matmul = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
    return total, matmul / 1e6 / steps


def flops_per_token(config) -> float:
    n = sum(p.numel() for name, p in GPT(config).named_parameters() if name != "pos_embed.W_pos")
    return 6 * n + 6 * config.n_layers * config.n_ctx * config.d_model


def loss_run(label: str, preset_changes: dict, steps: int, minutes: list[float], threads: int) -> None:
    torch.set_num_threads(threads)
    tokenizer, train_data, val_data = shakespeare_data()
    preset = PRESETS["cpu"](tokenizer.vocab_size)
    config = dataclasses.replace(preset.train, steps=steps, eval_interval=max(steps // 8, 1), eval_batches=50,
                                 **preset_changes)
    torch.manual_seed(1337)
    model = FastGPT(preset.model)
    history = train(model, train_data, val_data, config, progress=False)
    last = history["eval"][-1]
    print(f"{label}: val loss {last['val']:.4f} (train {last['train']:.4f}) after {steps} steps, "
          f"{history['seconds']:.1f} s of training ({steps * BATCH * SEQ / history['seconds']:,.0f} tokens/s, "
          f"{threads} thread(s))   {load()}", flush=True)
    for m in minutes:
        reached = [e for e in history["eval"] if e["seconds"] <= 60 * m]
        if reached:
            e = reached[-1]
            print(f"    within {m:g} min: val loss {e['val']:.4f} at step {e['step']} ({e['seconds']:.0f} s)")
    print("    curve:", ", ".join(f"{e['step']}: {e['val']:.3f} ({e['seconds']:.0f} s)" for e in history["eval"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, a 200-step training run")
    parser.add_argument("--steps", type=int, default=2000, help="steps of the training run")
    parser.add_argument("--train-threads", type=int, default=2)
    parser.add_argument("--baseline-run", action="store_true",
                        help="also train with the cosine schedule and with nanoGPT's hyper-parameters")
    parser.add_argument("--no-train", action="store_true", help="throughput and MFU only")
    args = parser.parse_args()
    rounds, steps = (3, 5) if args.quick else (7, 30)
    if args.quick:
        args.steps = min(args.steps, 200)
    print(f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs")
    config = char_config(VOCAB)
    fpt = flops_per_token(config)
    print(f"model: n_layers 4, n_heads 4, d_model 128, n_ctx 64, d_vocab {VOCAB}; "
          f"{sum(p.numel() for p in GPT(config).parameters()):,} parameters; "
          f"{fpt / 1e6:.2f} MFLOP per token (6 N + 6 n_layers n_ctx d_model)")
    for threads in (2, 1):
        peak = matmul_peak(threads)
        print(f"\n{threads} thread(s): matmul peak {peak / 1e9:.1f} GFLOP/s (float32 1024^3)   {load()}", flush=True)
        rates = throughput(threads, rounds, steps)
        for name, rate in rates.items():
            print(f"  {name:38} {rate:9,.0f} tokens/s   MFU {fpt * rate / peak:5.1%}   {load()}", flush=True)
        print(f"  {FAST} / baseline: {rates[FAST] / rates[BASELINE]:.2f}x; tokens/s at 100 % MFU of the "
              f"1024^3 peak: {peak / fpt:,.0f}")
        total, matmul = matmul_share(threads)
        print(f"  FastGPT step under the profiler: {1e3 * total:.1f} ms, of which {1e3 * matmul:.1f} ms in matmul "
              f"kernels (mm, addmm, bmm): even with everything else free, at most "
              f"{BATCH * SEQ / matmul:,.0f} tokens/s with these matmuls   {load()}", flush=True)
    if not args.no_train:
        print()
        minutes = [1, 2, 5]
        loss_run("chapter preset (lr 5e-3 -> 0 linear, warm-up 100)", {}, args.steps, minutes, args.train_threads)
        if args.baseline_run:
            loss_run("the same with a cosine to 5e-5 (the preset before)",
                     {"schedule": "cosine", "min_lr": 5e-5}, args.steps, minutes, args.train_threads)
            loss_run("nanoGPT's hyper-parameters (lr 1e-3 -> 1e-4 cosine, warm-up 100)",
                     {"max_lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100, "schedule": "cosine"},
                     args.steps, minutes, args.train_threads)


if __name__ == "__main__":
    main()
