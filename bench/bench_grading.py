"""Grading speed: a class of 30 students x every chapter notebook, with 1 and 2 workers.

    python bench/bench_grading.py [--students 30] [--baseline 3]

Prints, with the load average beside every figure: seconds per notebook (median, 90th
percentile) and for the class, for 1 and 2 workers, each graded in its own sandbox (and its
trusted side in a fresh process of its own); and, as a baseline measured in the same run, stock
`nbgrader autograde` on a few of the same notebooks of every chapter. Last, a table: per chapter,
notebooks per minute (wall time) with 1 and 2 workers beside stock nbgrader's.
The class is a realistic mix: 60% solved, 20% untouched stubs, 20% with one wrong exercise.
Targets: median <= 2 s per notebook, isolation included (issue 8: withholding package copy, one
exercise at a time over pipes, memory cgroup, size-limited scratch); 30 students x 6 chapters
<= 10 minutes with 2 workers (issue 3).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import solutions  # noqa: E402
from solutions.checks.tokenization import _merge_without_skipping  # noqa: E402
from solutions.grading import batch, course, sandbox  # noqa: E402
from solutions.notebooks import read_notebook, solved_notebook  # noqa: E402


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def make_class(course_dir: Path, chapter: str, students: int) -> None:
    released = read_notebook(course_dir / "release" / chapter / f"{chapter}.ipynb")
    solved = solved_notebook(released, chapter)
    wrong = nbformat.from_dict(json.loads(json.dumps(solved)))
    for cell in wrong.cells:  # chapter 1's known mistake; other chapters' wrong notebooks equal solved ones
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "merge":
            cell.source = inspect.getsource(_merge_without_skipping).replace("_merge_without_skipping", "merge")
    for i in range(students):
        nb = released if i % 5 == 1 else wrong if i % 5 == 3 else solved
        folder = course_dir / "submitted" / f"student{i:02d}" / chapter
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{chapter}.ipynb")


def grade_class(course_dir: Path, workers: int, chapters: list[str],
                walls: dict | None = None) -> tuple[float, list[float]]:
    shutil.rmtree(course_dir / "graded", ignore_errors=True)
    start = time.perf_counter()
    per_notebook = []
    for chapter in chapters:
        before = load()
        chapter_start = time.perf_counter()
        results = batch.grade_assignment(course_dir, chapter, workers=workers, progress=False)
        if walls is not None:
            walls[chapter] = (time.perf_counter() - chapter_start, len(results), before, load())
        for r in results:
            if "seconds" not in r:  # the grader itself failed on it: say why, never hide it
                print(f"  GRADER FAILURE on {r['student']}: {r.get('reasons')}\n{r.get('traceback', '')[-3000:]}")
        seconds = sorted(r.get("seconds", float("nan")) for r in results)
        wrong = [r["student"] for r in results if r["status"] != "graded"]
        print(f"  {chapter}, {workers} worker(s): per notebook median {statistics.median(seconds):.2f} s, "
              f"max {seconds[-1]:.2f} s{'; NEEDS ATTENTION: ' + ', '.join(wrong) if wrong else ''}   "
              f"[before: {before}; after: {load()}]")
        per_notebook += seconds
    return time.perf_counter() - start, per_notebook


def stock_nbgrader(course_dir: Path, chapter: str, n: int) -> list[float]:
    """Stock `nbgrader autograde`, one student at a time, as an instructor would run it."""
    times = []
    for i in range(n):
        student = f"student{i:02d}"
        start = time.perf_counter()
        result = course.nbgrader(course_dir, "autograde", chapter, "--student", student, "--force", check=False)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-2000:])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--baseline", type=int, default=3, help="notebooks graded by stock nbgrader")
    parser.add_argument("--chapter", action="append", choices=solutions.CHAPTERS, help="default: every chapter")
    args = parser.parse_args()
    chapters = args.chapter or solutions.CHAPTERS
    print(f"{len(chapters)} chapter(s): {', '.join(chapters)}; {args.students} students; "
          f"{os.cpu_count()} CPUs; sandbox methods: {sandbox.available_methods()}")
    if os.geteuid() == 0:
        sandbox.ensure_sandbox_user(count=2)
    probe = sandbox._MemoryGroup.create(1 << 30)
    print(f"total memory bound per submission: {probe.kind if probe else 'polled'}; scratch: size-limited tmpfs")
    if probe:
        probe.remove()
    with tempfile.TemporaryDirectory() as tmp:
        course_dir = course.setup(Path(tmp) / "course", chapters)
        course.release(course_dir, chapters)
        for chapter in chapters:
            make_class(course_dir, chapter, args.students)
        notebooks = args.students * len(chapters)

        stock = {}  # chapter -> seconds per notebook, one at a time
        for chapter in chapters if args.baseline else []:
            before = load()
            times = stock_nbgrader(course_dir, chapter, args.baseline)
            stock[chapter] = (times, before, load())
            print(f"stock nbgrader autograde, {chapter}: median {statistics.median(times):.2f} s per notebook "
                  f"(n={len(times)})   [before: {before}; after: {load()}]")

        rows, walls = {}, {1: {}, 2: {}}
        for workers in (1, 2):
            before = load()
            wall, per = grade_class(course_dir, workers, chapters, walls[workers])
            rows[workers] = wall
            per.sort()
            p90 = per[min(len(per) - 1, int(0.9 * len(per)))]
            print(f"{workers} worker(s): class of {notebooks} notebooks in {wall:.1f} s = {wall / notebooks:.2f} s per "
                  f"notebook of wall time; per notebook median {statistics.median(per):.2f} s, p90 {p90:.2f} s   "
                  f"[before: {before}; after: {load()}]")
        six = rows[2] / len(chapters) * 6
        print(f"projected for {args.students} students x 6 chapters with 2 workers: {six / 60:.1f} min (target <= 10 min)")
        print("\nthroughput, notebooks per minute of wall time (same run; load average before -> after):")
        print(f"  {'chapter':<16} {'ours, 1 worker':>15} {'ours, 2 workers':>16} {'stock nbgrader':>15}  speed-up (1 worker)")
        for chapter in chapters:
            ours = {w: walls[w][chapter] for w in (1, 2)}
            per_min = {w: 60 * n / max(t, 1e-9) for w, (t, n, _, _) in ours.items()}
            times = stock.get(chapter, ([], "", ""))[0]
            stock_min = 60 / statistics.median(times) if times else float("nan")
            print(f"  {chapter:<16} {per_min[1]:>15.1f} {per_min[2]:>16.1f} {stock_min:>15.1f}  "
                  f"{per_min[1] / stock_min:.1f}x   [ours: {ours[1][2]} -> {ours[2][3]}; "
                  f"stock: {stock[chapter][1] + ' -> ' + stock[chapter][2] if chapter in stock else 'not run'}]")


if __name__ == "__main__":
    main()
