"""The Gradescope autograder zip, run as Gradescope runs it, against a simulated /autograder tree.

`python -m solutions.grading gradescope CHAPTER` writes the zip; each test unpacks it into a
temporary root laid out as Gradescope's specification says (source/, submission/, results/,
run_autograder) and runs `run_autograder` on one submission: solved, untouched stub, one wrong
exercise, hostile (reads the zip's secret, imports the reference, reaches it through sys.modules).
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from solutions.checks import SPECS
from solutions.checks.tokenization import _merge_without_skipping
from solutions.notebooks import read_notebook, solved_notebook

pytestmark = pytest.mark.slow

CHAPTER = "01_tokenization"
POINTS = {s.name: float(s.points) for s in SPECS.values() if s.chapter == CHAPTER}
TOTAL = sum(POINTS.values())


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("zip") / "ag.zip"
    done = subprocess.run([sys.executable, "-m", "solutions.grading", "gradescope", CHAPTER, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _answer(nb, name, source):
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == name:
            cell.source = source
    return nb


def _run(autograder_zip, tmp_path, nb, *, filename=f"Copy of {CHAPTER}.ipynb"):
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(autograder_zip) as z:
        z.extractall(root / "source")
    shutil.copyfile(root / "source" / "run_autograder", root / "run_autograder")
    os.chmod(root / "run_autograder", 0o755)
    (root / "submission").mkdir()
    (root / "results").mkdir()
    (root / "submission_metadata.json").write_text(json.dumps({"users": [{"id": 4242, "email": "s@example.org"}]}))
    if nb is not None:
        nbformat.write(nb, root / "submission" / filename)
    # the zip's own copy of the course package, not the clone's, is the one that grades
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable,
           "PYTHONPATH": str(root / "source" / "course")}
    done = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    return root, results, done.stdout + done.stderr


def _released(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as z:
        return nbformat.reads(z.read(f"released/{CHAPTER}.ipynb").decode(), as_version=4)


def _check_format(results):
    """Gradescope's documented results.json: a score, and tests with name, score, max_score, output."""
    assert isinstance(results["score"], (int, float))
    assert results["tests"] and [t["name"] for t in results["tests"]] == list(POINTS)
    for test in results["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output"}
        assert test["max_score"] == POINTS[test["name"]] and 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed") and test.get("visibility", "visible") == "visible"
    assert results["score"] == sum(t["score"] for t in results["tests"])


def test_the_zip_has_what_gradescope_runs(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "secret", f"released/{CHAPTER}.ipynb",
                "course/pyproject.toml", "course/solutions/__init__.py", "course/requirements-gradescope.txt"} <= names
        assert z.getinfo("run_autograder").external_attr >> 16 & 0o111
        assert "torch==" in z.read("course/requirements-gradescope.txt").decode()
        assert not any("__pycache__" in n for n in names)


def test_solved_gets_full_marks(autograder_zip, tmp_path):
    root, results, _ = _run(autograder_zip, tmp_path, solved_notebook(_released(autograder_zip), CHAPTER))
    _check_format(results)
    assert results["score"] == TOTAL and all(t["status"] == "passed" for t in results["tests"])
    assert results["extra_data"]["status"] == "graded"
    assert oct(os.stat(root / "source").st_mode & 0o777) == oct(0o700)  # the secret out of the sandbox's reach


def test_stub_gets_zero_and_says_unfinished(autograder_zip, tmp_path):
    _, results, _ = _run(autograder_zip, tmp_path, _released(autograder_zip))
    _check_format(results)
    assert results["score"] == 0
    assert all(t["output"].startswith("unfinished: ") for t in results["tests"])


def test_one_wrong_exercise_loses_exactly_its_points(autograder_zip, tmp_path):
    import inspect

    wrong = inspect.getsource(_merge_without_skipping).replace("_merge_without_skipping", "merge")
    nb = _answer(solved_notebook(_released(autograder_zip), CHAPTER), "merge", wrong)
    _, results, _ = _run(autograder_zip, tmp_path, nb)
    _check_format(results)
    assert results["score"] == TOTAL - POINTS["merge"]
    (merge,) = [t for t in results["tests"] if t["name"] == "merge"]
    assert merge["score"] == 0 and "after replacing a pair, skip both of its ids" in merge["output"]


def test_hostile_submission_gains_nothing_and_is_flagged(autograder_zip, tmp_path):
    import inspect

    wrong = inspect.getsource(_merge_without_skipping).replace("_merge_without_skipping", "merge")
    nb = _answer(solved_notebook(_released(autograder_zip), CHAPTER), "merge", wrong)
    secret_path = tmp_path / "autograder" / "source" / "secret"
    nb.cells.append(nbformat.v4.new_code_cell(
        f"try:\n    print('SECRET', open({str(secret_path)!r}).read())\nexcept Exception as e:\n    print('no secret', e)\n"
        "import sys\n"
        "ref = sys.modules.get('solutions.tokenization')\n"
        "merge = getattr(ref, 'merge', merge)\n"))
    nb.cells.append(nbformat.v4.new_code_cell("%time from solutions.tokenization import merge"))
    root, results, log = _run(autograder_zip, tmp_path, nb)
    _check_format(results)
    secret = (root / "source" / "secret").read_text().strip()
    assert secret not in json.dumps(results) and secret not in log
    (merge,) = [t for t in results["tests"] if t["name"] == "merge"]
    assert merge["score"] == 0  # the reference is not there to be reached
    assert results["extra_data"]["status"] == "needs_attention"
    assert "An instructor will review this submission" in results["output"]
    assert "sys.modules" in results["output"] and "solutions.tokenization" in results["output"]
