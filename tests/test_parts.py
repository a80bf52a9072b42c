"""A learner's own parts travel between notebooks, and the capstone trains them.

* a simulated learner (the solved notebooks of chapters 2-6, run cell by cell in a real IPython
  shell, check cells included) saves its parts with ``check.save_my_parts`` and a later
  "notebook" loads them with ``my_parts``;
* the capstone's GPT is then made only of the learner's classes (by their module of origin) and
  trains to the very losses of the reference run;
* a file from another version, a broken one, one that does not define what it claims and a
  partial one each get their sentence; Colab's Drive and download paths work with fakes;
* the grader never runs the cells that save or load parts; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import inspect
import socket
import sys
import types
from pathlib import Path

import pytest
import torch

import solutions
from solutions import blocks, checks, parts
from solutions import training as reference
from solutions.checks import core
from solutions.grading.program import build_program
from solutions.grading.reading import load_released
from solutions.notebooks import DEMO_TAG, read_notebook, solved_notebook, stub_path
from solutions.parts import PIECES, PartsError, my_parts, parts_file_name, save_parts, train_with_pieces

LEARNER_CHAPTERS = ["02_embeddings", "03_attention", "04_mlp", "05_blocks", "06_training"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing here may reach the network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    """A learner who worked chapters 2-6 with the solved notebooks' code and saved each chapter.

    Every code cell but the demonstrations and the score runs in one IPython shell (the setup
    and imports cells, the answer cells, the check cells), then ``check.save_my_parts(chapter)``.
    Yields (exercise name -> the learner's function or class that passed, the parts folder, the
    check cells that failed: none, unless a solved notebook is broken, which the first test reports)."""
    from IPython.core.interactiveshell import InteractiveShell

    folder = tmp_path_factory.mktemp("parts")
    saved_results, saved_code = dict(core._RESULTS), dict(checks._PASSED_CODE)
    mp = pytest.MonkeyPatch()
    mp.setenv(parts.PARTS_DIR_ENV, str(folder))
    shell = InteractiveShell.instance()
    failed = []
    try:
        for chapter in LEARNER_CHAPTERS:
            nb = solved_notebook(read_notebook(stub_path(chapter)), chapter)
            for cell in nb.cells:
                if cell.cell_type != "code" or DEMO_TAG in cell.metadata.get("tags", []) or cell.id == "summary":
                    continue
                result = shell.run_cell(cell.source)
                if cell.metadata.get("nbgrader", {}).get("grade") and not result.success:
                    failed.append((chapter, cell.id, str(result.error_in_exec)[:300]))
                    continue
                assert result.success, (chapter, cell.id, result.error_before_exec or result.error_in_exec)
            result = shell.run_cell(f'check.save_my_parts("{chapter}")')
            assert result.success, result.error_in_exec
        yield dict(checks._PASSED_CODE), folder, failed
    finally:
        InteractiveShell.clear_instance()
        mp.undo()
        core._RESULTS.clear()
        core._RESULTS.update(saved_results)
        checks._PASSED_CODE.clear()
        checks._PASSED_CODE.update(saved_code)


@pytest.fixture
def parts_dir(learner, monkeypatch, tmp_path):
    """A copy of the learner's parts files in a fresh folder (tests may damage it), found there."""
    folder = learner[1]
    for path in folder.glob("my_parts_*.py"):
        (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setenv(parts.PARTS_DIR_ENV, str(tmp_path))
    return tmp_path


def _exercises(chapter):
    return [spec.name for spec in checks.specs_for(chapter)]


@pytest.mark.slow
def test_the_learner_s_passing_code_is_saved_as_written_with_its_verdicts(learner):
    code, folder, failed = learner
    assert not failed, failed  # the solved notebooks pass every check
    assert sorted(p.name for p in folder.iterdir()) == sorted(parts_file_name(c) for c in LEARNER_CHAPTERS)
    for chapter in LEARNER_CHAPTERS:
        text = (folder / parts_file_name(chapter)).read_text()
        namespace: dict = {}
        exec(compile(text, parts_file_name(chapter), "exec"), namespace)  # plain Python, runs on its own
        assert namespace["COURSE_VERSION"] == solutions.__version__ and namespace["CHAPTER"] == chapter
        assert namespace["VERDICTS"] == {name: "passed" for name in _exercises(chapter)}
        for name in _exercises(chapter):
            # the definition the learner's cell made, character for character; nothing else of the cell
            source, cell = parts.definition_source(code[name])
            assert code[name].__module__ == "__main__" and source in cell and source in text
            assert callable(namespace[name])
        assert "check." not in text.split('"""', 2)[2]  # no check cell, no notebook code around the answers


@pytest.mark.slow
def test_the_capstone_gpt_is_made_only_of_the_learner_s_classes(learner, parts_dir, capsys):
    loaded = my_parts("02_embeddings", "03_attention", "04_mlp", "05_blocks")
    report = capsys.readouterr().out
    failed = {cell.removeprefix("check-") for _, cell, _ in learner[2]}
    assert report.count("yours:") == 4 and report.count("reference:") == (1 if failed & loaded.keys() else 0)
    assert loaded.mine == {n for c in LEARNER_CHAPTERS[:4] for n in _exercises(c)} - failed
    model = loaded.GPT(dataclasses.replace(reference.PRESETS["tiny"](65).model, fused=False))
    learner_modules = {f"my_parts_{c}" for c in LEARNER_CHAPTERS[:4]}
    kinds = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList):
            continue  # a container with no forward of its own
        assert type(module).__module__ in learner_modules, (name, type(module))
        assert Path(inspect.getsourcefile(type(module).forward)).parent == parts_dir, name
        kinds.add((type(module).__module__, type(module).__name__))
    assert kinds == {("my_parts_05_blocks", "GPT"), ("my_parts_05_blocks", "TransformerBlock"),
                     ("my_parts_05_blocks", "LayerNorm"), ("my_parts_03_attention", "Attention"),
                     ("my_parts_04_mlp", "MLP"), ("my_parts_02_embeddings", "Embed"),
                     ("my_parts_02_embeddings", "PosEmbed")}
    # and the learner's Attention inside computes with the learner's own attention functions
    attention = model.blocks[0].attn
    assert not attention.fused  # the step-by-step path, not PyTorch's fused kernel
    functions = type(attention).forward.__globals__
    for name in ("scaled_dot_product_attention", "attention_scores", "causal_mask", "attention_pattern"):
        assert functions[name].__module__ == "my_parts_03_attention", name


@pytest.mark.slow
def test_the_capstone_trains_to_the_reference_run_s_losses(parts_dir):
    loaded = my_parts("02_embeddings", "03_attention", "04_mlp", "05_blocks", "06_training", quiet=True)
    assert all(loaded[p].__module__ == "my_parts_06_training" for p in PIECES)
    tokenizer, train_data, _ = reference.shakespeare_data(200_000)
    preset = reference.PRESETS["tiny"](tokenizer.vocab_size)
    config = dataclasses.replace(preset.model, fused=False)
    settings = dataclasses.replace(preset.train, steps=6, warmup_steps=2)
    torch.manual_seed(0)
    mine = train_with_pieces(loaded.GPT(config), loaded, train_data, settings, progress=False)
    torch.manual_seed(0)
    ref = train_with_pieces(blocks.GPT(config), {p: getattr(reference, p) for p in PIECES}, train_data,
                            settings, progress=False)
    assert mine["loss"] == ref["loss"] and mine["lr"] == ref["lr"]  # bit for bit, deterministic kernels
    assert ref["loss"][-1] < ref["loss"][0]  # and it learns
    # the notebook's short run on a slow machine: stopped by time, the reference run stopped at the same step
    torch.manual_seed(0)
    timed = train_with_pieces(loaded.GPT(config), loaded, train_data, settings, progress=False, max_seconds=0)
    torch.manual_seed(0)
    again = train_with_pieces(blocks.GPT(config), reference.__dict__, train_data, settings, progress=False,
                              stop_at=len(timed["loss"]))
    assert len(timed["loss"]) == 1 and timed["loss"] == again["loss"] == ref["loss"][:1]


@pytest.mark.slow
def test_a_partial_file_says_which_parts_are_the_reference(learner, tmp_path, monkeypatch, capsys):
    code = learner[0]
    monkeypatch.setenv(parts.PARTS_DIR_ENV, str(tmp_path))
    specs = {s.name: s for s in checks.specs_for("04_mlp")}
    results = {"MLP": (specs["MLP"], True), "gelu_tanh": (specs["gelu_tanh"], False), "relu": (specs["relu"], True)}
    save_parts(results, {"MLP": code["MLP"], "relu": code["relu"]}, chapter="04_mlp")
    saved = capsys.readouterr().out
    assert "Saved your 2 passing parts of chapter 4" in saved
    assert "gelu_tanh (failed)" in saved and "SwiGLU (not checked)" in saved
    text = (tmp_path / parts_file_name("04_mlp")).read_text()
    assert "from solutions.mlp import gelu_tanh" in text  # the MLP's GELU: the reference, said so
    loaded = my_parts("04_mlp")
    report = capsys.readouterr().out
    assert "yours:     relu, MLP" in report
    assert "reference: gelu_tanh (failed its check)" in report
    assert "reference: gelu_exact, changed_positions, mlp_param_count, SwiGLU (not checked)" in report
    assert loaded.mine == {"relu", "MLP"} and loaded.gelu_tanh is solutions.mlp.gelu_tanh
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    torch.manual_seed(1)
    theirs = loaded.MLP(8)(x)
    torch.manual_seed(1)
    torch.testing.assert_close(theirs, solutions.mlp.MLP(8)(x), rtol=0, atol=0)


def test_no_file_means_the_reference_parts_with_a_word(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(parts.PARTS_DIR_ENV, str(tmp_path))
    loaded = my_parts("02_embeddings", "03_attention", "04_mlp", "05_blocks")
    assert "Chapter 5 (no saved file):\n  reference: LayerNorm, RMSNorm" in capsys.readouterr().out
    assert loaded.mine == set() and loaded.GPT is blocks.GPT and loaded.CausalSelfAttention is blocks.CausalSelfAttention


def _damage(parts_dir, chapter, change):
    path = parts_dir / parts_file_name(chapter)
    path.write_text(change(path.read_text()))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, sentence",
    [
        (lambda t: t.replace(f"COURSE_VERSION = '{solutions.__version__}'", "COURSE_VERSION = '0.0.9'"),
         f"was saved with course version 0.0.9, but this notebook is version {solutions.__version__}"),
        (lambda t: t[: t.index("class PosEmbed")] + "class PosEmbed(nn.Module:\n",
         "is broken: invalid syntax at line"),
        (lambda t: t + "\ndel PosEmbed\n", "says PosEmbed passed its check, but it does not define PosEmbed"),
        (lambda t: t + "\nfrom solutions.embeddings import Embed\n",
         "says Embed passed its check, but its Embed is the course's reference, not your code"),
        (lambda t: t + "\nEmbed = 3\n", "says Embed passed its check, but its Embed is not a class"),
        (lambda t: t + "\nraise RuntimeError('oops')\n", "fails when it runs: RuntimeError: oops"),
        (lambda t: t.replace("COURSE_VERSION", "VERSION"), "is not a parts file of this course"),
    ],
    ids=["other version", "broken", "claims a part it lacks", "reference as own", "not a class", "raises", "no version"],
)
def test_a_file_that_cannot_be_trusted_is_refused_with_its_sentence(parts_dir, change, sentence):
    path = _damage(parts_dir, "02_embeddings", change)
    with pytest.raises(PartsError) as err:
        my_parts("02_embeddings", "05_blocks", quiet=True)
    assert str(err.value).startswith(str(path)) and sentence in str(err.value)
    assert "save it again" in str(err.value).lower() and "use_my_parts = False" in str(err.value)


def _a_learner_function(tmp_path):
    """A learner's relu, defined in a file (inspect finds its source), checked for real."""
    source = tmp_path / "cell.py"
    source.write_text("import torch\n\n\ndef relu(x):\n    return torch.maximum(x, torch.zeros_like(x))\n")
    module = types.ModuleType("__main__")
    exec(compile(source.read_text(), str(source), "exec"), module.__dict__)
    spec = checks.SPECS["relu"]
    core.check_function(spec, module.relu)
    return {"relu": (spec, True)}, {"relu": module.relu}


def _fake_colab(monkeypatch, tmp_path, consent: bool):
    """google.colab with a Drive that mounts (or is declined) and a download that is recorded."""
    downloads = []
    drive = types.ModuleType("google.colab.drive")

    def mount(root):
        if not consent:
            raise ValueError("mount failed: the user declined")
        (Path(root) / "MyDrive").mkdir(parents=True)

    drive.mount = mount
    files = types.ModuleType("google.colab.files")
    files.download = downloads.append
    colab = types.ModuleType("google.colab")
    colab.drive, colab.files = drive, files
    google = types.ModuleType("google")
    google.colab = colab
    for name, module in {"google": google, "google.colab": colab, "google.colab.drive": drive,
                         "google.colab.files": files}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(parts, "DRIVE_ROOT", str(tmp_path / "drive"))
    monkeypatch.delenv(parts.PARTS_DIR_ENV, raising=False)
    return downloads


def test_colab_saves_into_the_learner_s_drive_folder_and_a_later_notebook_finds_it(tmp_path, monkeypatch, capsys):
    results, code = _a_learner_function(tmp_path)
    downloads = _fake_colab(monkeypatch, tmp_path, consent=True)
    monkeypatch.chdir(tmp_path)  # Colab's /content
    (tmp_path / "other").mkdir()
    save_parts(results, code, chapter="04_mlp", drive_folder="my course")
    copy = tmp_path / "drive" / "MyDrive" / "my course" / parts_file_name("04_mlp")
    assert copy.is_file() and not downloads
    assert "Copied to your Google Drive: My Drive/my course/my_parts_04_mlp.py" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path / "other")  # a later notebook in a fresh runtime: only Drive has it
    loaded = my_parts("04_mlp", drive_folder="my course")
    assert "yours:     relu" in capsys.readouterr().out and loaded.mine == {"relu"}


def test_colab_downloads_the_file_when_drive_is_declined(tmp_path, monkeypatch, capsys):
    results, code = _a_learner_function(tmp_path)
    downloads = _fake_colab(monkeypatch, tmp_path, consent=False)
    monkeypatch.chdir(tmp_path)
    save_parts(results, code, chapter="04_mlp")
    out = capsys.readouterr().out
    assert downloads == [str(tmp_path / parts_file_name("04_mlp"))]
    assert "Google Drive is not available (ValueError: mount failed: the user declined)" in out
    assert "upload it into a later notebook's Files panel" in out
    save_parts(results, code, chapter="04_mlp", drive_folder=None)  # the learner asked for no Drive at all
    assert len(downloads) == 2


def test_nothing_passed_nothing_saved(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(parts.PARTS_DIR_ENV, str(tmp_path))
    spec = checks.SPECS["relu"]
    assert save_parts({"relu": (spec, False)}, {}, chapter="04_mlp") == []
    assert "no exercise has passed its check in this kernel yet; nothing saved" in capsys.readouterr().out
    assert save_parts({}, {}) == [] and not list(tmp_path.iterdir())
    with pytest.raises(PartsError, match="'07_rlhf' is not a chapter"):
        save_parts({}, {}, chapter="07_rlhf")


@pytest.mark.parametrize("chapter", LEARNER_CHAPTERS)
def test_the_grader_never_runs_the_cells_that_save_or_load_parts(chapter):
    """The switch and the save cell are demonstrations: not in the released prelude (so the
    sandbox's copy of the package needs no solutions.parts) and never in the program the grader
    runs, even when the learner turned the switch on and a parts file lies beside the submission."""
    path = stub_path(chapter)
    released = load_released(path, chapter)
    solved = solved_notebook(read_notebook(path), chapter)
    touching = [c for c in solved.cells if c.cell_type == "code" and "my_parts" in c.source]
    assert touching and all(DEMO_TAG in c.metadata.get("tags", []) for c in touching)
    for cell in touching:
        cell.source = cell.source.replace("use_my_parts = False", "use_my_parts = True")
    program, _ = build_program(released, solved)
    assert not any("my_parts" in cell["source"] for cell in program)
    assert not any("my_parts" in source for source in released.prelude)
