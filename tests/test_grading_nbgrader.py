"""The instructor's nbgrader workflow, end to end and offline, in a course directory outside the clone.

release -> zip_collect (renamed downloads, one in a zip) -> autograde -> export -> feedback:
a solved submission gets full marks, an untouched stub zero, one wrong exercise loses exactly its points.
"""

import csv
import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest

from solutions.checks import SPECS
from solutions.checks.tokenization import _merge_without_skipping
from solutions.grading import course
from solutions.notebooks import read_notebook, solved_notebook, stub_path

pytestmark = pytest.mark.slow

CHAPTER = "01_tokenization"
FIXTURES = Path(__file__).parent / "fixtures"
COLAB_DOWNLOAD = FIXTURES / "Copy of 01_tokenization.ipynb"


def _with_wrong_merge(nb):
    """The solved notebook, except that `merge` forgets to skip past a merged pair."""
    import inspect

    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "merge":
            cell.source = inspect.getsource(_merge_without_skipping).replace("_merge_without_skipping", "merge")
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    course_dir = course.setup(root / "course")
    course.release(course_dir, [CHAPTER])
    stub = read_notebook(stub_path(CHAPTER))

    archive = course_dir / "downloaded" / CHAPTER / "archive"
    archive.mkdir(parents=True)
    # alice: a real Colab download, renamed by Colab ("Copy of ...") and by the LMS (name prefix)
    shutil.copyfile(COLAB_DOWNLOAD, archive / f"alice_{COLAB_DOWNLOAD.name}")
    # dave: the same download after an editor dropped the notebook's metadata (no course.chapter)
    download = json.loads(COLAB_DOWNLOAD.read_text())
    download["metadata"] = {}
    (archive / "dave_Copy of Copy of 01_tokenization.ipynb").write_text(json.dumps(download))
    # bob: handed in the untouched stub
    nbformat.write(stub, archive / "bob_01_tokenization.ipynb")
    # carol: all correct but merge, in a zip as an LMS bulk download makes it
    wrong = _with_wrong_merge(solved_notebook(stub, CHAPTER))
    with zipfile.ZipFile(archive / "bulk.zip", "w") as z:
        z.writestr("carol_12345_67890_01_tokenization (1).ipynb", nbformat.writes(wrong))
        z.writestr("carol_12345_67890_notes.txt", "not a notebook")

    collect = course.nbgrader(course_dir, "zip_collect", CHAPTER, check=False)
    assert collect.returncode == 0, collect.stdout + collect.stderr
    autograde = course.nbgrader(course_dir, "autograde", CHAPTER, check=False)
    assert autograde.returncode == 0, autograde.stdout + autograde.stderr
    export = course.nbgrader(course_dir, "export", "--to", str(root / "grades.csv"), check=False)
    assert export.returncode == 0, export.stdout + export.stderr
    feedback = course.nbgrader(course_dir, "generate_feedback", CHAPTER, check=False)
    assert feedback.returncode == 0, feedback.stdout + feedback.stderr
    with open(root / "grades.csv") as f:
        grades = {row["student_id"]: row for row in csv.DictReader(f)}
    return course_dir, grades


def test_course_directory_is_outside_the_clone(graded):
    course_dir, _ = graded
    assert Path(course.__file__).resolve().parents[2] not in course_dir.parents


def test_renamed_downloads_are_collected_under_the_canonical_name(graded):
    course_dir, _ = graded
    for student in ("alice", "bob", "carol", "dave"):
        assert (course_dir / "submitted" / student / CHAPTER / f"{CHAPTER}.ipynb").is_file(), student
    assert not list((course_dir / "submitted").glob("*/*/*.txt"))


def test_scores_full_zero_and_one_exercise_lost(graded):
    _, grades = graded
    total = sum(spec.points for spec in SPECS.values() if spec.chapter == CHAPTER)
    assert float(grades["alice"]["max_score"]) == total
    assert float(grades["alice"]["score"]) == total
    assert float(grades["dave"]["score"]) == total
    assert float(grades["bob"]["score"]) == 0
    assert float(grades["carol"]["score"]) == total - SPECS["merge"].points


def test_feedback_names_the_failed_check(graded):
    course_dir, _ = graded
    (html,) = (course_dir / "feedback" / "carol" / CHAPTER).glob("*.html")
    text = html.read_text()
    assert "after replacing a pair, skip both of its ids" in text


def test_sandboxed_grade_command_agrees_and_export_still_works(graded, tmp_path):
    """`python -m solutions.grading grade` on the same collected submissions: same scores."""
    import subprocess
    import sys

    course_dir, stock = graded
    result = subprocess.run(
        [sys.executable, "-m", "solutions.grading", "grade", str(course_dir), "--workers", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "01_tokenization: 4 graded, 0 need attention" in result.stdout
    assert "4/4" in result.stderr  # the progress bar
    export = course.nbgrader(course_dir, "export", "--to", str(tmp_path / "ours.csv"), check=False)
    assert export.returncode == 0, export.stderr
    with open(tmp_path / "ours.csv") as f:
        ours = {row["student_id"]: row["score"] for row in csv.DictReader(f)}
    assert ours == {student: row["score"] for student, row in stock.items()}
    assert (course_dir / "graded" / CHAPTER / "carol.json").is_file()
