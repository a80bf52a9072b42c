"""The grading boundary, piece by piece, without a whole batch (issue 8).

* what the sandbox's copy of the course package holds: never a graded exercise's reference, for
  every chapter; the references an exercise uses arrive only with it, after the exercises they
  answer;
* the trusted side's work on a hostile notebook is bounded (deep JSON, thousands of cells);
* every string that came from a student can be written anywhere (UTF-8 files, HTML, sqlite).
"""

from __future__ import annotations

import ast
import inspect
import json
import time

import nbformat
import pytest

import solutions
from solutions.checks import SPECS, specs_for
from solutions.grading import batch, grader, planning, verdicts, withhold
from solutions.notebooks import read_notebook, stub_path

CHAPTER = "01_tokenization"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    path = tmp_path_factory.mktemp("released") / f"{CHAPTER}.ipynb"
    nbformat.write(read_notebook(stub_path(CHAPTER)), path)
    return grader.load_released(path, CHAPTER)


def _top_level_names(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
    return names


@pytest.mark.parametrize("chapter", solutions.CHAPTERS)
def test_package_copy_withholds_every_graded_reference(chapter, tmp_path):
    stub = read_notebook(stub_path(chapter))
    nbformat.write(stub, tmp_path / "r.ipynb")
    rel = grader.load_released(tmp_path / "r.ipynb", chapter)
    root = rel.package() / "solutions"
    for spec in specs_for(chapter):
        module, name = withhold._top_name(spec.reference)
        copy = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
        if copy.exists():
            assert name not in _top_level_names(copy), f"{name} is in the sandbox's {copy.name}"
    # no file of the copy holds a graded reference's code, whatever its name
    bodies = {s.name: inspect.getsource(s.reference).split(":", 1)[1].strip() for s in specs_for(chapter)}
    for path in root.rglob("*.py"):
        source = path.read_text()
        for name, body in bodies.items():
            assert body not in source, f"{path} holds the reference of {name}"
    # the checks in the copy are a stand-in: no spec, no mistake variant, no reference
    assert "Spec(" not in (root / "checks" / "__init__.py").read_text()
    assert not (root / "checks" / f"{chapter.split('_', 1)[1]}.py").exists()


def test_package_copy_keeps_what_the_released_notebook_imports(released):
    root = released.package()
    names = _top_level_names(root / "solutions" / "tokenization.py")
    for wanted in ("GPT2_SPLIT_PATTERN", "build_vocab", "tiktoken_gpt2"):
        assert wanted in names
    # a class that is not imported by the notebook stays out, even if it does not call an exercise
    assert "BPETokenizer" not in names


def test_slicing_drops_what_refers_to_a_withheld_name():
    source = (
        "import os\n"
        "X = 1\n"
        "def secret(a):\n    return a + X\n"
        "def helper(a):\n    return secret(a) * 2\n"
        "@staticmethod\ndef free(a):\n    return os.sep * a\n"
        "class Uses:\n    def go(self):\n        return helper(1)\n"
    )
    sliced, names = withhold.slice_source(source, withheld={"secret"})
    assert "def secret" not in sliced and "def helper" not in sliced and "class Uses" not in sliced
    assert "def free" in sliced and "@staticmethod" in sliced and "X = 1" in sliced
    kept, _ = withhold.slice_source(source, withheld={"secret"}, keep={"free"})
    assert "X = 1" not in kept and "import os" in kept and "def free" in kept


@pytest.mark.parametrize("name", [s.name for s in SPECS.values()])
def test_uses_never_bring_the_exercise_own_reference(name):
    spec = SPECS[name]
    payload, exposes = withhold.uses_payload(spec)
    assert withhold._top_name(spec.reference) not in exposes
    for part in payload:
        assert f"def {spec.reference.__name__}(" not in part["source"]
        namespace: dict = {}
        exec(compile(part["source"], "<slice>", "exec"), namespace)
        for bound, qualname in part["bind"].items():
            assert callable(namespace[qualname.split(".")[0]])


@pytest.mark.parametrize("chapter", solutions.CHAPTERS)
def test_an_exercise_is_asked_before_any_exercise_that_uses_its_reference(chapter):
    plans = []
    for spec in specs_for(chapter):
        _, exposes = withhold.uses_payload(spec)
        exercise = grader.Exercise(spec.name, spec.name, f"check_{spec.name}", spec.points)
        plans.append(planning._Plan(exercise, spec, [], [], {}, withhold._top_name(spec.reference), exposes))
    order = planning.order_exercises(plans)
    exposed = set()
    for plan in order:
        assert plan.own not in exposed, f"{plan.exercise.name} would be graded with its reference present"
        exposed |= plan.exposes


# --- the trusted side's work is bounded ------------------------------------------------------


def test_deeply_nested_json_is_a_reason_not_a_crash(tmp_path):
    path = tmp_path / "deep.ipynb"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(grader.Unreadable, match="nested too deeply|not a notebook"):
        grader.read_submission(path, grader.Settings())
    path.write_text('{"cells": [], "metadata": ' + '{"a":' * 100_000 + "1" + "}" * 100_000 + ', "nbformat": 4}')
    with pytest.raises(grader.Unreadable):
        grader.read_submission(path, grader.Settings())
    from solutions.grading.collect import notebook_chapter_of

    assert notebook_chapter_of(str(path)) is None


def test_not_utf8_gives_the_real_reason(tmp_path):
    path = tmp_path / "latin1.ipynb"
    path.write_bytes(json.dumps({"cells": [], "nbformat": 4, "metadata": {"x": "caf\u00e9"}}).replace("\\u00e9", "\xe9").encode("latin-1"))
    with pytest.raises(grader.Unreadable, match="not valid UTF-8.*byte"):
        grader.read_submission(path, grader.Settings())


def test_too_many_cells_is_refused_before_any_work(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1") for _ in range(3000)])
    path = tmp_path / "many.ipynb"
    nbformat.write(nb, path)
    start = time.monotonic()
    with pytest.raises(grader.Unreadable, match="cells"):
        grader.read_submission(path, grader.Settings())
    assert time.monotonic() - start < 5


def test_cell_matching_stays_inside_its_budget(released):
    """Thousands of long cells that nearly match a course cell: the trusted side's comparisons
    stop at their own bound, far inside the notebook's budget."""
    setup = released.prelude[0]
    cells = [nbformat.v4.new_code_cell(setup.replace("COURSE", f"COURSE_{i}_")[: len(setup) - i % 50]) for i in range(1900)]
    nb = nbformat.v4.new_notebook(cells=cells)
    settings = grader.Settings(compare_s=3.0)
    start = time.monotonic()
    program, notes = grader.build_program(released, nb, settings, time.monotonic() + settings.notebook_budget_s)
    assert time.monotonic() - start < 3.0 + 5.0
    assert len(program) >= 1900


# --- strings from students go anywhere ---------------------------------------------------------


def test_results_with_lone_surrogates_and_escapes_are_written_everywhere(tmp_path, released):
    bad = "boom \udcff \ud800 \x1b[2J\x00 end"
    result = {
        "version": grader.RESULT_VERSION, "assignment": CHAPTER, "student": "eve", "file": "x.ipynb",
        "status": "graded", "reasons": [bad], "notes": [bad], "flags": [], "score": 0.0, "max_score": 9.0,
        "exercises": [verdicts._exercise_result(e, 0.0, "failed", bad) for e in released.exercises],
    }
    clean = grader.clean(result)
    text = json.dumps(clean)
    text.encode("utf-8")
    page = batch.feedback_html(clean)
    page.encode("utf-8")
    assert "\\udcff" in page and "\x1b" not in page and "\x00" not in page
    # the batch's writer takes the raw result too
    (tmp_path / "gradebook.db").touch()
    submission = grader.Submission(CHAPTER, "eve", tmp_path / "x.ipynb")
    batch.record(tmp_path, CHAPTER, submission, result, released)  # no gradebook schema: a warning only
    assert json.loads((tmp_path / "graded" / CHAPTER / "eve.json").read_text())["notes"]
    assert (tmp_path / "feedback" / "eve" / CHAPTER / f"{CHAPTER}.html").read_text(encoding="utf-8")


def test_scanning_absurd_code_is_a_finding_not_a_crash():
    from solutions.grading.suspicious import scan

    for source in ("x" + ".a" * 200_000, "-" * 200_000 + "1"):
        start = time.monotonic()
        findings = scan(source, 0, reference_modules=set())
        assert [f.reason for f in findings] == ["code too deeply nested or too large to analyse"]
        assert time.monotonic() - start < 10



_DEFERRED_DYNAMO = r"""
import sys, torch
from solutions.grading import harness
if sys.argv[1] == "defer":
    harness._defer_dynamo()
stand_in = sys.modules.get("torch._dynamo")
# what the checks' meta-device cases and a learner's optimiser do: no compiler needed
x = torch.zeros(3, 4, device="meta")
assert ((x + 1) @ x.T).shape == (3, 3) and torch.ones(4, 4, device="meta").tril().device.type == "meta"
torch.manual_seed(0)
w = torch.nn.Parameter(torch.randn(3))
opt = torch.optim.AdamW([w], lr=0.1)
(w ** 2).sum().backward()
opt.step()
if sys.argv[1] == "defer":
    assert sys.modules["torch._dynamo"] is stand_in, "the compiler was imported for eager code"
# any other use gets the real module, and compiling still works
assert torch._dynamo.is_compiling() is False
assert type(sys.modules["torch._dynamo"]).__name__ == "module"
assert torch.compile(lambda a: a * 2 + 1, backend="eager")(torch.ones(2)).tolist() == [3.0, 3.0]
print(w.detach().tolist())
"""


def test_the_sandbox_defers_the_compiler_until_something_compiles():
    """The harness keeps torch._dynamo (about as long to import as torch) out of the sandbox
    for eager code, meta-device operations and optimiser steps included, and loads it for real
    on any other use; the optimiser's step is the same with or without it."""
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", _DEFERRED_DYNAMO, how], capture_output=True, text=True, timeout=300)
            for how in ("defer", "plain")]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    assert runs[0].stdout == runs[1].stdout


_CHAPTER_1_WITHOUT_TORCH = r"""
import sys
from solutions.grading import harness
from solutions.checks import specs_for, wire
from solutions.checks.core import prepare, run
from solutions.notebooks import read_notebook, solved_notebook, stub_path

notebook = solved_notebook(read_notebook(stub_path("01_tokenization")), "01_tokenization")
shell = harness._shell()
for cell in notebook.cells:
    if cell.cell_type == "code" and not cell.source.lstrip().startswith("check."):
        ok, error, _ = harness.run_cell(shell, cell.source, 60)
        assert ok, error
for spec in specs_for("01_tokenization"):
    outcomes = run(prepare(spec, shell.user_ns[spec.name]), spec.make_cases(7))
    assert all(o.error is None or o.error[0] != "NotImplementedError" for o in outcomes), spec.name
    wire.loads(wire.dumps(outcomes))
assert "torch" not in sys.modules, "chapter 1 imported torch"
print("ok")
"""


def test_grading_chapter_1_never_imports_torch():
    """Chapter 1 is plain Python: its notebook's cells, its exercises' cases and the wire do not
    import torch (seconds of every sandbox's start-up; tensor chapters import it themselves)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _CHAPTER_1_WITHOUT_TORCH], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


_CELL_LEAVES_CHILDREN = r"""
import os, signal, time
from solutions.grading import harness

shell = harness._shell()
signal.signal(signal.SIGALRM, harness._alarm)
cell = '''
import subprocess, sys, time
# a child that starts a grandchild, both meant to outlive the cell; then the cell overruns
_inner = "import os, subprocess, sys, time; g = subprocess.Popen(['sleep', '60']); open('grandchild.pid', 'w').write(str(g.pid)); time.sleep(60)"
_p = subprocess.Popen([sys.executable, "-c", _inner])
open("child.pid", "w").write(str(_p.pid))
while True:
    time.sleep(0.1)
'''
ok, error, _ = harness.run_cell(shell, cell, 3)
assert not ok and error[0] == "Timeout", error
assert os.path.exists("grandchild.pid"), "the grandchild did not start within the cell"
pids = [int(open(name).read()) for name in ("child.pid", "grandchild.pid")]
killed = harness.stop_children()
time.sleep(0.3)

def alive(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"

assert killed >= 2 and not any(alive(pid) for pid in pids), (killed, [alive(pid) for pid in pids])
print("ok")
"""


def test_a_step_leaves_no_process_running_into_the_next(tmp_path):
    """A cell interrupted at its time limit (or one that starts a process without waiting for
    it) must not leave its processes running while the next exercise is graded, where their
    memory would be charged to that exercise: the harness kills what each step started."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    run = subprocess.run([sys.executable, "-c", _CELL_LEAVES_CHILDREN], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": root})
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr[-3000:]
