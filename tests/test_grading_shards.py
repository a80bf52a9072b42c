"""A class graded the way an instructor runs it, and the same class in shards (issue 21).

One course directory, collected with `nbgrader zip_collect` from uploads that once confused the
log (a zip holding the notebook under its released name, two downloads from one student), is
copied twice: one copy is graded by one `grade` command, the other by three `grade --shard K/3`
commands running at once and one `grade --merge`. The gradebook, the feedback pages and the class
report must be equal. Deeply nested submissions come before honest ones in the batch, and a shard
whose results are lost is rerun alone.
"""

import csv
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from solutions.checks import SPECS
from solutions.grading import batch, course, report
from solutions.notebooks import read_notebook, solved_notebook

pytestmark = pytest.mark.slow

CHAPTER = "01_tokenization"
OTHER = "02_embeddings"  # in the gradebook, handed in by nobody
TOTAL = sum(s.points for s in SPECS.values() if s.chapter == CHAPTER)
DEEP = {  # code that the grader's own parser cannot build a tree of (the recursion limit)
    "deep1": "x = " + "-" * 4000 + "1",
    "deep2": "x = " + "not " * 4000 + "True",
}
HONEST = ["honest2"]  # graded after the deep ones; alone in shard 1 of 3 (deep1, deep2, erin, grace: 0; frank: 2)


def _solved_with(nb, code):
    nb = solved_notebook(nb, CHAPTER)
    nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def _grade(course_dir, *args, stderr=None):
    return subprocess.Popen([sys.executable, "-m", "solutions.grading", "grade", str(course_dir), "--chapter", CHAPTER,
                             *args], stdout=subprocess.PIPE, stderr=stderr or subprocess.PIPE, text=True)


def _finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err or ""


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    course_dir = course.setup(root / "course", [CHAPTER])
    course.release(course_dir, [CHAPTER])
    from nbgrader.api import Gradebook

    batch._tools_on_path()
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        gb.update_or_create_assignment(OTHER)  # as `release` of every chapter leaves it
    released = read_notebook(course_dir / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    archive = course_dir / "downloaded" / CHAPTER / "archive"
    archive.mkdir(parents=True)
    # erin uploads a zip that holds the notebook under its released name
    with zipfile.ZipFile(archive / "erin_123_456_upload.zip", "w") as z:
        z.writestr(f"{CHAPTER}.ipynb", nbformat.writes(solved_notebook(released, CHAPTER)))
    # frank downloads twice: the later copy wins
    nbformat.write(released, archive / f"frank_{CHAPTER}.ipynb")
    later = archive / f"frank_Copy of {CHAPTER} (1).ipynb"
    nbformat.write(solved_notebook(released, CHAPTER), later)
    import os

    os.utime(later, (2_000_000_000, 2_000_000_000))
    nbformat.write(released, archive / f"grace_{CHAPTER}.ipynb")  # the untouched stub
    for student, code in DEEP.items():
        nbformat.write(_solved_with(released, code), archive / f"{student}_{CHAPTER}.ipynb")
    for student in HONEST:
        nbformat.write(solved_notebook(released, CHAPTER), archive / f"{student}_{CHAPTER}.ipynb")
    collect = course.nbgrader(course_dir, "zip_collect", CHAPTER, check=False)
    assert collect.returncode == 0, collect.stdout + collect.stderr
    copies = {}
    for name in ("whole", "sharded"):
        copies[name] = root / name
        shutil.copytree(course_dir, copies[name], symlinks=True)
    return course_dir, collect.stdout + collect.stderr, copies


@pytest.fixture(scope="module")
def graded(collected, tmp_path_factory):
    _, _, copies = collected
    log = tmp_path_factory.mktemp("log") / "grade.log"
    with open(log, "w") as f:  # not a terminal: as when an instructor logs to a file
        rc, out, _ = _finish(_grade(copies["whole"], "--workers", "2", stderr=f))
    assert rc == 0, out + log.read_text()
    shards = [_grade(copies["sharded"], "--shard", f"{k}/3") for k in range(3)]  # at once
    outputs = [_finish(p) for p in shards]
    for rc, out, err in outputs:
        assert rc == 0, out + err
    before_merge = sorted(p.name for p in (copies["sharded"] / "feedback").rglob("*.html")) \
        if (copies["sharded"] / "feedback").exists() else []
    merge = _finish(_grade(copies["sharded"], "--merge"))
    assert merge[0] == 0, merge[1] + merge[2]
    return copies, log.read_text(), outputs, before_merge


def _gradebook(course_dir):
    from nbgrader.api import Gradebook

    batch._tools_on_path()
    rows = {}
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for student in gb.students:
            for submission in gb.assignment_submissions(CHAPTER):
                if submission.student_id != student.id:
                    continue
                for grade in submission.notebooks[0].grades:
                    rows[(student.id, grade.name)] = (grade.auto_score, grade.needs_manual_grade)
    return rows


def _results(course_dir):
    return {p.stem: json.loads(p.read_text()) for p in (course_dir / "graded" / CHAPTER).glob("*.json")}


def test_collecting_logs_no_false_alarm(collected):
    course_dir, log, _ = collected
    assert "is named for student" not in log, log
    assert "Skipped submission with no match information provided" not in log, log
    assert "handed in" in log and "twice" in log  # the duplicate is still explained
    assert (course_dir / "submitted" / "erin" / CHAPTER / f"{CHAPTER}.ipynb").is_file()


def test_deeply_nested_submissions_do_not_change_an_honest_one(graded):
    copies, _, _, _ = graded
    results = _results(copies["whole"])
    for student in HONEST + ["erin", "frank"]:
        result = results[student]
        assert result["score"] == TOTAL and result["status"] == "graded", result["reasons"]
    for student in DEEP:
        result = results[student]
        assert result["score"] == TOTAL  # the answers are right; the extra cell is for a human
        assert not any("grader failed" in r for r in result["reasons"]), result["reasons"]
    assert any("too deeply nested" in f for f in results["deep1"]["flags"])
    assert results["grace"]["score"] == 0


def test_progress_in_a_log_file_is_plain_lines(graded):
    _, log, _, _ = graded
    assert "\r" not in log and "\x1b" not in log
    lines = [line for line in log.splitlines() if line.startswith(f"{CHAPTER} ")]
    assert len(lines) == len(DEEP) + len(HONEST) + 3
    assert lines[-1].startswith(f"{CHAPTER} {len(lines)}/{len(lines)} ")


def test_shards_write_only_result_files_and_split_the_class(graded):
    copies, _, outputs, before_merge = graded
    assert before_merge == []  # no feedback (and no gradebook entry) before the merge
    counts = [int(out.split(f"{CHAPTER}: ")[1].split(" graded")[0]) for _, out, _ in outputs]
    assert sum(counts) == len(_results(copies["whole"])) and all(counts), counts


def test_sharded_and_merged_equals_one_run(graded, tmp_path):
    copies, _, _, _ = graded
    whole, sharded = copies["whole"], copies["sharded"]
    assert _gradebook(sharded) == _gradebook(whole) and _gradebook(whole)
    pages = sorted(p.relative_to(whole) for p in (whole / "feedback").rglob("*.html"))
    assert pages and pages == sorted(p.relative_to(sharded) for p in (sharded / "feedback").rglob("*.html"))
    for page in pages:
        assert (whole / page).read_text() == (sharded / page).read_text(), page
    for name, course_dir in copies.items():
        report.write_reports(course_dir, [CHAPTER], out=tmp_path / name)
    assert (tmp_path / "whole" / f"{CHAPTER}.csv").read_text() == (tmp_path / "sharded" / f"{CHAPTER}.csv").read_text()


def test_a_dead_shard_is_rerun_alone(graded):
    from solutions.grading import grader

    copies, _, _, _ = graded
    sharded = copies["sharded"]
    expected = _gradebook(copies["whole"])
    lost = [s for s in _results(sharded) if batch.shard_of(s, CHAPTER, 3) == 1]
    assert lost
    for student in lost:  # shard 1 died: its results never arrived
        batch.result_path(sharded, CHAPTER, student).unlink()
    others = {p: p.stat().st_mtime_ns for p in (sharded / "graded" / CHAPTER).glob("*.json")}
    results, missing = batch.merge_assignment(sharded, CHAPTER)
    assert missing == lost and len(results) == len(others)
    settings = grader.Settings()
    settings.method = batch.preflight(sharded, settings)
    rerun = batch.grade_assignment(sharded, CHAPTER, settings=settings, shard=(1, 3), progress=False)
    assert [r["student"] for r in rerun] == lost
    assert {p: p.stat().st_mtime_ns for p in others} == others  # the other shards' results untouched
    assert batch.merge_assignment(sharded, CHAPTER)[1] == []
    assert _gradebook(sharded) == expected


def test_grades_csv_leaves_out_chapters_nobody_handed_in(graded, tmp_path):
    copies, _, _, _ = graded
    export = course.nbgrader(copies["whole"], "export", "--to", str(tmp_path / "grades.csv"), check=False)
    assert export.returncode == 0, export.stdout + export.stderr
    with open(tmp_path / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["assignment"] for r in rows} == {CHAPTER}
    assert {r["student_id"] for r in rows} == set(_results(copies["whole"]))


# --- the variables a real Slurm array sets (Slurm 22.05, read from its jobs' environments) ------

def _slurm(task, count, low, high, step=1):
    return {"SLURM_ARRAY_JOB_ID": "25", "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high), "SLURM_ARRAY_TASK_STEP": str(step)}


@pytest.mark.parametrize("array, tasks", [
    ("0-2", [_slurm(t, 3, 0, 2) for t in (0, 1, 2)]),
    ("1-3", [_slurm(t, 3, 1, 3) for t in (1, 2, 3)]),
    ("0-4:2", [_slurm(t, 3, 0, 4, 2) for t in (0, 2, 4)]),  # a step: ids 0, 2, 4 are shards 0, 1, 2
    ("0-2%1", [_slurm(t, 3, 0, 2) for t in (0, 1, 2)]),  # a throttle changes nothing
])
def test_every_task_of_a_slurm_array_range_is_one_shard(array, tasks):
    assert [batch.parse_shard(None, env)[0] for env in tasks] == [(0, 3), (1, 3), (2, 3)], array


def test_slurm_arrays_that_name_no_shard_are_refused():
    # --array=0,3,7: count 3, ids 0, 3 and 7: no task knows its place in the list
    for task in (0, 3, 7):
        with pytest.raises(ValueError, match="not a range"):
            batch.parse_shard(None, _slurm(task, 3, 0, 7))
    # sbatch --array=3 grade.sh, to rerun shard 3: a one-task array of count 1 would grade everyone
    with pytest.raises(ValueError, match=r"--shard K/N.*--array=3 grade.sh --shard 3/N"):
        batch.parse_shard(None, _slurm(3, 1, 3, 3))
    assert batch.parse_shard("3/10", _slurm(3, 1, 3, 3))[0] == (3, 10)  # the rerun the message asks for
    with pytest.raises(ValueError, match="not whole numbers"):
        batch.parse_shard(None, {**_slurm(1, 3, 0, 2), "SLURM_ARRAY_TASK_STEP": "x"})
