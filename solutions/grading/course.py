"""An nbgrader course directory, made from the clone: config and source notebooks.

The course directory lives outside the clone (it holds the gradebook and students' work). Its
source notebooks are generated from the committed stubs and the references; nbgrader's release of
them gives back the committed stubs, which is what learners already have from the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

import solutions
from solutions.notebooks import read_notebook, repo_root, source_notebook, stub_path


def setup(course_dir: Path, chapters: list[str] | None = None) -> Path:
    """Create or refresh ``course_dir``: nbgrader_config.py and source/<chapter>/<chapter>.ipynb."""
    root = repo_root()
    course_dir = Path(course_dir).expanduser().resolve()
    if course_dir == root or root in course_dir.parents:
        raise SystemExit(f"{course_dir} is inside the clone; put the course directory elsewhere.")
    course_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "nbgrader_config.py", course_dir / "nbgrader_config.py")
    for chapter in chapters or solutions.CHAPTERS:
        target = course_dir / "source" / chapter / f"{chapter}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(source_notebook(read_notebook(stub_path(chapter, root)), chapter), target)
    return course_dir


def nbgrader(course_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run an nbgrader command in the course directory (where it finds nbgrader_config.py)."""
    command = [sys.executable, "-m", "nbgrader", *args]
    # nbgrader runs helper programs (alembic) by name: find them next to this interpreter even
    # when its environment is not activated
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(command, cwd=course_dir, check=check, text=True, capture_output=True, env=env)


def release(course_dir: Path, chapters: list[str] | None = None) -> None:
    """``nbgrader generate_assignment`` for each chapter (adds it to the gradebook too), and the
    course's grading secret (``.grading/secret``, readable by its owner only), so that it exists
    before any grading starts, however many machines grade at once."""
    from solutions.grading.batch import course_secret

    course_secret(Path(course_dir))
    for chapter in chapters or solutions.CHAPTERS:
        result = nbgrader(course_dir, "generate_assignment", chapter, "--force", check=False)
        if result.returncode != 0:
            raise SystemExit(f"nbgrader generate_assignment {chapter} failed:\n{result.stdout}{result.stderr}")
