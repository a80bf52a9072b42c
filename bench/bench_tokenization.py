"""Benchmark of solutions/tokenization.py: training time and encoding speed against tiktoken.

Run from the repository root:  python bench/bench_tokenization.py [--runs 3] [--no-pin] [--skip-stream]

Figures: training on Tiny Shakespeare; encoding two 1 MB texts; one long chunk without spaces
(100,000 random letters, the worst case for BPE's merge loop); encode_iterable on a 5 MB file,
with its extra memory measured by tracemalloc (the slowest part, about a minute: --skip-stream).

Prints the load average beside every figure (a busy machine makes every number worse), and
pins the process to one CPU where the OS allows it, since the targets are for one core.
Takes well under two minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import string
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import tiktoken  # noqa: E402

from solutions.tokenization import (  # noqa: E402
    BPETokenizer,
    gpt2_tokenizer,
    load_tiny_shakespeare,
    tiktoken_gpt2,
    train_bpe,
)


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def report(label: str, value: str) -> None:
    print(f"{label:<58} {value:>22}   [{load()}]", flush=True)


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def python_source_text(limit: int = 1_000_000) -> str:
    """About 1 MB of Python code from the standard library: a second, non-English text."""
    parts, size = [], 0
    for path in sorted(Path(os.__file__).parent.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        size += len(text)
        if size >= limit:
            break
    return "".join(parts)[:limit]


def bench_encode(name: str, text: str, runs: int) -> None:
    enc = tiktoken_gpt2()
    megabytes = len(text.encode("utf-8")) / 1e6
    ours = gpt2_tokenizer()
    assert ours.encode(text) == enc.encode(text), "ids differ from tiktoken"

    def cold() -> None:  # a new tokenizer: the chunk cache starts empty
        tokenizer = gpt2_tokenizer()
        start = time.perf_counter()
        tokenizer.encode(text)
        cold_times.append(time.perf_counter() - start)

    cold_times: list[float] = []
    for _ in range(runs):
        cold()
    t_cold = statistics.median(cold_times)
    t_warm = median_time(lambda: ours.encode(text), runs)
    t_tik = median_time(lambda: enc.encode(text), runs)
    report(f"encode {name} ({megabytes:.2f} MB): tiktoken", f"{megabytes / t_tik:.2f} MB/s")
    report(f"encode {name}: ours, empty chunk cache", f"{megabytes / t_cold:.2f} MB/s")
    report(f"encode {name}: ours, warm chunk cache", f"{megabytes / t_warm:.2f} MB/s")
    ratios = f"{t_tik / t_cold:.2f}x, {t_tik / t_warm:.2f}x"
    report(f"encode {name}: ratio ours/tiktoken (cold, warm)", ratios)


def bench_long_chunk(runs: int) -> None:
    """One chunk of random letters (minified code, base64, DNA): BPE's worst case."""
    enc = tiktoken_gpt2()
    ours = gpt2_tokenizer()
    rng = random.Random(0)
    for n in (20_000, 100_000):
        letters = "".join(rng.choice(string.ascii_letters) for _ in range(n))
        assert ours.encode(letters) == enc.encode(letters), "ids differ from tiktoken"
        t_ours = median_time(lambda: ours.encode(letters), runs)  # too long to be cached
        t_tik = median_time(lambda: enc.encode(letters), runs)
        report(f"encode {n:,} random letters, one chunk: tiktoken", f"{t_tik:.3f} s")
        report(f"encode {n:,} random letters, one chunk: ours", f"{t_ours:.3f} s")


def five_mb_corpus(text: str) -> str:
    """5 MB: slices of Tiny Shakespeare, runs of blank lines, 2,000-letter chunks, emoji."""
    rng = random.Random(3)
    parts, size = [], 0
    while size < 5_000_000:
        start = rng.randrange(len(text) - 50_000)
        parts.append(text[start : start + 50_000])
        parts.append("\n" * rng.randint(1, 30) + "   \n\t\n" + " " * rng.randint(1, 9))
        parts.append("".join(rng.choice(string.ascii_letters) for _ in range(2_000)) + " 😀é日本 ")
        size += sum(map(len, parts[-3:]))
    return "".join(parts)


def bench_stream(text: str) -> None:
    """encode_iterable over a 5 MB file read line by line: time and extra memory."""
    enc = tiktoken_gpt2()
    corpus = five_mb_corpus(text)
    megabytes = len(corpus.encode("utf-8")) / 1e6
    expected = enc.encode(corpus)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "corpus.txt"
        path.write_text(corpus, encoding="utf-8")
        del corpus

        def stream(tokenizer, traced: bool) -> tuple[float, float]:
            with open(path, encoding="utf-8", newline="") as f:
                if traced:
                    tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0] if traced else 0
                start, n = time.perf_counter(), -1
                for n, token in enumerate(tokenizer.encode_iterable(f)):
                    if token != expected[n]:
                        raise AssertionError("encode_iterable differs from tiktoken")
                seconds = time.perf_counter() - start
                peak = tracemalloc.get_traced_memory()[1] - base if traced else 0.0
                tracemalloc.stop()
            assert n + 1 == len(expected)
            return seconds, peak

        start = time.perf_counter()
        enc.encode(path.read_text(encoding="utf-8"))
        t_tik = time.perf_counter() - start
        report(f"encode 5 MB file ({megabytes:.1f} MB) whole: tiktoken", f"{megabytes / t_tik:.2f} MB/s")
        seconds, _ = stream(gpt2_tokenizer(), traced=False)
        report("encode_iterable, line by line, empty chunk cache", f"{megabytes / seconds:.2f} MB/s")
        tokenizer = gpt2_tokenizer()
        _, peak = stream(tokenizer, traced=True)  # the cache fills here (bounded by cache_size)
        report("  extra memory (tracemalloc peak), empty cache at start", f"{peak / 1e6:.2f} MB")
        _, peak = stream(tokenizer, traced=True)
        report("  extra memory, cache already full of this text's chunks", f"{peak / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median is shown)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--skip-stream", action="store_true", help="skip the 5 MB encode_iterable run")
    args = parser.parse_args()

    pinned = "no"
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        pinned = f"cpu {cpu}"
    print(f"python {platform.python_version()}, tiktoken {tiktoken.__version__}, "
          f"{os.cpu_count()} CPUs, pinned to one: {pinned}, {platform.machine()} {platform.system()}")
    print(f"median of {args.runs} runs unless said otherwise\n")

    text = load_tiny_shakespeare()
    megabytes = len(text.encode("utf-8")) / 1e6

    # --- training ----------------------------------------------------------------------------
    for vocab_size in (512, 1024):
        seconds = median_time(lambda: BPETokenizer().train(text, vocab_size), args.runs)
        report(f"train vocab {vocab_size}, GPT-2 split, Tiny Shakespeare ({megabytes:.1f} MB)",
               f"{seconds:.2f} s")

    # the exercise trainer (recounts everything after each merge) on a slice, as a baseline
    piece, vocab_size = text[:100_000], 512
    start = time.perf_counter()
    naive = train_bpe(piece, vocab_size)
    t_naive = time.perf_counter() - start
    fast = BPETokenizer(pattern=None)
    t_fast = median_time(lambda: fast.train(piece, vocab_size), args.runs)
    assert fast.merges == naive, "fast trainer disagrees with train_bpe"
    report(f"train_bpe (naive), vocab {vocab_size}, first 100,000 chars, 1 run", f"{t_naive:.2f} s")
    report("BPETokenizer(pattern=None).train, same input", f"{t_fast:.2f} s")

    # --- encoding ----------------------------------------------------------------------------
    print()
    bench_encode("Tiny Shakespeare", text, args.runs)
    bench_encode("Python stdlib source", python_source_text(), args.runs)
    print()
    bench_long_chunk(args.runs)
    if not args.skip_stream:
        print()
        bench_stream(text)


if __name__ == "__main__":
    main()
