"""What an instructor meets around the grader, without grading a notebook (fast): code that reaches
the reference through sys.modules or behind a magic line is flagged, a course notebook's own name
names no student, feedback and report say the same words, ties are all named, the progress output
reads well in a log, shards are parsed and partition the class, and every submission's trusted
work runs in a fresh process that is replaced when it dies."""

import io
import os
import sys
from pathlib import Path

import pytest

from solutions.grading import batch, grader, report, suspicious, verdicts
from solutions.grading.collect import CourseCollector
from solutions.grading.reading import Exercise, Released

REFERENCE = {"solutions.mlp", "solutions.checks", "solutions.grading"}


def reasons(source):
    return [f.reason for f in suspicious.scan(source, 0, reference_modules=REFERENCE)]


def flags_reference(source):
    return any("course's reference or checker" in r or "course's package" in r for r in reasons(source))


@pytest.mark.parametrize("source", [
    "gelu = sys.modules['solutions.mlp'].gelu",  # sys imported by the set-up cell, not here
    "m = [v for k, v in sys.modules.items() if k.endswith('mlp')][0]",
    "mods = getattr(sys, 'modules')",
    "%time from solutions.mlp import gelu",
    "x = 1\n%load_ext autoreload\nfrom solutions.mlp import gelu",  # an import hidden after a magic line
    "%%capture out\nfrom solutions import mlp",
    "%timeit -n1 -r1 import solutions.mlp",
    "%run -m solutions.mlp",
    "import importlib\nm = importlib.import_module('solutions.mlp')",
])
def test_every_way_to_the_reference_is_flagged(source):
    assert flags_reference(source), reasons(source)


def test_magic_lines_of_honest_students_are_not_news():
    for source in ("%time y = 2 * 3", "%%time\ny = 2", "%matplotlib inline\ndef gelu(x):\n    return x",
                   "print('my solutions are here')", "def gelu(x):\n    return 0.5 * x"):
        assert reasons(source) == [], source
    # the transformer's own get_ipython() calls are not the student's; a written one is
    assert any("IPython" in r for r in reasons("get_ipython().run_line_magic('time', 'y = 2')"))
    # a shell escape or a cell run by another program is worth a look
    assert any("shell command" in r for r in reasons("!ls /"))
    assert any("shell command" in r for r in reasons("%%bash\ncat /etc/passwd"))


def test_the_line_of_a_finding_behind_a_cell_magic():
    (finding,) = suspicious.scan("%%time\nx = 1\nfrom solutions.mlp import gelu", 4, reference_modules=REFERENCE)
    assert (finding.cell, finding.line) == (4, 3)


def test_a_course_notebook_name_names_no_student():
    collector = CourseCollector(named_regexp=r"(?P<student_id>[A-Za-z0-9.@-]+)_")
    for name in ("04_mlp.ipynb", "Copy of 04_mlp (1).ipynb", "01_tokenization.ipynb", "Copy of Copy of 06_training.ipynb"):
        assert collector._student_in(name) is None, name
    assert collector._student_in("erin_123_456_04_mlp.ipynb") == "erin"
    assert collector._student_in("frank_Copy of 04_mlp.ipynb") == "frank"


def _exercise_result(name, verdict, message, outcome=None, points=0.0):
    return verdicts._exercise_result(Exercise(name, name, f"check_{name}", 1.0), points, verdict, message,
                                     outcome=outcome)


def test_feedback_and_report_use_one_vocabulary():
    stub = _exercise_result("gelu", "failed", "gelu is not implemented yet: ...", outcome="unfinished")
    slow = _exercise_result("mlp", "too slow", "mlp did not finish its hidden tests within the time limit")
    result = {"assignment": "04_mlp", "student": "bob", "status": "graded", "score": 0.0, "max_score": 2.0,
              "exercises": [stub, slow], "notes": []}
    page = batch.feedback_html(result)
    assert "<td>unfinished</td>" in page and "<td>timed out</td>" in page
    assert "<td>failed</td>" not in page
    for outcome, label in verdicts.LABELS.items():
        assert report.LABELS[outcome] == label


def test_fewest_passed_names_every_exercise_that_ties():
    exercises = [report.ExerciseReport(n, 1.0) for n in ("gelu", "mlp", "swiglu")]
    exercises[0].outcomes["passed"] = ["a", "b"]
    exercises[1].outcomes["passed"] = ["a"]
    exercises[2].outcomes["passed"] = ["b"]
    chapter = report.ChapterReport("04_mlp", exercises, students=["a", "b"], graded=["a", "b"], scores=[(1, 3), (1, 3)])
    assert [e.name for e in report.fewest_passed(chapter)] == ["mlp", "swiglu"]
    page = report.overview_html([chapter])
    assert "<code>mlp</code>" in page and "<code>swiglu</code>" in page and "<code>gelu</code>" not in page.split("fewest")[1]


def test_progress_in_a_log_is_one_plain_line_per_submission(monkeypatch):
    out = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", out)
    bar = batch._Progress(2, "04_mlp", enabled=True)
    bar.step({"student": "alice", "status": "graded", "score": 3.0, "max_score": 3.0})
    bar.step({"student": "bob", "status": "needs_attention", "score": 1.0, "max_score": 3.0})
    bar.close()
    assert out.getvalue().splitlines() == ["04_mlp 1/2 alice: 3/3", "04_mlp 2/2 bob: 1/3 (needs attention)"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_shards_from_the_flag_and_from_batch_engines():
    assert batch.parse_shard("2/3", {}) == ((2, 3), "--shard 2/3")
    assert batch.parse_shard(None, {}) == (None, "")
    assert batch.parse_shard(None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "5"})[0] == (4, 5)
    # --array=1-3: ids 1..3, shards 0..2
    assert batch.parse_shard(None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3",
                                    "SLURM_ARRAY_TASK_MIN": "1"})[0] == (2, 3)
    assert batch.parse_shard(None, {"JOB_COMPLETION_INDEX": "0", "JOB_COMPLETIONS": "3"})[0] == (0, 3)
    assert batch.parse_shard("1/2", {"JOB_COMPLETION_INDEX": "0", "JOB_COMPLETIONS": "3"})[0] == (1, 2)  # the flag wins
    for text, env, words in [("3/3", {}, "count from 0"), ("x/3", {}, "two whole numbers"), ("1/0", {}, "does not exist"),
                             (None, {"JOB_COMPLETION_INDEX": "1"}, "JOB_COMPLETIONS"),
                             (None, {"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT")]:
        with pytest.raises(ValueError, match=words):
            batch.parse_shard(text, env)


def test_shards_partition_the_class_deterministically():
    students = [f"student{i:03d}" for i in range(300)]
    shards = [[s for s in students if batch.shard_of(s, "04_mlp", 3) == k] for k in range(3)]
    assert sorted(sum(shards, [])) == students  # each student in exactly one shard
    assert all(70 <= len(s) <= 130 for s in shards), [len(s) for s in shards]
    assert batch.shard_of("student007", "04_mlp", 3) == batch.shard_of("student007", "04_mlp", 3)


# --- the trusted side of each submission in a process of its own --------------------------------

RELEASED = Released("01_tokenization", [], {}, set(), [Exercise("decode", "decode", "check_decode", 1.0)],
                    _package=Path("/"))


def _report_pid(conn, submission, released, secret, settings, environ):
    conn.send({**batch.crashed_result(submission, released, RuntimeError("test")), "pid": os.getpid(),
               "env": environ.get("GRADING_TEST_MARK")})
    conn.close()


def _die(conn, submission, released, secret, settings, environ):
    os._exit(9)


def _submissions(n):
    return [grader.Submission("01_tokenization", f"s{i}", Path(f"/nonexistent/s{i}.ipynb")) for i in range(n)]


@pytest.mark.slow  # the first start of the grading processes' server imports torch
def test_each_submission_is_graded_in_a_fresh_process(monkeypatch):
    monkeypatch.setenv("GRADING_TEST_MARK", "now")
    got = {s.student: r for s, r in batch.grade_isolated(_submissions(4), RELEASED, b"k", workers=2, target=_report_pid)}
    pids = [r["pid"] for r in got.values()]
    assert len(set(pids)) == 4 and os.getpid() not in pids
    assert {r["env"] for r in got.values()} == {"now"}  # the environment of now, not the server's


@pytest.mark.slow
def test_a_grading_process_that_dies_is_replaced_and_the_submission_kept():
    got = list(batch.grade_isolated(_submissions(2), RELEASED, b"k", workers=2, target=_die, tries=2))
    assert sorted(s.student for s, _ in got) == ["s0", "s1"]
    for _, result in got:
        assert result["status"] == "needs_attention"
        assert "ended without a result (exit code 9), 2 times" in result["reasons"][0]
