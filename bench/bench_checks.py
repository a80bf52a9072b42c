"""How long each notebook check takes on the CPU (the design asks for well under a second).

    python bench/bench_checks.py [--runs 5]

Runs every check on its reference, prints the median time per check beside the load average,
and, as a baseline in the same run, the time of calling the reference alone on the same inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solutions.checks import SPECS  # noqa: E402
from solutions.checks.core import check_function, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'check':24} {'check (median)':>15} {'reference alone':>16}   load average")
    for spec in SPECS.values():
        checks, alone = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                check_function(spec, spec.reference, device="cpu")
            checks.append(time.perf_counter() - start)
            cases = spec.make_cases(0)
            start = time.perf_counter()
            run(spec.reference, cases)
            alone.append(time.perf_counter() - start)
        load = "%.2f %.2f %.2f" % os.getloadavg()
        print(f"{spec.name:24} {statistics.median(checks) * 1000:12.1f} ms {statistics.median(alone) * 1000:13.1f} ms   {load}")


if __name__ == "__main__":
    main()
