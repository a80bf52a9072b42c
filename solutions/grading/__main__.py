"""The instructor's command.

    python -m solutions.grading release COURSE_DIR   course directory (outside the clone), source notebooks,
                                                     grading secret, nbgrader generate_assignment
    python -m solutions.grading grade   COURSE_DIR   grade every submission, each in its own sandbox
        [--chapter C] [--workers W]                  (--shard K/N: one shard's result files only;
        [--shard K/N | --merge]                       --merge: gradebook and feedback from them)
    python -m solutions.grading report  COURSE_DIR   the class report: outcomes and known mistakes per exercise
    python -m solutions.grading gradescope CHAPTER   a Gradescope autograder zip for one chapter
    (``setup`` is the first half of ``release``, without nbgrader: kept for scripts that use it)

Between release and grade, nbgrader as usual: put the downloaded notebooks (or zips) in
downloaded/<chapter>/archive/ and run `nbgrader zip_collect <chapter>`. After grading,
`nbgrader export` writes the grades; feedback is in feedback/<student>/<chapter>/; `report` writes
COURSE_DIR/reports/ (anonymous; with --names: COURSE_DIR/reports-with-names/).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import solutions
from solutions.grading import course


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solutions.grading", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["release", "grade", "report", "gradescope", "setup"])
    parser.add_argument("course_dir", type=Path, metavar="COURSE_DIR|CHAPTER",
                        help="the course directory; for gradescope, the chapter")
    parser.add_argument("--chapter", "--assignment", action="append", choices=solutions.CHAPTERS,
                        help="default: every chapter")
    parser.add_argument("--student", action="append", help="grade only these students (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--names", action="store_true",
                        help="report: name the students behind each count (for the instructor only)")
    parser.add_argument("--out", type=Path, help="report: the folder to write (default COURSE_DIR/reports); "
                        "gradescope: the zip to write (default ./CHAPTER-gradescope.zip)")
    parser.add_argument("--shard", metavar="K/N", help="grade: only shard K of N (K from 0 to N-1) and write only its "
                        "result files; default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or "
                        "JOB_COMPLETION_INDEX/JOB_COMPLETIONS when set")
    parser.add_argument("--merge", action="store_true",
                        help="grade: grade nothing; fill the gradebook and feedback from the shards' result files")
    args = parser.parse_args(argv)
    if args.command == "gradescope":
        from solutions.grading import gradescope

        chapter = str(args.course_dir)
        if chapter not in solutions.CHAPTERS:
            parser.error(f"gradescope takes a chapter, one of {', '.join(solutions.CHAPTERS)}; got {chapter!r}")
        out = gradescope.build_zip(chapter, args.out or Path(f"{chapter}-gradescope.zip"))
        print(f"Gradescope autograder for {chapter}: {out}")
        return 0
    if args.command == "report":
        from solutions.grading import report

        path = args.course_dir.expanduser().resolve()
        if not path.is_dir():
            parser.error(f"no course directory at {path}")
        out = (args.out.expanduser().resolve() if args.out else report.default_out(path, args.names))
        for r in report.write_reports(path, args.chapter, names=args.names, out=out):
            state = (f"{len(r.students)} submission(s), {len(r.attention)} need attention" if r.has_results
                     else "no results")
            print(f"{r.chapter}: {state}: {out / (r.chapter + '.html')}")
        if not args.chapter:
            print(f"overview: {out / 'index.html'}")
        return 0
    if args.command == "grade":
        return _grade(parser, args)
    path = course.setup(args.course_dir, args.chapter)
    if args.command == "release":
        course.release(path, args.chapter)
    print(f"Course directory ready: {path}")
    return 0


def _grade(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from solutions.grading import batch, grader, sandbox

    path = args.course_dir.expanduser().resolve()
    if not (path / "release").is_dir():
        parser.error(f"no released course at {path} (run `python -m solutions.grading release {args.course_dir}` first)")
    chapters = [c for c in (args.chapter or solutions.CHAPTERS) if (path / "release" / c).is_dir()]
    if args.merge:
        if args.shard:
            parser.error("--merge and --shard: merge after every shard has run, in one step")
        incomplete = 0
        for chapter in chapters:
            results, missing = batch.merge_assignment(path, chapter, args.student)
            attention = [r["student"] for r in results if r["status"] != "graded"]
            print(f"{chapter}: {len(results)} merged, {len(attention)} need attention"
                  + (f": {', '.join(attention)}" if attention else ""))
            if missing:
                incomplete += len(missing)
                print(f"{chapter}: {len(missing)} submission(s) without a current result (a shard that died or "
                      f"has not run; rerun it, then merge again): {', '.join(missing)}", file=sys.stderr)
        return 1 if incomplete else 0
    try:
        shard, where = batch.parse_shard(args.shard)
    except ValueError as exc:
        parser.error(str(exc))
    settings = grader.Settings()
    if sandbox.sandbox_ids() is not None or os.geteuid() == 0:
        try:
            sandbox.ensure_sandbox_user(count=max(1, args.workers))
        except sandbox.SandboxError as exc:
            print(f"note: {exc}", file=sys.stderr)
    settings.method = batch.preflight(path, settings)
    print(f"Sandbox: {settings.method}" + (f"; shard {shard[0]} of {shard[1]} ({where})" if shard else ""),
          file=sys.stderr)
    for chapter in chapters:
        results = batch.grade_assignment(path, chapter, workers=args.workers, students=args.student,
                                         settings=settings, shard=shard)
        attention = [r["student"] for r in results if r["status"] != "graded"]
        print(f"{chapter}: {len(results)} graded, {len(attention)} need attention{': ' + ', '.join(attention) if attention else ''}")
    if shard:
        print("Result files written; once every shard has run: python -m solutions.grading grade "
              f"{args.course_dir} --merge", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
