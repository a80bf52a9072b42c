"""Every chapter through the sandboxed grader, with no chapter-specific code anywhere.

For each chapter in ``solutions.CHAPTERS``: its released notebook, solved, earns every point; the
untouched stub earns none; a solved notebook with one exercise left unfinished, or with one
exercise giving wrong numbers, loses exactly that exercise's points. (The adversarial suite,
test_grading_adversarial.py, attacks the grader with chapter 1; this file proves that the same
grader, unchanged, grades every chapter, module exercises included.)
"""

import os

import nbformat
import pytest

import solutions
from solutions.checks import specs_for
from solutions.checks.core import on_device, prepare, run
from solutions.checks.modules import built_args_driver
from solutions.checks.texts import twice_driver
from solutions.grading import batch, course, grader, sandbox
from solutions.notebooks import read_notebook, solved_notebook

pytestmark = pytest.mark.slow

SETTINGS = grader.Settings(cell_timeout_s=30, exercise_timeout_s=30, startup_s=90, notebook_budget_s=240)


def _answer_cell(nb, name):
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == name)


def _numeric_exercise(chapter: str):
    """An exercise whose answer is a function returning a number or a tensor: doubling it is wrong."""
    import torch

    for spec in specs_for(chapter):
        # a plain call (or one whose config arguments are built first): doubling the result is wrong
        if spec.driver not in (None, built_args_driver, twice_driver) or isinstance(spec.reference, type):
            continue
        (outcome,) = run(prepare(spec, spec.reference), [on_device(spec.make_cases(0)[0], "cpu")])
        value = outcome.value
        if outcome.error is None and isinstance(value, (int, float, torch.Tensor)) and not isinstance(value, bool):
            return spec
    raise AssertionError(f"{chapter} has no exercise returning a number or a tensor")


def _points(chapter):
    return {s.name: float(s.points) for s in specs_for(chapter)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("chapters")
    course_dir = course.setup(root / "course", solutions.CHAPTERS)
    course.release(course_dir, solutions.CHAPTERS)
    if os.geteuid() == 0:
        sandbox.ensure_sandbox_user(count=2)
    expected = {}
    for chapter in solutions.CHAPTERS:
        released = read_notebook(course_dir / "release" / chapter / f"{chapter}.ipynb")
        points = _points(chapter)
        solved = solved_notebook(released, chapter)
        last = specs_for(chapter)[-1].name
        unfinished = nbformat.from_dict(solved)
        _answer_cell(unfinished, last).source = _answer_cell(released, last).source
        doubled = nbformat.from_dict(solved)
        wrong = _numeric_exercise(chapter).name
        _answer_cell(doubled, wrong).source += (
            f"\n\n_right_{wrong} = {wrong}\n\ndef {wrong}(*args, **kwargs):\n"
            f"    return 2 * _right_{wrong}(*args, **kwargs)\n"
        )
        notebooks = {
            "solved": (solved, points),
            "stub": (released, {n: 0.0 for n in points}),
            "unfinished": (unfinished, {**points, last: 0.0}),
            "doubled": (doubled, {**points, wrong: 0.0}),
        }
        for student, (nb, want) in notebooks.items():
            folder = course_dir / "submitted" / student / chapter
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / f"{chapter}.ipynb")
            expected[(chapter, student)] = want
    results = {}
    for chapter in solutions.CHAPTERS:
        for result in batch.grade_assignment(course_dir, chapter, workers=2, settings=SETTINGS, progress=False):
            results[(chapter, result["student"])] = result
    return expected, results


@pytest.mark.parametrize("chapter", solutions.CHAPTERS)
def test_each_chapter_grades_exactly(graded, chapter):
    expected, results = graded
    problems = []
    for (ch, student), want in expected.items():
        if ch != chapter:
            continue
        result = results[(ch, student)]
        got = {e["name"]: e["points"] for e in result["exercises"]}
        if result["status"] != "graded" or got != want:
            problems.append(f"{student}: {result['status']} {result.get('reasons')} "
                            f"{ {n: (got.get(n), want[n]) for n in want if got.get(n) != want[n]} }")
    assert not problems, "\n".join(problems)
