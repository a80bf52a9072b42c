"""What of the course package the process that runs a student's code may contain.

The process that runs a student's answer to an exercise must not contain that exercise's
reference: whatever runs in that process (the student's code) can reach anything else in it,
through the module table, the garbage collector or the call stack. So the sandbox never sees
the real package. It sees a *withholding copy*, built here from the real one:

* ``solutions/__init__.py`` and the modules of the chapters *before* the graded one, whole (a
  later notebook may use earlier chapters' references, e.g. through its "use the reference
  parts" switch); no other module (tooling, later chapters);
* the graded chapter's module (and any module that holds a graded reference) *sliced*: only the
  top-level names the released notebook imports from it, and what those need, never a graded
  exercise's reference nor anything that refers to one (transitively);
* ``solutions.checks`` as a stand-in whose checks do nothing (the grader checks, outside), and
  those of its modules that import no reference (the machinery: run, the wire format), which
  the harness needs;
* ``solutions.grading`` with the harness only; the data files.

References an exercise legitimately uses (``Spec.uses``) reach the sandbox only with that
exercise's request, as a slice of their module (:func:`slice_source`), after every exercise whose
reference is in that slice has been answered. Nothing here is chapter-specific: it reads the
specs and the modules' syntax.
"""

from __future__ import annotations

import ast
import atexit
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import solutions
from solutions.notebooks import chapter_module_name

CHECKS_STAND_IN = '''"""Stand-in for the course's checks inside the grading sandbox: the grader checks, outside."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule, not a check
        return importlib.import_module(f"{__name__}.{name}")

    def check(*args, **kwargs):
        print(f"(check.{name}: checked by the grader, not in the notebook)")

    return check


def passed(*names):
    return False


def summary(*args, **kwargs):
    print("(check.summary: the grader computes the score)")
'''


# --------------------------------------------------------------------------------------------
# slicing a module by its top-level names


@dataclass
class _Statement:
    node: ast.stmt
    defines: set[str]
    uses: set[str]
    is_import: bool


def _names_defined(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            found.add(sub.id)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            for alias in sub.names:
                found.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(sub.name)
    return found


def _names_used(node: ast.stmt) -> set[str]:
    return {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)}


def _statements(source: str) -> list[_Statement]:
    tree = ast.parse(source)
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the module docstring
    return [
        _Statement(n, _names_defined(n), _names_used(n), isinstance(n, (ast.Import, ast.ImportFrom)))
        for n in body
    ]


def slice_source(source: str, *, withheld: set[str], keep: set[str] | None = None) -> tuple[str, set[str]]:
    """The module ``source`` without the top-level names in ``withheld`` and without every
    statement that refers to one of them (transitively). With ``keep``, only what the names in
    ``keep`` need (imports included). Returns (source, names it defines)."""
    statements = _statements(source)
    dropped_names = set(withheld)
    dropped: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, st in enumerate(statements):
            if i not in dropped and (st.defines & withheld or st.uses & dropped_names):
                dropped.add(i)
                dropped_names |= st.defines
                changed = True
    kept = [i for i in range(len(statements)) if i not in dropped]
    if keep is not None:
        needed = set(keep)
        chosen: set[int] = set()
        changed = True
        while changed:
            changed = False
            for i in kept:
                st = statements[i]
                if i not in chosen and (st.is_import or st.defines & needed):
                    chosen.add(i)
                    needed |= st.uses
                    changed = True
        kept = sorted(chosen)
    lines = source.splitlines()
    parts, names = [], set()
    for i in kept:
        node = statements[i].node
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        parts.append("\n".join(lines[first - 1 : node.end_lineno]))
        names |= statements[i].defines
    return "\n\n".join(parts) + "\n", names - set(withheld)


# --------------------------------------------------------------------------------------------
# what is withheld for a chapter


def _top_name(obj) -> tuple[str, str] | None:
    """(module, top-level name) of a reference function or class, if it lives in ``solutions``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or not (module == "solutions" or module.startswith("solutions.")):
        return None
    return module, qualname.split(".")[0]


def withheld_for(specs) -> dict[str, set[str]]:
    """module -> top-level names of the graded references that live in it."""
    found: dict[str, set[str]] = {}
    for spec in specs:
        where = _top_name(spec.reference)
        if where:
            found.setdefault(where[0], set()).add(where[1])
    return found


def _module_file(module: str) -> Path:
    root = Path(solutions.__file__).resolve().parent
    parts = module.split(".")[1:]
    path = root.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


_payloads: dict[tuple, tuple[list[dict], set]] = {}


def uses_payload(spec) -> tuple[list[dict], set]:
    """:func:`_uses_payload`, computed once per exercise and version of its modules' files."""
    modules = sorted({w[0] for w in map(_top_name, spec.uses.values()) if w})
    key = (spec.name, tuple((m, _module_file(m).stat().st_mtime_ns) for m in modules))
    with _lock:
        if key not in _payloads:
            _payloads[key] = _uses_payload(spec)
        payload, exposed = _payloads[key]
    return [dict(p) for p in payload], set(exposed)


def _uses_payload(spec) -> tuple[list[dict], set[str]]:
    """What the sandbox needs to bind ``spec.uses``: one slice per module (source, module name,
    the names to bind). Also returns the (module, top-level name) pairs the slices define, so
    that the grader answers every exercise whose reference is among them first."""
    by_module: dict[str, dict[str, str]] = {}
    for name, ref in spec.uses.items():
        where = _top_name(ref)
        if where is None:
            continue
        by_module.setdefault(where[0], {})[name] = getattr(ref, "__qualname__", name)
    payload, exposed = [], set()
    for module, binds in by_module.items():
        own = withheld_for([spec]).get(module, set())
        source, names = slice_source(
            _module_file(module).read_text(encoding="utf-8"),
            withheld=own,
            keep={q.split(".")[0] for q in binds.values()},
        )
        payload.append({"module": module, "source": source, "bind": binds})
        exposed |= {(module, n) for n in names}
    return payload, exposed


def imported_names(sources: list[str], module: str) -> set[str] | None:
    """Top-level names the released notebook's runnable cells import from ``module``; None if a
    cell imports the module itself (then everything not withheld stays)."""
    names: set[str] = set()
    package, _, last = module.rpartition(".")
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == module for a in node.names):
                return None
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                if node.module == module:
                    names |= {a.name for a in node.names}
                    if any(a.name == "*" for a in node.names):
                        return None
                elif node.module == package and any(a.name == last for a in node.names):
                    return None
    return names


# --------------------------------------------------------------------------------------------
# the withholding copy of the package


def _reference_modules(real: Path) -> set[str]:
    """The package's reference (chapter) modules: every top-level module but the tooling."""
    return {f"solutions.{p.stem}" for p in real.glob("*.py") if p.stem not in ("__init__", "notebooks")}


def _imports(path: Path, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _reference_free(folder: Path, package: str, references: set[str]) -> list[Path]:
    """The modules of ``folder`` (not its __init__) that import no reference module, directly or
    through one another: the check machinery (run, compare, the wire format), not the specs."""
    modules = {f"{package}.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    imports = {m: _imports(p, package) for m, p in modules.items()}
    tainted = set(references)
    changed = True
    while changed:
        changed = False
        for module, names in imports.items():
            if module not in tainted and names & tainted:
                tainted.add(module)
                changed = True
    return [p for m, p in sorted(modules.items()) if m not in tainted]


_lock = threading.Lock()
_built: dict[tuple, Path] = {}


def package_copy(assignment: str, specs, released_sources: list[str]) -> Path:
    """A folder holding a withholding ``solutions`` package for grading ``assignment`` (put the
    folder on sys.path inside the sandbox). Built once per process and assignment; world-readable."""
    key = (assignment, tuple(released_sources))
    with _lock:
        if key in _built and _built[key].is_dir():
            return _built[key]
        root = Path(tempfile.mkdtemp(prefix="grading-package-"))
        atexit.register(shutil.rmtree, root, True)
        root.chmod(0o755)
        _write_package(root / "solutions", assignment, specs, released_sources)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        _built[key] = root
        return root


def _write_package(target: Path, assignment: str, specs, released_sources: list[str]) -> None:
    real = Path(solutions.__file__).resolve().parent
    target.mkdir()
    shutil.copyfile(real / "__init__.py", target / "__init__.py")
    earlier = set()
    for chapter in solutions.CHAPTERS:
        if chapter == assignment:
            break
        earlier.add(chapter_module_name(chapter))
    withheld = withheld_for(specs)
    withheld.setdefault(f"solutions.{chapter_module_name(assignment)}", set())
    for path in sorted(real.glob("*.py")):
        name = path.stem
        module = f"solutions.{name}"
        if name == "__init__":
            continue
        if module in withheld:
            keep = imported_names(released_sources, module)
            source, _ = slice_source(path.read_text(encoding="utf-8"), withheld=withheld[module], keep=keep)
            (target / path.name).write_text(source, encoding="utf-8")
        elif name in earlier:
            shutil.copyfile(path, target / path.name)
        # later chapters' modules (and modules not yet listed in CHAPTERS) are left out: they may
        # build on the graded one
    checks = target / "checks"
    checks.mkdir()
    (checks / "__init__.py").write_text(CHECKS_STAND_IN, encoding="utf-8")
    for path in _reference_free(real / "checks", "solutions.checks", _reference_modules(real)):
        shutil.copyfile(path, checks / path.name)
    grading = target / "grading"
    grading.mkdir()
    (grading / "__init__.py").write_text("", encoding="utf-8")
    shutil.copyfile(real / "grading" / "harness.py", grading / "harness.py")
    if (real / "data").is_dir():
        shutil.copytree(real / "data", target / "data", symlinks=False)
