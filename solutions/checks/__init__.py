"""Checks for every exercise of the course, used the same way in every notebook::

    from solutions import checks as check
    check.merge(merge)        # compares your `merge` with the reference; explains a mistake
    check.summary()           # the score an instructor would see

Each chapter has a module here with one :class:`~solutions.checks.core.Spec` per exercise.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator, Mapping
from typing import Callable

import solutions
from solutions.checks.core import (
    PUBLIC_SEED,
    Case,
    CheckFailure,
    Mistake,
    NotImplementedYet,
    Spec,
    _RESULTS,
    case_inputs,
    check_function,
)

class _Specs(Mapping):
    """Every exercise's spec by name, in course order; a chapter's module loads when first needed.

    One module per chapter, named after it ("01_tokenization" -> solutions.checks.tokenization),
    each defining SPECS; the list of chapters is solutions.CHAPTERS. Loading lazily keeps a
    chapter-1 notebook (plain Python) from importing torch and every later chapter's references:
    ``SPECS.get("merge")`` loads chapter 1 only; iterating loads them all.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Spec] = {}
        self._loaded: set[str] = set()

    def _load(self, chapter: str) -> list[Spec]:
        module = importlib.import_module(f"solutions.checks.{chapter.split('_', 1)[1]}")
        if chapter not in self._loaded:
            for spec in module.SPECS:
                if spec.name in self._by_name:
                    raise RuntimeError(f"two exercises are called {spec.name!r}: names must be unique")
                self._by_name[spec.name] = spec
            self._loaded.add(chapter)
        return list(module.SPECS)

    def _all(self) -> dict[str, Spec]:
        if len(self._loaded) < len(solutions.CHAPTERS):
            # course order, whatever order the chapters were loaded in
            self._by_name = {s.name: s for c in solutions.CHAPTERS for s in self._load(c)}
        return self._by_name

    def __getitem__(self, name: str) -> Spec:
        for chapter in solutions.CHAPTERS:
            if name in self._by_name:
                break
            self._load(chapter)
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def chapter(self, chapter: str) -> list[Spec]:
        return self._load(chapter)


SPECS: Mapping[str, Spec] = _Specs()


def specs_for(chapter: str) -> list[Spec]:
    """The specs of one chapter, in the order the notebook asks for them."""
    if chapter not in solutions.CHAPTERS:
        return []
    return SPECS.chapter(chapter)


def __getattr__(name: str) -> Callable[..., None]:
    # `check.merge(merge)`: one entry point per exercise, made from its spec
    spec = SPECS.get(name)
    if spec is None:
        raise AttributeError(f"there is no check called {name!r}; the checks are: {', '.join(SPECS)}")
    return functools.partial(_check_own_code, spec)


def _check_own_code(spec, fn, **kwargs) -> None:
    """The check cell's entry: refuses the course's own reference, then checks ``fn``."""
    __tracebackhide__ = True
    reference = spec.reference
    if fn is reference or (isinstance(fn, type) and isinstance(reference, type) and issubclass(fn, reference)) or (
        str(getattr(fn, "__module__", "") or "").startswith("solutions.")
    ):
        _RESULTS[spec.name] = (spec, False)
        raise CheckFailure(
            f"check.{spec.name} was given the course's reference ({getattr(fn, '__module__', '?')}."
            f"{getattr(fn, '__qualname__', '?')}), not your own code: it earns no points, and the grader "
            f"flags it for the instructor."
        )
    result = check_function(spec, fn, **kwargs)
    _PASSED_CODE[spec.name] = fn  # what passed, for save_my_parts (the verdict stays in _RESULTS)
    return result


# exercise name -> the function or class that last passed its check in this kernel
_PASSED_CODE: dict[str, Callable] = {}


def save_my_parts(chapter: str | None = None, *, folder: str | None = None,
                  drive_folder: str | None = "transformer-course") -> None:
    """Save your exercises that passed their checks in this kernel, for later notebooks.

    Writes one plain Python file per chapter, ``my_parts_<chapter>.py`` (the course version and
    every check's verdict in its header, then your code as you wrote it), beside the notebook,
    or into ``folder``. In Colab it is copied into ``My Drive/<drive_folder>`` (Google asks you
    to allow access), or downloaded if you decline or pass drive_folder=None. A later notebook
    loads it with its switch ``use_my_parts = True``. Returns None; raises
    solutions.parts.PartsError for an unknown chapter.
    """
    from solutions.parts import save_parts  # notebook tooling: loaded only when asked for

    save_parts(_RESULTS, _PASSED_CODE, chapter=chapter, folder=folder, drive_folder=drive_folder)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(SPECS))


def inputs(name: str, number: int, *, seed: int = PUBLIC_SEED, with_kwargs: bool = False):
    """The arguments of test input ``number`` of check ``name``, to call your function on them.

    A failing check prints the line to use, e.g. ``merge(*check.inputs("merge", 4))``. Each call
    gives fresh copies, so your function may change them freely.
    """
    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(f"there is no check called {name!r}; the checks are: {', '.join(SPECS)}")
    case = case_inputs(spec, number, seed=seed)
    from solutions.checks.modules import build_init, build_value

    # an object such as a Config travels in a case as plain data (modules.built): build it here
    args = tuple(build_value(a) for a in case.args)
    kwargs = {k: build_value(v) for k, v in case.kwargs.items()}
    if getattr(spec.driver, "wants_class", False) and args and isinstance(args[0], dict):
        args = (build_init(args[0]), *args[1:])  # a module case's init: its arguments
    return (args, kwargs) if with_kwargs else args


def probe_inputs(name: str, number: int, *, seed: int = PUBLIC_SEED) -> tuple:
    """Like :func:`inputs`, for an exercise that takes a module: (module, *other arguments)."""
    from solutions.checks.modules import build_probe

    kind, weights, *rest = inputs(name, number, seed=seed)
    return (build_probe(kind, weights), *rest)


def passed(*names: str) -> bool:
    """Whether every named check has passed in this kernel (demonstrations use it as a switch)."""
    return all(_RESULTS.get(name, (None, False))[1] for name in names)


def summary(chapter: str | None = None) -> None:
    """Print which exercises pass in this kernel and the points they are worth.

    This is what the autograder would give for the same code on the notebook's inputs; the
    grader uses fresh inputs, so an answer that only works on these may still lose points.
    """
    chapters = [chapter] if chapter else sorted({s.chapter for s, _ in _RESULTS.values()})
    if not chapters:
        print("No check has run yet: run the check cells above first.")
        return
    for ch in chapters:
        specs = specs_for(ch)
        total = sum(s.points for s in specs)
        earned = 0
        print(f"Chapter {ch}:")
        for spec in specs:
            _, passed = _RESULTS.get(spec.name, (spec, None))
            mark = {True: "✔ passed", False: "✘ failed", None: "· not run"}[passed]
            earned += spec.points if passed else 0
            print(f"  {mark:10} {spec.name:24} {spec.points} point{'s' if spec.points != 1 else ''}")
        print(f"Score: {earned}/{total}")


__all__ = ["Case", "CheckFailure", "Mistake", "NotImplementedYet", "Spec", "PUBLIC_SEED", "SPECS", "inputs", "passed", "probe_inputs", "save_my_parts", "specs_for", "summary"]
