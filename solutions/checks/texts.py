"""The inputs real text has, for the checks of text exercises, and the driver that calls them.

Clean examples (short, lower-case, one line, normalised, every one different) let through code
that breaks on the first real file. Two families of special values fix that, the text
counterpart of the tensor families (zeros, infinities, ties) of the later chapters:

* the **text family** (:func:`special_texts`, :func:`lone_surrogate`): newlines (``\\n`` and
  ``\\r\\n``), upper case, Unicode that is not normalised (a combining accent, which NFC would
  join with its letter; a ligature and a superscript, which NFKC would replace), leading and
  trailing whitespace, a byte-order mark, the special-token string ``<|endoftext|>``, control
  characters (NUL, escape, delete), spaces other than the ASCII one (no-break, ideographic,
  narrow no-break), and strs that hold surrogates (:func:`lone_surrogates`: a high one, a low
  one, one that ``errors="surrogateescape"`` would turn into a byte, and a high and a low side
  by side, which is two lone surrogates, not one character: none has a UTF-8 form) for the
  exercises whose contract says what happens to one;
* the **size family** (:func:`long_text`, :func:`long_ids`): inputs of thousands of items, so
  that code that recurses once per item, or is quadratic, fails within a check's time budget.

An exercise's ``make_cases(seed)`` draws them with its own ``random.Random(seed)``: the notebook's
seed reproduces every case, and the grader's seed draws other ones.

:func:`twice_driver` calls a plain-data answer the way a program does: twice on the same input
(a function that keeps state between calls, such as a mutable default argument ``counts={}``,
gives itself away), and it names what a comparison cannot take (a numpy integer in a list of
ints) and an error raised without a sentence. Its findings are the check's own sentences,
never an error the answer raised.

This module imports no reference, so it may sit next to a student's answer in the grading sandbox.
"""

from __future__ import annotations

import copy
import random
import re
import types
import unicodedata
from typing import Any, Callable

from solutions.checks.lazy import is_tensor

ENDOFTEXT = "<|endoftext|>"  # GPT-2's special token, written as text

_WORDS = [
    "the", "cat", "sat", "on", "mat", "low", "lower", "newest", "widest", "hello", "world",
    "token", "data", "and", "a", "to", "be", "or", "not",
]
# words with accented letters (written precomposed, NFC): normalising them changes their bytes
_ACCENTED = ["café", "naïve", "résumé", "façade", "déjà", "über", "Ångström", "niño"]
# characters that NFKC replaces: ligatures, a superscript, a full-width letter, a fraction
_COMPATIBILITY = ["ﬁ", "ﬂ", "ﬀ", "²", "ｆ", "½"]
# whitespace that str.strip() removes: space, tab, new line, no-break space, ideographic space
_EDGE_SPACE = [" ", "  ", "\t", "\n", " \n", "\u00a0", "\u3000 "]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def special_texts(rng: random.Random) -> list[tuple[str, str]]:
    """(label, text) pairs, one per member of the text family, drawn from ``rng``.

    Each text repeats its special feature, so that byte-pair training learns merges from it
    and code that changes the text first (lower-cases it, normalises it, strips it, reads it
    line by line, decodes a BOM away) gets other results.
    """
    accented = [rng.choice(_ACCENTED) for _ in range(3)]
    compat = [rng.choice(_COMPATIBILITY) for _ in range(2)]
    return [
        ("text with newlines",
         f"{_words(rng, 2)}\n{_words(rng, 2)}\n\n{_words(rng, 1)}\r\n{_words(rng, 2)}\n"),
        ("text with upper case",
         f"{_words(rng, 2).upper()} {_words(rng, 2).title()} {_words(rng, 1).upper()}"),
        ("accents as combining marks (NFD)",
         unicodedata.normalize("NFD", " ".join(accented * 2))),
        ("accents precomposed and as combining marks",
         f"{accented[0]} {unicodedata.normalize('NFD', accented[0])} {accented[1]}"),
        ("ligatures and other compatibility characters",
         f"{compat[0]}ne {compat[0]}sh {compat[1]}{compat[1]} {_words(rng, 1)}"),
        ("leading and trailing whitespace",
         f"{rng.choice(_EDGE_SPACE)}{_words(rng, 3)}{rng.choice(_EDGE_SPACE)}"),
        ("a byte-order mark first", f"\ufeff{_words(rng, 3)}"),
        ("the special-token string <|endoftext|>", f"{_words(rng, 2)}{ENDOFTEXT}{_words(rng, 1)}"),
        ("control characters (NUL, escape, delete)",
         f"{_words(rng, 1)}\x00{_words(rng, 1)}\x1b[0m\x7f {_words(rng, 1)}\x00"),
        # web text is full of them; each is 2 or 3 UTF-8 bytes, and none is the space 0x20
        ("spaces other than ' ' (no-break U+00A0, ideographic U+3000, narrow no-break U+202F)",
         f"{_words(rng, 1)}\u00a0{_words(rng, 1)}\u00a0{_words(rng, 1)}\u3000{_words(rng, 1)}"
         f"\u202f{_words(rng, 1)}\u00a0"),
    ]


def lone_surrogates(rng: random.Random) -> list[tuple[str, str]]:
    """(label, text) pairs of strs with surrogates, none of which has UTF-8 bytes.

    A guard written for one kind only (high surrogates), ``errors="surrogateescape"`` (which
    turns U+DC80..U+DCFF into the bytes 0x80..0xFF) and a round trip through UTF-16 with
    ``surrogatepass`` (which joins a high and a low surrogate into one character) each let one
    of them through.
    """
    def around(middle: str) -> str:
        return f"{_words(rng, 1)} {middle} {_words(rng, 1)}"

    high, low = rng.randrange(0xD800, 0xDC00), rng.randrange(0xDC00, 0xE000)
    return [
        ("a lone high surrogate (U+D800..U+DBFF)", around(chr(high))),
        ("a lone low surrogate (U+DC00..U+DFFF)", around(chr(rng.randrange(0xDC00, 0xDC80)))),
        ("a lone surrogate from U+DC80..U+DCFF (what errors='surrogateescape' makes of a byte)",
         around(chr(rng.randrange(0xDC80, 0xDD00)))),
        ("a high and a low surrogate side by side (in a str, two lone surrogates: not one character)",
         around(chr(high) + chr(low))),
    ]


def long_text(rng: random.Random, n_chars: int) -> str:
    """About ``n_chars`` characters of text over many lines: words, capitals, accents, digits,
    punctuation, an emoji now and then; words repeat, so byte pairs repeat too."""
    parts: list[str] = []
    size = 0
    while size < n_chars:
        roll = rng.random()
        if roll < 0.7:
            word = rng.choice(_WORDS)
        elif roll < 0.8:
            word = rng.choice(_WORDS).title()
        elif roll < 0.88:
            word = rng.choice(_ACCENTED)
        elif roll < 0.95:
            word = str(rng.randrange(1000))
        else:
            word = rng.choice(["😀", "日本", "—", "!", "?", ","])
        sep = "\n" if rng.random() < 0.08 else " "
        parts.append(word + sep)
        size += len(word) + 1
    return "".join(parts)[:n_chars]


def long_ids(rng: random.Random, n: int, alphabet: list[int]) -> list[int]:
    """``n`` ids drawn from a small ``alphabet`` (so pairs repeat and runs occur)."""
    return [rng.choice(alphabet) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# the driver


class CheckSentence(Exception):
    """A finding of the check about the answer's behaviour, not an error the answer raised."""


# The check framework prints an outcome of this kind as the check's own sentence, without
# "raised": "<exercise> on <case>: <sentence>" (solutions.checks.core, the kind it uses for
# parameter mismatches). Named here so that the wire, which carries only the name, keeps it.
CheckSentence.__name__ = CheckSentence.__qualname__ = "ParameterMismatch"

# the types a check can compare; a subclass (Counter, defaultdict) travels as its base type
_PLAIN = (type(None), bool, int, float, str, bytes, bytearray, list, tuple, dict)


def _foreign(value: Any, where: str = "the result", depth: int = 0) -> tuple[str, Any] | None:
    """(where, value) of the first part of ``value`` that is not a plain Python value."""
    if is_tensor(value) or depth > 20:
        return None  # tensors are compared as tensors; a deep value is the wire's business
    if not isinstance(value, _PLAIN):
        return where, value
    if isinstance(value, dict):
        for key, item in dict.items(value):
            found = _foreign(key, f"a key of {where}", depth + 1) or _foreign(
                item, f"a value of {where}", depth + 1
            )
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _foreign(item, f"item {i} of {where}" if where != "the result" else f"item {i}", depth + 1)
            if found:
                return found
    return None


def _alike(a: Any, b: Any) -> bool:
    """Whether two results are the same value of the same types (dict order included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _alike(ka, kb) and _alike(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items())
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_alike(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b) or (a != a and b != b)  # NaN is like NaN
    except Exception:
        return False


def _is_sentence(message: str) -> bool:
    """At least two different words: "counts is empty" and "no pairs" are sentences; "", "empty",
    "nope nope 999", "vocab_size" and "Invalid vocab_size" are not (a name such as vocab_size or
    a number is no word: it says which, not why)."""
    words = set()
    for token in message.split():
        word = token.strip(".,:;!?()[]{}<>\"'`-").replace("'", "")
        if len(word) >= 2 and word.isalpha():
            words.add(word.lower())
    return len(words) >= 2


# Python's own messages for min() or max() of nothing (3.11 and 3.12+): the answer let an empty
# input fall through to a built-in instead of refusing it with a sentence of its own
_BUILTIN_EMPTY = re.compile(r"^(min|max)\(\) (arg is an empty sequence|iterable argument is empty)$")


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def twice_driver(answer: Callable) -> Callable:
    """Call ``answer`` twice on equal copies of each input, as a program calls a function.

    The first call's outcome is the answer's outcome, unless the check has something to say:

    * the second call disagrees with the first: the function keeps state between calls (a
      mutable default argument, a global, a cache keyed on part of the input);
    * the function has a mutable default argument, and a fresh copy of it (that default as it
      was when the check started) gives another result: earlier calls left state in the default;
    * a ValueError without a sentence (the exercises ask for one that says why), or with
      Python's own message for min() or max() of an empty sequence;
    * a result that holds something other than plain Python values (a numpy integer).
    """

    # the mutable defaults as def made them (or as they are when the check starts), for a fresh
    # copy of the function: a function whose default fills up gives the same result twice on one
    # input, but not what a fresh copy gives
    pristine = _mutable_defaults(answer)

    def drive(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        again = copy.deepcopy((args, kwargs))
        fresh_args = copy.deepcopy((args, kwargs)) if pristine else None
        first, first_error = _call(answer, args, kwargs)
        second, second_error = _call(answer, *again)
        if first_error is None and first is second and isinstance(first, (list, dict, bytearray)):
            raise CheckSentence(_state_kept(
                f"returned the very same {type(first).__name__} object as the first call, not a new "
                f"one (whatever one caller changes in it, the next one gets)"
            ))
        if not _same_outcome(first, first_error, second, second_error):
            raise CheckSentence(_state_kept(
                f"gave {_outcome_text(second, second_error)}, but the first call gave "
                f"{_outcome_text(first, first_error)}"
            ))
        if pristine:
            fresh, fresh_error = _call(_fresh_copy(answer, pristine), *fresh_args)
            if not _same_outcome(first, first_error, fresh, fresh_error):
                names = ", ".join(f"{name}={_short(value, 30)}" for name, value in {**pristine[0], **pristine[1]}.items())
                raise CheckSentence(
                    f"it gave {_outcome_text(first, first_error)}, but a fresh copy of the function, "
                    f"with its default arguments as def made them ({names}), gives "
                    f"{_outcome_text(fresh, fresh_error)} on the same input: the earlier calls left "
                    f"something in a default argument, and this call started from it (state kept "
                    f"between calls). A default is made once, when def runs, and shared by every call: "
                    f"default to None and make a new dict or list inside the function."
                )
        if first_error is not None:
            if isinstance(first_error, ValueError) and _BUILTIN_EMPTY.match(str(first_error)):
                raise CheckSentence(
                    f"it raised {type(first_error).__name__}({str(first_error)!r}): that is Python's "
                    f"own message from min() or max() of an empty sequence, which your code let "
                    f"through, not a sentence of yours. Handle this input yourself: where the exercise "
                    f"asks for an error, raise a ValueError with a sentence that says what is wrong "
                    f"with the input; where it does not, return the result this input has."
                ) from first_error
            if isinstance(first_error, ValueError) and not _is_sentence(str(first_error)):
                raise CheckSentence(
                    f"it raised {type(first_error).__name__}({str(first_error)!r}), without a "
                    f"sentence that says why; the exercise asks for an error message that tells "
                    f"the caller what is wrong with the input."
                ) from first_error
            raise first_error
        found = _foreign(first)
        if found is not None:
            where, value = found
            numpy = type(value).__module__ == "numpy"
            raise CheckSentence(
                f"{where} is a {_type_name(value)} ({_short(value)}), not a plain Python value: "
                + ("numpy's numbers look like ints and floats but are other types. " if numpy else "")
                + "The exercise returns ints, strs, lists, tuples and dicts of them."
            )
        return first

    drive.__name__ = getattr(answer, "__name__", "answer")
    drive.__wrapped__ = answer
    return drive


_MUTABLE = (dict, list, set, bytearray)


def _mutable_defaults(answer: Callable) -> tuple[dict, dict] | None:
    """(positional defaults by name, keyword-only defaults), deep-copied, of a plain function
    that has a mutable default; None for any other callable."""
    if not isinstance(answer, types.FunctionType):
        return None
    code = answer.__code__
    defaults = answer.__defaults__ or ()
    names = code.co_varnames[code.co_argcount - len(defaults):code.co_argcount]
    positional = dict(zip(names, defaults))
    keyword = dict(answer.__kwdefaults__ or {})
    if not any(isinstance(v, _MUTABLE) for v in (*positional.values(), *keyword.values())):
        return None
    try:
        return copy.deepcopy(positional), copy.deepcopy(keyword)
    except Exception:
        return None


def _fresh_copy(answer: types.FunctionType, pristine: tuple[dict, dict]) -> Callable:
    positional, keyword = copy.deepcopy(pristine)
    fresh = types.FunctionType(answer.__code__, answer.__globals__, answer.__name__,
                               tuple(positional.values()) or None, answer.__closure__)
    fresh.__kwdefaults__ = keyword or None
    return fresh


def _state_kept(what: str) -> str:
    return (
        f"called again with the same input, it {what}. The function keeps state between calls (a "
        f"mutable default argument such as counts={{}} is made once and shared by every call; so is "
        f"a global or a cache): make each call start afresh."
    )


def _call(answer: Callable, args: tuple, kwargs: dict) -> tuple[Any, BaseException | None]:
    __tracebackhide__ = True
    try:
        return answer(*args, **kwargs), None
    except Exception as exc:  # the answer's own error: reported by the check
        return None, exc


def _same_outcome(a: Any, a_error: Any, b: Any, b_error: Any) -> bool:
    if a_error is not None or b_error is not None:
        return (
            a_error is not None and b_error is not None
            and type(a_error) is type(b_error) and str(a_error) == str(b_error)
        )
    return _alike(a, b)


def _outcome_text(value: Any, error: BaseException | None) -> str:
    if error is not None:
        return f"the error {type(error).__name__}: {_short(str(error))}"
    return _short(value)


# --------------------------------------------------------------------------------------------
# what a wrong answer did to the text


def _without_leading_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


# (what the answer did, as "you ...", the change): the ways code changes a text before working on it
TEXT_CHANGES: list[tuple[str, Callable[[str], str]]] = [
    ("lower-cased it", str.lower),
    ("stripped the whitespace at its ends", str.strip),
    *[(f"normalised it to {form}", lambda t, form=form: unicodedata.normalize(form, t))
      for form in ("NFC", "NFD", "NFKC", "NFKD")],
    ("dropped its byte-order mark (U+FEFF), as the utf-8-sig codec does", _without_leading_bom),
    ("turned each \\r\\n into \\n", lambda t: t.replace("\r\n", "\n")),
    ("took out its newlines", lambda t: "".join(t.splitlines())),
    ("turned each no-break space (U+00A0) into a space", lambda t: t.replace("\u00a0", " ")),
    ("turned each ideographic space (U+3000) into a space", lambda t: t.replace("\u3000", " ")),
    ("turned its spaces other than ' ' (no-break, ideographic, narrow no-break) into ' '",
     lambda t: "".join(" " if c.isspace() and c not in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85" else c for c in t)),
]


def changed_text(text: str, actual: Any, result_of: Callable[[str], Any],
                 same: Callable[[Any, Any], bool] = _alike) -> str | None:
    """What was done to ``text`` if ``actual`` is the right result for a changed text, else None.

    ``result_of(changed_text)`` is the right result for that text (the reference's, computed
    by the trusted check). Returns the phrases of :data:`TEXT_CHANGES` that fit, joined by "or"
    ("normalised it to NFC or normalised it to NFKC": on this text both give the same).
    """
    fits = []
    for what, change in TEXT_CHANGES:
        changed = change(text)
        if changed == text:
            continue  # this text does not tell that change apart
        try:
            if same(actual, result_of(changed)):
                fits.append(what)
        except Exception:  # the changed text may have no result (an error): not this change
            continue
    return " or ".join(fits) or None


def changed_text_hint(what: str) -> str:
    return (
        f"your result is the right one for the text after you {what}; the exercise takes the text "
        f"exactly as given: every character, in the form it was written (case, accents, whitespace "
        f"and newlines included)."
    )
