"""The grader against a hostile class: honest faults, structural damage and active cheating.

Every case is made from the real released notebook. Canaries (one correct, one wrong) sit at both
ends of the batch. The suite passes only if every submission gets a result, no case changes
another's, no wrong answer earns a point, and every correct answer still earns full marks.
"""

import inspect
import dataclasses
import json
import os
import subprocess
import textwrap
from pathlib import Path

import nbformat
import pytest

from solutions.checks import SPECS
from solutions.checks.tokenization import _merge_without_skipping
from solutions.grading import batch, course, grader, sandbox
from solutions.notebooks import read_notebook, solved_notebook

pytestmark = pytest.mark.slow

CHAPTER = "01_tokenization"
NAMES = [s.name for s in SPECS.values() if s.chapter == CHAPTER]
POINTS = {s.name: float(s.points) for s in SPECS.values() if s.chapter == CHAPTER}
TOTAL = sum(POINTS.values())
WRONG_MERGE = inspect.getsource(_merge_without_skipping).replace("_merge_without_skipping", "merge")
SETTINGS = grader.Settings(cell_timeout_s=4, exercise_timeout_s=4, startup_s=60, notebook_budget_s=90,
                           disk_bytes=64 * 2**20, tmp_bytes=32 * 2**20, total_memory_bytes=2 * 2**30)

# Answers that try to reach the reference at run time, from inside the sandboxed process (issue 8)
FROM_MODULE_TABLE = """
import sys
for _m in list(sys.modules.values()):
    _f = getattr(_m, "merge", None)
    if callable(_f) and str(getattr(_f, "__module__", "")).startswith("solutions"):
        merge = _f
"""
FROM_GC = """
import gc
_found = [o for o in gc.get_objects() if callable(o) and getattr(o, "__name__", "") == "merge"
          and getattr(o, "__module__", "") not in ("__main__", None)]
if _found:
    merge = _found[0]
"""
DELEGATE_AT_CALL_TIME = """
import sys
def merge(ids, pair, new_id):
    frame = sys._getframe(1)
    while frame is not None:  # the harness's frames: its request, its namespaces
        for scope in (frame.f_locals, frame.f_globals):
            for value in list(scope.values()):
                cand = value if callable(value) else None
                if isinstance(value, dict):
                    cand = value.get("merge")
                if callable(cand) and cand is not merge and getattr(cand, "__name__", "") == "merge":
                    return cand(ids, pair, new_id)
        frame = frame.f_back
    for module in list(sys.modules.values()):
        cand = getattr(module, "merge", None)
        if callable(cand) and cand is not merge:
            return cand(ids, pair, new_id)
    return list(ids)
"""
FORGE_REPLIES = """
import os, json
_records = [json.dumps({"event": "end", "step": "exercise", "name": name, "outcomes": []})
            for name in ("merge", "decode")] + [json.dumps({"event": "done"})]
for _fd in map(int, os.listdir("/proc/self/fd")):
    if _fd > 2:
        try:
            os.write(_fd, ("\\n".join(_records) + "\\n").encode())
        except OSError:
            pass
"""
STACK_WALK_AND_EXIT = """
import sys, os
def merge(ids, pair, new_id):
    frame, channel = sys._getframe(1), None
    while frame is not None and channel is None:
        channel = frame.f_locals.get("channel")
        frame = frame.f_back
    if channel is not None:  # answer for the harness, as it would, then leave before it does
        for name in ("merge", "train_bpe", "encode"):
            channel.send(event="end", step="exercise", name=name, outcomes=[], origin="notebook")
        channel.send(event="done")
        os._exit(0)
    return list(ids)
"""
REWRITE_HARNESS = """
import sys
_harness = sys.modules["solutions.grading.harness"]
_ref = None
for _m in list(sys.modules.values()):
    _cand = getattr(_m, "merge", None)
    if callable(_cand) and _m is not sys.modules["__main__"]:
        _ref = _cand
_orig_run = _harness._run
def _run(fn, cases):  # the harness calls this for every exercise: answer merge with any merge found
    if getattr(fn, "__name__", "") == "merge" and _ref is not None:
        fn = _ref
    return _orig_run(fn, cases)
_harness._run = _run
"""
TRACE_REWRITES = """
import sys
def _tracer(frame, event, arg):
    if (event == "return" and frame.f_code.co_name == "run" and isinstance(arg, list)
            and getattr(frame.f_locals.get("fn"), "__name__", "") == "decode"):
        for outcome in arg:
            try:
                outcome.error, outcome.mutated = None, []
            except Exception:
                pass
    return None
sys.setprofile(_tracer)
"""
MEMORY_ACROSS_PROCESSES = """
import os, time
# forked, not started as new interpreters: on a loaded machine four interpreters could take
# longer to start than the cell's time limit, and the limit this case is about would not be met
_pids = []
for _ in range(4):
    _pid = os.fork()
    if _pid == 0:
        _b = b'x' * (700 * 2**20)
        time.sleep(20)
        os._exit(0)
    _pids.append(_pid)
for _pid in _pids:
    os.waitpid(_pid, 0)
"""
DISK_FILLER = """
for _i in range(40):
    with open(f"big{_i}.bin", "wb") as _f:
        for _ in range(16):
            _f.write(b"x" * 2**20)
"""


# --- building submissions ----------------------------------------------------------------------


def _answer_index(nb, name):
    return next(i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == name)


def _check_index(nb, name):
    return _answer_index(nb, f"check_{name}")


def with_answer(nb, name, source):
    nb.cells[_answer_index(nb, name)].source = source
    return nb


def with_code_after(nb, name, source, *, tags=None):
    cell = nbformat.v4.new_code_cell(textwrap.dedent(source))
    if tags:
        cell.metadata["tags"] = tags
    nb.cells.insert(_answer_index(nb, name) + 1, cell)
    return nb


def wrong(nb):
    return with_answer(nb, "merge", WRONG_MERGE)


def all_but(*names, points=None):
    """Expected points: full marks except the named exercises (0)."""
    return {n: (0.0 if n in names else POINTS[n]) for n in NAMES}


FULL = all_but()
ZERO = all_but(*NAMES)


def _cases(released, course_dir):
    solved = lambda: solved_notebook(released, CHAPTER)  # noqa: E731
    stub = lambda: nbformat.from_dict(json.loads(json.dumps(released)))  # noqa: E731
    gradebook = course_dir / "gradebook.db"
    source_nb = course_dir / "source" / CHAPTER / f"{CHAPTER}.ipynb"
    other = course_dir / "submitted" / "aaa_canary_correct" / CHAPTER / f"{CHAPTER}.ipynb"
    # name: (notebook or raw bytes, expected points per exercise, expected status, extra files)
    return {
        # -- honest faults --
        "fault_blank": (stub(), ZERO, "graded"),
        "fault_empty_answers": (with_answer(with_answer(solved(), "merge", ""), "decode", "pass"), all_but("merge", "decode"), "graded"),
        "fault_exception": (with_answer(solved(), "merge", "raise RuntimeError('oops')\n" + WRONG_MERGE), all_but("merge"), "graded"),
        "fault_syntax_error": (with_answer(solved(), "merge", "def merge(ids, pair, new_id)\n    return ids"), all_but("merge"), "graded"),
        "fault_infinite_loop_cell": (with_code_after(solved(), "merge", "while True:\n    pass"), FULL, "graded"),
        "fault_infinite_loop_function": (with_answer(solved(), "merge", "def merge(ids, pair, new_id):\n    while True:\n        pass"), all_but("merge"), "graded"),
        "fault_loop_ignoring_interrupts": (with_code_after(solved(), "merge", "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"), FULL, "needs_attention"),
        "fault_memory_hog": (with_code_after(solved(), "merge", "hog = bytearray(50 * 2**30)"), FULL, "graded"),
        "fault_huge_output": (with_code_after(solved(), "merge", "for _ in range(200_000):\n    print('x' * 1000)"), FULL, "graded"),
        "fault_exit_in_cell": (with_code_after(solved(), "merge", "import os\nos._exit(3)"), FULL, "needs_attention"),
        "fault_kill_in_function": (with_answer(solved(), "decode", "import os, signal\ndef decode(ids, vocab):\n    os.kill(os.getpid(), signal.SIGKILL)"), all_but("decode"), "needs_attention"),
        "fault_warning_on_stderr": (with_code_after(solved(), "merge", "import warnings\nwarnings.warn('just a warning')"), FULL, "graded"),
        "fault_slow_but_correct": (with_code_after(solved(), "merge", "import time\ntime.sleep(1.5)"), FULL, "graded"),
        # -- structural damage --
        "damage_not_json": (b"{ this is not a notebook", ZERO, "needs_attention"),
        "damage_not_utf8": (b"\xff\xfe\x00garbage", ZERO, "needs_attention"),
        "damage_wrong_nbformat": (json.dumps({"nbformat": 99, "cells": []}).encode(), ZERO, "needs_attention"),
        "damage_no_metadata": (_strip_metadata(solved()), FULL, "graded"),
        "damage_nbgrader_flags_edited": (_flip_flags(solved()), FULL, "graded"),
        "damage_duplicated_check_cell": (_duplicate(solved(), _check_index(solved(), "merge")), FULL, "graded"),
        "damage_duplicated_answer_cell": (_duplicate(wrong(solved()), _answer_index(solved(), "merge")), all_but("merge"), "graded"),
        "damage_deleted_check_cells": (_delete_checks(solved()), FULL, "graded"),
        "damage_edited_check_cell": (_edit(solved(), _check_index(solved(), "merge"), "print('all tests pass')"), FULL, "graded"),
        "damage_deleted_setup_cell": (_delete(solved(), 1), FULL, "graded"),
        "damage_edited_setup_cell": (_edit(solved(), 1, "raise SystemExit('no setup for me')"), FULL, "graded"),
        "damage_setup_cell_of_another_release": (_older_setup(solved()), FULL, "graded"),
        "damage_huge_outputs": (_huge_outputs(solved()), ZERO, "needs_attention"),
        "damage_renamed_file": (solved(), FULL, "graded"),  # saved under another name, see below
        # -- active cheating --
        "cheat_monkeypatch_checker": (with_code_after(wrong(solved()), "merge", "import solutions.checks.core as c\nc.compare = lambda *a, **k: None\nc.difference = lambda *a, **k: None"), all_but("merge"), "needs_attention"),
        "cheat_rebind_check": (with_code_after(wrong(solved()), "merge", "class Yes:\n    def __getattr__(self, name):\n        return lambda *a: None\ncheck = Yes()"), all_but("merge"), "needs_attention"),
        "cheat_input_transformer": (with_code_after(wrong(solved()), "text_to_bytes", "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])"), all_but(*[n for n in NAMES if n != "text_to_bytes"]), "needs_attention"),
        "cheat_always_equal": (with_answer(solved(), "merge", "class Eq(list):\n    def __eq__(self, other): return True\ndef merge(ids, pair, new_id):\n    return Eq()"), all_but("merge"), "graded"),
        "cheat_return_number_from_check": (_edit(wrong(solved()), _check_index(solved(), "merge"), "1.0"), all_but("merge"), "graded"),
        "cheat_shadow_package": (wrong(solved()), all_but("merge"), "graded"),  # plus a shadowing folder, see below
        "cheat_write_gradebook": (with_code_after(wrong(solved()), "merge", f"open({str(gradebook)!r}, 'wb').write(b'pwned')"), all_but("merge"), "needs_attention"),
        "cheat_write_other_student": (with_code_after(wrong(solved()), "merge", f"open({str(other)!r}, 'w').write('{{}}')"), all_but("merge"), "needs_attention"),
        "cheat_read_sources": (with_code_after(wrong(solved()), "merge", f"print(open({str(source_nb)!r}).read()[:100])"), all_but("merge"), "needs_attention"),
        "cheat_import_reference": (with_answer(solved(), "merge", "from solutions.tokenization import merge"), all_but("merge"), "needs_attention"),
        "cheat_leave_process_running": (with_code_after(solved(), "merge", "import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True)"), FULL, "needs_attention"),
        "cheat_progress_becomes_fifo": (with_code_after(wrong(solved()), "merge", "import os\nos.remove('.progress.jsonl')\nos.mkfifo('.progress.jsonl')"), all_but("merge"), "needs_attention"),
        "cheat_progress_becomes_symlink": (with_code_after(wrong(solved()), "merge", f"import os\nos.remove('.progress.jsonl')\nos.symlink({str(gradebook)!r}, '.progress.jsonl')"), all_but("merge"), "needs_attention"),
        # -- forged verdicts: reaching the reference, or the harness, at run time (issue 8) --
        "cheat_reference_from_module_table": (with_code_after(wrong(solved()), "merge", FROM_MODULE_TABLE), all_but("merge"), "needs_attention"),
        "cheat_reference_from_gc": (with_code_after(wrong(solved()), "merge", FROM_GC), all_but("merge"), "needs_attention"),
        "cheat_delegate_at_call_time": (with_answer(solved(), "merge", DELEGATE_AT_CALL_TIME), all_but("merge"), "needs_attention"),
        "cheat_rewrite_harness": (with_code_after(wrong(solved()), "merge", REWRITE_HARNESS), all_but("merge"), "needs_attention"),
        "cheat_forge_reply_records": (with_code_after(wrong(solved()), "merge", FORGE_REPLIES), all_but("merge"), "needs_attention"),
        "cheat_stack_walk_and_exit": (with_answer(solved(), "merge", STACK_WALK_AND_EXIT), all_but("merge"), "needs_attention"),
        "cheat_profiler_rewrites_outcomes": (with_code_after(with_answer(solved(), "decode", "def decode(ids, vocab):\n    raise ValueError('no')"), "merge", TRACE_REWRITES), all_but("decode"), "needs_attention"),
        "cheat_exec_reference_source": (with_code_after(wrong(solved()), "merge", "import solutions, pathlib\n_g = {}\nexec(pathlib.Path(solutions.__file__).with_name('tokenization.py').read_text(), _g)\nmerge = _g.get('merge', merge)"), all_but("merge"), "needs_attention"),
        # -- one submission must not stop the batch or lose its result (issue 8) --
        "damage_deeply_nested_json": (b"[" * 100_000 + b"]" * 100_000, ZERO, "needs_attention"),
        "damage_latin1_bytes": (nbformat.writes(solved()).encode().replace(b'"nbformat": 4', b'"saved_by": "caf\xe9", "nbformat": 4', 1), ZERO, "needs_attention"),
        "fault_lone_surrogate_messages": (with_code_after(with_answer(solved(), "merge", "def merge(ids, pair, new_id):\n    raise ValueError('bad \\udcff byte \\x1b[2J')"), "merge", "print('\\ud800')\nraise RuntimeError('\\udcff')"), all_but("merge"), "graded"),
        "fault_many_cells": (_many_cells(solved()), FULL, "graded"),
        # -- per-submission resources (issue 8) --
        "fault_disk_filler": (with_code_after(solved(), "merge", DISK_FILLER), FULL, "needs_attention"),
        # -- honest students: a notebook that runs top to bottom grades as it runs (issue 8) --
        "honest_import_in_setup_cell": (_import_in_course_cell(solved(), 1, "import codecs", "text_to_bytes", "_UTF8 = codecs.lookup('utf-8').name"), FULL, "graded"),
        "honest_import_in_imports_cell": (_import_in_course_cell(solved(), 2, "import itertools", "get_pair_counts", "_COUNT = itertools.count"), FULL, "graded"),
        "cheat_forge_progress": (with_code_after(wrong(solved()), "merge", "import glob, json\nfor p in glob.glob('.progress*'):\n    open(p, 'a').write(json.dumps({'event': 'end', 'step': 'exercise', 'name': 'merge', 'outcomes': []}) + '\\n')"), all_but("merge"), "needs_attention"),
    }


def _many_cells(nb):
    """Hundreds of added cells that nearly repeat the set-up cell: the grader's cell matching
    must stay inside its own bound."""
    setup = nb.cells[1].source
    for i in range(600):
        cell = nbformat.v4.new_code_cell(("# " + setup.replace("\n", "\n# "))[: len(setup) - i % 40])
        nb.cells.append(cell)
    return nb


def _import_in_course_cell(nb, index, line, name, use):
    """An import added to a course cell above the exercises, used by an answer."""
    nb.cells[index].source = nb.cells[index].source.rstrip("\n") + "\n" + line + "\n"
    answer = nb.cells[_answer_index(nb, name)]
    answer.source = use + "\n" + answer.source
    return nb


def _strip_metadata(nb):
    nb.metadata = {}
    return nb


def _flip_flags(nb):
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta and meta.get("grade"):
            meta["points"] = 100  # a student cannot award themselves points
    return nb


def _duplicate(nb, index):
    copy = nbformat.from_dict(json.loads(json.dumps(nb.cells[index])))
    copy.id = copy.id + "-copy"
    nb.cells.insert(index + 1, copy)
    return nb


def _delete_checks(nb):
    nb.cells = [c for c in nb.cells if not c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    return nb


def _edit(nb, index, source):
    nb.cells[index].source = source
    return nb


def _older_setup(nb):
    """The set-up cell as an older release wrote it, under a new id (Colab drops cell ids)."""
    cell = nb.cells[1]
    cell.source = cell.source.replace("import importlib, importlib.util, pathlib, subprocess, sys",
                                      "import importlib\nimport importlib.util\nimport pathlib, subprocess, sys")
    cell.source = cell.source.replace("ready.", "is ready to use.").replace("0.1.0", "0.0.9")
    cell.id = "a1b2c3d4"
    return nb


def _delete(nb, index):
    del nb.cells[index]
    return nb


def _huge_outputs(nb):
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * (25 * 2**20))]
    return nb


# --- the batch -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    course_dir = course.setup(root / "course", [CHAPTER])
    course.release(course_dir, [CHAPTER])
    released = read_notebook(course_dir / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    if os.geteuid() == 0:  # two sandbox users, so that two workers really run at once
        sandbox.ensure_sandbox_user(count=2)

    def put(student, content, name=f"{CHAPTER}.ipynb"):
        folder = course_dir / "submitted" / student / CHAPTER
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else nbformat.writes(content).encode())
        return folder

    canaries = {
        "aaa_canary_correct": (solved_notebook(released, CHAPTER), FULL, "graded"),
        "aab_canary_wrong": (wrong(solved_notebook(released, CHAPTER)), all_but("merge"), "graded"),
        "zzy_canary_correct": (solved_notebook(released, CHAPTER), FULL, "graded"),
        "zzz_canary_wrong": (wrong(solved_notebook(released, CHAPTER)), all_but("merge"), "graded"),
    }
    cases = {**canaries, **_cases(released, course_dir)}
    for student, (content, _, _) in cases.items():
        if student == "damage_renamed_file":
            put(student, content, name="Copy of 01_tokenization (2).ipynb")
        else:
            put(student, content)
    # a folder that would shadow the checker if the grader ever put it on the path
    shadow = course_dir / "submitted" / "cheat_shadow_package" / CHAPTER / "solutions" / "checks"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    (shadow.parent / "__init__.py").write_text("")

    before = {p: p.read_bytes() for p in (course_dir / "source").rglob("*.ipynb")}
    results = batch.grade_assignment(course_dir, CHAPTER, workers=2, settings=SETTINGS, progress=False)
    return course_dir, cases, {r["student"]: r for r in results}, before


def test_every_submission_has_a_result_file(graded):
    course_dir, cases, results, _ = graded
    assert set(results) == set(cases)
    for student in cases:
        saved = json.loads((course_dir / "graded" / CHAPTER / f"{student}.json").read_text())
        assert saved["score"] == results[student]["score"]
        assert (course_dir / "feedback" / student / CHAPTER / f"{CHAPTER}.html").is_file()


def test_points_per_exercise_are_exactly_as_expected(graded):
    _, cases, results, _ = graded
    problems = []
    for student, (_, expected, _) in cases.items():
        got = {e["name"]: e["points"] for e in results[student]["exercises"]}
        if got != expected:
            diff = {n: (got.get(n), expected[n]) for n in expected if got.get(n) != expected[n]}
            problems.append(f"{student}: {diff} {results[student]['exercises']}")
    assert not problems, "\n".join(problems)


def test_status_needs_attention_exactly_where_expected(graded):
    _, cases, results, _ = graded
    wrong_status = {
        s: (results[s]["status"], want, results[s]["reasons"], results[s]["flags"])
        for s, (_, _, want) in cases.items()
        if results[s]["status"] != want
    }
    assert not wrong_status


def test_gradebook_matches_results_and_course_files_untouched(graded):
    from nbgrader.api import Gradebook

    course_dir, cases, results, before = graded
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for student in cases:
            sub = gb.find_submission_notebook(CHAPTER, CHAPTER, student)
            assert sub.score == results[student]["score"], student
    for path, content in before.items():
        assert path.read_bytes() == content
    canary = course_dir / "submitted" / "aaa_canary_correct" / CHAPTER / f"{CHAPTER}.ipynb"
    assert json.loads(canary.read_text())["cells"], "another student's file was changed"


def test_feedback_says_why_without_hidden_inputs(graded):
    course_dir, _, results, _ = graded
    by_name = lambda student: {e["name"]: e for e in results[student]["exercises"]}  # noqa: E731
    assert "Hint: after replacing a pair, skip both of its ids" in by_name("aab_canary_wrong")["merge"]["message"]
    assert "hidden test input" in by_name("aab_canary_wrong")["merge"]["message"]
    assert "did not finish" in by_name("fault_infinite_loop_function")["merge"]["message"]
    assert "stopped the grading process" in by_name("fault_kill_in_function")["decode"]["message"]
    assert any("not valid JSON" in r for r in results["damage_not_json"]["reasons"])
    assert any("MB" in r for r in results["damage_huge_outputs"]["reasons"])
    assert any("restored" in n for n in results["damage_edited_setup_cell"]["notes"])
    assert any("restored" in n for n in results["damage_setup_cell_of_another_release"]["notes"])
    assert any("reference" in f for f in results["cheat_import_reference"]["flags"])
    assert any("IPython" in f for f in results["cheat_input_transformer"]["flags"])
    assert any("stopped and skipped" in n for n in results["fault_loop_ignoring_interrupts"]["notes"])
    assert any("did not ask for" in f for f in results["cheat_forge_reply_records"]["flags"])
    assert any("disk limit" in n for n in results["fault_disk_filler"]["notes"])
    assert "disk limit" in (course_dir / "feedback" / "fault_disk_filler" / CHAPTER / f"{CHAPTER}.html").read_text()
    assert any("UTF-8" in r and "byte" in r for r in results["damage_latin1_bytes"]["reasons"])
    assert any("nested too deeply" in r for r in results["damage_deeply_nested_json"]["reasons"])
    assert results["fault_many_cells"]["seconds"] < SETTINGS.notebook_budget_s


def test_processes_that_together_pass_the_memory_limit_are_stopped(graded):
    """Four forked processes, each under the per-process limit, together over the submission's
    memory bound: the run is stopped, the note says why, the cell is skipped and every exercise
    is graded in a fresh sandbox. Graded on its own with a long cell time limit: on a loaded
    machine the four could take longer than the batch's 4 s to fill their memory, and a cell
    stopped at its time limit has its processes killed (which is right, but not this case)."""
    course_dir = graded[0]
    student = "fault_memory_across_processes"
    released = read_notebook(course_dir / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    folder = course_dir / "submitted" / student / CHAPTER
    folder.mkdir(parents=True, exist_ok=True)
    submission = with_code_after(solved_notebook(released, CHAPTER), "merge", MEMORY_ACROSS_PROCESSES)
    (folder / f"{CHAPTER}.ipynb").write_bytes(nbformat.writes(submission).encode())
    settings = dataclasses.replace(SETTINGS, cell_timeout_s=60, notebook_budget_s=240)
    (result,) = batch.grade_assignment(course_dir, CHAPTER, students=[student], settings=settings, progress=False)
    assert any("memory limit" in n for n in result["notes"]), result["notes"]
    assert {e["name"]: e["points"] for e in result["exercises"]} == FULL, result["exercises"]
    assert result["status"] == "needs_attention", result["status"]


def test_the_graded_reference_is_never_in_the_answering_process(graded):
    """Every answer that reached for the reference at run time found nothing to delegate to."""
    _, _, results, _ = graded
    for student in ("cheat_reference_from_module_table", "cheat_reference_from_gc", "cheat_delegate_at_call_time",
                    "cheat_exec_reference_source", "cheat_import_reference", "cheat_rewrite_harness"):
        merge = next(e for e in results[student]["exercises"] if e["name"] == "merge")
        assert merge["points"] == 0 and merge["verdict"] != "passed", (student, merge)


def test_regrading_gives_the_same_result(graded):
    course_dir, cases, results, _ = graded
    again = batch.grade_assignment(course_dir, CHAPTER, students=["aab_canary_wrong", "fault_exception"], settings=SETTINGS, progress=False)
    for result in again:
        first = results[result["student"]]
        assert [e["points"] for e in result["exercises"]] == [e["points"] for e in first["exercises"]]
        assert [e["message"] for e in result["exercises"]] == [e["message"] for e in first["exercises"]]


def test_no_process_survives_the_batch(graded):
    leftover = subprocess.run(["pgrep", "-u", ",".join(_sandbox_users()), "-a"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def _sandbox_users():
    users = []
    for line in Path("/etc/passwd").read_text().splitlines():
        name = line.split(":")[0]
        if name.startswith(sandbox.SANDBOX_USER):
            users.append(name)
    return users or [sandbox.SANDBOX_USER]
