"""Chapter 1: wrong answers that passed on short, clean texts fail on the inputs real text has.

Each wrong answer below once passed its check (issue "checks that wrong code cannot pass",
section 6): the checks used short, lower-case, one-line, normalised texts, every one different,
and lists of at most 20 ids. Now every check also draws the text family and the size family of
special values (solutions/checks/texts.py), and calls each answer twice on each input. Each test
asserts that the check fails with a message that leads to the mistake.
"""

from __future__ import annotations

import unicodedata

import pytest
import regex

from solutions import checks as check
from solutions import tokenization as ref
from solutions.checks.core import CheckFailure, check_function
from solutions.checks.texts import special_texts

HIDDEN = 424242  # stands for the grader's seed


def fails(exercise: str, answer, *, seed: int = 0) -> str:
    """The message of the check's failure (it must fail) on the notebook's seed."""
    with pytest.raises(CheckFailure) as info:
        check_function(check.SPECS[exercise], answer, seed=seed, device="cpu")
    return str(info.value)


def fails_everywhere(exercise: str, answer) -> str:
    """Fails on the notebook's seed and on a hidden one, with the same kind of message."""
    hidden = fails(exercise, answer, seed=HIDDEN)
    public = fails(exercise, answer)
    assert hidden.splitlines()[-1] == public.splitlines()[-1]  # the same hint
    return public


# --- the size family: thousands of ids ---------------------------------------------------------


def merge_recursive(ids, pair, new_id):
    """Right on short lists, but it recurses once per id: RecursionError past about 1,000 ids,
    which is where the notebook's demo (5,000 characters of Shakespeare) starts."""
    if len(ids) < 2:
        return list(ids)
    if (ids[0], ids[1]) == tuple(pair):
        return [new_id] + merge_recursive(ids[2:], pair, new_id)
    return [ids[0]] + merge_recursive(ids[1:], pair, new_id)


def get_pair_counts_recursive(ids):
    """Right on short lists, but recursive: RecursionError on a real text's thousands of ids."""
    if len(ids) < 2:
        return {}
    counts = get_pair_counts_recursive(ids[1:])
    counts[(ids[0], ids[1])] = counts.get((ids[0], ids[1]), 0) + 1
    return counts


@pytest.mark.parametrize("exercise, answer", [("merge", merge_recursive), ("get_pair_counts", get_pair_counts_recursive)])
def test_recursion_fails_on_thousands_of_ids(exercise, answer):
    message = fails_everywhere(exercise, answer)
    assert "RecursionError on 5,000 ids" in message
    assert "Hint: your code calls itself once per id" in message


# --- ties among ids of 256 and more ---------------------------------------------------------------


def most_frequent_pair_packed(counts):
    """Breaks ties on the pair packed into one number, (a << 8) | b: that orders pairs like
    tuples only while every id is below 256, and merged ids are 256 and more."""
    if not counts:
        raise ValueError("counts is empty: there is no pair to choose")
    top = max(counts.values())
    return min((p for p, c in counts.items() if c == top), key=lambda p: (p[0] << 8) | p[1])


def most_frequent_pair_times_256(counts):
    """The same mistake written as a * 256 + b."""
    if not counts:
        raise ValueError("counts is empty: there is no pair to choose")
    top = max(counts.values())
    return min((p for p, c in counts.items() if c == top), key=lambda p: p[0] * 256 + p[1])


@pytest.mark.parametrize("answer", [most_frequent_pair_packed, most_frequent_pair_times_256])
def test_a_tie_broken_on_a_packed_pair_fails(answer):
    message = fails_everywhere("most_frequent_pair", answer)
    assert "256 or more" in message or "merged ids" in message or "ids up to 600" in message
    assert "packed into one number" in message


# --- train_bpe that changes the text first --------------------------------------------------------


def _train_on(text, vocab_size):
    return ref.train_bpe(text, vocab_size)


def train_bpe_line_by_line(text, vocab_size):
    """Counts pairs line by line (splitlines), as a file is read: the newlines are gone, and no
    pair spans two lines, so the merges of a text with newlines are other ones."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256, got {vocab_size}")
    lines = [ref.text_to_bytes(line) for line in text.splitlines()]
    merges = {}
    for new_id in range(256, vocab_size):
        counts = {}
        for ids in lines:
            for pair, n in ref.get_pair_counts(ids).items():
                counts[pair] = counts.get(pair, 0) + n
        if not counts:
            break
        pair = ref.most_frequent_pair(counts)
        lines = [ref.merge(ids, pair, new_id) for ids in lines]
        merges[pair] = new_id
    return merges


def train_bpe_lower_case(text, vocab_size):
    """Lower-cases the text first: "The" and "the" become one word, so other pairs win."""
    return _train_on(text.lower(), vocab_size)


def train_bpe_nfkc(text, vocab_size):
    """NFKC-normalises first: ligatures split, combining accents join their letters; the bytes
    trained on are not the text's."""
    return _train_on(unicodedata.normalize("NFKC", text), vocab_size)


@pytest.mark.parametrize(
    "answer, says",
    [
        (train_bpe_line_by_line, "line by line|took out its newlines"),
        (train_bpe_lower_case, "after you lower-cased it"),
        (train_bpe_nfkc, "after you normalised it to (NFC or normalised it to )?NFKC"),
    ],
)
def test_train_bpe_that_changes_the_text_fails(answer, says):
    message = fails_everywhere("train_bpe", answer)
    assert regex.search(f"Hint: .*({says})", message), message


# --- encode ---------------------------------------------------------------------------------------


def encode_nfc(text, merges):
    """NFC-normalises first: a text written with combining accents gets other bytes, so other
    ids, and decode(encode(text)) is no longer the text."""
    return ref.encode(unicodedata.normalize("NFC", text), merges)


_CACHE: dict = {}


def encode_cached_by_text(text, merges):
    """Caches the ids by the text alone: the same text under other merges gets the old ids."""
    if text not in _CACHE:
        _CACHE[text] = ref.encode(text, merges)
    return list(_CACHE[text])


def encode_split_first(text, merges):
    """Splits with GPT-2's pattern first: the exercise's merges were learned on the whole text,
    across spaces, so a merge such as (b, space) never applies."""
    ids = []
    for chunk in regex.findall(ref.GPT2_SPLIT_PATTERN, text):
        ids += ref.encode(chunk, merges)
    return ids


def encode_endoftext_as_50256(text, merges):
    """Maps "<|endoftext|>" to GPT-2's 50256, an id these merges do not have (no special
    tokens here: the string is ordinary text)."""
    pieces = text.split(ref.ENDOFTEXT)
    ids = ref.encode(pieces[0], merges)
    for piece in pieces[1:]:
        ids += [50256] + ref.encode(piece, merges)
    return ids


@pytest.mark.parametrize(
    "answer, says",
    [
        (encode_nfc, "Hint: your result is the right one for the text after you normalised it to NFC"),
        (encode_cached_by_text, "Hint: your ids hold .*a cache keyed on the text alone"),
        (encode_split_first, "Hint: you cut the text into words first"),
        (encode_endoftext_as_50256, "Hint: 50256 is GPT-2's id for <|endoftext|>"),
    ],
)
def test_encode_wrong_answers_fail_with_their_hint(answer, says):
    _CACHE.clear()
    message = fails("encode", answer)
    assert regex.search(says, message), message
    _CACHE.clear()
    assert regex.search(says, fails("encode", answer, seed=HIDDEN))


def test_encode_cached_by_text_fails_even_when_its_cache_is_warm():
    # a cache filled by the learner's earlier runs (the check run twice) still fails
    fails("encode", encode_cached_by_text)
    assert "a cache keyed on the text alone" in fails("encode", encode_cached_by_text)


# --- decode ---------------------------------------------------------------------------------------


def decode_nfc(ids, vocab):
    """NFC-normalises the decoded text: decode(encode(text)) is no longer the text given."""
    return unicodedata.normalize("NFC", ref.decode(ids, vocab))


def decode_utf8_sig(ids, vocab):
    """Decodes with utf-8-sig, which drops a leading byte-order mark: a character of the text."""
    try:
        data = b"".join(vocab[i] for i in ids)
    except KeyError as err:
        raise ValueError(f"unknown token id {err.args[0]}") from None
    return data.decode("utf-8-sig", errors="replace")


def decode_dropping_nul(ids, vocab):
    """Drops NUL characters, as C strings would end at them: they are characters of the text."""
    return ref.decode(ids, vocab).replace("\x00", "")


def get_pair_counts_skipping_newlines(ids):
    """Skips the pairs that hold a newline byte, as if lines were separate texts."""
    counts = {}
    for pair in zip(ids, ids[1:]):
        if 10 not in pair:
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def decode_knows_50256(ids, vocab):
    """Knows GPT-2's <|endoftext|> without the vocabulary: an id the vocab lacks is an error."""
    pieces = []
    for i in ids:
        if i == 50256:
            pieces.append(b"<|endoftext|>")
        elif i in vocab:
            pieces.append(vocab[i])
        else:
            raise ValueError(f"unknown token id {i}")
    return b"".join(pieces).decode("utf-8", errors="replace")


# --- compression_ratio and text_to_bytes ------------------------------------------------------------


def compression_ratio_stripped(text, ids):
    """Measures text.strip(): the tokens stand for the whitespace at the ends too."""
    if not ids:
        raise ValueError("ids is empty: no tokens, no ratio")
    return len(text.strip().encode("utf-8")) / len(ids)


def text_to_bytes_ignoring_errors(text):
    """errors="ignore" drops a lone surrogate without a word: the bytes are not the text's."""
    return list(text.encode("utf-8", errors="ignore"))


@pytest.mark.parametrize(
    "exercise, answer, says",
    [
        ("decode", decode_nfc, ["Hint: your text is the right one after you normalised it to NFC"]),
        ("decode", decode_utf8_sig, ["byte-order mark", "utf-8-sig"]),
        ("decode", decode_knows_50256, ["id 50256 (GPT-2's <|endoftext|>), not in this vocab should raise ValueError"]),
        ("compression_ratio", compression_ratio_stripped,
         ["Hint: the ratio counts every byte of the text, the whitespace at its ends included"]),
        ("decode", decode_dropping_nul, ["control characters"]),
        ("get_pair_counts", get_pair_counts_skipping_newlines, ["the bytes of text with newlines"]),
        ("text_to_bytes", text_to_bytes_ignoring_errors,
         ["a lone surrogate", "should raise UnicodeEncodeError", "errors='ignore' drops it"]),
    ],
)
def test_decode_ratio_and_bytes_wrong_answers_fail_with_their_hint(exercise, answer, says):
    message = fails_everywhere(exercise, answer)
    for phrase in says:
        assert phrase in message, (phrase, message)


# --- an error without a sentence ----------------------------------------------------------------------


def most_frequent_pair_bare_error(counts):
    """Raises ValueError() with no message: the caller learns nothing (the page says the
    checks test the sentence)."""
    if not counts:
        raise ValueError()
    return ref.most_frequent_pair(counts)


def train_bpe_bare_error(text, vocab_size):
    """ValueError("") for a vocab_size below 256."""
    if vocab_size < 256:
        raise ValueError("")
    return ref.train_bpe(text, vocab_size)


def decode_one_word_error(ids, vocab):
    """A one-word message is no sentence either (it names the id, as the exercise asks)."""
    bad = [i for i in ids if i not in vocab]
    if bad:
        raise ValueError(f"{bad[0]}?")
    return ref.decode(ids, vocab)


@pytest.mark.parametrize(
    "exercise, answer",
    [
        ("most_frequent_pair", most_frequent_pair_bare_error),
        ("train_bpe", train_bpe_bare_error),
        ("decode", decode_one_word_error),
    ],
)
def test_an_error_without_a_sentence_fails(exercise, answer):
    message = fails_everywhere(exercise, answer)
    assert "without a sentence that says why" in message
    assert "raised ParameterMismatch" not in message  # the check's own sentence, not an error of the answer


def test_a_short_sentence_is_enough():
    def most_frequent_pair(counts):
        if not counts:
            raise ValueError("no pairs")
        return ref.most_frequent_pair(counts)

    check_function(check.SPECS["most_frequent_pair"], most_frequent_pair, device="cpu")


# --- answers a check cannot compare, and state kept between calls -------------------------------------


def most_frequent_pair_numpy(counts):
    """Right pairs, but of numpy integers: not the ints the exercise returns (once crashed the
    check itself with "unhashable type: 'Unsupported'")."""
    import numpy as np

    if not counts:
        raise ValueError("counts is empty: there is no pair to choose")
    pairs = np.array(sorted(counts))
    values = np.array([counts[tuple(p)] for p in pairs.tolist()])
    return tuple(pairs[int(np.argmax(values))])


def train_bpe_numpy_keys(text, vocab_size):
    """Merges whose pairs hold numpy integers: a dict key a comparison cannot read."""
    import numpy as np

    return {(np.int64(a), np.int64(b)): i for (a, b), i in ref.train_bpe(text, vocab_size).items()}


@pytest.mark.parametrize("exercise, answer", [("most_frequent_pair", most_frequent_pair_numpy), ("train_bpe", train_bpe_numpy_keys)])
def test_numpy_integers_are_named_not_a_crash(exercise, answer):
    message = fails_everywhere(exercise, answer)
    assert "numpy.int64" in message and "not a plain Python value" in message


def get_pair_counts_shared_default(ids, counts={}):  # noqa: B006 (the mistake under test)
    """A mutable default argument: the dict is made once, so every call adds to the last one's."""
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def test_a_mutable_default_is_reported_as_state_kept_between_calls():
    message = fails_everywhere("get_pair_counts", get_pair_counts_shared_default)
    assert "called again with the same input" in message
    assert "keeps state between calls (a mutable default argument such as counts={}" in message


# --- composite exercises: the helper bugs the notebook's demo would hit ----------------------------------


def test_helper_bugs_that_the_demo_would_hit_fail_their_own_checks():
    # The check of train_bpe binds the reference helpers (a mistake costs points once), so a
    # helper's bug must be caught by that helper's own check, on the inputs the demo gives it:
    # 5,000 characters of Shakespeare, 40 merges, so ids from 256 up and thousands of them.
    corpus = ref.load_tiny_shakespeare()[:5000]

    def train_with(get_pair_counts=ref.get_pair_counts, most_frequent_pair=ref.most_frequent_pair, merge=ref.merge):
        ids, merges = ref.text_to_bytes(corpus), {}
        for new_id in range(256, 296):
            pair = most_frequent_pair(get_pair_counts(ids))
            ids = merge(ids, pair, new_id)
            merges[pair] = new_id
        return merges

    for exercise, helper in [("merge", merge_recursive), ("get_pair_counts", get_pair_counts_recursive)]:
        with pytest.raises(RecursionError):
            train_with(**{exercise: helper})  # the demo would crash
        fails(exercise, helper)


def test_the_special_texts_each_tell_their_change_apart():
    # every member of the text family changes under the change it is there for
    import random

    labelled = dict(special_texts(random.Random(0)))
    changes = {
        "text with newlines": lambda t: "".join(t.splitlines()),
        "text with upper case": str.lower,
        "accents as combining marks (NFD)": lambda t: unicodedata.normalize("NFC", t),
        "accents precomposed and as combining marks": lambda t: unicodedata.normalize("NFD", t),
        "ligatures and other compatibility characters": lambda t: unicodedata.normalize("NFKC", t),
        "leading and trailing whitespace": str.strip,
        "a byte-order mark first": lambda t: t.encode("utf-8").decode("utf-8-sig"),
        "the special-token string <|endoftext|>": lambda t: t.replace(ref.ENDOFTEXT, ""),
        "control characters (NUL, escape, delete)": lambda t: t.replace("\x00", ""),
        "spaces other than ' ' (no-break U+00A0, ideographic U+3000, narrow no-break U+202F)":
            lambda t: t.replace("\xa0", " "),
    }
    assert set(labelled) == set(changes)
    for label, change in changes.items():
        assert change(labelled[label]) != labelled[label], label


def train_bpe_counting_all_but_the_last_byte(text, vocab_size):
    """Passes its helpers the wrong list (the ids without the last one): every helper is right,
    the loop is wrong, and the message must blame train_bpe, not the helpers."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256, got {vocab_size}")
    ids, merges = ref.text_to_bytes(text), {}
    for new_id in range(256, vocab_size):
        counts = ref.get_pair_counts(ids[:-1])
        if not counts:
            break
        pair = ref.most_frequent_pair(counts)
        ids = ref.merge(ids, pair, new_id)
        merges[pair] = new_id
    return merges


def test_a_composite_failure_says_the_helpers_were_the_references():
    message = fails_everywhere("train_bpe", train_bpe_counting_all_but_the_last_byte)
    assert "with the reference text_to_bytes, get_pair_counts, most_frequent_pair and merge in place of yours" in message


@pytest.mark.parametrize("spec", check.specs_for("01_tokenization"), ids=lambda s: s.name)
def test_each_check_stays_well_under_a_second_with_thousands_of_items(spec, capsys):
    # the size family makes every check do real work; measured in CPU time (a busy machine's
    # waiting is not the check's cost), on a seed no other test uses, so nothing is cached
    import time

    start = time.process_time()
    check_function(spec, spec.reference, seed=31337, device="cpu")
    assert time.process_time() - start < 1.0, spec.name
    assert "correct" in capsys.readouterr().out


# --- the second attack on chapter 1: wrong answers that passed the checks above ------------------------
# Each wrong answer below passed its check until the text family had spaces other than ' ', every
# kind of surrogate, ties among ids past 65,535, merges with ids past 512, one-character texts of
# several bytes, and until the driver compared a fresh copy of a function with a mutable default.


def _bytes(text):
    return list(text.encode("utf-8"))


def text_to_bytes_joining_surrogate_pairs(text):
    """Round-trips through UTF-16 with surrogatepass, which joins a high and a low surrogate into
    one character: the str '\\ud83d\\ude00' holds two lone surrogates, not the emoji, and has no
    UTF-8 bytes."""
    try:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        pass
    return _bytes(text)


def text_to_bytes_surrogateescape(text):
    """errors='surrogateescape' raises for most surrogates but turns U+DC80..U+DCFF into the
    bytes 0x80..0xFF."""
    return list(text.encode("utf-8", errors="surrogateescape"))


def text_to_bytes_high_surrogates_only(text):
    """A guard for the high surrogates only: a lone low surrogate gets the three bytes that
    surrogatepass writes."""
    for i, c in enumerate(text):
        if 0xD800 <= ord(c) <= 0xDBFF:
            raise UnicodeEncodeError("utf-8", text, i, i + 1, "surrogates not allowed")
    return list(text.encode("utf-8", "surrogatepass"))


def text_to_bytes_no_break_space(text):
    """'Cleans' the no-break space U+00A0 (2 bytes) into the space 0x20."""
    return _bytes(text.replace("\xa0", " "))


def encode_no_break_space(text, merges):
    """Encodes the text after turning U+00A0 into a space."""
    return ref.encode(text.replace("\xa0", " "), merges)


def decode_no_break_space(ids, vocab):
    """Decodes, then turns U+00A0 into a space: not the text the bytes hold."""
    return ref.decode(ids, vocab).replace("\xa0", " ")


def compression_ratio_no_break_space(text, ids):
    """Counts U+00A0 as one byte."""
    if not ids:
        raise ValueError("ids is empty: there are no tokens to divide the bytes by")
    return len(text.replace("\xa0", " ").encode("utf-8")) / len(ids)


@pytest.mark.parametrize(
    "exercise, answer, says",
    [
        ("text_to_bytes", text_to_bytes_joining_surrogate_pairs, "joins them into a character the text does not hold"),
        ("text_to_bytes", text_to_bytes_surrogateescape, "errors='surrogateescape' turns the lone surrogates U+DC80..U+DCFF"),
        ("text_to_bytes", text_to_bytes_high_surrogates_only, "a lone low surrogate (U+DC00..U+DFFF) should raise UnicodeEncodeError"),
        ("text_to_bytes", text_to_bytes_no_break_space, "after you turned each no-break space (U+00A0) into a space"),
        ("encode", encode_no_break_space, "after you turned each no-break space (U+00A0) into a space"),
        ("decode", decode_no_break_space, "after you turned each no-break space (U+00A0) into a space"),
        ("compression_ratio", compression_ratio_no_break_space, "your ratio is the right one for the text after you turned each no-break space"),
    ],
)
def test_surrogates_and_unusual_spaces_fail_with_their_hint(exercise, answer, says):
    assert says in fails(exercise, answer)


def most_frequent_pair_packed_65536(counts):
    """Breaks ties on a * 65536 + b: like tuple order only while every second id is below 65,536,
    and a real vocabulary (cl100k: 100,256 tokens) goes past that."""
    if not counts:
        raise ValueError("counts is empty: there is no pair to choose")
    return min(counts, key=lambda p: (-counts[p], p[0] * 65536 + p[1]))


def most_frequent_pair_packed_million(counts):
    """The same with a * 10**6 + b: the ids have no upper bound."""
    if not counts:
        raise ValueError("counts is empty: there is no pair to choose")
    return min(counts, key=lambda p: (-counts[p], p[0] * 10**6 + p[1]))


@pytest.mark.parametrize("answer", [most_frequent_pair_packed_65536, most_frequent_pair_packed_million])
def test_a_tie_packed_with_a_large_factor_fails(answer):
    for seed in (0, HIDDEN):
        message = fails("most_frequent_pair", answer, seed=seed)
        assert "is the smaller pair" in message and "a * 65536 + b" in message and "no upper bound" in message


def most_frequent_pair_left_to_min(counts):
    """No handling of the empty counts: min() raises its own ValueError, a message written by no
    one for this exercise."""
    return min(counts, key=lambda p: (-counts[p], p))


def test_python_s_own_empty_sequence_message_is_not_the_answer_s_sentence():
    message = fails_everywhere("most_frequent_pair", most_frequent_pair_left_to_min)
    assert "most_frequent_pair on empty counts" in message
    assert "Python's own message from min() or max() of an empty sequence" in message


def merge_restarting(ids, pair, new_id):
    """Replaces the first occurrence, then searches again from the start: the ids it wrote are
    scanned again, so merge([5, 5, 5, 5], (5, 5), 5) gives [5], not [5, 5]."""
    ids = list(ids)
    while True:
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == tuple(pair):
                ids[i : i + 2] = [new_id]
                break
        else:
            return ids


def test_a_merge_that_rescans_what_it_wrote_fails():
    message = fails_everywhere("merge", merge_restarting)
    assert "new_id equal to the pair's" in message
    assert "search again from the start" in message and "one scan left to right" in message


def train_bpe_empty_text_first(text, vocab_size):
    """Returns {} for the empty text before it checks vocab_size: train_bpe('', 100) must raise."""
    if not text:
        return {}
    return ref.train_bpe(text, vocab_size)


def train_bpe_counting_characters(text, vocab_size):
    """'Fewer than 2 characters: no pair', but pairs are pairs of bytes: 'é' has one."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256, got {vocab_size}")
    if len(text) < 2:
        return {}
    return ref.train_bpe(text, vocab_size)


def test_train_bpe_shortcuts_for_short_texts_fail():
    message = fails_everywhere("train_bpe", train_bpe_empty_text_first)
    assert "the empty text with vocab_size 100" in message and "should raise ValueError" in message
    message = fails_everywhere("train_bpe", train_bpe_counting_characters)
    assert "one character of two bytes" in message and "pairs are pairs of bytes, not of characters" in message


def train_bpe_filling_its_default(text, vocab_size, merges={}):  # noqa: B006 (the mistake under test)
    """A mutable default that keeps the merges of earlier calls and returns a copy: twice on one
    input it gives the same answer; on the next input it starts from the last one's merges."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256, got {vocab_size}")
    ids = ref.text_to_bytes(text)
    for pair, new_id in merges.items():
        ids = ref.merge(ids, pair, new_id)
    for new_id in range(256 + len(merges), vocab_size):
        counts = ref.get_pair_counts(ids)
        if not counts:
            break
        pair = ref.most_frequent_pair(counts)
        ids = ref.merge(ids, pair, new_id)
        merges[pair] = new_id
    return dict(merges)


def test_a_default_that_fills_up_is_state_kept_between_calls_not_a_vocab_size_mistake():
    message = fails("train_bpe", train_bpe_filling_its_default)
    assert "a fresh copy of the function, with its default arguments as def made them (merges={})" in message
    assert "state kept between calls" in message
    assert "vocab_size counts the 256 byte tokens" not in message


def test_a_mutable_default_that_keeps_nothing_passes():
    def get_pair_counts(ids, seen=[]):  # noqa: B006 (read, never kept)
        return ref.get_pair_counts(list(seen) + list(ids))

    check_function(check.SPECS["get_pair_counts"], get_pair_counts, device="cpu")


def _encode_ranking_non_merges_at(text, merges, rank):
    ids = ref.text_to_bytes(text)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, rank))
        if pair not in merges:
            break
        ids = ref.merge(ids, pair, merges[pair])
    return ids


def encode_stand_in_rank(rank):
    def encode(text, merges):
        """Gives a pair that is not a merge a stand-in rank: right while every merge id is below
        it, and a real vocabulary has ids past 512, 1000 and 50,257."""
        return _encode_ranking_non_merges_at(text, merges, rank)

    return encode


@pytest.mark.parametrize("rank", [512, 1000, 50257])
def test_a_stand_in_rank_for_a_pair_that_is_not_a_merge_fails(rank):
    message = fails("encode", encode_stand_in_rank(rank))
    assert "you stopped merging too early, as if a pair that is not a merge had" in message
    assert f"{rank}" in message.splitlines()[-1] and "must lose to every merge, whatever its id" in message


def encode_counting_characters(text, merges):
    """'Fewer than 2 characters: nothing to merge', but 'é' is two bytes that a merge joins."""
    if len(text) < 2:
        return ref.text_to_bytes(text)
    return ref.encode(text, merges)


def encode_rank_from_max(text, merges):
    """A rank no merge has, as max(merges.values()) + 1: crashes on merges {}, which is what
    train_bpe(text, 256) returns."""
    return _encode_ranking_non_merges_at(text, merges, max(merges.values()) + 1)


def test_encode_shortcuts_and_empty_merges_fail():
    message = fails("encode", encode_counting_characters)
    assert "encode('é', {(195, 169): 256})" in message and "merges join bytes, not characters" in message
    message = fails("encode", encode_rank_from_max)
    assert "no merges ({}, what train_bpe(text, 256) returns)" in message
    assert "Python's own message from min() or max()" in message


def decode_never_flushed(ids, vocab):
    """An incremental UTF-8 decoder never flushed: the bytes of an unfinished character at the
    end are dropped instead of becoming U+FFFD."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for i in ids:
        if i not in vocab:
            raise ValueError(f"id {i} is not in vocab, so it cannot be decoded")
        out.append(decoder.decode(vocab[i]))
    return "".join(out)


def test_an_unflushed_decoder_fails():
    message = fails_everywhere("decode", decode_never_flushed)
    assert "decode on an unfinished character at the end" in message
    assert "an incremental decoder must be flushed" in message


def compression_ratio_int_when_whole(text, ids):
    """Returns an int when the division comes out whole. Not a mistake: the notebook asks for
    "the number of UTF-8 bytes per token", and for the stub's `-> float` an int is a float
    (PEP 484's numeric tower); the checks of every chapter take an int where a float is expected."""
    if not ids:
        raise ValueError("ids is empty: there are no tokens to divide the bytes by")
    ratio = len(text.encode("utf-8")) / len(ids)
    return int(ratio) if ratio.is_integer() else ratio


def test_a_whole_ratio_returned_as_an_int_passes():
    check_function(check.SPECS["compression_ratio"], compression_ratio_int_when_whole, device="cpu")


def _raising(exercise, message):
    def most_frequent_pair(counts):
        if not counts:
            raise ValueError(message)
        return ref.most_frequent_pair(counts)

    def train_bpe(text, vocab_size):
        if vocab_size < 256:
            raise ValueError(message)
        return ref.train_bpe(text, vocab_size)

    def decode(ids, vocab):
        bad = [i for i in ids if i not in vocab]
        if bad:
            raise ValueError(message.format(bad[0]))
        return ref.decode(ids, vocab)

    return {"most_frequent_pair": most_frequent_pair, "train_bpe": train_bpe, "decode": decode}[exercise]


@pytest.mark.parametrize(
    "exercise, message",
    [
        ("most_frequent_pair", "nope nope"),
        ("train_bpe", "vocab_size"),
        ("train_bpe", "Invalid vocab_size"),
        ("decode", "nope nope {}"),
    ],
)
def test_a_name_or_a_repeated_word_is_no_sentence(exercise, message):
    assert "without a sentence that says why" in fails(exercise, _raising(exercise, message))


@pytest.mark.parametrize(
    "exercise, message",
    [
        ("most_frequent_pair", "no pairs"),
        ("most_frequent_pair", "counts is empty"),
        ("train_bpe", "vocab_size must be at least 256"),
        ("train_bpe", "vocab_size 100 is below 256"),
        ("decode", "unknown id {}"),
        ("decode", "id {} isn't in vocab"),
    ],
)
def test_short_sentences_that_say_why_pass(exercise, message):
    check_function(check.SPECS[exercise], _raising(exercise, message), device="cpu")
