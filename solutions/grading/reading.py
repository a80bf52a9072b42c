"""Reading what a submission is graded against, and the submission itself; clean strings.

Its job: turn files into plain data the rest of the grader works with.

* :func:`load_released` reads the *released* notebook (the course's own file, trusted): its
  set-up cells, the answer and check cells, the exercises and their points.
* :func:`read_submission` reads a student's notebook, which is *not* trusted: it runs in the
  trusted process on student bytes, so it bounds everything before parsing (file size, JSON
  depth, number of cells) and turns every failure into :class:`Unreadable` with a plain-words
  reason; it never executes anything from the file.
* :func:`clean` makes any string (student text, sandbox output) safe to write anywhere.
* :class:`Settings` holds the limits every later step obeys.

Of the grader's modules it imports only :mod:`.withhold` (the package copy of a release), so
every other grading module may import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from solutions.checks import SPECS
from solutions.grading import withhold
from solutions.notebooks import DEMO_TAG


@dataclass
class Settings:
    cell_timeout_s: float = 30.0  # one cell of the student's code
    exercise_timeout_s: float = 20.0  # one exercise's calls on all its hidden inputs
    startup_s: float = 60.0  # python, torch and IPython start-up inside the sandbox
    notebook_budget_s: float = 240.0  # everything for one submission, retries and our own work included
    max_attempts: int = 5  # sandboxes started for one submission after a failure
    max_notebook_bytes: int = 20 * 2**20
    max_cells: int = 2000  # cells of one notebook; more is refused before any work
    max_cell_bytes: int = 16 * 2**10  # a code cell larger than this is not compared with course cells
    compare_budget: int = 20_000  # cell comparisons (cheap filters included) per notebook
    compare_s: float = 10.0  # and at most this long (part of notebook_budget_s)
    memory_bytes: int = 6 * 2**30  # address space per process (torch alone maps ~2-3 GiB)
    total_memory_bytes: int = 4 * 2**30  # resident memory of all the submission's processes together
    disk_bytes: int = 256 * 2**20  # the writable scratch folder (a private tmpfs)
    tmp_bytes: int = 64 * 2**20  # /tmp and /dev/shm, each
    method: str | None = None  # sandbox method; default: the strongest available


# --------------------------------------------------------------------------------------------
# the released notebook: what a submission is graded against


@dataclass
class Exercise:
    name: str  # the function name (= the check spec)
    answer_id: str  # grade_id of the answer cell
    check_id: str  # grade_id of the check cell (where the points live in the gradebook)
    points: float


@dataclass
class Released:
    assignment: str
    prelude: list[str]  # released code cells before the first answer (set-up, imports)
    cells_by_id: dict[str, Any]  # every released cell, by id
    sources: set[str]  # sources of released code cells that are not answers
    exercises: list[Exercise]
    _package: Path | None = field(default=None, repr=False)

    def package(self) -> Path:
        """The withholding copy of the course package for this assignment (built once)."""
        if self._package is None or not self._package.is_dir():
            specs = [SPECS[e.name] for e in self.exercises]
            self._package = withhold.package_copy(self.assignment, specs, self.prelude)
        return self._package


def load_released(path: Path, assignment: str) -> Released:
    nb = nbformat.read(path, as_version=4)
    prelude, exercises, sources, answers = [], [], set(), {}
    seen_answer = False
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            seen_answer = True
            answers[meta["grade_id"]] = cell
            continue
        if meta.get("grade"):
            name = cell.source.strip().removeprefix("check.").split("(")[0]
            exercises.append(Exercise(name, name, meta["grade_id"], float(meta.get("points", 0))))
            continue
        sources.add(cell.source.strip())
        if not seen_answer and DEMO_TAG not in cell.metadata.get("tags", []):
            prelude.append(cell.source)
    for exercise in exercises:
        if exercise.name not in SPECS:
            raise ValueError(f"the released notebook checks {exercise.name}, which has no spec")
        # the answer cell of an exercise carries the exercise name as its grade id
        if exercise.answer_id not in answers:
            raise ValueError(f"the released notebook has no answer cell {exercise.answer_id}")
    return Released(assignment, prelude, {c.id: c for c in nb.cells if "id" in c}, sources, exercises)


# --------------------------------------------------------------------------------------------
# reading a submission


class Unreadable(Exception):
    """The submission cannot be graded at all; the message says why, in plain words."""


def read_submission(path: Path, settings: Settings) -> nbformat.NotebookNode:
    size = path.stat().st_size
    if size > settings.max_notebook_bytes:
        raise Unreadable(f"the notebook is {size / 2**20:.1f} MB, more than the {settings.max_notebook_bytes / 2**20:.0f} MB allowed (clear the outputs and hand it in again)")
    with open(path, "rb") as f:
        raw = f.read(settings.max_notebook_bytes + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(
            f"the file is not valid UTF-8 text (byte {exc.start}: {exc.reason}), so it is not a notebook as "
            "Jupyter or Colab saves it; save it again from Jupyter or Colab and hand it in again"
        ) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise Unreadable("the file's JSON is nested too deeply to be a notebook") from None
    except ValueError as exc:
        raise Unreadable(f"the file is not valid JSON, so not a notebook ({_clean(str(exc))[:200]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", []), list):
        raise Unreadable("the file is JSON but not a notebook (no list of cells)")
    if len(data.get("cells", [])) > settings.max_cells:
        raise Unreadable(f"the notebook has {len(data['cells'])} cells, more than the {settings.max_cells} allowed")
    major = data.get("nbformat")
    if major not in (3, 4):
        raise Unreadable(f"unsupported notebook format version {_clean(repr(major))[:40]} (expected 4)")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:  # RecursionError and MemoryError included
        raise Unreadable(f"the notebook's structure is damaged ({type(exc).__name__}: {_clean(str(exc))[:200]})") from None
    if not isinstance(nb.get("cells"), list) or len(nb.cells) > settings.max_cells:
        raise Unreadable("the notebook's structure is damaged (no usable list of cells)")
    return nb


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


# --------------------------------------------------------------------------------------------
# strings that can go anywhere


def _clean(text: Any) -> str:
    """A string that can go anywhere (UTF-8 files, HTML, sqlite, a terminal): lone surrogates
    and control characters other than newline and tab are written as escapes."""
    if not isinstance(text, str):
        text = str(text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) < 0xA0 for c in text):
        text = "".join(c if (ord(c) >= 32 or c in "\n\t") and not 0x7F <= ord(c) < 0xA0 else f"\\x{ord(c):02x}"
                       for c in text)
    return text


def clean(value: Any) -> Any:
    """:func:`_clean` applied to every string of a result (keys included)."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
