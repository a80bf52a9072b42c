"""Grade a whole class: every submission gets a result, written atomically, in any case.

    python -m solutions.grading grade COURSE_DIR [--assignment 01_tokenization] [--workers 2]

Submissions are read from nbgrader's ``submitted/<student>/<assignment>/`` (``nbgrader
zip_collect`` puts them there). Each is graded by :func:`solutions.grading.grader.grade` in its
own sandbox, and the trusted side of that work (reading the notebook, scanning it, drawing the
hidden inputs, comparing) runs in a fresh process of its own too (:func:`grade_isolated`): no
submission can leave this interpreter, or the one grading the next submission, in a state that
changes another's result (a huge, deeply nested notebook once made ``ast.parse`` fail for a
later student: CPython keeps the AST converter's depth counter per interpreter, not per
thread). A process that dies without a result is replaced and the submission retried once.
This process alone writes:

* ``graded/<assignment>/<student>.json``: the full result (written to a temporary file, then
  renamed, so a crash never leaves half a result);
* the gradebook (``gradebook.db``): each check cell's score, and "needs manual grade" where a
  human should look; ``nbgrader export`` then works as usual;
* ``feedback/<student>/<assignment>/<assignment>.html``: per exercise, what passed, what failed
  and why, in plain words, without the hidden inputs.

Sharded (``grade --shard K/N``, for a batch engine: :func:`shard_of`), a run grades only its
share of the submissions and writes only their result files; ``grade --merge`` then fills the
gradebook and the feedback from every result file (:func:`merge_assignment`), so that the
gradebook, one SQLite file, never has two writers.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from solutions.grading import grader, sandbox, verdicts
from solutions.grading.collect import notebook_chapter_of


def course_secret(course_dir: Path) -> bytes:
    """The course's grading secret (hidden inputs are drawn from it); made on first use
    (``release`` makes it, else the first ``grade``), atomically: shards that start at once
    all read the same one. Raises ValueError if the file was damaged."""
    path = course_dir / ".grading" / "secret"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".secret.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if another process made it first: theirs is kept
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
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

    _tools_on_path()
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


def _tools_on_path() -> None:
    """nbgrader's gradebook runs ``alembic`` by name: find it next to this interpreter, also when
    its environment was not activated (``/path/to/clone/.venv/bin/python -m solutions.grading``)."""
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + path


def feedback_html(result: dict) -> str:
    rows = []
    for e in result["exercises"]:
        mark = "✔" if e["verdict"] == "passed" else "✘"
        outcome = e.get("outcome") or verdicts.exercise_outcome(e["verdict"], e["message"])
        rows.append(
            f"<tr><td>{mark}</td><td><code>{html.escape(e['name'])}</code></td>"
            f"<td>{e['points']:g} / {e['max_points']:g}</td>"
            f"<td>{html.escape(verdicts.LABELS.get(outcome, str(outcome)))}</td>"
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
    shard: tuple[int, int] | None = None,
) -> list[dict]:
    """Grade every submission of ``assignment`` (or of ``students``); returns the results sorted
    by student. Unsharded, each result is recorded as it comes (result file, feedback,
    gradebook); with ``shard=(k, n)`` only the submissions of shard k of n (:func:`shard_of`)
    are graded and only their result files are written (``merge_assignment`` does the rest)."""
    course_dir = Path(course_dir).resolve()
    released = grader.load_released(course_dir / "release" / assignment / f"{assignment}.ipynb", assignment)
    secret = course_secret(course_dir)
    submissions = find_submissions(course_dir, assignment, students)
    if shard is not None:
        submissions = [s for s in submissions if shard_of(s.student, assignment, shard[1]) == shard[0]]
    label = assignment if shard is None else f"{assignment} (shard {shard[0]}/{shard[1]})"
    results: list[dict] = []
    bar = _Progress(len(submissions), label, enabled=progress)
    try:
        for submission, result in grade_isolated(submissions, released, secret, settings, workers):
            if shard is None:
                result = record(course_dir, assignment, submission, result, released)
            else:
                result = write_result(course_dir, assignment, submission, result, released)
            results.append(result)
            bar.step(result)
    finally:
        bar.close()
    return sorted(results, key=lambda r: r["student"])


# --------------------------------------------------------------------------------------------
# the trusted side of each submission in a fresh process


def _context():
    """Processes forked from a server that imported the grader once (cheap to start, and forked
    from a process without threads, which is safe); each grades one submission, then exits."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["solutions.grading.grader"])
    return context


def _grade_in_child(conn, submission: grader.Submission, released: grader.Released, secret: bytes,
                    settings: grader.Settings | None, environ: dict) -> None:
    """The body of a grading process: grade one submission, send the result, exit."""
    os.environ.clear()
    os.environ.update(environ)  # the server started earlier: use the environment of now
    try:
        result = grader.grade(submission, released, secret, settings)
    except BaseException as exc:  # the grader's own bug must not cost a result
        result = crashed_result(submission, released, exc)
    conn.send(result)
    conn.close()


def trusted_limit_s(settings: grader.Settings | None) -> float:
    """How long a grading process may take before it is stopped: the notebook's budget (which
    bounds the grader's own work too), twice, plus start-up."""
    return 2 * (settings or grader.Settings()).notebook_budget_s + 120


def grade_isolated(submissions: list[grader.Submission], released: grader.Released, secret: bytes,
                   settings: grader.Settings | None = None, workers: int = 1, *, tries: int = 2,
                   target=None):
    """Yield ``(submission, result)`` in the order they finish, each graded in a process of its
    own, at most ``workers`` at once. A process that dies or hangs without a result is replaced
    and the submission graded again in a fresh one, up to ``tries`` times in all; then it gets a
    "needs attention" result that says so. ``target`` (tests only) replaces the process body.

    The processes are started by multiprocessing's forkserver, so a script that calls this (or
    :func:`grade_assignment`) needs the usual ``if __name__ == "__main__":`` guard."""
    from multiprocessing.connection import wait

    context, target = _context(), target or _grade_in_child
    released.package()  # built once here, handed to every process with ``released``
    pending = [(s, 1) for s in submissions]
    pending.reverse()  # popped from the end: in order
    running: dict = {}  # connection -> (process, submission, try, started)
    limit = trusted_limit_s(settings)
    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                submission, attempt = pending.pop()
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=target, daemon=True,
                                          args=(send, submission, released, secret, settings, dict(os.environ)))
                process.start()
                send.close()
                running[receive] = (process, submission, attempt, time.monotonic())
            ready = wait([*running, *(p.sentinel for p, *_ in running.values())], timeout=1.0)
            for conn, (process, submission, attempt, started) in list(running.items()):
                result, failure = None, None
                if conn in ready or conn.poll():
                    try:
                        result = conn.recv()
                    except (EOFError, OSError):
                        process.join(5)
                        failure = f"its grading process ended without a result (exit code {process.exitcode})"
                    except Exception as exc:  # a result that does not unpickle: the grader's bug
                        failure = f"its result could not be read back ({type(exc).__name__})"
                elif not process.is_alive():
                    process.join()
                    failure = f"its grading process ended without a result (exit code {process.exitcode})"
                elif time.monotonic() - started > limit:
                    process.kill()
                    failure = f"its grading process ran for more than {limit:g} s"
                else:
                    continue
                del running[conn]
                conn.close()
                process.join(5)
                if process.is_alive():
                    process.kill()
                    process.join()
                if failure is None and isinstance(result, dict):
                    yield submission, result
                elif attempt < tries:
                    pending.append((submission, attempt + 1))  # a fresh process, at once
                else:
                    error = RuntimeError(f"{failure or 'its result was not a result'}, {attempt} times")
                    yield submission, crashed_result(submission, released, error)
    finally:
        for conn, (process, *_) in running.items():
            process.kill()
            process.join()
            conn.close()


# --------------------------------------------------------------------------------------------
# shards for a batch engine, and the merge


def shard_of(student: str, assignment: str, count: int) -> int:
    """Which of ``count`` shards grades a submission: from a hash of its chapter and student
    alone, so that every shard agrees without talking to the others, and a shard rerun later
    (after more students handed in) grades the same ones as before."""
    digest = hashlib.sha256(f"{assignment}/{student}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str | None, environ: dict | None = None) -> tuple[tuple[int, int] | None, str]:
    """``(k, n)`` from ``--shard K/N`` (K counts from 0), else from a batch engine's variables:
    a Slurm array's ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``, counted from
    ``SLURM_ARRAY_TASK_MIN`` in steps of ``SLURM_ARRAY_TASK_STEP`` (``--array=0-9``, ``1-10`` and
    ``0-18:2`` all give shards 0..9 of 10), or a Kubernetes Indexed Job's
    ``JOB_COMPLETION_INDEX`` with ``JOB_COMPLETIONS`` (which the manifest sets: Kubernetes gives
    no count). Returns ``(None, "")`` when none is set, and where the shard came from. Raises
    ValueError with the reason for anything else, including the Slurm arrays that do not say
    which shard of how many a task is: a list (``--array=0,3,7``: Slurm gives its count, not the
    task's place in it) and a one-task array (``--array=3``, to rerun one shard: its count is 1,
    which would grade the whole class)."""
    env = os.environ if environ is None else environ
    if text is not None:
        where = f"--shard {text}"
        k, _, n = text.partition("/")
    elif env.get("SLURM_ARRAY_TASK_ID") not in (None, ""):
        where = "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"
        if not env.get("SLURM_ARRAY_TASK_COUNT"):
            raise ValueError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
        names = ("ID", "COUNT", "MIN", "STEP", "MAX")
        values = {name: env.get(f"SLURM_ARRAY_TASK_{name}") for name in names}
        try:
            task, count = int(values["ID"]), int(values["COUNT"])
            low = int(values["MIN"] or 0)
            step = int(values["STEP"] or 1)
            high = int(values["MAX"]) if values["MAX"] else low + (count - 1) * step
        except ValueError:
            shown = ", ".join(f"SLURM_ARRAY_TASK_{n}={v!r}" for n, v in values.items() if v is not None)
            raise ValueError(f"{shown}: not whole numbers") from None
        if count == 1:
            raise ValueError(f"a one-task Slurm array (task {task}, SLURM_ARRAY_TASK_COUNT=1) does not say how many "
                             f"shards there are: to rerun one shard, give it as --shard K/N, which wins over the array "
                             f"(with the README's grade.sh: sbatch --array={task} grade.sh --shard {task}/N)")
        if step < 1 or high - low != (count - 1) * step or (task - low) % step or not low <= task <= high:
            raise ValueError(f"the Slurm array (tasks {low}..{high} in steps of {step}, {count} of them) is not a "
                             "range: a list such as --array=0,3,7 gives no shard number; use a range "
                             "(--array=0-9, 1-10 or 0-18:2), or --shard K/N")
        k, n = (task - low) // step, count
    elif env.get("JOB_COMPLETION_INDEX") not in (None, ""):
        where = "JOB_COMPLETION_INDEX/JOB_COMPLETIONS"
        if not env.get("JOB_COMPLETIONS"):
            raise ValueError("JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not: set it in the Job's "
                             "environment to the same number as spec.completions")
        k, n = env["JOB_COMPLETION_INDEX"], env["JOB_COMPLETIONS"]
    else:
        return None, ""
    try:
        k, n = int(k), int(n)
    except ValueError:
        raise ValueError(f"{where}: give the shard as K/N, two whole numbers, e.g. 0/3") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"{where}: shard {k} of {n} does not exist; shards count from 0 to N-1")
    return (k, n), where


def result_path(course_dir: Path, assignment: str, student: str) -> Path:
    return course_dir / "graded" / assignment / f"{student}.json"


def merge_assignment(course_dir: Path, assignment: str, students: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """Record every result file of ``assignment`` (written by shards) in the gradebook and write
    its feedback. Returns ``(results, missing)``: the students whose submission has no result
    file yet, or only one older than the submission (a shard that died, or has not run)."""
    course_dir = Path(course_dir).resolve()
    released = grader.load_released(course_dir / "release" / assignment / f"{assignment}.ipynb", assignment)
    results, missing = [], []
    for submission in find_submissions(course_dir, assignment, students):
        path = result_path(course_dir, assignment, submission.student)
        try:
            if path.stat().st_mtime_ns < submission.path.stat().st_mtime_ns:
                raise ValueError("older than the submission")
            result = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(result, dict) or result.get("student") != submission.student:
                raise ValueError("not this submission's result")
        except (OSError, ValueError):
            missing.append(submission.student)
            continue
        results.append(record(course_dir, assignment, submission, result, released, write=False))
    return results, missing


def write_result(course_dir: Path, assignment: str, submission: grader.Submission, result: dict,
                 released: grader.Released, *, write: bool = True) -> dict:
    """The result file of one submission (what a shard writes); returns the result as written."""
    student = submission.student  # the folder name, not a value from the notebook
    try:
        result = grader.clean(result)
        text = json.dumps(result, indent=2)
    except Exception as exc:
        result = crashed_result(submission, released, exc)
        text = json.dumps(result, indent=2)
    if write:
        try:
            write_atomically(result_path(course_dir, assignment, student), text)
        except Exception as exc:
            _warn(f"could not write the result of {student}: {exc}")
    return result


def record(course_dir: Path, assignment: str, submission: grader.Submission, result: dict,
           released: grader.Released, *, write: bool = True) -> dict:
    """Result file (unless ``write`` is false: a merge), feedback and gradebook entry for one
    submission; returns the result as recorded. No value in the result can stop the batch: each
    step has its own guard and a plain fallback."""
    student = submission.student
    result = write_result(course_dir, assignment, submission, result, released, write=write)
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
    return result


def _warn(message: str) -> None:
    start = "\n" if _terminal_width(sys.stderr) else ""  # off the progress bar's line
    print(f"{start}WARNING: {grader.clean(message)}", file=sys.stderr)


class _Progress:
    """A bar in a terminal (tqdm); in a file or a pipe, one plain line per submission (no
    carriage returns or escape codes in a log)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0
        self.bar = None
        if enabled and total and _terminal_width(sys.stderr) > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="submission", file=sys.stderr, dynamic_ncols=True)

    def step(self, result: dict) -> None:
        self.done += 1
        if not self.enabled:
            return
        mark = "" if result["status"] == "graded" else " (needs attention)"
        text = f"{grader.clean(result['student'])[:60]}: {result['score']:g}/{result['max_score']:g}{mark}"
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            print(f"{self.label} {self.done}/{self.total} {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _terminal_width(stream) -> int:
    """Columns of the terminal ``stream`` writes to; 0 for a file, a pipe or a terminal without a
    size (where a bar would show nothing)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else 0
    except (OSError, ValueError, AttributeError):
        return 0


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
