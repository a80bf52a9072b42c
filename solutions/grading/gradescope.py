"""Grading on Gradescope: an autograder zip for one chapter, and what runs inside it.

    python -m solutions.grading gradescope 04_mlp [--out 04_mlp-gradescope.zip]

Gradescope builds one container image from the zip (``setup.sh`` at its root runs once, as
root, with the zip unpacked in ``/autograder/source``) and runs ``run_autograder`` once per
submission, with the student's files in ``/autograder/submission``; the result goes to
``/autograder/results/results.json`` (format: Gradescope's "Autograder Specifications"). The
zip holds:

* ``setup.sh``: installs bubblewrap and Python, then the libraries grading needs (pinned to the
  versions the zip was made with) and this course package into ``/autograder/venv``;
* ``run_autograder``: ``python -m solutions.grading.gradescope run /autograder``;
* ``course/``: the course package (``solutions/``, ``pyproject.toml``, ``README.md``);
* ``released/<chapter>.ipynb``: the chapter as nbgrader released it (what submissions are
  graded against);
* ``secret``: a grading secret made for this zip (the hidden inputs are drawn from it, per
  student); ``run`` makes ``/autograder/source`` readable by root only before any student code
  runs, and the sandbox never sees it.

:func:`run` grades the one submission exactly as ``grade`` grades a class (the same sandbox,
trusted verdicts and hidden inputs) and writes one Gradescope test per exercise (name, score,
max_score, the feedback text as output) and the needs-attention reasons and flags as the
visible top-level output. A submission without a notebook, or one that cannot be graded, still
gets a results.json that says why.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import solutions
from solutions.notebooks import notebook_chapter, repo_root

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends bubblewrap python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -r /autograder/source/course/requirements-gradescope.txt
/autograder/venv/bin/pip install --no-deps /autograder/source/course
"""

# what grading needs, pinned to the versions this zip was made with (they install together)
GRADING_DISTRIBUTIONS = ("torch", "numpy", "einops", "tiktoken", "regex", "tqdm", "nbformat", "ipython", "traitlets")

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this once per submission (working directory /autograder).
# AUTOGRADER_ROOT and AUTOGRADER_PYTHON exist for tests, which simulate /autograder elsewhere.
set -u
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" -m solutions.grading.gradescope run "$ROOT"
"""


def build_zip(chapter: str, out: Path) -> Path:
    """Write the autograder zip for ``chapter`` to ``out``; returns its resolved path.
    Raises ValueError for a chapter the course does not have."""
    from solutions.grading import course

    if chapter not in solutions.CHAPTERS:
        raise ValueError(f"no chapter {chapter!r}; the chapters are {', '.join(solutions.CHAPTERS)}")
    out = Path(out).expanduser().resolve()
    root = repo_root()
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        course_dir = course.setup(Path(tmp) / "course", [chapter])
        course.release(course_dir, [chapter])
        released = course_dir / "release" / chapter / f"{chapter}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
            _add(z, "setup.sh", SETUP_SH.encode(), executable=True)
            _add(z, "run_autograder", RUN_AUTOGRADER.encode(), executable=True)
            _add(z, f"released/{chapter}.ipynb", released.read_bytes())
            _add(z, "secret", secrets.token_hex(32).encode())
            _add(z, "course.json", json.dumps({"chapter": chapter, "version": solutions.__version__}).encode())
            _add(z, "course/requirements-gradescope.txt", grading_requirements().encode())
            for name in ("pyproject.toml", "README.md"):
                _add(z, f"course/{name}", (root / name).read_bytes())
            package = Path(solutions.__file__).resolve().parent
            for path in sorted(package.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                    _add(z, f"course/solutions/{path.relative_to(package).as_posix()}", path.read_bytes())
        os.replace(partial, out)
    return out


def grading_requirements() -> str:
    """requirements-gradescope.txt: the distributions grading imports, at the installed versions
    (a local build tag such as torch's ``+cpu`` dropped)."""
    from importlib.metadata import version

    return "".join(f"{name}=={version(name).split('+')[0]}\n" for name in GRADING_DISTRIBUTIONS)


def _add(z: zipfile.ZipFile, name: str, data: bytes, *, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


# --------------------------------------------------------------------------------------------
# inside Gradescope's container


def find_notebook(folder: Path, chapter: str) -> Path | None:
    """The submitted notebook of ``chapter`` in ``folder``: the one whose metadata names the
    chapter, else one with the chapter's name, else the only notebook; None if there is none."""
    from solutions.grading.collect import notebook_chapter_of

    notebooks = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and ".ipynb_checkpoints" not in p.parts)
    for test in (lambda p: notebook_chapter_of(str(p)) == chapter, lambda p: chapter in p.name):
        matching = [p for p in notebooks if test(p)]
        if matching:
            return matching[0]
    return notebooks[0] if len(notebooks) == 1 else None


def student_of(root: Path) -> str:
    """Who handed in (for the per-student hidden inputs): from Gradescope's
    submission_metadata.json (the users' ids), else "submission"."""
    try:
        meta = json.loads((root / "submission_metadata.json").read_text(encoding="utf-8"))
        users = meta.get("users") or []
        ids = sorted(str(u.get("id") or u.get("email") or "") for u in users if isinstance(u, dict))
        ids = [i for i in ids if i]
        if ids:
            return "+".join(ids)[:200]
    except (OSError, ValueError, AttributeError):
        pass
    return "submission"


def results_json(result: dict) -> dict:
    """Gradescope's results.json for one of our results: one test per exercise."""
    from solutions.grading import verdicts

    tests = []
    for e in result["exercises"]:
        outcome = e.get("outcome") or verdicts.exercise_outcome(e["verdict"], e["message"])
        tests.append({
            "name": e["name"],
            "score": e["points"],
            "max_score": e["max_points"],
            "status": "passed" if outcome == "passed" else "failed",
            "output": f"{verdicts.LABELS.get(outcome, outcome)}: {e['message']}",
            "visibility": "visible",
        })
    lines = [f"{result['assignment']}: {result['score']:g} / {result['max_score']:g}",
             "Each exercise was run on fresh inputs that are not the ones in your notebook."]
    if result["status"] != "graded":
        lines.append("An instructor will review this submission before the grade is final:")
        lines += [f"- {r}" for r in result.get("reasons", [])]
        lines += [f"- {f}" for f in result.get("flags", [])]
    if result.get("notes"):
        lines.append("Notes:")
        lines += [f"- {n}" for n in result["notes"]]
    return {
        "score": result["score"],
        "output": "\n".join(lines),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"status": result["status"], "reasons": result.get("reasons", []),
                       "flags": result.get("flags", []), "course_version": solutions.__version__},
    }


def run(root: Path) -> dict:
    """Grade the submission in ``root/submission`` and write ``root/results/results.json``;
    returns what was written. Never raises for the submission's sake."""
    from solutions.grading import batch, grader, sandbox

    root = Path(root).resolve()
    source = root / "source"
    chapter = json.loads((source / "course.json").read_text())["chapter"]
    released = grader.load_released(source / "released" / f"{chapter}.ipynb", chapter)
    out = root / "results" / "results.json"
    path = find_notebook(root / "submission", chapter)
    if path is None:
        names = sorted(p.name for p in (root / "submission").rglob("*") if p.is_file())[:20]
        result = batch.crashed_result(grader.Submission(chapter, "submission", Path(f"{chapter}.ipynb")), released,
                                      FileNotFoundError(f"no notebook of {chapter} among the files handed in "
                                                        f"({', '.join(names) or 'none'})"))
        result["reasons"] = [f"not graded: no notebook of {chapter} was handed in "
                             f"(files: {', '.join(names) or 'none'}); upload the .ipynb file"]
    else:
        settings = grader.Settings()
        if sandbox.sandbox_ids() is not None or os.geteuid() == 0:
            try:
                sandbox.ensure_sandbox_user()
            except sandbox.SandboxError as exc:
                print(f"note: {exc}", file=sys.stderr)
        settings.method = batch.preflight(source, settings)  # source: owner only, out of the sandbox's reach
        secret = bytes.fromhex((source / "secret").read_text().strip())
        submission = grader.Submission(chapter, student_of(root), path)
        try:
            result = grader.grade(submission, released, secret, settings)
        except BaseException as exc:  # the grader's own bug must not cost a result
            result = batch.crashed_result(submission, released, exc)
        result = grader.clean(result)
    data = results_json(result)
    batch.write_atomically(out, json.dumps(data, indent=2))
    print(data["output"])
    for test in data["tests"]:
        print(f"{test['name']}: {test['score']:g}/{test['max_score']:g}")
    return data


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "run":
        print("usage: python -m solutions.grading.gradescope run AUTOGRADER_ROOT", file=sys.stderr)
        return 2
    run(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
