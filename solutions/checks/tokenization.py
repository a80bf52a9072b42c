"""Check specs for chapter 1, tokenization: one :class:`Spec` per exercise, in notebook order.

Inputs come from ``random.Random(seed)``: a mix of English, accented letters, emoji, CJK text and
whitespace runs; then the inputs real text has (:mod:`solutions.checks.texts`): newlines, upper
case, text that is not Unicode-normalised, whitespace at the ends, a byte-order mark, the string
"<|endoftext|>", spaces other than ' ', lone surrogates of every kind where the contract says
what happens to them, a text encoded again under other merges, merges with ids past 512, and
inputs of thousands of ids or characters. Every answer is called
twice on each input (``twice_driver``), so state kept between calls shows. Every check takes
well under a second.
"""

from __future__ import annotations

import random
import unicodedata
from typing import Any, Optional

import regex

from solutions import tokenization as ref
from solutions.checks import texts
from solutions.checks.core import Case, Mistake, Spec
from solutions.checks.texts import (
    changed_text, changed_text_hint, long_ids, long_text, special_texts, twice_driver,
)

CHAPTER = "01_tokenization"

_PIECES = [
    "the cat sat on the mat", "aaabdaaabac", "hello world", "low lower lowest newer wider",
    "café naïve façade", "😀 emoji 🚀", "日本語のテキスト", "  spaces   and\n\nnewlines\t",
    "x = f(a, b) + 42", "ababababab", "ünïcödé", "🙂🙂🙂", "Κόσμε", "zzz zz z",
]


def _text(rng: random.Random, n_pieces: int) -> str:
    return " ".join(rng.choice(_PIECES) for _ in range(n_pieces))


# Code points at the edges of UTF-8's 1-, 2-, 3- and 4-byte forms, and a few scripts.
_CHAR_POOL = "ab z\n\t.é\x7f\x80\u07ff\u0800\uffff\U00010000\U0010ffff日本ü😀Κ"


def _random_text(rng: random.Random, max_len: int = 8) -> str:
    return "".join(rng.choice(_CHAR_POOL) for _ in range(rng.randint(1, max_len)))


def _ids(rng: random.Random, alphabet: int, max_len: int) -> list[int]:
    return [rng.randrange(alphabet) for _ in range(rng.randint(2, max_len))]


# --- 1. text_to_bytes -------------------------------------------------------------------------


def _cases_text_to_bytes(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case(("",), label="the empty text"),
        Case(("hello",), label="ASCII"),
        Case(("café 日本 😀!",), label="1- to 4-byte characters"),
        Case(("\x7f\x80\u07ff\u0800\uffff\U00010000\U0010ffff",), label="the edges of each UTF-8 length"),
        Case(("ﬁne cafe\u0301 Å",), label="a ligature and combining accents, kept as they are"),
        Case((_text(rng, 3),), label="a sentence"),
    ]
    cases += [Case((_random_text(rng),), label="random characters") for _ in range(10)]
    cases += [Case((text,), label=label) for label, text in special_texts(rng)]
    cases += [Case((text,), label=label) for label, text in texts.lone_surrogates(rng)]
    cases.append(Case((long_text(rng, 3000),), label="3,000 characters"))
    return cases


def _code_points(text: str) -> list[int]:
    return [ord(ch) for ch in text]


def _bytes_ignoring_errors(text: str) -> list[int]:
    return list(text.encode("utf-8", errors="ignore"))


def _bytes_replacing_errors(text: str) -> list[int]:
    return list(text.encode("utf-8", errors="replace"))


def _bytes_escaping_surrogates(text: str) -> list[int]:
    return list(text.encode("utf-8", errors="surrogateescape"))


def _bytes_joining_surrogate_pairs(text: str) -> list[int]:
    try:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        pass
    return list(text.encode("utf-8"))


def _diagnose_text_to_bytes(case: Case, actual: Any, expected: Any) -> Optional[str]:
    if isinstance(actual, (bytes, bytearray)):
        return "you returned a bytes-like object; the exercise asks for a list of ints."
    (text,) = case.args
    what = changed_text(text, actual, ref.text_to_bytes)
    return changed_text_hint(what) if what else None


# --- 2. get_pair_counts -----------------------------------------------------------------------


def _cases_get_pair_counts(seed: int) -> list[Case]:
    rng = random.Random(seed)
    # a case with pairs comes first: a function that keeps its counts between calls (a mutable
    # default) then shows it at once, not as a wrong answer for no ids
    cases = [
        Case(([1, 2],), label="one pair"),
        Case(([],), label="no ids"),
        Case(([7],), label="one id"),
        Case(([5, 5, 5, 5],), label="a run: overlapping pairs"),
        Case(([1, 2, 3, 1, 2],), label="a repeated pair"),
        Case(([300, 2, 300, 2, 300],), label="ids above 255"),
    ]
    cases += [Case((_ids(rng, rng.randint(2, 4), 20),), label="random ids") for _ in range(10)]
    cases += [Case((ref.text_to_bytes(text),), label=f"the bytes of {label}") for label, text in special_texts(rng)]
    cases.append(Case((long_ids(rng, 5000, [97, 98, 32, 256, 300, 301]),), label="5,000 ids"))
    return cases


def _pairs_stepping_by_two(ids: list[int]) -> dict:
    counts: dict = {}
    for pair in zip(ids[::2], ids[1::2]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _pairs_missing_last(ids: list[int]) -> dict:
    counts: dict = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


# --- 3. most_frequent_pair --------------------------------------------------------------------


def _cases_most_frequent_pair(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case(({(1, 2): 3},), label="one pair"),
        Case(({(1, 2): 1, (3, 4): 5, (0, 0): 2},), label="no tie"),
        Case(({(2, 0): 4, (1, 9): 4},), label="a tie decided by the first id"),
        Case(({(1, 5): 2, (1, 3): 2, (0, 7): 1},), label="a tie decided by the second id"),
        Case(({(9, 9): 3, (300, 1): 3, (4, 8): 3, (5, 0): 1},), label="a three-way tie"),
    ]
    for _ in range(6):
        pairs = rng.sample([(a, b) for a in range(6) for b in range(6)], rng.randint(3, 10))
        top = rng.randint(2, 6)
        counts = {p: rng.randint(1, top - 1) for p in pairs}
        # several pairs share the top count, and the smallest of them is never listed first
        tied = sorted(rng.sample(pairs, rng.randint(2, min(3, len(pairs)))), reverse=True)
        for p in tied:
            counts[p] = top
        counts = dict(sorted(counts.items(), key=lambda kv: kv[0], reverse=True))
        cases.append(Case((counts,), label=f"random counts with a tie at {top}"))
    for _ in range(4):
        counts = {(rng.randrange(4), rng.randrange(4)): rng.randint(1, 9) for _ in range(rng.randint(1, 8))}
        cases.append(Case((counts,), label="random counts"))
    cases.append(Case(({},), label="empty counts"))
    # Merged ids go past 255: a tie rule that packs a pair into one number, a * 256 + b or
    # (a << 8) | b, orders such pairs wrongly. The smallest pair is never listed first.
    cases.append(Case(({(1, 0): 5, (0, 300): 5, (0, 2): 1},), label="a tie where a second id is 256 or more"))
    cases.append(Case(({(300, 2): 4, (299, 4000): 4, (1, 1): 2},), label="a tie between merged ids"))
    # ids have no upper bound (cl100k has 100,256 tokens): a * 65536 + b fails here, a * 10**6 + b
    # on the next case
    cases.append(Case(({(1, 0): 2, (0, 70000): 2, (2, 2): 1},), label="a tie where a second id is 65,536 or more"))
    cases.append(Case(({(3, 7): 6, (2, rng.randrange(10**7, 10**9)): 6, (0, 1): 5},), label="a tie where a second id is in the millions"))
    for _ in range(3):
        pairs = [(rng.randrange(3), rng.randrange(240, 600)) for _ in range(6)]
        counts = {p: rng.randint(1, 3) for p in pairs}
        for p in rng.sample(sorted(counts), 2):
            counts[p] = 4
        counts = dict(sorted(counts.items(), reverse=True))
        cases.append(Case((counts,), label="a tie among ids up to 600"))
    # the size family: the counts of a text of thousands of ids, after some merges
    ids = long_ids(rng, 4000, list(range(60)) + list(range(256, 300)))
    counts = ref.get_pair_counts(ids)
    top = max(counts.values())
    for p in rng.sample(sorted(counts), 3):
        counts[p] = top
    cases.append(Case((dict(sorted(counts.items(), reverse=True)),), label=f"{len(counts):,} pairs with a tie"))
    return cases


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(type(x) is int for x in value)


# the numbers a pair is packed into, one per factor a learner might pick
_PACKING_FACTORS = (256, 1000, 1024, 10_000, 65_536, 100_000, 1_000_000, 2**20, 2**24, 2**31, 2**32)


def _packed(pair: tuple[int, int]) -> tuple[int, ...]:
    a, b = pair
    return tuple(a * factor + b for factor in _PACKING_FACTORS)


def _diagnose_most_frequent_pair(case: Case, actual: Any, expected: Any) -> Optional[str]:
    (counts,) = case.args
    if not _is_pair(actual) or actual not in counts or not _is_pair(expected):
        return None
    if counts[actual] == counts[expected]:
        if any(x < y for x, y in zip(_packed(actual), _packed(expected))) and max(actual + expected) >= 256:
            return (
                f"{actual} and {expected} tie at {counts[expected]} occurrences, and {expected} is the "
                f"smaller pair. A pair packed into one number (a * 256 + b, (a << 8) | b, a * 65536 + b, "
                f"...) orders pairs like tuples only while every id is below the factor, and ids have "
                f"no upper bound (merged ids go past 255, a real vocabulary past 65,535): compare the "
                f"pairs themselves."
            )
        return (
            f"{actual} and {expected} tie at {counts[expected]} occurrences; the rule gives a tie to "
            f"the smallest pair (tuples compare element by element)."
        )
    if counts[actual] < counts[expected]:
        return f"{actual} occurs {_times(counts[actual])} but {expected} occurs {_times(counts[expected])}."
    return None


# --- 4. merge ---------------------------------------------------------------------------------


def _cases_merge(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case(([5, 5, 5], (5, 5), 256), label="a run of three: occurrences do not overlap"),
        Case(([5, 5, 5, 5], (5, 5), 256), label="a run of four"),
        Case(([1, 2, 1, 2], (1, 2), 256), label="the pair twice in a row"),
        Case(([1, 2, 3, 1, 2], (1, 2), 300), label="the pair at both ends"),
        Case(([], (1, 2), 256), label="no ids"),
        Case(([3, 1, 2], (1, 2), 256), label="the pair at the end"),
        Case(([2, 1, 3], (1, 2), 256), label="the pair reversed is not the pair"),
        Case(([1, 1, 2], (1, 2), 257), label="the pair after a partial match"),
        Case(([12, 3, 1, 23], (1, 2), 256), label="digits that would join in a string"),
        Case(([3, 4, 5], (1, 2), 256), label="the pair does not occur: still a new list"),
        # merge works for any new_id; one scan left to right never looks at what it wrote
        Case(([5, 5, 5, 5], (5, 5), 5), label="new_id equal to the pair's ids: one scan, what it wrote is not scanned again"),
        Case(([1, 2, 2, 7], (1, 2), 1), label="new_id equal to the pair's first id: one scan"),
    ]
    for _ in range(12):
        ids = _ids(rng, rng.randint(2, 3), 16)
        start = rng.randrange(len(ids) - 1)
        pair = (ids[start], ids[start + 1])
        cases.append(Case((ids, pair, 256 + rng.randint(0, 50)), label="random ids"))
    for label, text in special_texts(rng):
        ids = ref.text_to_bytes(text)
        special = next((i for i in range(len(ids) - 1) if ids[i] < 48 or ids[i] > 127), 0)  # not a letter
        cases.append(Case((ids, (ids[special], ids[special + 1]), 256 + rng.randint(0, 50)), label=f"the bytes of {label}"))
    ids = long_ids(rng, 5000, [97, 98, 99, 256, 257])
    cases.append(Case((ids, (ids[10], ids[11]), 300), label="5,000 ids"))
    return cases


def _merge_without_skipping(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], ids[i]) == pair):
            out.append(ids[i])
    return out


def _merge_dropping_last(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_restarting(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    ids = list(ids)
    while True:
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == pair:
                ids[i : i + 2] = [new_id]
                break
        else:
            return ids


def _merge_first_only(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2 :]
    return list(ids)


# --- 5. train_bpe -----------------------------------------------------------------------------


def _cases_train_bpe(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case(("aaabdaaabac", 259), label="Wikipedia's example"),
        Case(("hello", 256), label="vocab_size=256: no merges"),
        Case(("ab", 300), label="it runs out of pairs"),
        Case(("", 260), label="the empty text"),
        Case(("abc", 100), label="vocab_size too small"),
        Case(("abc", 255), label="vocab_size one too small"),
        Case(("", 100), label="the empty text with vocab_size 100: too small, whatever the text"),
        Case(("é", 256 + 5), label="one character of two bytes: one pair of bytes"),
        Case(("😀", 256 + 5), label="one character of four bytes"),
        Case(("zzyyxx zzyyxx", 262), label="merges learned out of sorted order"),
    ]
    for _ in range(5):
        text = "".join(rng.choice("abcd ") for _ in range(rng.randint(4, 24)))
        cases.append(Case((text, 256 + rng.randint(2, 8)), label="a random text"))
    text = _text(rng, rng.randint(2, 4))
    cases.append(Case((text, 256 + rng.randint(8, 14)), label="a sentence"))
    for label, text in special_texts(rng):  # "<|endoftext|>" included: to train_bpe it is text
        cases.append(Case((text, 256 + rng.randint(6, 10)), label=label))
    cases.append(Case((long_text(rng, 2000), 256 + 12), label="2,000 characters over many lines"))
    return cases


def _is_merges(value: Any) -> bool:
    return isinstance(value, dict) and all(_is_pair(k) and type(v) is int for k, v in value.items())


# where train_bpe's merges go wrong although every helper it calls is right
_HELPERS_ARE_REFERENCES = (
    "The check runs your train_bpe with the reference text_to_bytes, get_pair_counts, "
    "most_frequent_pair and merge in place of yours, so the difference comes from train_bpe's "
    "own steps: what it counts, which counts it passes on, which ids it merges."
)


def _diagnose_train_bpe(case: Case, actual: Any, expected: Any) -> Optional[str]:
    if not _is_merges(actual) or not _is_merges(expected):
        return None
    text, vocab_size = case.args
    what = changed_text(text, actual, lambda t: ref.train_bpe(t, vocab_size))
    if what:
        return changed_text_hint(what)
    newline = ord("\n")
    if any(newline in p for p in expected) and not any(newline in p for p in actual):
        return (
            "none of your merges joins the newline byte (10) to anything, but this text's most "
            "frequent pairs do: a newline is a byte of the text like any other, so train on the "
            "whole text, not line by line."
        )
    if set(actual.items()) == set(expected.items()):
        return None  # the right merges in another order: the difference says so
    if not actual and expected and len(text) < 2:
        return (
            f"you learned no merge from {text!r}, one character, but it is {len(text.encode('utf-8'))} "
            f"UTF-8 bytes: pairs are pairs of bytes, not of characters, so it has pairs to merge."
        )
    if actual and min(actual.values(), default=256) == 255:
        return "new ids start at 256: ids 0..255 are taken by the bytes."
    learned = list(actual.items())
    if len(learned) > len(expected) and learned[: len(expected)] == list(expected.items()):
        return (
            f"{len(learned)} merges instead of {len(expected)}: vocab_size counts the 256 byte tokens "
            f"too, so make at most vocab_size - 256 merges."
        )
    # replay the reference and find the first step where the learner chose another pair
    ids = ref.text_to_bytes(text)
    for step, (pair, new_id) in enumerate(expected.items()):
        if step >= len(learned):
            done = f"your {len(learned)} merges are the first ones" if learned else "you learned no merge"
            return (
                f"{done}, then you stopped; keep merging until vocab_size is reached or no pair is "
                f"left. {_HELPERS_ARE_REFERENCES}"
            )
        got_pair, got_id = learned[step]
        counts = ref.get_pair_counts(ids)
        if got_pair != pair and got_pair in counts and counts[got_pair] == counts[pair]:
            return (
                f"merge {step + 1}: {got_pair} ties with {pair} at {counts[pair]} occurrences; "
                f"ties go to the smallest pair."
            )
        if got_pair != pair:
            return (
                f"merge {step + 1} should merge the most frequent pair {pair} (seen {counts[pair]} "
                f"times), not {got_pair}. {_HELPERS_ARE_REFERENCES}"
            )
        if got_id != new_id:
            return f"merge {step + 1} should get id {new_id}: new ids count up from 256 in the order merges are made."
        ids = ref.merge(ids, pair, new_id)
    return None


# --- 6. encode --------------------------------------------------------------------------------


def _trained_merges(rng: random.Random) -> dict:
    return ref.train_bpe(_text(rng, 6), 256 + rng.randint(8, 20))


def _shuffled(merges: dict, rng: random.Random) -> dict:
    """The same merges listed in another order: the rule says ids, not dict order, decide."""
    items = list(merges.items())
    rng.shuffle(items)
    return dict(items)


def _cases_encode(seed: int) -> list[Case]:
    rng = random.Random(seed)
    merges = _trained_merges(rng)
    cases = [
        Case(("", merges), label="the empty text"),
        Case(("abc", {(98, 99): 256, (97, 98): 257}), label="rank, not position: the leftmost pair is not the first merge"),
        Case(("abcbcbc", {(97, 98): 256, (98, 99): 257}), label="rank, not frequency"),
        Case(("abcd", {(99, 100): 256, (98, 256): 257, (97, 257): 258}), label="merges built on merges"),
        Case(("aaaa", {(97, 97): 256, (256, 256): 257}), label="a run merged twice"),
        Case(("xyxyz", {(120, 121): 257, (121, 120): 256}), label="merges listed out of id order"),
        # rank, leftmost-first, highest-rank-first and smallest-pair-first all disagree here
        Case(("adddb", {(100, 100): 256, (100, 98): 257, (97, 100): 258}), label="rank, not position, not size"),
        Case(("dabda", {(98, 100): 256, (100, 97): 257, (97, 98): 258}), label="rank again, in another layout"),
        Case(("😀 naïve", merges), label="multi-byte characters"),
    ]
    for _ in range(3):
        text = _text(rng, rng.randint(1, 3))
        cases.append(Case((text, merges), label="a sentence"))
    for _ in range(6):
        train_text = "".join(rng.choice("abc ") for _ in range(rng.randint(6, 20)))
        learned = _shuffled(ref.train_bpe(train_text, 256 + rng.randint(3, 8)), rng)
        text = "".join(rng.choice("abc ") for _ in range(rng.randint(3, 14)))
        cases.append(Case((text, learned), label="a random text, merges in random order"))
    # the whole text is one sequence: merges learned across a space apply across it
    cases.append(Case(("ab ab", {(98, 32): 256, (97, 256): 257}), label="a merge across a space: no splitting into words"))
    for label, text in special_texts(rng):
        # merges learned on the text itself, so that changing the text changes its ids
        cases.append(Case((text, ref.train_bpe(text, 256 + rng.randint(6, 10))), label=label))
    cases += [Case((text, merges), label=label) for label, text in texts.lone_surrogates(rng)]
    # one character is several bytes, which merges join; and no merges at all (train_bpe(text, 256))
    cases.append(Case(("é", {(195, 169): 256}), label="one character of two bytes, and a merge of them"))
    cases.append(Case((_text(rng, 2), {}), label="no merges ({}, what train_bpe(text, 256) returns): the bytes"))
    # a real vocabulary has thousands of merges: ids past 512 (a "not a merge" rank of 512 or
    # 1000 must lose to every merge), learned on text the case then encodes
    train_text = long_text(rng, 700)
    many = ref.train_bpe(train_text, 256 + 420)
    cases.append(Case((train_text[:240], many), label=f"{len(many)} merges, ids up to {max(many.values())}"))
    # ids past GPT-2's 50,257 (cl100k has 100,256 tokens): the same merges, numbered from 100,000
    shift = 100_000 - 256
    renumbered = {tuple(i + shift if i >= 256 else i for i in pair): new_id + shift
                  for pair, new_id in list(many.items())[:40]}
    cases.append(Case((train_text[:120], renumbered), label="merges with ids past 100,000, as in a vocabulary of cl100k's size"))
    # the size family, and the same text again under fewer merges: its ids now are other ones
    text = long_text(rng, 1500)
    learned = ref.train_bpe(text, 256 + 16)
    fewer = dict(list(learned.items())[:-4])
    cases.append(Case((text, learned), label="1,500 characters"))
    cases.append(Case((text, fewer), label="the same 1,500 characters again, with the last 4 merges left out"))
    return cases


def _encode_leftmost_pair(text: str, merges: dict) -> list[int]:
    # merges the first adjacent pair that has a merge, whatever its rank
    ids = list(text.encode("utf-8"))
    while True:
        found = next(((a, b) for a, b in zip(ids, ids[1:]) if (a, b) in merges), None)
        if found is None:
            return ids
        ids = ref.merge(ids, found, merges[found])


def _encode_highest_rank_first(text: str, merges: dict) -> list[int]:
    ids = list(text.encode("utf-8"))
    while True:
        known = [p for p in zip(ids, ids[1:]) if p in merges]
        if not known:
            return ids
        pair = max(known, key=merges.get)
        ids = ref.merge(ids, pair, merges[pair])


def _encode_in_dict_order(text: str, merges: dict) -> list[int]:
    ids = list(text.encode("utf-8"))
    for pair, new_id in merges.items():
        ids = ref.merge(ids, pair, new_id)
    return ids


def _encode_most_frequent_first(text: str, merges: dict) -> list[int]:
    # the classic confusion: merging what is frequent in *this* text instead of by rank
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        counts = ref.get_pair_counts(ids)
        known = [p for p in counts if p in merges]
        if not known:
            break
        pair = max(known, key=lambda p: (counts[p], -merges[p]))
        ids = ref.merge(ids, pair, merges[pair])
    return ids


def _encode_code_points(text: str, merges: dict) -> list[int]:
    ids = [ord(ch) for ch in text]
    for pair, new_id in merges.items():
        ids = ref.merge(ids, pair, new_id)
    return ids


def _encode_split_first(text: str, merges: dict) -> list[int]:
    # GPT-2's way, but not this exercise's: merges learned on the whole text also cross spaces
    return [i for chunk in regex.findall(ref.GPT2_SPLIT_PATTERN, text) for i in ref.encode(chunk, merges)]


# ranks a learner might give a pair that is not a merge
_STAND_IN_RANKS = (512, 1000, 1024, 10_000, 50_257, 65_536, 100_000)


def _encode_with_stand_in(text: str, merges: dict, rank: int) -> Optional[list[int]]:
    ids = ref.text_to_bytes(text)
    if not merges or rank > max(merges.values()):
        return None  # the stand-in is right for these merges
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, rank))
        if pair not in merges:
            break
        ids = ref.merge(ids, pair, merges[pair])
    return ids


def _diagnose_encode(case: Case, actual: Any, expected: Any) -> Optional[str]:
    if not isinstance(actual, list) or not all(type(i) is int for i in actual):
        return None
    text, merges = case.args
    made = set(range(256)) | set(merges.values())
    foreign = [i for i in actual if i not in made]
    if ref.ENDOFTEXT in text and 50256 in foreign:
        return (
            "50256 is GPT-2's id for <|endoftext|>, but these merges know no special tokens: here "
            "the string is ordinary text, encoded from its bytes like the rest."
        )
    if foreign:
        return (
            f"your ids hold {foreign[0]}, which none of these merges makes: the ids come from "
            f"somewhere else than these merges (a result kept from an earlier call with other "
            f"merges, such as a cache keyed on the text alone?)."
        )
    what = changed_text(text, actual, lambda t: ref.encode(t, merges))
    if what:
        return changed_text_hint(what)
    start = ref.text_to_bytes(text)
    if len(text) == 1 and actual == start and expected != start:
        pair = next(p for p in zip(start, start[1:]) if p in merges)
        return (
            f"you returned the bytes of {text!r} with no merge applied, but {pair} is adjacent in them "
            f"and is a merge: merges join bytes, not characters, so even a text of one character may "
            f"have merges to apply."
        )
    stand_in = [rank for rank in _STAND_IN_RANKS if actual == _encode_with_stand_in(text, merges, rank)]
    if stand_in:
        rank = f"the rank {stand_in[0]}" if len(stand_in) == 1 else f"a rank such as {stand_in[0]} or {stand_in[-1]}"
        return (
            f"you stopped merging too early, as if a pair that is not a merge had {rank}; "
            f"these merges have ids up to {max(merges.values())}: a pair that is not a merge must lose "
            f"to every merge, whatever its id (a stand-in rank such as 512, 1000 or 50257 does not; "
            f"float('inf') does, or look only at the pairs that are merges)."
        )
    return None


# --- 7. decode --------------------------------------------------------------------------------


def _small_vocab(ids: list[int], merges: dict, rng: random.Random) -> dict:
    """The part of build_vocab(merges) these ids use, plus a few other ids: short to print."""
    vocab = ref.build_vocab(merges)
    keep = set(ids) | set(rng.sample(sorted(vocab), 3))
    return {i: vocab[i] for i in sorted(keep)}


def _cases_decode(seed: int) -> list[Case]:
    rng = random.Random(seed)
    merges = _trained_merges(rng)
    cases = []
    for text, label in [("", "no ids"), ("héllo 😀", "multi-byte characters")] + [
        (_text(rng, rng.randint(1, 3)), "a sentence") for _ in range(4)
    ]:
        ids = ref.encode(text, merges)
        cases.append(Case((ids, _small_vocab(ids, merges, rng)), label=label))
    # one character's bytes spread over two tokens
    split = {0xC3: b"\xc3", 256: b"\xa9!", 104: b"h"}
    cases.append(Case(([104, 0xC3, 256], split), label="a character split across tokens"))
    # bytes that are not valid UTF-8: a lone continuation byte, and half of a 4-byte emoji
    for ids in ([0xFF, 104, 105], list("😀".encode("utf-8"))[:2] + [33]):
        vocab = {i: bytes([i]) for i in sorted(set(ids))}
        cases.append(Case((ids, vocab), label="not valid UTF-8"))
    # a model may stop halfway through a character: the unfinished bytes at the end show as U+FFFD
    for ids in ([104, 0xF0, 0x9F], [104, 105, 0xC3]):
        vocab = {i: bytes([i]) for i in sorted(set(ids))}
        cases.append(Case((ids, vocab), label="an unfinished character at the end"))
    for ids, vocab, label in [
        ([104, 999], {104: b"h", 105: b"i"}, "an id above every id of vocab"),
        ([104, 50], {104: b"h", 105: b"i"}, "an id between ids of vocab"),
        ([256, 7], {256: b"ab", 300: b"abc"}, "a byte id missing from a vocab of merges"),
    ]:
        missing = next(i for i in ids if i not in vocab)
        cases.append(Case((ids, vocab), label=label, mentions=(str(missing),)))
    for label, text in special_texts(rng):
        learned = ref.train_bpe(text, 256 + rng.randint(4, 8))
        ids = ref.encode(text, learned)
        cases.append(Case((ids, _small_vocab(ids, learned, rng)), label=f"the ids of {label}"))
    # GPT-2's id of <|endoftext|>, in a vocab that does not have it: a decoder knows only its vocab
    ids = ref.encode("one", merges) + [50256] + ref.encode("two", merges)
    vocab = _small_vocab([i for i in ids if i != 50256], merges, rng)
    cases.append(Case((ids, vocab), label="id 50256 (GPT-2's <|endoftext|>), not in this vocab", mentions=("50256",)))
    text = long_text(rng, 3000)
    ids = ref.encode(text, merges)
    cases.append(Case((ids, ref.build_vocab(merges)), label=f"{len(ids):,} ids"))
    return cases


def _decode_token_by_token(ids: list[int], vocab: dict) -> str:
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


def _diagnose_decode(case: Case, actual: Any, expected: Any) -> Optional[str]:
    if not isinstance(actual, str) or not isinstance(expected, str):
        return None
    if expected.endswith("\ufffd") and actual == expected.rstrip("\ufffd"):
        return (
            "the bytes of an unfinished character at the end became nothing; they are invalid UTF-8 "
            "like any other and show as U+FFFD. Decode all the bytes at once (an incremental decoder "
            "must be flushed at the end: decode(b'', final=True))."
        )
    what = changed_text(expected, actual, lambda t: t)
    if what is None:
        return None
    return (
        f"your text is the right one after you {what}; decoding gives back exactly the characters "
        f"the bytes hold, in the form they were written."
    )


# --- 8. compression_ratio ---------------------------------------------------------------------


def _cases_compression_ratio(seed: int) -> list[Case]:
    rng = random.Random(seed)
    merges = _trained_merges(rng)
    cases = [
        Case(("café 😀 日本", ref.encode("café 😀 日本", merges)), label="multi-byte characters"),
        Case(("abc", [97, 98, 99]), label="one byte per token"),
        Case(("aabb", [256, 257]), label="a ratio that comes out whole"),
        Case(("", []), label="no tokens"),
        Case(("ab", []), label="text but no tokens"),
    ]
    for _ in range(5):
        text = _text(rng, rng.randint(1, 4)) + _random_text(rng, 4)
        cases.append(Case((text, ref.encode(text, merges)), label="a text and its tokens"))
    for label, text in special_texts(rng):
        cases.append(Case((text, ref.encode(text, merges)), label=label))
    text = long_text(rng, 3000)
    cases.append(Case((text, ref.encode(text, merges)), label="3,000 characters"))
    return cases


def _diagnose_compression_ratio(case: Case, actual: Any, expected: Any) -> Optional[str]:
    if type(actual) is not float:
        return None
    text, ids = case.args
    what = changed_text(text, actual, lambda t: ref.compression_ratio(t, ids))
    # a ratio is one number, which other changes may give by chance: only the spaces are told
    # apart here (the known mistakes say the rest)
    spaces = [p for p in (what or "").split(" or ") if "space (U+" in p or "' '" in p]
    return changed_text_hint(" or ".join(spaces)).replace("your result", "your ratio") if spaces else None


# The wrong ratios refuse no tokens as the exercise asks, so that a learner who refuses them too
# still gets the hint; each stands alone (tests paste one into a notebook as a learner's answer).


def _ratio_of_characters(text: str, ids: list[int]) -> float:
    if not ids:
        raise ValueError("ids is empty: no tokens, no ratio")
    return len(text) / len(ids)


def _ratio_inverted(text: str, ids: list[int]) -> float:
    if not ids:
        raise ValueError("ids is empty: no tokens, no ratio")
    return len(ids) / len(text.encode("utf-8"))


def _ratio_of_stripped_text(text: str, ids: list[int]) -> float:
    if not ids:
        raise ValueError("ids is empty: no tokens, no ratio")
    return len(text.strip().encode("utf-8")) / len(ids)


# ----------------------------------------------------------------------------------------------

_RECURSION_HINT = {
    "RecursionError": "your code calls itself once per id (or per step), and Python stops at about "
    "1,000 nested calls; a real text has thousands of ids: use a loop.",
}

SPECS = [
    Spec(
        name="text_to_bytes",
        chapter=CHAPTER,
        reference=ref.text_to_bytes,
        make_cases=_cases_text_to_bytes,
        mistakes=[
            Mistake(
                "code points",
                "these are Unicode code points (ord), not UTF-8 bytes: in UTF-8 a character outside "
                "ASCII takes 2 to 4 bytes.",
                _code_points,
            ),
            Mistake(
                "errors ignored",
                "a lone surrogate has no UTF-8 bytes, and errors='ignore' drops it without a word: "
                "the text that comes back is not the text given. Let the encoder raise its "
                "UnicodeEncodeError.",
                _bytes_ignoring_errors,
            ),
            Mistake(
                "errors replaced",
                "a lone surrogate has no UTF-8 bytes, and errors='replace' writes '?' in its place "
                "without a word: the text that comes back is not the text given. Let the encoder "
                "raise its UnicodeEncodeError.",
                _bytes_replacing_errors,
            ),
            Mistake(
                "surrogateescape",
                "errors='surrogateescape' turns the lone surrogates U+DC80..U+DCFF into the single "
                "bytes 0x80..0xFF without a word (it exists to carry the bytes of a file name, not "
                "text); every surrogate has no UTF-8 bytes: let the encoder raise its UnicodeEncodeError.",
                _bytes_escaping_surrogates,
            ),
            Mistake(
                "surrogate pairs joined",
                "a high and a low surrogate side by side in a str are two lone surrogates, not the "
                "character the pair means in UTF-16: a round trip through UTF-16 with "
                "'surrogatepass' joins them into a character the text does not hold. Take the text "
                "as given: let the encoder raise its UnicodeEncodeError.",
                _bytes_joining_surrogate_pairs,
            ),
        ],
        diagnose=_diagnose_text_to_bytes,
        driver=twice_driver,
    ),
    Spec(
        name="get_pair_counts",
        chapter=CHAPTER,
        reference=ref.get_pair_counts,
        make_cases=_cases_get_pair_counts,
        mistakes=[
            Mistake(
                "non-overlapping",
                "pairs overlap: [1, 2, 3] has the pairs (1, 2) and (2, 3); every position except "
                "the last starts a pair, not every second one.",
                _pairs_stepping_by_two,
            ),
            Mistake(
                "off by one",
                "the last pair is missing: a list of n ids has n - 1 adjacent pairs.",
                _pairs_missing_last,
            ),
        ],
        error_hints=_RECURSION_HINT,
        driver=twice_driver,
    ),
    Spec(
        name="most_frequent_pair",
        chapter=CHAPTER,
        reference=ref.most_frequent_pair,
        make_cases=_cases_most_frequent_pair,
        diagnose=_diagnose_most_frequent_pair,
        driver=twice_driver,
    ),
    Spec(
        name="merge",
        chapter=CHAPTER,
        reference=ref.merge,
        make_cases=_cases_merge,
        mistakes=[
            Mistake(
                "no skip",
                "after replacing a pair, skip both of its ids: in [5, 5, 5] the pair (5, 5) is "
                "merged once, giving [new_id, 5].",
                _merge_without_skipping,
            ),
            Mistake(
                "drops last",
                "the last id is lost: when the loop stops one short of the end, append the final id.",
                _merge_dropping_last,
            ),
            Mistake(
                "first only",
                "only the first occurrence was replaced: replace every occurrence, left to right.",
                _merge_first_only,
            ),
            Mistake(
                "restarts",
                "you replace an occurrence, then search again from the start, so the ids you wrote are "
                "scanned again: when new_id is one of the pair's ids, a replacement makes a new "
                "occurrence that you merge too. The exercise is one scan left to right: what you "
                "wrote is never looked at again.",
                _merge_restarting,
            ),
        ],
        error_hints=_RECURSION_HINT,
        driver=twice_driver,
    ),
    Spec(
        name="train_bpe",
        chapter=CHAPTER,
        reference=ref.train_bpe,
        make_cases=_cases_train_bpe,
        diagnose=_diagnose_train_bpe,
        ordered=True,  # the merges in the order learned: the order is part of the answer
        uses={f.__name__: f for f in (ref.text_to_bytes, ref.get_pair_counts, ref.most_frequent_pair, ref.merge)},
        points=2,
        error_hints=_RECURSION_HINT,
        driver=twice_driver,
    ),
    Spec(
        name="encode",
        chapter=CHAPTER,
        reference=ref.encode,
        make_cases=_cases_encode,
        uses={f.__name__: f for f in (ref.text_to_bytes, ref.get_pair_counts, ref.merge)},
        mistakes=[
            Mistake(
                "by frequency",
                "merges must be applied by rank (the merge learned first, i.e. the lowest new id, "
                "goes first), not by how often a pair occurs in the text being encoded.",
                _encode_most_frequent_first,
            ),
            Mistake(
                "code points",
                "start from the UTF-8 bytes of the text, not from its code points (ord).",
                _encode_code_points,
            ),
            Mistake(
                "leftmost pair",
                "you merged the leftmost pair that has a merge; the rule is the pair with the lowest "
                "new id among all adjacent pairs, wherever it is.",
                _encode_leftmost_pair,
            ),
            Mistake(
                "highest rank first",
                "you applied the merge with the highest new id first; the lowest id (the merge "
                "learned first) goes first, because later merges are built from earlier ones.",
                _encode_highest_rank_first,
            ),
            Mistake(
                "dict order",
                "you applied the merges in the order the dict lists them; the rule is by id (rank), "
                "and a dict may list them in any order.",
                _encode_in_dict_order,
            ),
            Mistake(
                "split first",
                "you cut the text into words first, as GPT-2's tokenizer does; this exercise encodes "
                "the whole text as one sequence, the way train_bpe learned its merges (some of them "
                "join a space to its neighbours).",
                _encode_split_first,
            ),
        ],
        diagnose=_diagnose_encode,
        error_hints={
            **_RECURSION_HINT,
            "ValueError": "encode has no ValueError to raise on these inputs: merges may be empty ({}, what "
            "train_bpe(text, 256) returns) and a text may have fewer than two bytes; the built-ins min "
            "and max raise one on an empty sequence.",
        },
        driver=twice_driver,
    ),
    Spec(
        name="decode",
        chapter=CHAPTER,
        reference=ref.decode,
        make_cases=_cases_decode,
        mistakes=[
            Mistake(
                "token by token",
                "join the bytes of all tokens first and decode once: one character's bytes can be "
                "split over several tokens.",
                _decode_token_by_token,
            )
        ],
        diagnose=_diagnose_decode,
        error_hints={
            "UnicodeDecodeError": "some id sequences are not valid UTF-8 (a token can end in the middle "
            "of a character): decode with errors='replace'.",
        },
        driver=twice_driver,
    ),
    Spec(
        name="compression_ratio",
        chapter=CHAPTER,
        reference=ref.compression_ratio,
        make_cases=_cases_compression_ratio,
        mistakes=[
            Mistake(
                "characters",
                "the ratio counts UTF-8 bytes, not characters: 'é' is one character but two bytes.",
                _ratio_of_characters,
            ),
            Mistake("inverted", "the ratio is bytes per token, not tokens per byte.", _ratio_inverted),
            Mistake(
                "stripped",
                "the ratio counts every byte of the text, the whitespace at its ends included: the "
                "tokens cover those bytes too.",
                _ratio_of_stripped_text,
            ),
        ],
        diagnose=_diagnose_compression_ratio,
        driver=twice_driver,
    ),
]
