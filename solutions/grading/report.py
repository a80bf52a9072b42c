"""The class report: where a class is stuck, in words.

    python -m solutions.grading report COURSE_DIR [--chapter NN_topic] [--names] [--out DIR]

Reads the per-submission results the grader wrote (``graded/<chapter>/<student>.json``; nothing
is graded again) and writes, per chapter, a self-contained HTML page and a CSV beside it:

* for every exercise, how many students passed, failed, left it unfinished, timed out, never
  got to run it, need attention (the whole submission waits for a human) or have no result yet;
* for the failures, how many hit each known mistake of the exercise's check (its name and its
  hint sentence), and how many failed in a way no known mistake explains, with a few anonymised
  examples of those messages: the place to look for a mistake to add to the checks;
* a bar chart (exercises x outcome), drawn with matplotlib and embedded as a PNG, so the page
  opens offline from a file.

Reporting every chapter also writes ``index.html`` (one row per chapter, with its chart) and
``overview.csv``. By default nothing in the pages or CSVs names a student (no ids, no file
names; messages are scrubbed of ids, paths, addresses and long numbers, and cut short), so the
report can be shared with the class; ``--names`` adds who is behind each count, for the
instructor only, and writes to another folder.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import solutions
from solutions.checks import specs_for
from solutions.grading import reading, verdicts

OUTCOMES = verdicts.OUTCOMES + ("no_result",)
LABELS = {**verdicts.LABELS, "no_result": "no result"}
MEANING = {
    "passed": "correct on all hidden test inputs",
    "failed": "a wrong answer, an error, or a function that is missing",
    "unfinished": "still the stub (raises NotImplementedError)",
    "timed_out": "did not finish within the time limit",
    "not_run": "the notebook stopped before this exercise could run",
    "needs_attention": "the whole submission waits for an instructor (unreadable notebook, suspicious code, grader trouble); its verdicts are not counted elsewhere",
    "no_result": "handed in but not graded yet, or its result file is missing, unreadable or lacks this exercise",
}
COLOURS = {
    "passed": "#4caf50",
    "failed": "#e53935",
    "unfinished": "#9e9e9e",
    "timed_out": "#fb8c00",
    "not_run": "#cfd8dc",
    "needs_attention": "#8e24aa",
    "no_result": "#ffffff",
}
EXAMPLES = 3  # unexplained messages shown per exercise
MESSAGE_CHARS = 300  # an example message is cut after this many characters
MAX_RESULT_BYTES = 20 * 2**20  # a result file larger than this is not read


# --------------------------------------------------------------------------------------------
# anonymising what students' code wrote


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b[a-zA-Z][\w+.-]*://\S+")
_PATH = re.compile(r"(?<![\w.])(?:~|[A-Za-z]:)?[\\/](?:[^\s'\"<>\\/:]+[\\/])+[^\s'\"<>,;)\]]*")
_FILE = re.compile(r"[^\s'\"<>\\/]+\.(?:ipynb|py|json|zip|txt|csv|html|pdf|docx?)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\d.])\d{7,}(?![\d.])")


class Scrubber:
    """Removes what could identify a student from a message: every student id of the course
    (and the words of each id), file names, paths, e-mail addresses, URLs and long numbers."""

    def __init__(self, identities: Iterable[str]) -> None:
        whole, words = set(), set()
        for identity in identities:
            identity = str(identity)
            if len(identity) >= 4:  # a short id only as a word of its own (below)
                whole.add(identity)
            if identity:
                words.update(w for w in [identity] if len(w) >= 2)
                words.update(w for w in re.split(r"[^0-9A-Za-z]+|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", identity)
                             if len(w) >= 3)
        self._whole = (re.compile("|".join(re.escape(w) for w in sorted(whole, key=len, reverse=True)), re.IGNORECASE)
                       if whole else None)
        self._words = (re.compile(r"(?<![0-9A-Za-z])(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
                                  + r")(?![0-9A-Za-z])", re.IGNORECASE) if words else None)

    def __call__(self, text: Any, limit: int = MESSAGE_CHARS) -> str:
        text = reading._clean(text if isinstance(text, str) else str(text))
        text = text[: 20 * limit]  # bounded work on a huge message
        text = _URL.sub("<url>", text)
        text = _EMAIL.sub("<email>", text)
        text = _PATH.sub("<path>", text)
        text = _FILE.sub("<file>", text)
        if self._whole is not None:
            text = self._whole.sub("<student>", text)
        if self._words is not None:
            text = self._words.sub("<student>", text)
        text = _NUMBER.sub("<number>", text)
        return shorten(text, limit)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --------------------------------------------------------------------------------------------
# reading the results


@dataclass
class Failure:
    student: str
    message: str  # as the grader wrote it (not yet scrubbed)


@dataclass
class ExerciseReport:
    name: str
    points: float
    outcomes: dict[str, list[str]] = field(default_factory=lambda: {o: [] for o in OUTCOMES})  # outcome -> students
    # (kind, name, hint) -> students, for failures a known mistake explains
    mistakes: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    diagnosed: list[Failure] = field(default_factory=list)  # explained by a case-specific sentence
    unexplained: list[Failure] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return len(self.outcomes[outcome])


@dataclass
class ChapterReport:
    chapter: str
    exercises: list[ExerciseReport]
    students: list[str] = field(default_factory=list)  # everyone who handed in or has a result
    graded: list[str] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)
    no_result: list[str] = field(default_factory=list)  # handed in, no (readable) result
    reasons: dict[str, list[str]] = field(default_factory=dict)  # a reason (raw) -> students
    scores: list[tuple[float, float]] = field(default_factory=list)  # (score, max) of graded results
    score_of: dict[str, str] = field(default_factory=dict)  # student -> "score / max" (shown with --names only)
    notes: list[str] = field(default_factory=list)
    from_messages: int = 0  # results from before the grader recorded mistakes: attributed from text

    @property
    def has_results(self) -> bool:
        return bool(self.graded or self.attention)


def _students_with_submissions(course_dir: Path, chapter: str) -> set[str]:
    root = course_dir / "submitted"
    try:
        return {p.parent.name for p in root.glob(f"*/{chapter}") if p.is_dir()}
    except OSError:
        return set()


def _read_result(path: Path) -> dict | None:
    try:
        if path.stat().st_size > MAX_RESULT_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _outcome(entry: dict) -> str:
    outcome = entry.get("outcome")
    if outcome in verdicts.OUTCOMES:
        return outcome
    # a result from before "outcome" was recorded: read it from the verdict and the message
    verdict, message = entry.get("verdict"), _text(entry.get("message"))
    if not isinstance(verdict, str) or not verdict:
        return "no_result"
    if verdict == "failed" and message.startswith(f"{_text(entry.get('name'))} is not implemented yet:"):
        return "unfinished"
    return verdicts.exercise_outcome(verdict, message)


def _mistake(entry: dict, spec) -> tuple[dict | None, bool]:
    """(the known mistake behind a failure, whether it was read from the message's text)."""
    if "mistake" in entry:
        mistake = entry["mistake"]
        if isinstance(mistake, dict) and mistake.get("kind") in ("mistake", "error", "diagnosis"):
            return {k: _text(mistake.get(k)) for k in ("kind", "name", "hint")}, False
        return None, False
    # an older result: the hint is the message's last line; only a sentence of the checks counts
    message = _text(entry.get("message"))
    if "\nHint: " not in message:
        return None, True
    found = verdicts.known_mistake(spec, message.rsplit("\nHint: ", 1)[1].strip())
    return (found if found and found["kind"] != "diagnosis" else None), True


def read_chapter(course_dir: Path, chapter: str) -> ChapterReport:
    """Everything the report shows for one chapter, from the result files (never re-grading)."""
    course_dir = Path(course_dir)
    specs = specs_for(chapter)
    report = ChapterReport(chapter, [ExerciseReport(s.name, float(s.points)) for s in specs])
    by_name = {e.name: (e, s) for e, s in zip(report.exercises, specs)}
    folder = course_dir / "graded" / chapter
    try:
        files = sorted(p for p in folder.glob("*.json") if not p.name.startswith(".") and p.is_file())
    except OSError:
        files = []
    results = {p.stem: p for p in files}
    students = sorted(set(results) | _students_with_submissions(course_dir, chapter))
    report.students = students
    unreadable = partial = 0
    foreign: set[str] = set()
    for student in students:
        result = _read_result(results[student]) if student in results else None
        if result is None:
            unreadable += student in results
            report.no_result.append(student)
            for exercise in report.exercises:
                exercise.outcomes["no_result"].append(student)
            continue
        entries = result.get("exercises") if isinstance(result.get("exercises"), list) else []
        entries = {e["name"]: e for e in reversed(entries) if isinstance(e, dict) and isinstance(e.get("name"), str)}
        foreign |= set(entries) - set(by_name)
        attention = result.get("status") != "graded"
        if attention:
            report.attention.append(student)
            reasons = result.get("reasons") if isinstance(result.get("reasons"), list) else []
            for reason in reasons[:20] or ["no reason recorded"]:
                report.reasons.setdefault(_text(reason), []).append(student)
        else:
            report.graded.append(student)
            score, top = result.get("score"), result.get("max_score")
            if isinstance(score, (int, float)) and isinstance(top, (int, float)):
                report.scores.append((float(score), float(top)))
                report.score_of[student] = f"{float(score):g} / {float(top):g}"
        old = False
        for exercise, spec in by_name.values():
            entry = entries.get(exercise.name)
            if attention:
                exercise.outcomes["needs_attention"].append(student)
                continue
            if entry is None:
                partial += 1
                exercise.outcomes["no_result"].append(student)
                continue
            outcome = _outcome(entry)
            exercise.outcomes[outcome].append(student)
            if outcome != "failed":
                continue
            mistake, from_text = _mistake(entry, spec)
            old = old or from_text
            if mistake is None:
                exercise.unexplained.append(Failure(student, _text(entry.get("message"))))
            elif mistake["kind"] == "diagnosis":
                exercise.diagnosed.append(Failure(student, mistake["hint"]))
            else:
                exercise.mistakes.setdefault((mistake["kind"], mistake["name"], mistake["hint"]), []).append(student)
        report.from_messages += old
    if unreadable:
        report.notes.append(f"{unreadable} result file(s) could not be read; counted as no result (grade again to rewrite them).")
    if partial:
        report.notes.append(f"{partial} exercise result(s) are missing from otherwise readable results (graded against "
                            "an older release?); counted as no result.")
    if foreign:
        report.notes.append(f"results name {len(foreign)} exercise(s) this chapter no longer has; they are left out.")
    if report.from_messages:
        report.notes.append(f"{report.from_messages} result(s) were written by an older grader: their known mistakes "
                            "are read from the hint in the message; grade again for exact attribution.")
    waiting = len(report.no_result) - unreadable
    if waiting:
        report.notes.append(f"{waiting} submission(s) were handed in but have no result yet: run "
                            "`python -m solutions.grading grade`.")
    return report


# --------------------------------------------------------------------------------------------
# the figure


def chart_png(report: ChapterReport, *, width: float = 8.0) -> bytes:
    """A horizontal stacked bar per exercise (outcome counts), as PNG bytes; matplotlib's Agg
    canvas on a figure of its own, so no global plotting state is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [e.name for e in report.exercises]
    fig = Figure(figsize=(width, 1.6 + 0.42 * max(1, len(names))), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    left = [0] * len(names)
    positions = list(range(len(names)))[::-1]  # the first exercise on top
    for outcome in OUTCOMES:
        counts = [e.count(outcome) for e in report.exercises]
        if not any(counts):
            continue
        ax.barh(positions, counts, left=left, color=COLOURS[outcome], edgecolor="#555555", linewidth=0.6,
                label=LABELS[outcome])
        left = [a + b for a, b in zip(left, counts)]
    ax.set_yticks(positions, names)
    ax.set_xlabel("students")
    ax.set_xlim(0, max(1, len(report.students)))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{report.chapter}: outcome per exercise ({len(report.students)} students)")
    shown = sum(any(e.count(o) for e in report.exercises) for o in OUTCOMES)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / max(1, len(names))), ncol=min(4, max(1, shown)),
              frameon=False)
    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight", pad_inches=0.15)
    return out.getvalue()


def _img(report: ChapterReport, width: float = 8.0, css_width: str = "100%") -> str:
    try:
        data = base64.b64encode(chart_png(report, width=width)).decode("ascii")
    except Exception as exc:  # the numbers are in the table anyway
        return f"<p class=note>(the chart could not be drawn: {html.escape(type(exc).__name__)})</p>"
    alt = f"Bar chart of {report.chapter}: for each exercise, how many students passed, failed, left it unfinished, timed out or need attention"
    return f'<img class=chart style="max-width:{css_width}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


# --------------------------------------------------------------------------------------------
# the pages


STYLE = """body{font-family:system-ui,sans-serif;max-width:64em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.n,th.n{text-align:right}pre{white-space:pre-wrap;margin:0;font-size:.9em}.note{color:#555}
.banner{padding:.5em 1em;border-radius:4px}.safe{background:#e8f5e9}.private{background:#ffebee;font-weight:bold}
.students{color:#555;font-size:.9em}img.chart{display:block;margin:1em 0}"""


def _banner(names: bool) -> str:
    if names:
        return ("<p class='banner private'>This report names students: it is for the instructor only. "
                "Run the report without --names for a copy to share.</p>")
    return ("<p class='banner safe'>Anonymous: no student names, ids or file names; example messages are "
            "scrubbed and shortened. Safe to share with the class.</p>")


def _who(students: list[str], names: bool) -> str:
    if not names or not students:
        return ""
    return f"<div class=students>{html.escape(', '.join(reading._clean(s) for s in students))}</div>"


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<meta name=viewport content='width=device-width'><style>{STYLE}</style></head><body>\n{body}\n"
            f"<p class=note>Written {time.strftime('%Y-%m-%d %H:%M')} by <code>python -m solutions.grading report</code> "
            f"(course {html.escape(solutions.__version__)}) from the grader's results; nothing was graded again.</p>"
            "</body></html>\n")


def _summary(report: ChapterReport) -> str:
    parts = [f"{len(report.students)} submission(s)", f"{len(report.graded)} graded",
             f"{len(report.attention)} need attention", f"{len(report.no_result)} without a result"]
    text = ": ".join([parts[0], ", ".join(parts[1:])])
    if report.scores:
        mean = statistics.fmean(s for s, _ in report.scores)
        top = max(m for _, m in report.scores)
        text += f". Mean score of the graded submissions: {mean:.1f} of {top:g}"
    return text + "."


def chapter_html(report: ChapterReport, *, names: bool = False) -> str:
    scrub = Scrubber(report.students)
    chapter = html.escape(report.chapter)
    out = [f"<h1>Class report: {chapter}</h1>", _banner(names)]
    if not report.has_results:
        out.append(f"<p><b>No results for {chapter}.</b> "
                   + (f"{len(report.no_result)} submission(s) were handed in but none has been graded yet: run "
                      "<code>python -m solutions.grading grade COURSE_DIR</code>." if report.no_result else
                      "Nobody's submission of this chapter has been collected and graded.")
                   + "</p>")
        if names and report.no_result:
            out.append(f"<p>Handed in: {_who(report.no_result, names)}</p>")
        out += [f"<p class=note>{html.escape(n)}</p>" for n in report.notes]
        return _page(f"Class report: {report.chapter}", "\n".join(out))
    out.append(f"<p>{html.escape(_summary(report))}</p>")
    out.append(_img(report))
    head = "".join(f"<th class=n title='{html.escape(MEANING[o])}'>{html.escape(LABELS[o])}</th>" for o in OUTCOMES)
    rows = []
    for e in report.exercises:
        cells = "".join(f"<td class=n>{e.count(o)}</td>" for o in OUTCOMES)
        name = f"<code>{html.escape(e.name)}</code>"
        rows.append(f"<tr><td>{f'<a href=#ex-{html.escape(e.name)}>{name}</a>' if e.count('failed') else name}</td>"
                    f"<td class=n>{e.points:g}</td>{cells}</tr>")
    out.append(f"<table><tr><th>exercise</th><th class=n>points</th>{head}</tr>{''.join(rows)}</table>")
    out.append("<details><summary>What the columns mean</summary><ul>"
               + "".join(f"<li><b>{html.escape(LABELS[o])}</b>: {html.escape(MEANING[o])}</li>" for o in OUTCOMES)
               + "</ul></details>")

    out.append("<h2>Where the class is stuck</h2>")
    clean = [e.name for e in report.exercises if not e.count("failed")]
    if clean:
        out.append("<p class=note>No failures in " + ", ".join(f"<code>{html.escape(n)}</code>" for n in clean) + ".</p>")
    for e in report.exercises:
        failed = e.count("failed")
        if not failed:
            continue
        out.append(f"<h3 id='ex-{html.escape(e.name)}'><code>{html.escape(e.name)}</code></h3>")
        explained = sum(map(len, e.mistakes.values())) + len(e.diagnosed)
        out.append(f"<p>{failed} failure(s): {explained} explained by a known mistake, "
                   f"{len(e.unexplained)} that no known mistake explains.</p>")
        if e.mistakes or e.diagnosed:
            rows = []
            for (kind, name, hint), students in sorted(e.mistakes.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                label = name if kind == "mistake" else f"error: {name}"
                rows.append(f"<tr><td class=n>{len(students)}</td><td><code>{html.escape(reading._clean(label))}</code></td>"
                            f"<td>{html.escape(reading._clean(hint))}{_who(students, names)}</td></tr>")
            if e.diagnosed:
                examples = Counter(scrub(f.message) for f in e.diagnosed).most_common(EXAMPLES)
                shown = "".join(f"<li>{html.escape(text)}" + (f" ({n}×)" if n > 1 else "") + "</li>" for text, n in examples)
                rows.append(f"<tr><td class=n>{len(e.diagnosed)}</td><td><i>diagnosed</i></td><td>the check explained "
                            f"the failing case in its own words, e.g.:<ul>{shown}</ul>"
                            f"{_who([f.student for f in e.diagnosed], names)}</td></tr>")
            out.append(f"<table><tr><th class=n>students</th><th>known mistake</th><th>its hint</th></tr>{''.join(rows)}</table>")
        if e.unexplained:
            groups: dict[str, list[Failure]] = {}
            for failure in e.unexplained:
                text = scrub(failure.message)
                groups.setdefault(re.sub(r"\d+", "#", text), []).append(Failure(failure.student, text))
            ordered = sorted(groups.values(), key=lambda g: -len(g))
            out.append(f"<p>Unexplained failures ({len(e.unexplained)}), "
                       f"{'the most common' if len(ordered) > EXAMPLES else 'all'} of their messages:</p><table>"
                       "<tr><th class=n>students</th><th>message (anonymised)</th></tr>")
            for group in ordered[:EXAMPLES]:
                out.append(f"<tr><td class=n>{len(group)}</td><td><pre>{html.escape(group[0].message)}</pre>"
                           f"{_who([f.student for f in group], names)}</td></tr>")
            out.append("</table>")
            if len(ordered) > EXAMPLES:
                out.append(f"<p class=note>{len(ordered) - EXAMPLES} other kind(s) of message not shown.</p>")
    if report.attention:
        out.append("<h2>Submissions that need attention</h2>")
        out.append(f"<p>{len(report.attention)} submission(s) wait for an instructor; their exercises are counted "
                   "under <b>needs attention</b> only. The reasons:</p><table><tr><th class=n>students</th><th>reason</th></tr>")
        for reason, students in sorted(report.reasons.items(), key=lambda kv: -len(kv[1]))[:20]:
            out.append(f"<tr><td class=n>{len(students)}</td><td>{html.escape(scrub(reason))}{_who(students, names)}</td></tr>")
        out.append("</table>")
    if names:
        out.append(_students_table(report))
    if report.notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
    return _page(f"Class report: {report.chapter}", "\n".join(out))


def _students_table(report: ChapterReport) -> str:
    """With --names: one row per student, with the exercises they did not pass."""
    rows = []
    for student in report.students:
        missed = []
        for e in report.exercises:
            for outcome, students in e.outcomes.items():
                if outcome != "passed" and student in students:
                    missed.append(f"<code>{html.escape(e.name)}</code> ({html.escape(LABELS[outcome])})")
        state = ("needs attention" if student in report.attention else "no result" if student in report.no_result
                 else report.score_of.get(student, "graded"))
        rows.append(f"<tr><td>{html.escape(reading._clean(student))}</td><td>{html.escape(state)}</td>"
                    f"<td>{', '.join(missed) or 'all passed'}</td></tr>")
    return ("<h2>Students</h2><table><tr><th>student</th><th>score</th><th>not passed</th></tr>"
            + "".join(rows) + "</table>")


def fewest_passed(report: ChapterReport) -> list:
    """The exercises that the fewest students passed: all of them where several tie."""
    if not report.exercises:
        return []
    least = min(e.count("passed") for e in report.exercises)
    return [e for e in report.exercises if e.count("passed") == least]


def overview_html(reports: list[ChapterReport], *, names: bool = False) -> str:
    out = ["<h1>Class report: every chapter</h1>", _banner(names), "<table><tr><th>chapter</th><th>results</th><th>figure</th></tr>"]
    for report in reports:
        link = f"<a href='{html.escape(report.chapter)}.html'>{html.escape(report.chapter)}</a>"
        if report.has_results:
            failed = sum(e.count("failed") for e in report.exercises)
            unexplained = sum(len(e.unexplained) for e in report.exercises)
            hardest = fewest_passed(report)
            detail = (f"{html.escape(_summary(report))}<br>{failed} failed exercise(s), {unexplained} of them unexplained"
                      + (f"; fewest passed ({hardest[0].count('passed')} each): "
                         + ", ".join(f"<code>{html.escape(e.name)}</code>" for e in hardest) if len(hardest) > 1
                         else f"; fewest passed: <code>{html.escape(hardest[0].name)}</code>" if hardest else ""))
            figure = _img(report, width=6.5, css_width="36em")
        else:
            detail, figure = "<b>No results.</b>" + (f" {len(report.no_result)} handed in, not graded yet." if report.no_result else ""), ""
        out.append(f"<tr><td>{link}</td><td>{detail}</td><td>{figure}</td></tr>")
    out.append("</table>")
    return _page("Class report", "\n".join(out))


# --------------------------------------------------------------------------------------------
# the CSVs


def _cell(value: Any) -> Any:
    """A spreadsheet shows text, never runs it: a cell that starts like a formula gets a quote."""
    if isinstance(value, str):
        value = reading._clean(value)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
    return value


def chapter_rows(report: ChapterReport, *, names: bool = False) -> list[list[Any]]:
    """One row per (exercise, what is counted): outcomes, each known mistake, the unexplained
    failures and their example messages (anonymised)."""
    scrub = Scrubber(report.students)
    header = ["chapter", "exercise", "row", "name", "text", "count"] + (["students"] if names else [])
    rows = [header]

    def add(exercise: str, row: str, name: str, text: str, students: list[str]) -> None:
        rows.append([report.chapter, exercise, row, name, text, len(students)] + (["; ".join(students)] if names else []))

    if not report.has_results:
        add("", "no results", "", "no graded results for this chapter", report.no_result)
        return rows
    for e in report.exercises:
        for outcome in OUTCOMES:
            add(e.name, "outcome", outcome, LABELS[outcome], e.outcomes[outcome])
        for (kind, name, hint), students in sorted(e.mistakes.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            add(e.name, "known mistake", name if kind == "mistake" else f"error: {name}", hint, students)
        if e.diagnosed:
            add(e.name, "known mistake", "diagnosed", "the check explained the failing case in its own words",
                [f.student for f in e.diagnosed])
        add(e.name, "unexplained", "", "failures no known mistake explains", [f.student for f in e.unexplained])
        groups: dict[str, list[str]] = {}
        for failure in e.unexplained:
            groups.setdefault(scrub(failure.message), []).append(failure.student)
        for text, students in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:EXAMPLES]:
            add(e.name, "unexplained example", "", text, students)
    return rows


def overview_rows(reports: list[ChapterReport]) -> list[list[Any]]:
    rows = [["chapter", "submissions", "graded", "needs_attention", "no_result", "mean_score", "max_score",
             *[f"exercises_{o}" for o in OUTCOMES], "failures_explained", "failures_unexplained"]]
    for r in reports:
        mean = round(statistics.fmean(s for s, _ in r.scores), 3) if r.scores else ""
        top = max((m for _, m in r.scores), default="")
        rows.append([r.chapter, len(r.students), len(r.graded), len(r.attention), len(r.no_result), mean, top,
                     *[sum(e.count(o) for e in r.exercises) for o in OUTCOMES],
                     sum(sum(map(len, e.mistakes.values())) + len(e.diagnosed) for e in r.exercises),
                     sum(len(e.unexplained) for e in r.exercises)])
    return rows


def _csv_text(rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# the command


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def default_out(course_dir: Path, names: bool) -> Path:
    return Path(course_dir) / ("reports-with-names" if names else "reports")


def write_reports(course_dir: Path, chapters: list[str] | None = None, *, names: bool = False,
                  out: Path | None = None) -> list[ChapterReport]:
    """Write <chapter>.html and <chapter>.csv per chapter into ``out`` and, when every chapter is
    reported, index.html and overview.csv. Returns the chapters' reports."""
    course_dir = Path(course_dir)
    out = Path(out) if out is not None else default_out(course_dir, names)
    every = not chapters
    reports = [read_chapter(course_dir, chapter) for chapter in (chapters or solutions.CHAPTERS)]
    for report in reports:
        _write(out / f"{report.chapter}.html", chapter_html(report, names=names))
        _write(out / f"{report.chapter}.csv", _csv_text(chapter_rows(report, names=names)))
    if every:
        _write(out / "index.html", overview_html(reports, names=names))
        _write(out / "overview.csv", _csv_text(overview_rows(reports)))
    return reports
