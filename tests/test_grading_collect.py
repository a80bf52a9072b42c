"""Collecting a class's downloads and grading them with the README's instructor commands (issue 8).

release -> downloads (and zips) in downloaded/<chapter>/archive/ -> `nbgrader zip_collect` ->
`python -m solutions.grading grade . --workers 2`. What must hold:

* two downloads from one student (a first one and a later "Copy of ... (1)") are resolved by the
  stated rule (the newest), with a warning naming both; everyone else is still collected;
* a zip one student uploaded is filed as theirs, even when a notebook inside is named after
  another student (who keeps their own submission); the conflict is reported;
* a notebook that is not clean UTF-8, or whose JSON nests thousands of levels deep, reaches the
  grader and gets a "needs attention" result with the real reason; neither stops the batch;
* every collected student gets a result file, feedback and a gradebook entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile

import nbformat
import pytest

from solutions.checks.tokenization import _merge_without_skipping
from solutions.grading import course
from solutions.notebooks import read_notebook, solved_notebook, stub_path

pytestmark = pytest.mark.slow

CHAPTER = "01_tokenization"


def _wrong_merge(nb):
    import inspect

    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "merge":
            cell.source = inspect.getsource(_merge_without_skipping).replace("_merge_without_skipping", "merge")
    return nb


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    root = tmp_path_factory.mktemp("collect")
    course_dir = course.setup(root / "course", [CHAPTER])
    course.release(course_dir, [CHAPTER])
    stub = read_notebook(stub_path(CHAPTER))
    solved = solved_notebook(stub, CHAPTER)
    wrong = _wrong_merge(solved)
    archive = course_dir / "downloaded" / CHAPTER / "archive"
    archive.mkdir(parents=True)

    # alice: a first download (wrong merge), then a later, corrected one that Colab renamed
    first = archive / f"alice_{CHAPTER}.ipynb"
    nbformat.write(wrong, first)
    later = archive / f"alice_Copy of {CHAPTER} (1).ipynb"
    nbformat.write(solved, later)
    now = time.time()
    os.utime(first, (now - 3600, now - 3600))
    os.utime(later, (now, now))
    # bob: his own submission, the stub
    nbformat.write(stub, archive / f"bob_{CHAPTER}.ipynb")
    # mallory: uploads a zip holding a (correct) notebook named after bob, and one named after
    # carol, who handed in nothing
    with zipfile.ZipFile(archive / "mallory_555_upload.zip", "w") as z:
        z.writestr(f"bob_{CHAPTER}.ipynb", nbformat.writes(solved))
        z.writestr(f"carol_{CHAPTER}.ipynb", nbformat.writes(solved))
    # erin: a notebook a tool saved with a Latin-1 byte
    raw = nbformat.writes(solved).encode().replace(b'"nbformat": 4', b'"saved_by": "caf\xe9", "nbformat": 4', 1)
    (archive / f"erin_{CHAPTER}.ipynb").write_bytes(raw)
    # frank: JSON nested thousands of levels deep
    (archive / f"frank_{CHAPTER}.ipynb").write_bytes(b"[" * 50_000 + b"]" * 50_000)
    # grace: a correct notebook, in a bulk download of the LMS (member names say who)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as z:
        z.writestr(f"grace_777_{CHAPTER}.ipynb", nbformat.writes(solved))

    collect = course.nbgrader(course_dir, "zip_collect", CHAPTER, check=False)
    assert collect.returncode == 0, collect.stdout + collect.stderr
    grade = subprocess.run(
        [sys.executable, "-m", "solutions.grading", "grade", str(course_dir), "--workers", "2"],
        capture_output=True, text=True, timeout=900, cwd=course_dir,
    )
    assert grade.returncode == 0, grade.stdout + grade.stderr
    results = {p.stem: json.loads(p.read_text()) for p in (course_dir / "graded" / CHAPTER).glob("*.json")}
    return course_dir, collect.stdout + collect.stderr, grade.stdout + grade.stderr, results


def test_duplicates_are_resolved_by_the_stated_rule_and_named(collected):
    _, log, _, results = collected
    assert "handed in" in log and "twice" in log
    assert f"alice_Copy of {CHAPTER} (1).ipynb" in log and f"alice_{CHAPTER}.ipynb" in log
    assert results["alice"]["score"] == results["alice"]["max_score"], "the newest download is the one graded"


def test_identity_comes_from_the_upload(collected):
    course_dir, log, _, results = collected
    assert "carol" not in results, "a notebook named after carol inside mallory's upload is not carol's"
    assert not (course_dir / "submitted" / "carol").exists()
    assert results["bob"]["score"] == 0, "bob keeps his own submission"
    assert "mallory" in results
    assert "named for student bob" in log and "mallory" in log
    assert results["grace"]["score"] == results["grace"]["max_score"]


def test_damaged_files_reach_the_grader_with_the_real_reason(collected):
    _, log, _, results = collected
    assert "not a course notebook" not in log.split("erin")[0][-200:]
    assert results["erin"]["status"] == "needs_attention"
    assert any("UTF-8" in r for r in results["erin"]["reasons"])
    assert results["frank"]["status"] == "needs_attention"
    assert any("nested too deeply" in r for r in results["frank"]["reasons"])


def test_every_collected_student_has_result_feedback_and_gradebook_entry(collected):
    from nbgrader.api import Gradebook

    course_dir, _, output, results = collected
    students = sorted(p.name for p in (course_dir / "submitted").iterdir())
    assert students == sorted(results) == ["alice", "bob", "erin", "frank", "grace", "mallory"]
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for student in students:
            assert (course_dir / "feedback" / student / CHAPTER / f"{CHAPTER}.html").is_file()
            assert gb.find_submission_notebook(CHAPTER, CHAPTER, student).score == results[student]["score"]
    assert f"{CHAPTER}: 6 graded, 2 need attention" in output
