"""Mutation kill rate of every check: how much wrong code each exercise's check rejects.

    python bench/bench_mutation.py [--chapter 01_tokenization] [--survivors]

For every exercise, mutates its reference once per mutation site (operators, comparisons,
constants, off-by-ones, swapped or deleted statements, swapped call arguments; see
tests/mutants.py) and runs the check on each mutant with the notebook's seed and a hidden one.
Prints mutants, killed, known-equivalent, survivors and the kill rate (target: at least 95 %
per exercise), with the time taken and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mutants import mutation_report  # noqa: E402
from solutions.checks import SPECS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chapter", help="only this chapter, e.g. 01_tokenization")
    parser.add_argument("--survivors", action="store_true", help="list each surviving mutant")
    args = parser.parse_args()
    print(f"{'exercise':24} {'mutants':>8} {'killed':>7} {'equiv.':>7} {'survive':>8} {'rate':>7} {'time':>7}   load average")
    worst = 1.0
    for spec in SPECS.values():
        if args.chapter and spec.chapter != args.chapter:
            continue
        start = time.perf_counter()
        report = mutation_report(spec)
        seconds = time.perf_counter() - start
        worst = min(worst, report.rate)
        load = "%.2f %.2f %.2f" % os.getloadavg()
        print(
            f"{spec.name:24} {report.total:8} {report.killed:7} {len(report.equivalent):7} "
            f"{len(report.survivors):8} {report.rate:7.1%} {seconds:6.1f}s   {load}"
        )
        if args.survivors:
            for survivor in report.survivors:
                print(f"    survives: {survivor}")
    print(f"lowest kill rate: {worst:.1%} (target: at least 95 % for every exercise)")


if __name__ == "__main__":
    main()
