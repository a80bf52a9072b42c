"""Notebook tooling: derive the solved and the nbgrader-source notebooks from a stub notebook.

The committed stub notebook (``chapters/NN_topic/NN_topic.ipynb``) is the one learners open and
the form nbgrader releases. Every exercise in it is a function whose body is::

    # YOUR CODE HERE
    raise NotImplementedError()

with the same name and signature as the reference in ``solutions/<topic>.py``. From the stub and
the reference this module derives, never by hand:

* the **solved** notebook: each stub body replaced by the reference body;
* nbgrader's **source** notebook: the reference body between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION``, which ``nbgrader generate_assignment`` turns back into the stub.

Command line::

    python -m solutions.notebooks solved 01_tokenization -o OUT_DIR
    python -m solutions.notebooks source 01_tokenization -o OUT_DIR
    python -m solutions.notebooks validate            # every chapter: stubs match references
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterator

import nbformat

import solutions

STUB_LINES = ["# YOUR CODE HERE", "raise NotImplementedError()"]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
NBFORMAT_VERSION = 4
DEMO_TAG = "demo"  # cells that only show things (figures, long runs); the grader skips them


# The one local set-up command, the same in README.md, intro.md and the setup cell's messages.
LOCAL_SETUP_COMMAND = "pip install -r requirements.txt"

# The first code cell of every exercise notebook (its id is "setup"). It cannot import the
# package (it is what finds it), so it lives here as text; `validate` keeps every stub's copy equal
# to this one, filled with the package version and the repository URL from _config.yml.
SETUP_CELL = """\
# @title Setup: run this cell first
# In Colab it installs the course package at this notebook's version, keeping Colab's own
# torch and numpy; in a clone of the course it finds the package.
COURSE_VERSION = "{version}"
COURSE_REPO = "{repo}"
SETUP_COMMAND = "{command}"
import importlib, importlib.util, pathlib, subprocess, sys

if importlib.util.find_spec("torch") is None:
    raise RuntimeError("PyTorch is not installed in this Python. In your clone of the course run "
                       f"`{{SETUP_COMMAND}}` (in a virtual environment), then restart the kernel.")
if importlib.util.find_spec("solutions") is None:
    if "google.colab" in sys.modules:
        import torch  # Colab's preinstalled torch: never replaced by this cell
        if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 4):
            raise RuntimeError(
                f"This course needs torch >= 2.4; this runtime has {{torch.__version__}}. "
                "Pick a newer runtime (Runtime > Change runtime type).")
        pip = [sys.executable, "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["--no-deps", f"git+{{COURSE_REPO}}@v{{COURSE_VERSION}}"], check=True)
        missing = [m for m in ("numpy", "einops", "tiktoken", "regex", "nbformat")
                   if importlib.util.find_spec(m) is None]
        if missing:
            subprocess.run(pip + missing, check=True)
        importlib.invalidate_caches()
    else:  # a clone of the course: the package sits in a folder above this notebook
        here = pathlib.Path.cwd()
        root = next((p for p in [here, *here.parents]
                     if (p / "solutions" / "__init__.py").exists()), None)
        if root is None:
            raise RuntimeError("Cannot find the course package. Open this notebook from your clone "
                               f"of the course, or run `{{SETUP_COMMAND}}` in the clone.")
        sys.path.insert(0, str(root))

import solutions
from solutions import checks as check
print(f"Course package {{solutions.__version__}} ready, from {{pathlib.Path(solutions.__file__).parent}}")
if solutions.__version__ != COURSE_VERSION:
    print(f"WARNING: this notebook is from version {{COURSE_VERSION}} but the package is "
          f"{{solutions.__version__}}: checks may not match the exercises. Use the notebook of "
          f"the same release, or update the package (`{{SETUP_COMMAND}}` in your clone).")"""


def setup_cell_source(root: Path | None = None) -> str:
    """The setup cell for this release: the package version and _config.yml's repository URL."""
    config = (root or repo_root()) / "_config.yml"
    match = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", config.read_text(encoding="utf-8"), re.M)
    if match is None:
        raise NotebookError(f"{config} has no repository url")
    return SETUP_CELL.format(version=solutions.__version__, repo=match.group(1), command=LOCAL_SETUP_COMMAND)


class NotebookError(ValueError):
    """A notebook that cannot be used, with the reason in plain words."""


def repo_root() -> Path:
    """The clone this package lives in (notebook tooling works on a clone, not on a wheel)."""
    root = Path(solutions.__file__).resolve().parent.parent
    if not (root / "chapters").is_dir():
        raise NotebookError(
            f"{root} has no chapters/ folder: the notebook tooling needs a clone of the course "
            f"repository (pip install -e . from the clone)."
        )
    return root


def chapter_module_name(chapter: str) -> str:
    """'01_tokenization' -> 'tokenization' (the reference module of that chapter)."""
    match = re.fullmatch(r"\d\d_(\w+)", chapter)
    if not match:
        raise NotebookError(f"{chapter!r} is not a chapter name like '01_tokenization'")
    return match.group(1)


def stub_path(chapter: str, root: Path | None = None) -> Path:
    return (root or repo_root()) / "chapters" / chapter / f"{chapter}.ipynb"


def read_notebook(path: Path | str) -> nbformat.NotebookNode:
    """Read a notebook, or raise :class:`NotebookError` saying why it cannot be read."""
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=NBFORMAT_VERSION)
    except FileNotFoundError:
        raise NotebookError(f"{path} does not exist") from None
    except Exception as exc:  # nbformat raises several kinds for broken JSON or schema
        raise NotebookError(f"{path} is not a readable notebook: {type(exc).__name__}: {exc}") from None
    return nb


# --------------------------------------------------------------------------------------------
# finding exercises in a cell


def _enclosing_definition(lines: list[str], index: int) -> tuple[str | None, str, int]:
    """(class name or None, function name, indentation of the body) around line ``index``."""
    indent = len(lines[index]) - len(lines[index].lstrip())
    func = cls = None
    for line in reversed(lines[:index]):
        stripped = line.lstrip()
        level = len(line) - len(stripped)
        if not stripped or level >= indent:
            continue
        match = re.match(r"(?:async\s+)?def\s+(\w+)|class\s+(\w+)", stripped)
        if match and func is None and match.group(1):
            func, indent = match.group(1), level
        elif match and func is not None and match.group(2):
            cls = match.group(2)
            break
    if func is None:
        raise NotebookError("a `# YOUR CODE HERE` stub is not inside a function")
    return cls, func, len(lines[index]) - len(lines[index].lstrip())


def stub_regions(source: str) -> Iterator[tuple[int, str | None, str, int]]:
    """Yield (line index, class, function, indent) for every stub body in a cell's source."""
    lines = source.split("\n")
    for i in range(len(lines) - 1):
        if lines[i].strip() == STUB_LINES[0] and lines[i + 1].strip() == STUB_LINES[1]:
            cls, func, indent = _enclosing_definition(lines, i)
            yield i, cls, func, indent


def reference_object(chapter: str, cls: str | None, func: str) -> Callable:
    module = importlib.import_module(f"solutions.{chapter_module_name(chapter)}")
    owner = getattr(module, cls) if cls else module
    try:
        return getattr(owner, func)
    except AttributeError:
        where = f"{cls}.{func}" if cls else func
        raise NotebookError(f"the stub {where} has no reference in solutions/{chapter_module_name(chapter)}.py") from None


def reference_body(fn: Callable) -> list[str]:
    """The body of a reference function, docstring removed, dedented to column 0."""
    source = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(source)
    node = tree.body[0]
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        if isinstance(body[0].value.value, str):
            body = body[1:]
    if not body:
        raise NotebookError(f"the reference {fn.__qualname__} has no body besides its docstring")
    lines = source.split("\n")
    first = body[0].lineno - 1
    # comments directly above the first statement belong to the body too
    while first > 0 and lines[first - 1].strip().startswith("#"):
        first -= 1
    text = "\n".join(lines[first : node.end_lineno])
    return textwrap.dedent(text).rstrip("\n").split("\n")


def _stub_function(source: str, cls: str | None, func: str) -> ast.FunctionDef:
    """The def of ``func`` (inside class ``cls``, if given) in a cell's source."""
    tree = ast.parse(source)
    scope = tree.body
    if cls is not None:
        owner = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls), None)
        if owner is None:
            raise NotebookError(f"no class {cls} in the cell")
        scope = owner.body
    for node in scope:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == func:
            return node
    raise NotebookError(f"no def {func} in the cell" + (f" (class {cls})" if cls else ""))


def kept_lines(source: str, cls: str | None, func: str, marker_line: int) -> list[str]:
    """The lines a stub shows above its `# YOUR CODE HERE` (e.g. `super().__init__()`), dedented.

    They are the start of the reference body too, so the solved notebook does not repeat them.
    """
    node = _stub_function(source, cls, func)
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    if not body or body[0].lineno - 1 >= marker_line:
        return []
    lines = source.split("\n")[body[0].lineno - 1 : marker_line]
    return textwrap.dedent("\n".join(lines)).split("\n")


def _fill_source(source: str, chapter: str, markers: bool) -> str:
    lines = source.split("\n")
    # replace from the bottom so earlier line numbers stay valid
    for i, cls, func, indent in reversed(list(stub_regions(source))):
        body = reference_body(reference_object(chapter, cls, func))
        kept = kept_lines(source, cls, func, i)
        if body[: len(kept)] != kept:
            where = f"{cls}.{func}" if cls else func
            raise NotebookError(f"the lines the stub {where} keeps are not the start of its reference body")
        body = body[len(kept):]
        pad = " " * indent
        new = [pad + line if line.strip() else "" for line in body]
        if markers:
            new = [pad + BEGIN] + new + [pad + END]
        lines[i : i + 2] = new
    return "\n".join(lines)


def _derive(stub: nbformat.NotebookNode, chapter: str, markers: bool) -> nbformat.NotebookNode:
    nb = copy.deepcopy(stub)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = _fill_source(cell.source, chapter, markers)
    return nb


def solved_notebook(stub: nbformat.NotebookNode, chapter: str) -> nbformat.NotebookNode:
    """The stub with every exercise body filled from the reference."""
    return _derive(stub, chapter, markers=False)


def source_notebook(stub: nbformat.NotebookNode, chapter: str) -> nbformat.NotebookNode:
    """nbgrader's source: reference bodies between BEGIN/END SOLUTION markers."""
    return _derive(stub, chapter, markers=True)


def notebook_chapter(nb: dict) -> str | None:
    """The chapter a notebook belongs to, from its metadata (survives renamed copies).

    Works on a NotebookNode or on raw JSON of unknown shape (a submission may be damaged)."""
    metadata = nb.get("metadata") if isinstance(nb, dict) else None
    course = metadata.get("course") if isinstance(metadata, dict) else None
    chapter = course.get("chapter") if isinstance(course, dict) else None
    return chapter if isinstance(chapter, str) else None


# --------------------------------------------------------------------------------------------
# validating a stub against its references and checks


def _signature(fn_source: str) -> str:
    """Parameter names, kinds and defaults (annotations may be spelled out for learners)."""
    node = ast.parse(textwrap.dedent(fn_source)).body[0]
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    args = copy.deepcopy(node.args)
    for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
        if arg is not None:
            arg.annotation = None
    return ast.dump(args)


def validate_stub(nb: nbformat.NotebookNode, chapter: str) -> list[str]:
    """Problems that make a stub drift from its reference or checks; an empty list means fine."""
    from solutions.checks import specs_for  # notebook tooling may use checks; not the reverse

    problems = []
    if notebook_chapter(nb) != chapter:
        problems.append(f"metadata.course.chapter is {notebook_chapter(nb)!r}, expected {chapter!r}")
    if nb.metadata.get("course", {}).get("version") != solutions.__version__:
        problems.append(f"metadata.course.version differs from the package version {solutions.__version__}")
    setup = [cell for cell in nb.cells if cell.get("id") == "setup"]
    if not setup or setup[0].source != setup_cell_source():
        problems.append("the setup cell (id 'setup') differs from solutions.notebooks.SETUP_CELL")
    exercises: dict[str, str] = {}  # top-level class or function -> grade id of its answer cell
    grade_ids: list[str] = []
    checks: dict[str, int] = {}
    for cell in nb.cells:
        if "id" not in cell:
            problems.append("a cell has no id")
        if cell.cell_type == "code" and cell.get("outputs"):
            problems.append(f"cell {cell.get('id')} has outputs: commit stubs without outputs")
        meta = cell.get("metadata", {}).get("nbgrader")
        if not meta:
            continue
        grade_ids.append(meta.get("grade_id"))
        if meta.get("solution"):
            regions = list(stub_regions(cell.source))
            if not regions:
                problems.append(f"answer cell {meta.get('grade_id')} has no `# YOUR CODE HERE` stub body")
            for i, cls, func, _ in regions:
                problems += _stub_problems(cell.source, chapter, cls, func, i)
                top = cls or func
                if meta.get("grade_id") != top:
                    problems.append(f"the answer cell of {top} has grade id {meta.get('grade_id')!r}; it must be {top!r}")
                exercises[top] = meta.get("grade_id")
        if meta.get("grade"):
            match = re.fullmatch(r"check\.(\w+)\((\w+)\)", cell.source.strip())
            if not match or match.group(1) != match.group(2):
                problems.append(f"check cell {meta.get('grade_id')} should be exactly check.<name>(<name>)")
            else:
                checks[match.group(1)] = meta.get("points")
    duplicates = {g for g in grade_ids if grade_ids.count(g) > 1}
    if duplicates:
        problems.append(f"duplicated grade ids: {sorted(duplicates)}")
    for spec in specs_for(chapter):
        if spec.name not in exercises:
            problems.append(f"the exercise {spec.name} has no answer cell")
        if spec.name not in checks:
            problems.append(f"the exercise {spec.name} has no check cell")
        elif checks[spec.name] != spec.points:
            problems.append(f"check cell of {spec.name} gives {checks[spec.name]} points, its spec {spec.points}")
    return problems


def _stub_problems(source: str, chapter: str, cls: str | None, func: str, marker_line: int) -> list[str]:
    """What is wrong with one stub body: signature, kept lines, anything besides the stub lines."""
    where = f"{cls}.{func}" if cls else func
    try:
        ref = reference_object(chapter, cls, func)
        node = _stub_function(source, cls, func)
    except NotebookError as err:
        return [str(err)]
    problems = []
    if _signature(ast.get_source_segment(source, node) or "") != _signature(inspect.getsource(ref)):
        problems.append(f"the signature of {where} in the notebook differs from the reference")
    kept = kept_lines(source, cls, func, marker_line)
    if reference_body(ref)[: len(kept)] != kept:
        problems.append(f"the lines the stub {where} keeps above `# YOUR CODE HERE` are not the start of its reference body")
    last = node.body[-1]
    if not (isinstance(last, ast.Raise) and last.lineno - 1 == marker_line + 1):
        problems.append(f"the stub {where} has code after `raise NotImplementedError()`: a stub body is only the stub lines")
    return problems


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solutions.notebooks", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("solved", "source"):
        p = sub.add_parser(name, help=f"write the {name} notebook of a chapter")
        p.add_argument("chapter", choices=solutions.CHAPTERS)
        p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    sub.add_parser("validate", help="check that every stub matches its reference and checks")
    args = parser.parse_args(argv)
    if args.command == "validate":
        failed = False
        for chapter in solutions.CHAPTERS:
            problems = validate_stub(read_notebook(stub_path(chapter)), chapter)
            for problem in problems:
                print(f"{chapter}: {problem}")
            failed |= bool(problems)
            if not problems:
                print(f"{chapter}: ok")
        return 1 if failed else 0
    stub = read_notebook(stub_path(args.chapter))
    derive = solved_notebook if args.command == "solved" else source_notebook
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"{args.chapter}.ipynb"
    nbformat.write(derive(stub, args.chapter), target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
