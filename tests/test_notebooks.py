"""The exercise notebooks: clean stubs that match their references, and run as promised.

* the committed stub is nbgrader's release of the generated source notebook;
* the stub runs top to bottom: every check cell fails with "not implemented yet", nothing else fails;
* the solved notebook runs top to bottom and every check passes.
"""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

import solutions
from solutions.grading import course
from solutions.notebooks import (
    BEGIN,
    LOCAL_SETUP_COMMAND,
    STUB_LINES,
    read_notebook,
    solved_notebook,
    source_notebook,
    stub_path,
    validate_stub,
)
from solutions.parts import PARTS_DIR_ENV

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = solutions.CHAPTERS


@pytest.fixture(autouse=True)
def _saved_parts_in_a_temporary_folder(tmp_path, monkeypatch):
    # the notebooks' save_my_parts cells write there (not beside the committed notebooks), and
    # their use_my_parts switches look only there: an executed notebook never sees a developer's parts
    monkeypatch.setenv(PARTS_DIR_ENV, str(tmp_path / "parts"))


def _graded(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def execute(nb, chapter):
    """Run a notebook in a fresh kernel, from the chapter's folder, keeping going after errors."""
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(ROOT / "chapters" / chapter)}},
    )
    client.execute()
    return nb


def errors(cell):
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stub_matches_references_and_checks(chapter):
    nb = read_notebook(stub_path(chapter))
    nbformat.validate(nb)
    assert validate_stub(nb, chapter) == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stub_file_name_and_metadata(chapter):
    path = stub_path(chapter)
    names = [p.name for p in ROOT.glob("chapters/*/*.ipynb")]
    assert names.count(path.name) == 1, "notebook file names must be unique across the course"
    nb = read_notebook(path)
    assert nb.metadata["course"] == {"chapter": chapter, "version": solutions.__version__}
    assert nb.metadata["kernelspec"]["name"] == "python3"
    ids = [cell.id for cell in nb.cells]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_setup_cell_installs_this_release_from_the_configured_repository(chapter):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    setup = read_notebook(stub_path(chapter)).cells[1].source
    assert f'COURSE_REPO = "{config["repository"]["url"]}"' in setup
    assert f'COURSE_VERSION = "{solutions.__version__}"' in setup
    assert "--no-deps" in setup  # never replaces Colab's torch or numpy


def _run_setup_cell(tmp_path, torch_version):
    """Run the setup cell as Colab would, with a fake Colab, a fake torch and no course package."""
    setup = read_notebook(stub_path(CHAPTERS[0])).cells[1].source
    fake = tmp_path / "fake"
    (fake / "google").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab.py").write_text("")
    (fake / "torch.py").write_text(f"__version__ = {torch_version!r}\n")
    program = "import sys, google.colab\n" + setup
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(fake)!r}); exec({program!r})"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_setup_cell_without_torch_says_what_to_install(tmp_path):
    setup = read_notebook(stub_path(CHAPTERS[0])).cells[1].source
    # a Python whose only path is an empty folder: no torch, no course package
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p]; exec({setup!r})"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "PyTorch is not installed in this Python" in result.stderr
    assert f"`{LOCAL_SETUP_COMMAND}`" in result.stderr
    assert "ModuleNotFoundError" not in result.stderr


def test_setup_cell_names_the_package_it_imported_and_warns_on_another_version(tmp_path):
    setup = read_notebook(stub_path(CHAPTERS[0])).cells[1].source
    older = setup.replace(f'COURSE_VERSION = "{solutions.__version__}"', 'COURSE_VERSION = "0.0.1"')
    result = subprocess.run([sys.executable, "-c", older], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"from {ROOT / 'solutions'}" in result.stdout
    assert "WARNING: this notebook is from version 0.0.1" in result.stdout


def test_one_list_of_chapters():
    # solutions.CHAPTERS is the registry; the book's numbered part follows it, page then notebook.
    # The other parts hold the pages around the course (what next, notation, glossary, ...).
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    numbered = [part for part in toc["parts"] if part.get("numbered")]
    assert len(numbered) == 1, "one numbered part holds the chapters"
    listed = [c["file"] for c in numbered[0]["chapters"]]
    assert listed == [f"chapters/{c}/index" for c in CHAPTERS]
    for c in numbered[0]["chapters"]:
        chapter = c["file"].split("/")[1]
        assert [s["file"] for s in c["sections"]] == [f"chapters/{chapter}/{chapter}"]
    others = [c["file"] for part in toc["parts"] if not part.get("numbered") for c in part["chapters"]]
    assert not [f for f in others if f.startswith("chapters/")], f"chapter pages outside the chapters: {others}"
    from solutions import checks

    assert sorted({s.chapter for s in checks.SPECS.values()}) == sorted(CHAPTERS)


def test_one_set_up_story():
    # README, the landing page and the setup cell's messages give the same local command
    for page in ("README.md", "intro.md"):
        assert LOCAL_SETUP_COMMAND in (ROOT / page).read_text(), page
    assert "{SETUP_COMMAND}" in read_notebook(stub_path(CHAPTERS[0])).cells[1].source


def test_setup_cell_refuses_a_torch_older_than_supported(tmp_path):
    result = _run_setup_cell(tmp_path, "2.3.1+cu121")
    assert result.returncode != 0
    assert "This course needs torch >= 2.4; this runtime has 2.3.1+cu121" in result.stderr


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_derived_notebooks_replace_every_stub(chapter):
    stub = read_notebook(stub_path(chapter))
    solved, source = solved_notebook(stub, chapter), source_notebook(stub, chapter)
    answers = [i for i, c in enumerate(stub.cells) if _graded(c).get("solution")]
    assert answers
    for i in answers:
        assert STUB_LINES[1] in stub.cells[i].source
        assert STUB_LINES[1] not in solved.cells[i].source and BEGIN not in solved.cells[i].source
        assert source.cells[i].source.count(BEGIN) == stub.cells[i].source.count(STUB_LINES[1])
    # everything that is not an answer is untouched
    for i, cell in enumerate(stub.cells):
        if i not in answers:
            assert solved.cells[i] == cell and source.cells[i] == cell


def _with_answer(chapter, name, source):
    nb = read_notebook(stub_path(chapter))
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == name)
    cell.source = source
    return nb, cell


def test_class_stubs_keep_their_lines_once_in_the_solved_notebook():
    stub = read_notebook(stub_path("02_embeddings"))
    solved = solved_notebook(stub, "02_embeddings")
    cell = next(c for c in solved.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "Embed")
    assert cell.source.count("super().__init__()") == 1
    namespace = {}
    exec("import torch, einops\nfrom torch import nn\nimport torch.nn.functional as F\n" + cell.source, namespace)
    assert namespace["Embed"](5, 3).W_E.shape == (5, 3)


def test_validation_names_what_drifted_in_a_class_stub():
    good = read_notebook(stub_path("02_embeddings"))
    source = next(c for c in good.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "Embed").source
    extra = source.replace("raise NotImplementedError()\n\n    def forward", "raise NotImplementedError()\n        self.W_E = None\n\n    def forward", 1)
    nb, _ = _with_answer("02_embeddings", "Embed", extra)
    assert any("has code after" in p for p in validate_stub(nb, "02_embeddings"))
    renamed = source.replace("def forward(self, tokens: torch.Tensor)", "def forward(self, ids: torch.Tensor)")
    nb, _ = _with_answer("02_embeddings", "Embed", renamed)
    assert any("signature of Embed.forward" in p for p in validate_stub(nb, "02_embeddings"))
    kept = source.replace("        super().__init__()\n", "        super().__init__()\n        self.d_model = d_model\n", 1)
    nb, _ = _with_answer("02_embeddings", "Embed", kept)
    assert any("keeps above" in p for p in validate_stub(nb, "02_embeddings"))
    nb, cell = _with_answer("02_embeddings", "Embed", source)
    cell.metadata["nbgrader"]["grade_id"] = "embed"
    assert any("grade id 'embed'" in p for p in validate_stub(nb, "02_embeddings"))


@pytest.mark.slow
def test_nbgrader_release_of_the_generated_source_is_the_committed_stub(tmp_path):
    course.setup(tmp_path / "course")
    course.release(tmp_path / "course")
    for chapter in CHAPTERS:
        released = read_notebook(tmp_path / "course" / "release" / chapter / f"{chapter}.ipynb")
        stub = read_notebook(stub_path(chapter))
        assert len(released.cells) == len(stub.cells)
        for got, want in zip(released.cells, stub.cells):
            assert (got.id, got.cell_type, got.source) == (want.id, want.cell_type, want.source)
            meta = {k: v for k, v in got.metadata.items()}
            if "nbgrader" in meta:  # nbgrader's own bookkeeping: a checksum of the source and the cell type
                meta["nbgrader"] = {k: v for k, v in meta["nbgrader"].items() if k not in ("checksum", "cell_type")}
            assert meta == want.metadata, got.id
        assert released.metadata["course"] == stub.metadata["course"]


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stub_runs_top_to_bottom_and_only_checks_fail(chapter):
    nb = execute(read_notebook(stub_path(chapter)), chapter)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if _graded(cell).get("grade"):
            (error,) = errors(cell)
            assert error["ename"] == "NotImplementedYet", (cell.id, error["ename"], error["evalue"])
            assert "not implemented yet" in error["evalue"]
        else:
            assert not errors(cell), (cell.id, errors(cell))
    summary = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert re.search(r"Score: 0/\d+", summary)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solved_notebook_passes_every_check(chapter):
    nb = execute(solved_notebook(read_notebook(stub_path(chapter)), chapter), chapter)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not errors(cell), (cell.id, errors(cell))
        if _graded(cell).get("grade"):
            text = "".join(o.get("text", "") for o in cell.outputs)
            assert "✔" in text, cell.id
    summary = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    total = sum(_graded(c).get("points", 0) for c in nb.cells)
    assert f"Score: {total}/{total}" in summary
