"""Your own parts, carried from one notebook to the next: save what passed, load it later.

At the end of a chapter's notebook, ``check.save_my_parts()`` writes every exercise whose check
passed in that kernel into one plain Python file per chapter, ``my_parts_05_blocks.py``: a
header with the course version and every exercise's verdict, the imports the code needs, then
the learner's own definitions, exactly as written in their answer cells. A later notebook's
switch (``use_my_parts = True``) loads those files with :func:`my_parts`, says which parts are
the learner's and which come from the reference (missing, failed or never checked), and refuses,
with the reason, a file from another course version or one that does not define what its header
claims. The capstone at the end of chapter 6 builds the GPT from these parts and trains it with
the learner's own chapter-6 pieces (:func:`train_with_pieces`).

Where the files go: beside the notebook locally (the kernel's working folder); in Colab, into a
folder of the learner's Google Drive (mounted after Google asks for their consent), or, when
Drive is declined or unavailable, as a download. ``COURSE_PARTS_DIR`` in the environment
overrides the folder (the tests use it).

The grader never loads parts: the cells that save and load them are demonstrations (tagged
``demo``), which the grader does not run, and this module is not in its sandbox.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import datetime
import linecache
import os
import re
import shutil
import symtable
import sys
import time
import types
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import solutions

PARTS_DIR_ENV = "COURSE_PARTS_DIR"  # a folder for the parts files, instead of the defaults
DRIVE_ROOT = "/content/drive"       # where Colab mounts Google Drive
DRIVE_FOLDER = "transformer-course"  # the default folder inside "My Drive"


class PartsError(ValueError):
    """A parts file that cannot be used, or parts that cannot be saved, with the reason."""


def parts_file_name(chapter: str) -> str:
    """'05_blocks' -> 'my_parts_05_blocks.py'."""
    return f"my_parts_{chapter}.py"


def _chapter_number(chapter: str) -> str:
    return str(int(chapter.split("_", 1)[0]))


# --------------------------------------------------------------------------------------------
# where the files are


def _in_colab() -> bool:
    return "google.colab" in sys.modules


def _drive_folder(drive_folder: str | None, mount: bool) -> Path | None:
    """The learner's Drive folder in Colab (mounted on request: Google asks for consent), or None."""
    if not (_in_colab() and drive_folder):
        return None
    root = Path(DRIVE_ROOT)
    if not (root / "MyDrive").is_dir():
        if not mount:
            return None
        try:
            from google.colab import drive

            drive.mount(str(root))
        except Exception as err:  # declined, timed out, no account: Drive is not used
            print(f"Google Drive is not available ({type(err).__name__}: {err}).")
            return None
    return root / "MyDrive" / drive_folder


def _local_folder() -> Path:
    return Path(os.environ.get(PARTS_DIR_ENV) or Path.cwd())


def _search_folders(chapter: str, drive_folder: str | None) -> list[Path]:
    """Where a chapter's parts file may be, in order: COURSE_PARTS_DIR alone if it is set;
    else the working folder, the chapter's own folder in a clone of the course (a sibling of
    the working folder), and in Colab the Drive folder."""
    if os.environ.get(PARTS_DIR_ENV):
        return [Path(os.environ[PARTS_DIR_ENV])]
    here = Path.cwd()
    folders = [here, here.parent / chapter]
    drive = _drive_folder(drive_folder, mount=True)
    if drive is not None:
        folders.append(drive)
    return list(dict.fromkeys(folders))


# --------------------------------------------------------------------------------------------
# saving: the source of what passed


def _code_objects(obj: Any) -> list[types.CodeType]:
    """The code objects of a function, or of a class's methods (properties included)."""
    if isinstance(obj, types.FunctionType):
        return [obj.__code__]
    found = []
    for value in vars(obj).values() if isinstance(obj, type) else ():
        for fn in (value, getattr(value, "__func__", None), getattr(value, "fget", None)):
            if isinstance(fn, types.FunctionType):
                found.append(fn.__code__)
    return found


def definition_source(obj: Any) -> tuple[str, str]:
    """(the source of ``obj``'s def or class statement, the whole cell or file it is in).

    Works for code typed in a notebook cell (IPython keeps every cell's text in ``linecache``)
    and for code in files. Raises PartsError when the source cannot be found (code made with
    ``exec``, or a class without methods)."""
    name = getattr(obj, "__name__", "?")
    for code in _code_objects(obj):
        text = "".join(linecache.getlines(code.co_filename))
        if not text:
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name != name:
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            inside = (first == code.co_firstlineno if isinstance(obj, types.FunctionType)
                      else first <= code.co_firstlineno <= node.end_lineno)
            if inside:
                lines = text.splitlines()[first - 1 : node.end_lineno]
                return "\n".join(lines), text
    raise PartsError(f"cannot find the source of {name}: define it in a cell of its own and run that cell again")


def _global_names(source: str) -> set[str]:
    """Names a def or class statement reads from the module's globals (its free names)."""
    table = symtable.symtable(source, "<part>", "exec")
    found: set[str] = set()

    def visit(scope: symtable.SymbolTable, top: bool) -> None:
        for symbol in scope.get_symbols():
            if top:
                continue  # the defined name itself
            if symbol.is_referenced() and (symbol.is_global() or (scope.get_type() == "class" and not symbol.is_assigned()
                                                                   and not symbol.is_local())):
                found.add(symbol.get_name())
        for child in scope.get_children():
            visit(child, False)

    visit(table, True)
    # decorators, base classes and default values are evaluated in the module scope
    node = ast.parse(source).body[0]
    outer = list(node.decorator_list)
    if isinstance(node, ast.ClassDef):
        outer += node.bases + [k.value for k in node.keywords]
    else:
        outer += node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
        outer += [a.annotation for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs if a.annotation]
        outer += [node.returns] if node.returns else []
    for expr in outer:
        found |= {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
    return found - set(dir(builtins))


def _importable(value: Any) -> str | None:
    """'from module import name' text for an object that its module really holds, else None."""
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not module or not name or "." in name or module == "__main__":
        return None
    # only a module already imported (the kernel's own imports): looking one up runs no code
    if getattr(sys.modules.get(module), name, None) is value:
        return f"from {module} import {name}"
    return None


def _import_line(alias: str, value: Any) -> str | None:
    if isinstance(value, types.ModuleType):
        return f"import {value.__name__}" + (f" as {alias}" if alias != value.__name__ else "")
    line = _importable(value)
    if line is None:
        return None
    return line + (f" as {alias}" if alias != value.__qualname__ else "")


_PLAIN = (int, float, str, bool, type(None))


@dataclasses.dataclass
class _Saved:
    """What goes into one chapter's file."""

    chapter: str
    verdicts: dict[str, str]            # exercise -> "passed" / "failed" / "not checked"
    blocks: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (title, source)
    imports: dict[str, str] = dataclasses.field(default_factory=dict)        # name -> import line
    constants: dict[str, str] = dataclasses.field(default_factory=dict)      # name -> assignment
    references: dict[str, str] = dataclasses.field(default_factory=dict)     # name -> import line
    warnings: list[str] = dataclasses.field(default_factory=list)
    defined: set[str] = dataclasses.field(default_factory=set)


def _chapter_names(chapter: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(exercise name -> reference, name a check binds to a reference -> reference) of a chapter."""
    from solutions.checks import specs_for

    specs = specs_for(chapter)
    used: dict[str, Any] = {}
    for spec in specs:
        used.update(spec.uses)
    return {s.name: s.reference for s in specs}, used


def _collect(chapter: str, results: Mapping[str, tuple], passed_code: Mapping[str, Any]) -> _Saved:
    exercises, used = _chapter_names(chapter)
    verdicts = {}
    for name in exercises:
        verdict = results.get(name, (None, None))[1]
        verdicts[name] = {True: "passed", False: "failed", None: "not checked"}[verdict]
    saved = _Saved(chapter, verdicts)
    pending = [(name, passed_code[name], True) for name, v in verdicts.items() if v == "passed" and name in passed_code]
    for name, v in verdicts.items():
        if v == "passed" and name not in passed_code:
            saved.verdicts[name] = "not checked"  # a verdict without the code that earned it
    seen: set[int] = set()
    while pending:
        name, obj, is_exercise = pending.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        try:
            source, _ = definition_source(obj)
        except PartsError as err:
            saved.warnings.append(f"{name}: {err}; it is not saved")
            if is_exercise:
                saved.verdicts[name] = "not saved"
            continue
        title = f"{name}: passed its check" if is_exercise else f"{name}: your helper"
        saved.blocks.append((title, source))
        saved.defined.add(name)
        namespace = getattr(obj, "__globals__", None)
        if namespace is None:  # a class: its methods' globals
            codes = [v for v in vars(obj).values() if isinstance(v, types.FunctionType)]
            namespace = codes[0].__globals__ if codes else {}
        for ref in sorted(_global_names(source)):
            if ref in saved.defined or ref in saved.imports or ref in saved.constants:
                continue
            if ref in exercises and verdicts.get(ref) == "passed" and ref in passed_code:
                continue  # another of this chapter's exercises: saved too
            if ref in exercises or ref in used:
                # an exercise of this chapter that is not saved, or a part the checks bind (an earlier
                # chapter's, loaded or not): the reference here; a later notebook binds its own
                line = _import_line(ref, exercises.get(ref, used.get(ref)))
                if line:
                    saved.references[ref] = line
                    continue
            if ref in namespace:
                value = namespace[ref]
                line = _import_line(ref, value)
                if line is not None:
                    saved.imports[ref] = line
                elif getattr(value, "__module__", None) == "__main__" and callable(value):
                    pending.append((ref, value, False))  # the learner's own helper: saved with it
                elif isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value)):
                    saved.constants[ref] = f"{ref} = {value!r}"
                else:
                    saved.warnings.append(f"{name} uses `{ref}` ({type(value).__name__}), which cannot be saved: "
                                          f"define it inside {name}'s cell")
            else:
                saved.warnings.append(f"{name} uses `{ref}`, which is not defined in this kernel")
    for name in saved.defined:
        saved.references.pop(name, None)
    return saved


def _render(saved: _Saved) -> str:
    chapter = saved.chapter
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    width = max(len(n) for n in saved.verdicts)
    table = "\n".join(f"    {name:{width}}  {verdict}" for name, verdict in saved.verdicts.items())
    mine = [n for n, v in saved.verdicts.items() if v == "passed"]
    lines = [
        f'"""Your parts from chapter {_chapter_number(chapter)} ({chapter}), saved by check.save_my_parts() on {stamp}.',
        "",
        f"Course version {solutions.__version__}. The check verdicts in that session:",
        "",
        table,
        "",
        "Only the exercises that passed are defined below, as you wrote them. A later notebook loads this",
        "file with `use_my_parts = True`; what is not here comes from the course's reference. It is plain",
        "Python: read it, or run it. If you change it, nothing checks it again: save it again from the",
        "chapter's notebook instead.",
        '"""',
        "",
        f"COURSE_VERSION = {solutions.__version__!r}",
        f"CHAPTER = {chapter!r}",
        "VERDICTS = {" + ", ".join(f"{n!r}: {v!r}" for n, v in saved.verdicts.items()) + "}",
        f"PARTS = {mine!r}  # the exercises this file defines",
        "",
    ]
    lines += sorted(set(saved.imports.values()), key=lambda s: (s.startswith("from"), s))
    if saved.references:
        lines += ["", "# the course's reference for what you did not save here (a later notebook may put your own",
                  "# parts of earlier chapters in their place)"]
        lines += sorted(set(saved.references.values()))
    if saved.constants:
        lines += [""] + [saved.constants[k] for k in sorted(saved.constants)]
    # helpers first (an exercise may use them at definition time, e.g. as a base class)
    ordered = [b for b in saved.blocks if "helper" in b[0]] + [b for b in saved.blocks if "helper" not in b[0]]
    for title, source in ordered:
        lines += ["", "", f"# --- {title} " + "-" * max(0, 90 - len(title)), source]
    return "\n".join(lines) + "\n"


def save_parts(results: Mapping[str, tuple], passed_code: Mapping[str, Any], chapter: str | None = None,
               folder: str | os.PathLike | None = None, drive_folder: str | None = DRIVE_FOLDER) -> list[Path]:
    """Write the exercises that passed into ``my_parts_<chapter>.py``; returns the files written.

    results: exercise name -> (spec, passed) (the checks' record of this kernel); passed_code:
    exercise name -> the function or class that passed. chapter: one chapter, or every chapter
    with a result in this kernel. folder: where to write (default: COURSE_PARTS_DIR, else the
    working folder). In Colab the file is then copied into ``My Drive/<drive_folder>`` (Google
    asks for consent to mount Drive); if Drive is declined or drive_folder is None, the file is
    downloaded instead. Prints what was saved, what was not and why. Raises PartsError for an
    unknown chapter.
    """
    if chapter is not None and chapter not in solutions.CHAPTERS:
        raise PartsError(f"{chapter!r} is not a chapter; the chapters are {', '.join(solutions.CHAPTERS)}")
    chapters = [chapter] if chapter else sorted({spec.chapter for spec, _ in results.values()})
    if not chapters:
        print("No check has run in this kernel yet: run the check cells above first, then save.")
        return []
    target = Path(folder) if folder is not None else _local_folder()
    written = []
    for ch in chapters:
        saved = _collect(ch, results, passed_code)
        mine = [n for n, v in saved.verdicts.items() if v == "passed"]
        for warning in saved.warnings:
            print(f"  note: {warning}")
        if not mine:
            print(f"Chapter {_chapter_number(ch)}: no exercise has passed its check in this kernel yet; nothing saved.")
            continue
        text = _render(saved)
        target.mkdir(parents=True, exist_ok=True)
        path = target / parts_file_name(ch)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        others = [f"{n} ({v})" for n, v in saved.verdicts.items() if v != "passed"]
        print(f"Saved your {len(mine)} passing part{'s' if len(mine) != 1 else ''} of chapter "
              f"{_chapter_number(ch)} to {path}: {', '.join(mine)}.")
        if others:
            print(f"  Not saved (a later notebook uses the reference for these): {', '.join(others)}.")
        written.append(path)
        _offer_to_colab_user(path, drive_folder)
    return written


def _offer_to_colab_user(path: Path, drive_folder: str | None) -> None:
    """In Colab: copy the file into the learner's Drive folder, or download it."""
    if not _in_colab():
        return
    drive = _drive_folder(drive_folder, mount=True)
    if drive is not None:
        drive.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, drive / path.name)
        print(f"  Copied to your Google Drive: My Drive/{drive_folder}/{path.name} (later notebooks look there).")
        return
    try:
        from google.colab import files

        files.download(str(path))
        print(f"  Downloaded {path.name}: upload it into a later notebook's Files panel (left) to use it there.")
    except Exception as err:
        print(f"  Could not download {path.name} ({type(err).__name__}: {err}); it stays at {path} in this runtime.")


# --------------------------------------------------------------------------------------------
# loading


def causal_self_attention(Attention: type) -> Callable[..., Any]:
    """Chapter 5's ``CausalSelfAttention(d_model, n_heads, bias, rope, rope_base, fused)`` made of a
    chapter-3 ``Attention`` class: GPT-2's settings (bias=True, rope=False) are exactly
    ``Attention(d_model, n_heads, causal=True, fused=fused)``, so the block holds the learner's own
    Attention; LLaMA's switches (no biases, RoPE) are not part of chapter 3, so those use the
    reference ``solutions.blocks.CausalSelfAttention``."""
    from solutions import blocks

    def CausalSelfAttention(d_model: int, n_heads: int, bias: bool = True, rope: bool = False,
                            rope_base: float = 10000.0, fused: bool = False):
        if bias and not rope:
            return Attention(d_model, n_heads, causal=True, fused=fused)
        return blocks.CausalSelfAttention(d_model, n_heads, bias=bias, rope=rope, rope_base=rope_base, fused=fused)

    CausalSelfAttention.made_of = Attention
    return CausalSelfAttention


# parts that later chapters use under another name, made from a learner's part: name -> (the
# exercise it is made of, how)
DERIVED: dict[str, tuple[str, Callable[[Any], Any]]] = {"CausalSelfAttention": ("Attention", causal_self_attention)}


@dataclasses.dataclass
class ChapterParts:
    """What was loaded for one chapter."""

    chapter: str
    path: Path | None                       # the file, or None when there is none
    module: types.ModuleType | None
    mine: list[str]                          # the learner's exercises, loaded
    reference: dict[str, str]                # exercise -> why the reference is used


class Parts(Mapping):
    """The parts of some chapters: the learner's where they saved them, else the reference.

    ``parts.GPT``, ``parts["Embed"]``, ``parts.CausalSelfAttention`` (built from the learner's
    Attention when it is theirs); ``parts.mine``: the names that are the learner's code;
    ``parts.chapters``: a :class:`ChapterParts` per chapter; ``parts.report()``: the text the
    switch prints."""

    def __init__(self) -> None:
        self._objects: dict[str, Any] = {}
        self.mine: set[str] = set()
        self.chapters: list[ChapterParts] = []

    def __getitem__(self, name: str) -> Any:
        return self._objects[name]

    def __iter__(self):
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._objects[name]
        except KeyError:
            raise AttributeError(f"no part called {name!r}; the parts are: {', '.join(self._objects)}") from None

    def report(self) -> str:
        lines = []
        for ch in self.chapters:
            where = f"{ch.path}" if ch.path else "no saved file"
            lines.append(f"Chapter {_chapter_number(ch.chapter)} ({where}):")
            if ch.mine:
                lines.append(f"  yours:     {', '.join(ch.mine)}")
            if ch.reference:
                reasons: dict[str, list[str]] = {}
                for name, why in ch.reference.items():
                    reasons.setdefault(why, []).append(name)
                for why, names in reasons.items():
                    lines.append(f"  reference: {', '.join(names)} ({why})")
        return "\n".join(lines)


def _read_parts_file(path: Path, chapter: str) -> types.ModuleType:
    """Run a parts file as a module of its own; PartsError with the reason if it is not usable."""
    again = (f"Save it again from chapter {_chapter_number(chapter)}'s notebook (check.save_my_parts()), "
             f"or set use_my_parts = False to use the reference parts.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PartsError(f"{path} cannot be read ({type(err).__name__}: {err}). {again}") from None
    match = re.search(r"^COURSE_VERSION\s*=\s*['\"]([^'\"]*)['\"]", text, re.M)
    if match is None:
        raise PartsError(f"{path} is not a parts file of this course: it has no COURSE_VERSION line. {again}")
    if match.group(1) != solutions.__version__:
        raise PartsError(f"{path} was saved with course version {match.group(1)}, but this notebook is version "
                         f"{solutions.__version__}: its exercises may differ. {again}")
    name = path.stem
    module = types.ModuleType(name)
    module.__file__ = str(path)
    try:
        code = compile(text, str(path), "exec")
    except SyntaxError as err:
        raise PartsError(f"{path} is broken: {err.msg} at line {err.lineno}. {again}") from None
    linecache.checkcache(str(path))  # tracebacks and inspect read the file as it is now
    try:
        exec(code, module.__dict__)
    except Exception as err:
        raise PartsError(f"{path} fails when it runs: {type(err).__name__}: {err}. {again}") from err
    if module.__dict__.get("CHAPTER") != chapter:
        raise PartsError(f"{path} holds the parts of {module.__dict__.get('CHAPTER')!r}, not of {chapter!r}. {again}")
    if not isinstance(module.__dict__.get("VERDICTS"), dict):
        raise PartsError(f"{path} has no VERDICTS table. {again}")
    sys.modules[name] = module  # like an imported module: inspect and pickle find its classes
    return module


def _check_claims(module: types.ModuleType, path: Path, chapter: str, exercises: dict[str, Any]) -> list[str]:
    """The learner's exercises in a parts file; PartsError if one it claims is not really there."""
    verdicts = module.VERDICTS
    again = f"Save it again from chapter {_chapter_number(chapter)}'s notebook, or set use_my_parts = False."
    claimed = [n for n, v in verdicts.items() if v == "passed"]
    for name in claimed:
        if name not in exercises:
            raise PartsError(f"{path} claims {name!r}, which is not an exercise of chapter "
                             f"{_chapter_number(chapter)}. {again}")
        obj = module.__dict__.get(name)
        reference = exercises[name]
        if obj is None:
            raise PartsError(f"{path} says {name} passed its check, but it does not define {name}. {again}")
        if obj is reference or str(getattr(obj, "__module__", "")).startswith("solutions"):
            raise PartsError(f"{path} says {name} passed its check, but its {name} is the course's reference, "
                             f"not your code. {again}")
        kind = "a class" if isinstance(reference, type) else "a function"
        if isinstance(reference, type) != isinstance(obj, type) or not callable(obj):
            raise PartsError(f"{path} says {name} passed its check, but its {name} is not {kind}. {again}")
        if getattr(obj, "__module__", None) != module.__name__:
            raise PartsError(f"{path} says {name} passed its check, but {name} is not defined in that file. {again}")
    return claimed


def my_parts(*chapters: str, drive_folder: str | None = DRIVE_FOLDER, quiet: bool = False) -> Parts:
    """Load the learner's saved parts of ``chapters`` (e.g. "02_embeddings", "05_blocks").

    Each chapter's file is looked for in COURSE_PARTS_DIR if set, else in the working folder, the
    chapter's own folder in a clone of the course, and in Colab ``My Drive/<drive_folder>``. The
    chapters are linked in course order: a later chapter's code sees the earlier chapters' parts
    returned here (the learner's own ``Embed`` inside their ``GPT``), and chapter 5's
    ``CausalSelfAttention`` is the learner's chapter-3 ``Attention`` when that is theirs. An
    exercise without a saved part (no file, failed, never checked) is the reference. Prints
    which parts are whose unless quiet.

    Raises PartsError for a file of another course version, a broken file, or one that does not
    define an exercise its header says passed.
    """
    for ch in chapters:
        if ch not in solutions.CHAPTERS:
            raise PartsError(f"{ch!r} is not a chapter; the chapters are {', '.join(solutions.CHAPTERS)}")
    parts = Parts()
    linked: dict[str, Any] = {}  # earlier chapters' exercises: name -> what later code gets
    for ch in sorted(set(chapters), key=solutions.CHAPTERS.index):
        exercises, used = _chapter_names(ch)
        path = next((f / parts_file_name(ch) for f in _search_folders(ch, drive_folder)
                     if (f / parts_file_name(ch)).is_file()), None)
        module, mine = None, []
        if path is not None:
            module = _read_parts_file(path, ch)
            mine = _check_claims(module, path, ch, exercises)
            namespace = module.__dict__
            for name, reference in {**used, **exercises}.items():
                namespace.setdefault(name, reference)  # what the file lacks: the reference, as the checks do
            for name, value in linked.items():
                if name in namespace:
                    namespace[name] = value  # the earlier parts returned here, not the file's imports
            for name, (source, build) in DERIVED.items():
                if name in namespace and source in parts.mine:
                    namespace[name] = build(linked[source])
        why = {}
        for name in exercises:
            if name in mine:
                continue
            verdict = module.VERDICTS.get(name, "not checked") if module is not None else None
            why[name] = {None: "no saved file", "failed": "failed its check"}.get(verdict, str(verdict))
        for name, reference in exercises.items():
            value = module.__dict__[name] if name in mine else reference
            parts._objects[name] = linked[name] = value
        parts.mine.update(mine)
        parts.chapters.append(ChapterParts(ch, path, module, mine, why))
    for name, (source, build) in DERIVED.items():
        if source in parts._objects:
            if source in parts.mine:
                parts._objects[name] = build(parts._objects[source])
            else:
                from solutions import blocks

                parts._objects[name] = getattr(blocks, name)
    if not quiet:
        print(parts.report())
    return parts


# --------------------------------------------------------------------------------------------
# the capstone: training with the learner's chapter-6 pieces

PIECES = ("get_batch", "cross_entropy", "clip_grad_norm", "lr_at", "weight_decay_groups", "adamw_update")


def train_with_pieces(model, pieces: Mapping[str, Callable], train_data, config, progress: bool = True,
                      deterministic: bool = True, stop_at: int | None = None,
                      max_seconds: float | None = None) -> dict:
    """Train ``model`` with chapter 6's pieces, one call of each per step, as the chapter teaches.

    pieces: name -> function for every name in PIECES (the learner's or the reference's; the
    same pieces on the same model and seed give the same losses). train_data: int64 (n,), the
    token stream (on the CPU). config: a ``TrainConfig``; its batch, seq, steps, max_lr, min_lr,
    warmup_steps (lr_at's cosine; at most steps), weight_decay, beta1, beta2, grad_clip and seed are used.
    The batches are drawn from a generator seeded with config.seed, on the CPU, then moved to
    the model's device. deterministic: PyTorch's deterministic kernels during the run (the
    default): on the CPU two runs of the same code then give bit-identical losses, where the
    multi-threaded embedding gradient otherwise adds in a varying order (differences of up to
    about 2e-3 after 30 steps, measured). stop_at: stop after that many steps (the schedule still
    spans config.steps); max_seconds: stop after the step during which that much time has passed
    (a short demonstration on a slow machine). Returns {"loss": [float per step done], "lr":
    [...], "seconds": float}. Raises ValueError if a piece is missing.
    """
    import torch

    missing = [p for p in PIECES if p not in pieces]
    if missing:
        raise ValueError(f"pieces lacks {', '.join(missing)}")
    c = config
    device = next(model.parameters()).device
    params = dict(model.named_parameters())
    decay, _ = pieces["weight_decay_groups"](list(params))
    decay = set(decay)
    moments = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in params.items()}
    generator = torch.Generator().manual_seed(c.seed)
    history: dict = {"loss": [], "lr": [], "seconds": 0.0}
    steps: Any = range(c.steps if stop_at is None else min(stop_at, c.steps))
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, unit="step", dynamic_ncols=True)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if deterministic:  # on CUDA some kernels have no deterministic form: warn_only keeps them, silently
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _steps(model, pieces, train_data, c, params, decay, moments, generator, steps, history, progress,
                   max_seconds)
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        if progress:
            steps.close()
    return history


def _steps(model, pieces, train_data, c, params, decay, moments, generator, steps, history, progress,
           max_seconds) -> None:
    import torch

    from solutions.training import random_starts

    device = next(model.parameters()).device
    began = time.perf_counter()
    model.train()
    for step in steps:
        starts = random_starts(len(train_data), c.batch, c.seq, generator)
        x, y = pieces["get_batch"](train_data, starts, c.seq)
        loss = pieces["cross_entropy"](model(x.to(device)), y.to(device))
        model.zero_grad(set_to_none=True)
        loss.backward()
        grads, _ = pieces["clip_grad_norm"]([p.grad for p in params.values()], c.grad_clip)
        lr = pieces["lr_at"](step, c.max_lr, c.min_lr, c.warmup_steps, c.steps)
        with torch.no_grad():
            for (name, p), g in zip(params.items(), grads):
                m, v = moments[name]
                new, m, v = pieces["adamw_update"](p, g, m, v, step + 1, lr, c.beta1, c.beta2, 1e-8,
                                                   c.weight_decay if name in decay else 0.0)
                p.copy_(new)
                moments[name] = (m, v)
        history["loss"].append(loss.item())
        history["lr"].append(lr)
        if progress and step % 10 == 0:
            steps.set_postfix(loss=f"{history['loss'][-1]:.3f}")
        if max_seconds is not None and time.perf_counter() - began > max_seconds:
            break
    history["seconds"] = time.perf_counter() - began
