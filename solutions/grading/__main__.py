"""The instructor's command.

    python -m solutions.grading setup   COURSE_DIR   course directory (outside the clone) + source notebooks
    python -m solutions.grading release COURSE_DIR   setup + nbgrader generate_assignment, every chapter
    python -m solutions.grading grade   COURSE_DIR   grade every submission, each in its own sandbox
    python -m solutions.grading report  COURSE_DIR   the class report: outcomes and known mistakes per exercise

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
    parser.add_argument("command", choices=["setup", "release", "grade", "report"])
    parser.add_argument("course_dir", type=Path)
    parser.add_argument("--chapter", "--assignment", action="append", choices=solutions.CHAPTERS,
                        help="default: every chapter")
    parser.add_argument("--student", action="append", help="grade only these students (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--names", action="store_true",
                        help="report: name the students behind each count (for the instructor only)")
    parser.add_argument("--out", type=Path, help="report: the folder to write (default COURSE_DIR/reports)")
    args = parser.parse_args(argv)
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
        from solutions.grading import batch, grader, sandbox

        path = args.course_dir.expanduser().resolve()
        settings = grader.Settings()
        if sandbox.sandbox_ids() is not None or os.geteuid() == 0:
            try:
                sandbox.ensure_sandbox_user(count=max(1, args.workers))
            except sandbox.SandboxError as exc:
                print(f"note: {exc}", file=sys.stderr)
        settings.method = batch.preflight(path, settings)
        print(f"Sandbox: {settings.method}", file=sys.stderr)
        for chapter in args.chapter or solutions.CHAPTERS:
            if not (path / "release" / chapter).is_dir():
                continue
            results = batch.grade_assignment(path, chapter, workers=args.workers, students=args.student, settings=settings)
            attention = [r["student"] for r in results if r["status"] != "graded"]
            print(f"{chapter}: {len(results)} graded, {len(attention)} need attention{': ' + ', '.join(attention) if attention else ''}")
        return 0
    path = course.setup(args.course_dir, args.chapter)
    if args.command == "release":
        course.release(path, args.chapter)
    print(f"Course directory ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
