"""Grade a whole class: every submission gets a result, written atomically, in any case.

    python -m solutions.grading grade COURSE_DIR [--assignment 01_tokenization] [--workers 2]

Submissions are read from nbgrader's ``submitted/<student>/<assignment>/`` (``nbgrader
zip_collect`` puts them there). Each is graded by :func:`solutions.grading.grader.grade` in its
own sandbox; worker threads only wait on sandboxes, and this process alone writes:

* ``graded/<assignment>/<student>.json``: the full result (written to a temporary file, then
  renamed, so a crash never leaves half a result);
* the gradebook (``gradebook.db``): each check cell's score, and "needs manual grade" where a
  human should look; ``nbgrader export`` then works as usual;
* ``feedback/<student>/<assignment>/<assignment>.html``: per exercise, what passed, what failed
  and why, in plain words, without the hidden inputs.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from solutions.grading import grader, sandbox, verdicts
from solutions.grading.collect import notebook_chapter_of


def course_secret(course_dir: Path) -> bytes:
    """The course's grading secret (hidden inputs are drawn from it); made on first use."""
    path = course_dir / ".grading" / "secret"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def find_submissions(course_dir: Path, assignment: str, students: list[str] | None = None) -> list[grader.Submission]:
    """One submission per student folder; a renamed notebook is found by its metadata."""
    found = []
    root = course_dir / "submitted"
    for student_dir in sorted(p for p in root.glob("*") if p.is_dir()):
        student = student_dir.name
        if students and student not in students:
            continue
        folder = student_dir / assignment
        if not folder.is_dir():
            continue
        canonical = folder / f"{assignment}.ipynb"
        path = canonical
        if not canonical.is_file():
            candidates = sorted(folder.glob("*.ipynb"))
            try:  # reading a file a student made: whatever it holds, the student still gets a result
                matching = [p for p in candidates if notebook_chapter_of(str(p)) == assignment]
            except Exception:
                matching = []
            path = (matching or candidates or [canonical])[0]
        found.append(grader.Submission(assignment, student, path))
    return found


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def crashed_result(submission: grader.Submission, released: grader.Released, error: BaseException) -> dict:
    """What a submission gets if grading it failed in the grader itself: never lost, never zeroed silently."""
    return grader.clean({
        "version": grader.RESULT_VERSION,
        "assignment": submission.assignment,
        "student": submission.student,
        "file": submission.path.name,
        "status": "needs_attention",
        "reasons": [f"the grader failed on this submission: {type(error).__name__}: {error}"],
        "notes": [],
        "flags": [],
        "score": 0.0,
        "max_score": sum(e.points for e in released.exercises),
        "exercises": [
            verdicts._exercise_result(e, 0.0, "not graded", "the grader failed; an instructor will look at it")
            for e in released.exercises
        ],
        "traceback": traceback.format_exc()[-4000:],
    })


def record_in_gradebook(course_dir: Path, result: dict, released: grader.Released) -> None:
    """Scores into nbgrader's gradebook (this process is its only writer)."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry

    assignment, student = result["assignment"], result["student"]
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        # nbgrader's add_submission trips a known, harmless SQLAlchemy autoflush warning
        warnings.simplefilter("ignore")
        gb.update_or_create_student(student)
        try:
            gb.find_submission(assignment, student)
        except MissingEntry:
            gb.add_submission(assignment, student)
        attention = result["status"] != "graded"
        by_id = {e["grade_id"]: e for e in result["exercises"]}
        for exercise in released.exercises:
            grade = gb.find_grade(exercise.check_id, assignment, assignment, student)
            entry = by_id.get(exercise.check_id, {})
            grade.auto_score = float(entry.get("points", 0.0))
            grade.manual_score = None
            grade.needs_manual_grade = attention
        gb.db.commit()


def feedback_html(result: dict) -> str:
    rows = []
    for e in result["exercises"]:
        mark = "✔" if e["verdict"] == "passed" else "✘"
        rows.append(
            f"<tr><td>{mark}</td><td><code>{html.escape(e['name'])}</code></td>"
            f"<td>{e['points']:g} / {e['max_points']:g}</td><td>{html.escape(e['verdict'])}</td>"
            f"<td><pre>{html.escape(e['message'])}</pre></td></tr>"
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.get("notes", []))
    status = "" if result["status"] == "graded" else "<p><b>An instructor will review this submission before the grade is final.</b></p>"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Feedback: {html.escape(result['assignment'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.3em .6em;vertical-align:top;border-bottom:1px solid #ddd}}pre{{white-space:pre-wrap;margin:0}}</style>
</head><body>
<h1>{html.escape(result['assignment'])}: {result['score']:g} / {result['max_score']:g}</h1>
{status}
<p>Each exercise was run on fresh inputs that are not the ones in your notebook.</p>
<table><tr><th></th><th>exercise</th><th>points</th><th>result</th><th>why</th></tr>{''.join(rows)}</table>
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
</body></html>
"""


def grade_assignment(
    course_dir: Path,
    assignment: str,
    *,
    workers: int = 1,
    students: list[str] | None = None,
    settings: grader.Settings | None = None,
    progress: bool = True,
) -> list[dict]:
    course_dir = Path(course_dir).resolve()
    released = grader.load_released(course_dir / "release" / assignment / f"{assignment}.ipynb", assignment)
    secret = course_secret(course_dir)
    submissions = find_submissions(course_dir, assignment, students)
    results: list[dict] = []
    bar = _Progress(len(submissions), assignment, enabled=progress)

    def one(submission: grader.Submission) -> dict:
        try:
            return grader.grade(submission, released, secret, settings)
        except BaseException as exc:  # the grader's own bug must not cost a result
            return crashed_result(submission, released, exc)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(one, s): s for s in submissions}
        for future in as_completed(futures):
            submission = futures[future]
            try:
                result = future.result()
            except BaseException as exc:
                result = crashed_result(submission, released, exc)
            record(course_dir, assignment, submission, result, released)
            results.append(result)
            bar.step(result)
    bar.close()
    return sorted(results, key=lambda r: r["student"])


def record(course_dir: Path, assignment: str, submission: grader.Submission, result: dict,
           released: grader.Released) -> None:
    """Result file, feedback and gradebook entry for one submission; no value in the result
    can stop the batch: each step has its own guard and a plain fallback."""
    student = submission.student  # the folder name, not a value from the notebook
    try:
        result = grader.clean(result)
        text = json.dumps(result, indent=2)
    except Exception as exc:
        result = crashed_result(submission, released, exc)
        text = json.dumps(result, indent=2)
    try:
        write_atomically(course_dir / "graded" / assignment / f"{student}.json", text)
    except Exception as exc:
        _warn(f"could not write the result of {student}: {exc}")
    feedback = course_dir / "feedback" / student / assignment / f"{assignment}.html"
    try:
        page = feedback_html(result)
    except Exception as exc:
        page = ("<!doctype html><meta charset=utf-8><p>Your submission was graded; the detailed feedback could "
                f"not be written ({html.escape(type(exc).__name__)}). An instructor will send it.</p>")
    try:
        write_atomically(feedback, page)
    except Exception as exc:
        _warn(f"could not write the feedback of {student}: {exc}")
    try:
        record_in_gradebook(course_dir, result, released)
    except Exception as exc:  # the result file is kept; say so plainly
        _warn(f"could not record {student} in the gradebook: {exc}")


def _warn(message: str) -> None:
    print(f"\nWARNING: {grader.clean(message)}", file=sys.stderr)


class _Progress:
    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.done, self.start = 0, time.monotonic()

    def step(self, result: dict) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        mark = "" if result["status"] == "graded" else " (needs attention)"
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{time.monotonic() - self.start:5.0f} s  {grader.clean(result['student'])[:60]}: {result['score']:g}/{result['max_score']:g}{mark}\033[K"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.total:
            sys.stderr.write("\n")


def preflight(course_dir: Path, settings: grader.Settings) -> str:
    """The sandbox method to use, after proving the course directory is out of its reach."""
    methods = sandbox.available_methods()
    method = settings.method or (methods[0] if methods else "rlimit-only")
    if method == "rlimit-only" and os.environ.get("GRADER_ALLOW_UNSANDBOXED") != "1":
        raise SystemExit(
            "No sandbox is available here (install bubblewrap, or run as root so that the grader can use "
            "a separate user). Set GRADER_ALLOW_UNSANDBOXED=1 to grade without isolation anyway."
        )
    os.chmod(course_dir, 0o700)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        scratch = Path(tmp) / "probe"
        scratch.mkdir()
        leaks = sandbox.readable_inside([course_dir], scratch, method=method)
    if leaks and method != "rlimit-only":
        raise SystemExit(f"The sandbox ({method}) could read {leaks[0]}; refusing to grade.")
    return method
