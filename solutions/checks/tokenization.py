"""Check specs for chapter 1, tokenization: one :class:`Spec` per exercise, in notebook order.

Inputs come from ``random.Random(seed)``: a mix of English, accented letters, emoji, CJK text and
whitespace runs, short enough that every check takes milliseconds.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from solutions import tokenization as ref
from solutions.checks.core import Case, Mistake, Spec

CHAPTER = "01_tokenization"

_PIECES = [
    "the cat sat on the mat", "aaabdaaabac", "hello world", "low lower lowest newer wider",
    "café naïve façade", "😀 emoji 🚀", "日本語のテキスト", "  spaces   and\n\nnewlines\t",
    "x = f(a, b) + 42", "ababababab", "ünïcödé", "🙂🙂🙂", "Κόσμε", "zzz zz z",
]


def _text(rng: random.Random, n_pieces: int) -> str:
    return " ".join(rng.choice(_PIECES) for _ in range(n_pieces))


def _label(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"text={shown!r}"


def _ids_label(ids: list[int], limit: int = 12) -> str:
    shown = repr(ids) if len(ids) <= limit else repr(ids[:limit])[:-1] + ", ...]"
    return f"ids={shown}"


# --- 1. text_to_bytes -------------------------------------------------------------------------


def _cases_text_to_bytes(seed: int) -> list[Case]:
    rng = random.Random(seed)
    texts = ["", "hello", "café", "日本", "😀!"] + [_text(rng, rng.randint(1, 4)) for _ in range(5)]
    return [Case((t,), label=_label(t)) for t in texts]


def _code_points(text: str) -> list[int]:
    return [ord(ch) for ch in text]


def _diagnose_text_to_bytes(case: Case, actual: Any, expected: Any) -> Optional[str]:
    if isinstance(actual, (bytes, bytearray)):
        return "you returned a bytes object; the exercise asks for a list of ints: list(...) of it."
    return None


# --- 2. get_pair_counts -----------------------------------------------------------------------


def _cases_get_pair_counts(seed: int) -> list[Case]:
    rng = random.Random(seed)
    lists = [[], [7], [1, 2], [5, 5, 5, 5], [1, 2, 3, 1, 2]]
    lists += [[rng.randint(0, 5) for _ in range(rng.randint(3, 30))] for _ in range(6)]
    return [Case((ids,), label=_ids_label(ids)) for ids in lists]


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
    cases = [Case(({(1, 2): 3},), label="counts={(1, 2): 3}")]
    for _ in range(6):
        pairs = rng.sample([(a, b) for a in range(6) for b in range(6)], rng.randint(3, 10))
        top = rng.randint(2, 6)
        counts = {p: rng.randint(1, top - 1) for p in pairs}
        # several pairs share the top count, and the smallest of them is never listed first
        tied = sorted(rng.sample(pairs, rng.randint(2, min(3, len(pairs)))), reverse=True)
        for p in tied:
            counts[p] = top
        counts = dict(sorted(counts.items(), key=lambda kv: kv[0], reverse=True))
        cases.append(Case((counts,), label=f"counts with a tie at {top}"))
    cases.append(Case(({},), label="empty counts"))
    return cases


def _diagnose_most_frequent_pair(case: Case, actual: Any, expected: Any) -> Optional[str]:
    (counts,) = case.args
    if not isinstance(actual, tuple) or actual not in counts:
        return None
    if counts[actual] == counts[expected]:
        return (
            f"{actual} and {expected} tie at {counts[expected]} occurrences. The rule is: ties go "
            f"to the smallest pair, e.g. max(counts, key=lambda p: (counts[p], -p[0], -p[1])) or "
            f"min over the tied pairs."
        )
    if counts[actual] < counts[expected]:
        return f"{actual} occurs {counts[actual]} times but {expected} occurs {counts[expected]} times."
    return None


# --- 4. merge ---------------------------------------------------------------------------------


def _cases_merge(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case(([5, 5, 5], (5, 5), 256), label="ids=[5, 5, 5], pair=(5, 5)"),
        Case(([1, 2, 3, 1, 2], (1, 2), 300), label="ids=[1, 2, 3, 1, 2], pair=(1, 2)"),
        Case(([], (1, 2), 256), label="ids=[]"),
        Case(([3, 1, 2], (1, 2), 256), label="ids=[3, 1, 2], pair=(1, 2)"),
    ]
    for _ in range(5):
        ids = [rng.randint(0, 3) for _ in range(rng.randint(4, 25))]
        pair = (ids[1], ids[2])
        cases.append(Case((ids, pair, 256 + rng.randint(0, 50)), label=f"{_ids_label(ids)}, pair={pair}"))
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


def _merge_first_only(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2 :]
    return list(ids)


# --- 5. train_bpe -----------------------------------------------------------------------------


def _cases_train_bpe(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case(("aaabdaaabac", 259), label="text='aaabdaaabac', vocab_size=259"),
        Case(("hello", 256), label="vocab_size=256 (no merges)"),
        Case(("ab", 300), label="text='ab', vocab_size=300 (runs out of pairs)"),
        Case(("abc", 100), label="vocab_size=100 (too small)"),
    ]
    for _ in range(3):
        text = _text(rng, rng.randint(2, 5))
        size = 256 + rng.randint(3, 12)
        cases.append(Case((text, size), label=f"{_label(text)}, vocab_size={size}"))
    return cases


def _diagnose_train_bpe(case: Case, actual: Any, expected: Any) -> Optional[str]:
    if not isinstance(actual, dict) or not isinstance(expected, dict):
        return None
    text, vocab_size = case.args
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
            return f"you stopped after {len(learned)} merges; keep merging until vocab_size is reached or no pair is left."
        got_pair, got_id = learned[step]
        counts = ref.get_pair_counts(ids)
        if got_pair != pair and got_pair in counts and counts[got_pair] == counts[pair]:
            return (
                f"merge {step + 1}: {got_pair} ties with {pair} at {counts[pair]} occurrences; "
                f"ties go to the smallest pair."
            )
        if got_pair != pair:
            return f"merge {step + 1} should merge the most frequent pair {pair} (seen {counts[pair]} times), not {got_pair}."
        if got_id != new_id:
            return f"merge {step + 1} should get id {new_id}: new ids count up from 256 in the order merges are made."
        ids = ref.merge(ids, pair, new_id)
    return None


# --- 6. encode --------------------------------------------------------------------------------


def _trained_merges(rng: random.Random) -> dict:
    return ref.train_bpe(_text(rng, 6), 256 + rng.randint(8, 20))


def _cases_encode(seed: int) -> list[Case]:
    rng = random.Random(seed)
    merges = _trained_merges(rng)
    texts = ["", "aaabdaaabac", "😀 naïve"] + [_text(rng, rng.randint(1, 4)) for _ in range(5)]
    cases = [Case((t, merges), label=f"{_label(t)} with {len(merges)} merges") for t in texts]
    # rank and frequency disagree here: (a, b) was learned first, but (b, c) is more frequent
    ranked = {(97, 98): 256, (98, 99): 257}
    cases.append(Case(("abcbcbc", ranked), label="text='abcbcbc', merges={(97, 98): 256, (98, 99): 257}"))
    return cases


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


# --- 7. decode --------------------------------------------------------------------------------


def _cases_decode(seed: int) -> list[Case]:
    rng = random.Random(seed)
    merges = _trained_merges(rng)
    vocab = ref.build_vocab(merges)
    cases = []
    for text in ["", "héllo 😀"] + [_text(rng, rng.randint(1, 4)) for _ in range(4)]:
        ids = ref.encode(text, merges)
        cases.append(Case((ids, vocab), label=_ids_label(ids)))
    # bytes that are not valid UTF-8: a lone continuation byte, and half of a 4-byte emoji
    for ids in ([0xFF, 104, 105], list("😀".encode("utf-8"))[:2] + [33]):
        cases.append(Case((ids, vocab), label=f"{_ids_label(ids)} (not valid UTF-8)"))
    return cases


def _decode_token_by_token(ids: list[int], vocab: dict) -> str:
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


# --- 8. compression_ratio ---------------------------------------------------------------------


def _cases_compression_ratio(seed: int) -> list[Case]:
    rng = random.Random(seed)
    merges = _trained_merges(rng)
    cases = []
    for text in ["café 😀 日本"] + [_text(rng, rng.randint(2, 5)) for _ in range(4)]:
        cases.append(Case((text, ref.encode(text, merges)), label=_label(text)))
    cases.append(Case(("", []), label="text='' and no tokens"))
    return cases


def _ratio_of_characters(text: str, ids: list[int]) -> float:
    return len(text) / len(ids)


def _ratio_inverted(text: str, ids: list[int]) -> float:
    return len(ids) / len(text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------

SPECS = [
    Spec(
        name="text_to_bytes",
        chapter=CHAPTER,
        reference=ref.text_to_bytes,
        make_cases=_cases_text_to_bytes,
        mistakes=[
            Mistake(
                "code points",
                "these are Unicode code points (ord), not UTF-8 bytes: characters outside ASCII take "
                "2 to 4 bytes each. Use text.encode('utf-8').",
                _code_points,
            )
        ],
        diagnose=_diagnose_text_to_bytes,
    ),
    Spec(
        name="get_pair_counts",
        chapter=CHAPTER,
        reference=ref.get_pair_counts,
        make_cases=_cases_get_pair_counts,
        mistakes=[
            Mistake(
                "non-overlapping",
                "pairs overlap: [1, 2, 3] has the pairs (1, 2) and (2, 3). Count (ids[i], ids[i+1]) "
                "for every i, not every second i.",
                _pairs_stepping_by_two,
            ),
            Mistake(
                "off by one",
                "the last pair is missing: a list of n ids has n - 1 adjacent pairs.",
                _pairs_missing_last,
            ),
        ],
    ),
    Spec(
        name="most_frequent_pair",
        chapter=CHAPTER,
        reference=ref.most_frequent_pair,
        make_cases=_cases_most_frequent_pair,
        diagnose=_diagnose_most_frequent_pair,
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
        ],
    ),
    Spec(
        name="train_bpe",
        chapter=CHAPTER,
        reference=ref.train_bpe,
        make_cases=_cases_train_bpe,
        diagnose=_diagnose_train_bpe,
        uses={f.__name__: f for f in (ref.text_to_bytes, ref.get_pair_counts, ref.most_frequent_pair, ref.merge)},
        points=2,
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
        ],
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
        error_hints={
            "UnicodeDecodeError": "some id sequences are not valid UTF-8 (a token can end in the middle "
            "of a character): decode with errors='replace'.",
        },
    ),
    Spec(
        name="compression_ratio",
        chapter=CHAPTER,
        reference=ref.compression_ratio,
        make_cases=_cases_compression_ratio,
        mistakes=[
            Mistake(
                "characters",
                "count UTF-8 bytes, not characters: len(text.encode('utf-8')).",
                _ratio_of_characters,
            ),
            Mistake("inverted", "the ratio is bytes per token, not tokens per byte.", _ratio_inverted),
        ],
    ),
]
