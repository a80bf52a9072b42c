"""Benchmark of solutions/attention.py: the step-by-step path against PyTorch's fused kernel.

Run from the repository root:  python bench/bench_attention.py [--runs 5] [--threads 1] [--max-seq 2048]

For causal attention with batch 1, 4 heads of 64, float32, at sequence lengths 64 to 2,048:
the median time of the forward pass and of forward + backward, for the step-by-step path of the
exercises (``naive_attention``: scores, mask, softmax, weighted sum) and for
``F.scaled_dot_product_attention`` (the baseline, measured in the same run), and the bytes
autograd keeps for the backward pass (exact, counted with saved_tensors_hooks). Then the KV
cache: generating 256 positions one at a time with and without it. Prints the load average
beside every line (a busy machine makes every time worse; the memory is unaffected).
One thread by default, so that other processes on the machine disturb the figures less.
Takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402

from solutions.attention import Attention, KVCache, attention_cost, forward_cached  # noqa: E402


def load() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--max-seq", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, {args.threads} thread(s), median of {args.runs}")
    print("causal attention, batch 1, n_heads 4, d_head 64, float32")
    print(f"{'seq':>5} {'pass':>9} {'naive ms':>9} {'fused ms':>9} {'speed-up':>8} "
          f"{'naive MiB':>10} {'fused MiB':>10} {'ratio':>6}   load average")
    seq = 64
    while seq <= args.max_seq:
        for backward in (False, True):
            runs = args.runs if seq <= 1024 else max(3, args.runs // 2)
            r = attention_cost(seq, backward=backward, repeat=runs)
            print(f"{seq:5} {'fwd+bwd' if backward else 'forward':>9} {1e3 * r['naive_s']:9.2f} "
                  f"{1e3 * r['fused_s']:9.2f} {r['naive_s'] / r['fused_s']:7.1f}x "
                  f"{r['naive_bytes'] / 2**20:10.2f} {r['fused_bytes'] / 2**20:10.2f} "
                  f"{r['naive_bytes'] / r['fused_bytes']:5.1f}x   {load()}", flush=True)
        seq *= 2

    print("\nKV cache: 256 positions generated one at a time, d_model 256, n_heads 4 (median)")
    torch.manual_seed(0)
    attn, n = Attention(256, 4), 256
    x = torch.randn(1, n, 256)

    def recompute():
        return [attn(x[:, :t + 1])[:, -1:] for t in range(n)]

    def cached():
        cache = KVCache()
        return [forward_cached(attn, x[:, t:t + 1], cache) for t in range(n)]

    with torch.no_grad():
        assert torch.allclose(torch.cat(recompute(), 1), torch.cat(cached(), 1), atol=1e-5)
        times = {}
        for name, fn in (("recompute everything", recompute), ("KV cache", cached)):
            samples = []
            for _ in range(max(3, args.runs // 2)):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
            times[name] = sorted(samples)[len(samples) // 2]
            print(f"{name:>22}: {times[name]:6.2f} s   {load()}", flush=True)
    print(f"{'speed-up':>22}: {times['recompute everything'] / times['KV cache']:6.1f}x")


if __name__ == "__main__":
    main()
