"""The instructor's command: ``python -m solutions.grading {setup,release} COURSE_DIR``.

    setup   COURSE_DIR   make the course directory (outside the clone) with its source notebooks
    release COURSE_DIR   setup + nbgrader generate_assignment for every chapter

Then, in COURSE_DIR, nbgrader as usual: put the downloaded notebooks (or zips) in
downloaded/<chapter>/archive/, and run `nbgrader zip_collect <chapter>`,
`nbgrader autograde <chapter>`, `nbgrader generate_feedback <chapter>`, `nbgrader export`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import solutions
from solutions.grading import course


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solutions.grading", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["setup", "release"])
    parser.add_argument("course_dir", type=Path)
    parser.add_argument("--chapter", action="append", choices=solutions.CHAPTERS, help="default: every chapter")
    args = parser.parse_args(argv)
    path = course.setup(args.course_dir, args.chapter)
    if args.command == "release":
        course.release(path, args.chapter)
    print(f"Course directory ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
