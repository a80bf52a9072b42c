"""The class report (issue 14): where a class is stuck, from the grader's per-submission results.

Fast tests build result files by hand (every odd case: partial, unreadable, older results,
hostile text). The slow tests grade a small generated class of chapter 1 in the sandbox (two
solved, one stub, two with a known mistake of the checks in one exercise, one with a failure no
known mistake explains and a hanging exercise, one damaged file) and check the report's counts
exactly, the attribution of each mistake, anonymity, and the page in headless Chromium.
"""

from __future__ import annotations

import csv
import html
import inspect
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import solutions
from solutions.checks import SPECS, specs_for
from solutions.grading import grader, planning, report, verdicts

CHAPTER = "01_tokenization"
EXERCISES = [s.name for s in specs_for(CHAPTER)]
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# helpers


def _result(student: str, entries: list[dict], status: str = "graded", reasons=()) -> dict:
    return {"version": grader.RESULT_VERSION, "assignment": CHAPTER, "student": student, "file": f"{student}.ipynb",
            "status": status, "reasons": list(reasons), "notes": [], "flags": [],
            "score": sum(e.get("points", 0) for e in entries if isinstance(e, dict)), "max_score": sum(s.points for s in specs_for(CHAPTER)),
            "exercises": entries}


def _entry(name: str, verdict: str = "passed", message: str = "correct on all hidden test inputs", **detail) -> dict:
    spec = SPECS[name]
    exercise = grader.Exercise(name, name, name, float(spec.points))
    return verdicts._exercise_result(exercise, float(spec.points) if verdict == "passed" else 0.0, verdict, message, **detail)


def _mistake(name: str, mistake: str) -> dict:
    (m,) = [m for m in SPECS[name].mistakes if m.name == mistake]
    return {"kind": "mistake", "name": m.name, "hint": m.hint}


def _write(course_dir: Path, student: str, result: dict | str) -> None:
    folder = course_dir / "graded" / CHAPTER
    folder.mkdir(parents=True, exist_ok=True)
    text = result if isinstance(result, str) else json.dumps(grader.clean(result))
    (folder / f"{student}.json").write_text(text, encoding="utf-8")


def _counts(chapter_report: report.ChapterReport) -> dict[str, dict[str, int]]:
    return {e.name: {o: e.count(o) for o in report.OUTCOMES if e.count(o)} for e in chapter_report.exercises}


def _mistakes(chapter_report: report.ChapterReport) -> dict[str, dict[str, list[str]]]:
    return {e.name: {name: sorted(s) for (_, name, _), s in e.mistakes.items()}
            for e in chapter_report.exercises if e.mistakes}


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _run_report(course_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """The instructor's command, as typed (a process of its own)."""
    return subprocess.run([sys.executable, "-m", "solutions.grading", "report", str(course_dir), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def _main(capsys, course_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """The same command in this process (quicker: no second start of torch)."""
    from solutions.grading.__main__ import main

    capsys.readouterr()
    code = main(["report", str(course_dir), *args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["report"], code, out, err)


# --------------------------------------------------------------------------------------------
# fast: hand-made results


@pytest.fixture
def odd_course(tmp_path):
    """A course whose results cover every case the report must survive."""
    course_dir = tmp_path / "course"
    no_skip = _mistake("merge", "no skip")
    # two graded students: one commits a known mistake (new result), one an unexplained error
    _write(course_dir, "kim_0001", _result("kim_0001", [
        _entry(n) if n != "merge" else _entry(n, "failed", "merge on a hidden test input: ...\nHint: " + no_skip["hint"],
                                            mistake=no_skip) for n in EXERCISES]))
    _write(course_dir, "lou_0002", _result("lou_0002", [
        _entry(n) if n != "decode" else _entry(n, "failed", "decode raised KeyError on a hidden test input: 'lou_0002'")
        for n in EXERCISES]))
    # an older grader's result (no "outcome", no "mistake"), and only half of the exercises
    old = _result("max_0003", [_entry("merge", "failed", "merge on a hidden test input: x\nHint: " + no_skip["hint"]),
                               _entry("text_to_bytes", "failed", "text_to_bytes is not implemented yet: replace "
                                      "`raise NotImplementedError()` with your code.")])
    for e in old["exercises"]:
        del e["outcome"], e["mistake"]
    _write(course_dir, "max_0003", old)
    # a damaged notebook: needs attention; a result file that is not JSON; a hand-in with no result
    _write(course_dir, "ned_0004", _result("ned_0004", [_entry(n, "not graded", "x") for n in EXERCISES],
                                           "needs_attention", ["not graded: the file is not valid JSON (ned_0004.ipynb)"]))
    _write(course_dir, "ola_0005", "{not json")
    (course_dir / "submitted" / "pia_0006" / CHAPTER).mkdir(parents=True)
    (course_dir / ".hidden").mkdir()
    (course_dir / "graded" / CHAPTER / ".kim_0001.json.123.tmp").write_text("{")  # a grader's temporary file
    return course_dir


STUDENTS_ODD = ["kim_0001", "lou_0002", "max_0003", "ned_0004", "ola_0005", "pia_0006"]


def test_counts_of_partial_missing_old_and_unreadable_results(odd_course):
    r = report.read_chapter(odd_course, CHAPTER)
    assert r.students == STUDENTS_ODD
    assert r.graded == ["kim_0001", "lou_0002", "max_0003"] and r.attention == ["ned_0004"]
    assert r.no_result == ["ola_0005", "pia_0006"]
    counts = _counts(r)
    assert counts["merge"] == {"passed": 1, "failed": 2, "needs_attention": 1, "no_result": 2}
    assert counts["text_to_bytes"] == {"passed": 2, "unfinished": 1, "needs_attention": 1, "no_result": 2}
    assert counts["decode"] == {"passed": 1, "failed": 1, "needs_attention": 1, "no_result": 3}
    assert counts["encode"] == {"passed": 2, "needs_attention": 1, "no_result": 3}
    # the older result's mistake is read from its hint; both are attributed
    assert _mistakes(r) == {"merge": {"no skip": ["kim_0001", "max_0003"]}}
    (decode,) = [e for e in r.exercises if e.name == "decode"]
    assert [f.student for f in decode.unexplained] == ["lou_0002"]
    notes = " ".join(r.notes)
    assert "1 result file(s) could not be read" in notes and "no result yet" in notes
    assert "older grader" in notes and "missing from otherwise readable results" in notes


def test_the_page_and_csv_name_nobody_unless_asked(odd_course, capsys):
    done = _main(capsys, odd_course, "--chapter", CHAPTER)
    assert done.returncode == 0, done.stderr
    out = odd_course / "reports"
    page = (out / f"{CHAPTER}.html").read_text(encoding="utf-8")
    table = (out / f"{CHAPTER}.csv").read_text(encoding="utf-8")
    for student in STUDENTS_ODD:
        assert student not in page and student not in table and student not in done.stdout
    assert ".ipynb" not in page and ".ipynb" not in table
    assert "decode raised KeyError on a hidden test input: &#x27;&lt;student&gt;&#x27;" in page
    assert not (out / "index.html").exists(), "the overview is written when every chapter is reported"

    named = _main(capsys, odd_course, "--chapter", CHAPTER, "--names")
    assert named.returncode == 0, named.stderr
    out = odd_course / "reports-with-names"
    page = (out / f"{CHAPTER}.html").read_text(encoding="utf-8")
    rows = _csv(out / f"{CHAPTER}.csv")
    for student in STUDENTS_ODD:
        assert student in page, student
    assert "for the instructor only" in page
    (row,) = [r for r in rows if r["row"] == "known mistake" and r["exercise"] == "merge"]
    assert (row["name"], row["count"], row["students"]) == ("no skip", "2", "kim_0001; max_0003")


def test_a_chapter_without_results_says_so(odd_course, capsys):
    done = _main(capsys, odd_course)
    assert done.returncode == 0, done.stderr
    out = odd_course / "reports"
    assert "02_embeddings: no results" in done.stdout
    for chapter in solutions.CHAPTERS[1:]:
        page = (out / f"{chapter}.html").read_text(encoding="utf-8")
        assert f"No results for {chapter}." in page and "<img" not in page
        assert _csv(out / f"{chapter}.csv")[0]["row"] == "no results"
    overview = (out / "index.html").read_text(encoding="utf-8")
    assert overview.count("<tr>") == 1 + len(solutions.CHAPTERS)
    assert overview.count("No results.") == len(solutions.CHAPTERS) - 1
    assert overview.count("data:image/png;base64,") == 1
    rows = {r["chapter"]: r for r in _csv(out / "overview.csv")}
    assert list(rows) == solutions.CHAPTERS
    assert (rows[CHAPTER]["submissions"], rows[CHAPTER]["needs_attention"], rows[CHAPTER]["failures_unexplained"]) == ("6", "1", "1")
    assert rows["02_embeddings"]["submissions"] == "0"


def test_an_empty_course_is_reported_plainly(tmp_path):
    course_dir = tmp_path / "empty"
    course_dir.mkdir()
    reports = report.write_reports(course_dir)
    assert [r.has_results for r in reports] == [False] * len(solutions.CHAPTERS)
    assert "No results for 01_tokenization." in (course_dir / "reports" / "01_tokenization.html").read_text()


def test_hostile_text_is_escaped_cut_and_scrubbed(tmp_path):
    course_dir = tmp_path / "course"
    evil = "<script>alert(1)</script> \udcff\ud800 \x00\x1b[2J =cmd|' /c calc'!A0 /home/rex_0007/work/bpe.py rex_0007@uni.example Rex"
    huge = evil + " " + "y" * 2_000_000
    student = "rex_0007<b>"
    entries = [_entry(n) for n in EXERCISES]
    entries[EXERCISES.index("decode")] = _entry("decode", "failed", huge)
    entries[EXERCISES.index("merge")] = _entry("merge", "failed", "=HYPERLINK(\"http://x\")\nHint: nothing",
                                               mistake={"kind": "mistake", "name": "<i>odd</i>", "hint": "=1+1 \udcff"})
    _write(course_dir, student, _result(student, entries, reasons=[evil]))
    _write(course_dir, "sam_0008", _result("sam_0008", [{"name": 3}, "junk", {"name": "merge", "verdict": None}],
                                           "needs_attention", reasons=[evil, {"odd": 1}]))
    _write(course_dir, "tom_0009", _result("tom_0009", [{"name": 3}, "junk", {"name": "merge", "verdict": None},
                                                        {"name": "decode", "outcome": "failed", "mistake": "odd", "message": None}]))
    reports = report.write_reports(course_dir, [CHAPTER])
    page = (course_dir / "reports" / f"{CHAPTER}.html").read_text(encoding="utf-8")
    table = (course_dir / "reports" / f"{CHAPTER}.csv").read_text(encoding="utf-8")
    assert "<script>" not in page and "<i>odd</i>" not in page and "&lt;i&gt;odd&lt;/i&gt;" in page
    assert "\x00" not in page + table and "\x1b" not in page + table and "\\udcff" in page
    assert len(page) < 200_000 and "yyyy…" in page
    for secret in ("rex_0007", "/home/", "uni.example", "bpe.py"):
        assert secret not in page and secret not in table, secret
    assert "rex" not in re.sub(r'src="data:[^"]*"', "", page).lower()  # the id's words too
    rows = list(csv.reader(io.StringIO(table)))
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    counts = _counts(reports[0])
    assert counts["merge"] == {"failed": 1, "needs_attention": 1, "no_result": 1}
    assert counts["decode"] == {"failed": 2, "needs_attention": 1}
    assert counts["encode"] == {"passed": 1, "needs_attention": 1, "no_result": 1}


def test_attribution_in_the_grader_names_the_mistake_never_the_students_text():
    """The grader records which known mistake explains a failure, recomputed from the outcomes
    (a hint written by the student's own error message is not believed)."""
    from solutions.checks import wire
    from solutions.checks.core import prepare, run

    def verdict(name, fn):
        spec = SPECS[name]
        cases = spec.make_cases(7)
        record = {"outcomes": [wire.outcome_to_wire(o) for o in run(prepare(spec, fn), cases)]}
        detail: dict = {}
        points, verdict, message = verdicts._verdict(grader.Exercise(name, name, name, 1.0), spec, cases,
                                                     planning.expected_outcomes(spec, cases), record, detail)
        return verdicts._exercise_result(grader.Exercise(name, name, name, 1.0), points, verdict, message, **detail)

    for spec in specs_for(CHAPTER):
        for mistake in spec.mistakes:
            entry = verdict(spec.name, mistake.variant)
            assert entry["outcome"] == "failed" and entry["mistake"] == {
                "kind": "mistake", "name": mistake.name, "hint": mistake.hint}, (spec.name, mistake.name)
        assert verdict(spec.name, spec.reference)["outcome"] == "passed"

    def stub(*args):
        raise NotImplementedError()

    assert verdict("merge", stub)["outcome"] == "unfinished"
    forged = SPECS["merge"].mistakes[0].hint

    def forger(ids, pair, new_id):
        raise ValueError("nope\nHint: " + forged)

    entry = verdict("merge", forger)
    assert entry["outcome"] == "failed" and entry["mistake"] is None and forged in entry["message"]


# --------------------------------------------------------------------------------------------
# slow: a generated class, graded in the sandbox

CLASS = {
    "ana_4711": "solved",
    "ben_4712": "solved",
    "cara_4713": "stub",
    "dov_4714": ("merge", "no skip"),
    "eli_4715": ("compression_ratio", "inverted"),
    "fay_4716": "unexplained",
    "gus_4717": "damaged",
}
UNEXPLAINED = '''def decode(ids, vocab):
    raise ValueError("could not open /home/fay_4716/course/vocab.txt; mail fay_4716@uni.example")
'''
HANGS = '''def get_pair_counts(ids):
    while True:
        pass
'''


def _replace_answer(nb, name: str, source: str):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    (cell,) = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == name]
    cell.source = source
    return nb


def _committing(nb, exercise: str, mistake: str):
    """The notebook with one exercise answered by a known mistake of its check (the spec's variant)."""
    (m,) = [m for m in SPECS[exercise].mistakes if m.name == mistake]
    source = inspect.getsource(m.variant).replace(f"def {m.variant.__name__}(", f"def {exercise}(")
    return _replace_answer(nb, exercise, source)


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    from solutions.grading import batch, course, sandbox
    from solutions.notebooks import read_notebook, solved_notebook

    course_dir = course.setup(tmp_path_factory.mktemp("report") / "course", [CHAPTER])
    course.release(course_dir, [CHAPTER])
    released = read_notebook(course_dir / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    solved = solved_notebook(released, CHAPTER)
    for student, kind in CLASS.items():
        folder = course_dir / "submitted" / student / CHAPTER
        folder.mkdir(parents=True)
        path = folder / f"{CHAPTER}.ipynb"
        if kind == "damaged":
            path.write_bytes(b'{"cells": [' + "caf\xe9".encode("latin-1"))
            continue
        nb = {"solved": solved, "stub": released}.get(kind)
        if kind == "unexplained":
            nb = _replace_answer(_replace_answer(solved, "decode", UNEXPLAINED), "get_pair_counts", HANGS)
        elif isinstance(kind, tuple):
            nb = _committing(solved, *kind)
        nbformat.write(nb, path)
    settings = grader.Settings(exercise_timeout_s=3.0)
    if os.geteuid() == 0:
        sandbox.ensure_sandbox_user(count=2)
    settings.method = batch.preflight(course_dir, settings)
    results = batch.grade_assignment(course_dir, CHAPTER, workers=2, settings=settings, progress=False)
    assert len(results) == len(CLASS)
    return course_dir


@pytest.fixture(scope="module")
def class_reports(graded_class):
    anonymous = _run_report(graded_class)
    assert anonymous.returncode == 0, anonymous.stderr
    named = _run_report(graded_class, "--names")
    assert named.returncode == 0, named.stderr
    return graded_class, anonymous.stdout, named.stdout


@pytest.mark.slow
def test_counts_per_exercise_and_outcome_are_exact(class_reports):
    graded_class = class_reports[0]
    r = report.read_chapter(graded_class, CHAPTER)
    assert r.students == sorted(CLASS) and r.attention == ["gus_4717"] and not r.no_result
    expected = {}
    for name in EXERCISES:
        counts = {"passed": 5, "unfinished": 1, "needs_attention": 1}
        wrong = {"merge": "dov_4714", "compression_ratio": "eli_4715", "decode": "fay_4716"}.get(name)
        if wrong:
            counts.update(passed=4, failed=1)
        if name == "get_pair_counts":
            counts.update(passed=4, timed_out=1)
        expected[name] = counts
    assert _counts(r) == expected
    # the CSV beside the page says the same, zeros included
    rows = _csv(graded_class / "reports" / f"{CHAPTER}.csv")
    outcome = {(row["exercise"], row["name"]): int(row["count"]) for row in rows if row["row"] == "outcome"}
    assert outcome == {(name, o): expected[name].get(o, 0) for name in EXERCISES for o in report.OUTCOMES}
    page = " ".join(re.sub(r"<[^>]+>", " ", (graded_class / "reports" / f"{CHAPTER}.html").read_text()).split())
    assert "7 submission(s): 6 graded, 1 need attention, 0 without a result." in page


@pytest.mark.slow
def test_every_known_mistake_a_fixture_commits_is_attributed_to_it(graded_class):
    r = report.read_chapter(graded_class, CHAPTER)
    committed = {kind[0]: {kind[1]: [student]} for student, kind in CLASS.items() if isinstance(kind, tuple)}
    assert _mistakes(r) == committed
    for e in r.exercises:
        assert not e.diagnosed
        assert [f.student for f in e.unexplained] == (["fay_4716"] if e.name == "decode" else [])
    results = {p.stem: json.loads(p.read_text()) for p in (graded_class / "graded" / CHAPTER).glob("*.json")}
    assert results["gus_4717"]["status"] == "needs_attention"
    assert all(e["outcome"] == "unfinished" for e in results["cara_4713"]["exercises"])


@pytest.mark.slow
def test_the_report_names_mistakes_and_shows_unexplained_failures_anonymised(class_reports):
    course_dir, stdout, _ = class_reports
    page = (course_dir / "reports" / f"{CHAPTER}.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]*"', "", page)))
    for exercise, mistake in [kind for kind in CLASS.values() if isinstance(kind, tuple)]:
        (m,) = [m for m in SPECS[exercise].mistakes if m.name == mistake]
        assert m.name in text and m.hint in text
    assert "1 failure(s): 0 explained by a known mistake, 1 that no known mistake explains." in " ".join(text.split())
    assert "decode raised ValueError on a hidden test input: could not open <path>; mail <email>" in text
    everything = page + stdout + "".join(p.read_text() for p in (course_dir / "reports").iterdir())
    for student in CLASS:
        assert student not in everything, student
    assert "/home/" not in everything and "uni.example" not in everything and ".ipynb" not in everything
    assert "No results for 02_embeddings." in (course_dir / "reports" / "02_embeddings.html").read_text()


@pytest.mark.slow
def test_names_appear_only_when_asked(class_reports):
    course_dir, _, stdout = class_reports
    page = (course_dir / "reports-with-names" / f"{CHAPTER}.html").read_text(encoding="utf-8")
    for student in CLASS:
        assert student in page, student
    rows = _csv(course_dir / "reports-with-names" / f"{CHAPTER}.csv")
    (row,) = [r for r in rows if r["exercise"] == "merge" and r["row"] == "known mistake"]
    assert (row["name"], row["count"], row["students"]) == ("no skip", "1", "dov_4714")
    assert "reports-with-names" in stdout


@pytest.mark.slow
def test_the_page_opens_offline_in_headless_chromium_with_its_figure(class_reports, tmp_path):
    from test_book import chromium

    course_dir, _, _ = class_reports
    probe = ('<script>window.addEventListener("load",function(){document.body.setAttribute("data-images",'
             'JSON.stringify(Array.from(document.images).map(function(i){return [i.alt,i.naturalWidth,i.naturalHeight];})));});'
             "</script></body>")
    for name, figures in [(f"{CHAPTER}.html", 1), ("index.html", 1)]:
        page = (course_dir / "reports" / name).read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not fetch anything"
        copy = tmp_path / name
        copy.write_text(page.replace("</body>", probe, 1), encoding="utf-8")
        dom = chromium("--dump-dom", copy.as_uri())
        body = re.search(r"<body[^>]*>", dom).group(0)
        images = json.loads(html.unescape(re.search(r'data-images="([^"]*)"', body).group(1)))
        assert len(images) == figures and all(w > 300 and h > 150 for _, w, h in images), images
        assert "Bar chart of 01_tokenization" in images[0][0]
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,2000", (course_dir / "reports" / f"{CHAPTER}.html").as_uri())
    assert shot.read_bytes().startswith(b"\x89PNG")
