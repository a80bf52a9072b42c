"""Tests for solutions/tokenization.py: exercise functions, the fast trainer, GPT-2 vs tiktoken.

The oracle for GPT-2 is tiktoken, built offline from the vendored gpt2.tiktoken. Our GPT-2
tokenizer is built from other files (vocab.bpe + encoder.json) by other code, so agreement
on a whole corpus is a real check of both the merges and the encoding rule.
"""

from __future__ import annotations

import array
import json
import random
import unicodedata

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions import tokenization as T
from solutions.tokenization import (
    ENDOFTEXT,
    GPT2_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    build_vocab,
    compression_ratio,
    decode,
    encode,
    get_pair_counts,
    merge,
    most_frequent_pair,
    text_to_bytes,
    train_bpe,
)

# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return T.gpt2_tokenizer()


@pytest.fixture(scope="module")
def enc():
    return T.tiktoken_gpt2()


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return T.load_tiny_shakespeare()


@pytest.fixture(scope="module")
def small(shakespeare) -> BPETokenizer:
    """A 400-token vocabulary trained with GPT-2's pre-splitting."""
    tokenizer = BPETokenizer()
    tokenizer.train(shakespeare[:20000] + " café 😀", 400)
    return tokenizer


def replay_merges(text: str, merges: dict) -> list[int]:
    """Apply the merges to the whole text in the order learned (what training did to it)."""
    ids = text_to_bytes(text)
    for pair, new_id in merges.items():
        ids = merge(ids, pair, new_id)
    return ids


def naive_chunk_train(text: str, vocab_size: int, pattern: str) -> dict:
    """The slow, obviously right trainer with pre-splitting: recount every chunk after each merge."""
    chunks = [text_to_bytes(c) for c in regex.findall(pattern, text)]
    merges = {}
    for new_id in range(256, vocab_size):
        counts: dict = {}
        for ids in chunks:
            for pair, n in get_pair_counts(ids).items():
                counts[pair] = counts.get(pair, 0) + n
        if not counts:
            break
        pair = most_frequent_pair(counts)
        chunks = [merge(ids, pair, new_id) for ids in chunks]
        merges[pair] = new_id
    return merges


# Texts for comparing the fast trainer with train_bpe. Small alphabets make many ties.
TRAIN_TEXTS = [
    "",
    "a",
    "ab",
    "aaaaaaaaaaa",
    "abababababab",
    "cdabcdabcdab",
    "aaabdaaabac",
    "abcabcabc abc ab ab ba ba",
    "the cat sat on the mat, the cat ate the rat",
    "café naïve 😀😀 日本語 日本",
    "aabbaabbabab" * 7 + "ba" * 5,
]

# Hand-picked strings for GPT-2 vs tiktoken.
GPT2_STRINGS = [
    "",
    "Hello world",
    "hello world!!! How are you?",
    "  \n\n   x",
    "\n",
    "   ",
    " a  b   c    d",
    "trailing spaces   ",
    "\t\tindented\n\t\ttabs\r\n",
    "I'm sure they'll've done it; it's John's, isn't it? I'D SAY 'TIS",
    "def f(x: int) -> int:\n    return x ** 2  # square\n\nprint(f(12))\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * 3.14159; }",
    "1234567890 3.14159 1e-10 -42 +7 100,000,000 0x1F",
    "2024-01-31T12:34:56Z",
    "😀😃😄 👍🏽 🇺🇸 👨‍👩‍👧‍👦",
    "日本語のテキスト、中文文本，한국어 텍스트.",
    "café naïve façade résumé Ångström Œuvre straße",
    "Κόσμε Привет мир مرحبا بالعالم שלום עולם नमस्ते",
    "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ",
    "a\u00a0non\u2009breaking\u3000space\u200bzero",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "<|endoftext|><|endoftext|> two in a row",
    "<|endoftext",
    "https://example.org/path?q=1&r=%20#frag",
    "!!!???...,,,;;;:::---___===+++***",
    "ÀÁÂÃÄÅàáâãäå" * 5,
    "x" * 500,
    " " * 300 + "y",
]


def random_unicode_text(rng: random.Random, n: int) -> str:
    """A mix of ASCII, whitespace, punctuation, Latin, other scripts, CJK and emoji.

    Only characters assigned in the Unicode version that Python knows: characters added in
    newer versions may be letters to one regex engine and unassigned to the other (see
    gpt2_tokenizer's docstring).
    """
    out = []
    while len(out) < n:
        r = rng.random()
        if r < 0.35:
            c = chr(rng.randint(0x20, 0x7E))
        elif r < 0.5:
            c = rng.choice(" \n\t\r\x0b\x0c\x1c\x85\xa0\u2028\u3000'") * rng.randint(1, 3)
        elif r < 0.65:
            c = chr(rng.randint(0x80, 0x24F))
        elif r < 0.8:
            c = chr(rng.randint(0x250, 0x2FFF))
        elif r < 0.9:
            c = chr(rng.randint(0x3000, 0xFFFF))
        else:
            c = chr(rng.randint(0x10000, 0x10FFFF))
        if all(unicodedata.category(ch) not in ("Cn", "Cs") for ch in c):
            out.append(c)
    return "".join(out)


# --- exercise functions ---------------------------------------------------------------------------


def test_text_to_bytes():
    assert text_to_bytes("") == []
    assert text_to_bytes("hi") == [104, 105]
    assert text_to_bytes("é") == [0xC3, 0xA9]
    assert text_to_bytes("😀") == [0xF0, 0x9F, 0x98, 0x80]
    with pytest.raises((TypeError, AttributeError)):  # bytes are not text
        text_to_bytes(b"hi")


def test_get_pair_counts_overlapping():
    assert get_pair_counts([]) == {}
    assert get_pair_counts([7]) == {}
    assert get_pair_counts([1, 1, 1]) == {(1, 1): 2}
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}


def test_most_frequent_pair_ties_to_smallest():
    assert most_frequent_pair({(1, 2): 3}) == (1, 2)
    assert most_frequent_pair({(5, 1): 4, (2, 9): 4, (2, 3): 4, (0, 0): 1}) == (2, 3)
    assert most_frequent_pair({(9, 9): 5, (0, 1): 4}) == (9, 9)
    with pytest.raises(ValueError, match="empty"):
        most_frequent_pair({})


def test_merge_left_to_right_non_overlapping():
    assert merge([5, 5, 5], (5, 5), 256) == [256, 5]
    assert merge([5, 5, 5, 5], (5, 5), 256) == [256, 256]
    assert merge([1, 2, 3, 1, 2], (1, 2), 300) == [300, 3, 300]
    assert merge([3, 1, 2], (1, 2), 256) == [3, 256]
    assert merge([2, 1], (1, 2), 256) == [2, 1]
    assert merge([], (1, 2), 256) == []


def test_train_bpe_worked_example():
    # aa occurs 4 times; then (256, a) and (a, b) tie at 2 and the smaller pair (a, b) wins;
    # at the end four pairs tie at 1 and (a, c) = (97, 99) is the smallest
    assert train_bpe("aaabdaaabac", 260) == {(97, 97): 256, (97, 98): 257, (256, 257): 258, (97, 99): 259}


def test_train_bpe_tie_rule():
    # (c, d), (d, a) and (a, b) all occur 3 times; "cd" comes first in the text, "ab" is smallest
    assert train_bpe("cdabcdabcdab", 257) == {(97, 98): 256}
    # "baba...b": (b, a) and (a, b) both occur 10 times; (b, a) comes first, (a, b) is smaller
    assert train_bpe("ba" * 10 + "b", 257) == {(97, 98): 256}
    # "abab...": (a, b) occurs 6 times, (b, a) 5 times
    assert train_bpe("ab" * 6, 257) == {(97, 98): 256}


def test_train_bpe_stops_early_and_validates():
    # aaaa -> Z Z -> Y: two merges, then no pair is left
    assert train_bpe("aaaa", 1000) == {(97, 97): 256, (256, 256): 257}
    assert train_bpe("", 300) == {}
    assert train_bpe("x", 300) == {}
    assert train_bpe("hello", 256) == {}
    with pytest.raises(ValueError, match="256"):
        train_bpe("hello", 255)
    with pytest.raises((TypeError, AttributeError)):
        train_bpe(b"hello", 300)


def test_build_vocab():
    vocab = build_vocab({(104, 105): 256, (256, 33): 257})
    assert len(vocab) == 258
    assert vocab[65] == b"A"
    assert vocab[256] == b"hi" and vocab[257] == b"hi!"
    assert build_vocab({}) == {i: bytes([i]) for i in range(256)}


def test_encode_replays_training(shakespeare):
    text = shakespeare[:3000]
    merges = train_bpe(text, 320)
    ids = encode(text, merges)
    assert ids == replay_merges(text, merges)
    assert len(ids) < len(text)
    assert decode(ids, build_vocab(merges)) == text
    # a text never seen in training still round-trips
    other = "Wherefore art thou 😀, 日本?"
    assert decode(encode(other, merges), build_vocab(merges)) == other
    assert encode("", merges) == []


def test_decode_invalid_utf8_and_unknown_ids():
    vocab = build_vocab({})
    assert decode([0xFF], vocab) == "\ufffd"
    assert decode([104, 0xC3], vocab) == "h\ufffd"  # half of "é"
    emoji = text_to_bytes("😀")
    assert decode(emoji[:2], vocab) == "\ufffd"
    assert decode(emoji, vocab) == "😀"
    with pytest.raises(ValueError, match="999"):
        decode([104, 999], vocab)


def test_compression_ratio():
    assert compression_ratio("aaaa", [257]) == 4.0
    assert compression_ratio("é", [0xC3, 0xA9]) == 1.0
    with pytest.raises(ValueError, match="empty"):
        compression_ratio("abc", [])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_exercise_roundtrip_property(text):
    merges = {(101, 32): 256, (116, 104): 257, (257, 256): 258, (0xC3, 0xA9): 259}
    assert decode(encode(text, merges), build_vocab(merges)) == text


# --- the fast trainer -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", TRAIN_TEXTS)
@pytest.mark.parametrize("vocab_size", [256, 260, 300])
def test_fast_train_equals_train_bpe(text, vocab_size):
    tokenizer = BPETokenizer(pattern=None)
    tokenizer.train(text, vocab_size)
    assert tokenizer.merges == train_bpe(text, vocab_size)
    assert list(tokenizer.merges) == list(train_bpe(text, vocab_size))  # same order too


def test_fast_train_equals_train_bpe_on_corpus_slices(shakespeare):
    rng = random.Random(1)
    for _ in range(3):
        start = rng.randrange(len(shakespeare) - 1500)
        text = shakespeare[start : start + 1500]
        tokenizer = BPETokenizer(pattern=None)
        tokenizer.train(text, 360)
        assert tokenizer.merges == train_bpe(text, 360)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abc \n", max_size=120), st.integers(256, 300))
def test_fast_train_equals_train_bpe_property(text, vocab_size):
    # three letters: pairs tie all the time, so the tie rule is exercised at most steps
    tokenizer = BPETokenizer(pattern=None)
    tokenizer.train(text, vocab_size)
    assert tokenizer.merges == train_bpe(text, vocab_size)


def test_fast_train_with_gpt2_pattern_equals_naive(shakespeare):
    text = shakespeare[:4000] + " café naïve 😀 1234 don't  \n\n  x"
    tokenizer = BPETokenizer()
    tokenizer.train(text, 400)
    assert tokenizer.merges == naive_chunk_train(text, 400, GPT2_SPLIT_PATTERN)
    # no merge crosses a chunk boundary: no token holds a letter followed by a space
    assert not any(regex.search(rb"[a-z] ", tokenizer.vocab[i]) for i in tokenizer.merges.values())


def test_trained_tokenizer_encode_decode(shakespeare):
    text = shakespeare[:5000]
    plain = BPETokenizer(pattern=None)
    plain.train(text, 300)
    # with pattern=None the class encodes exactly like the exercise encode()
    assert plain.encode(text) == encode(text, plain.merges)
    split = BPETokenizer()
    split.train(text, 300)
    ids = split.encode(text)
    assert split.decode(ids) == text
    assert compression_ratio(text, ids) > 1.3  # 44 merges already shorten the text by a quarter
    assert max(ids) < split.vocab_size == 300


def test_train_stops_early_replaces_and_validates(capsys):
    tokenizer = BPETokenizer(pattern=None)
    tokenizer.train("aaaa", 1000, verbose=True)
    assert tokenizer.merges == {(97, 97): 256, (256, 256): 257}
    assert "257" in capsys.readouterr().out
    tokenizer.train("xyxy", 257)  # training again starts from scratch
    assert tokenizer.merges == {(120, 121): 256}
    with pytest.raises(ValueError, match="256"):
        tokenizer.train("abc", 100)
    with pytest.raises(TypeError):
        tokenizer.train(["abc"], 300)
    clash = BPETokenizer(special_tokens={ENDOFTEXT: 300})
    with pytest.raises(ValueError, match="300"):
        clash.train("hello hello", 400)


# --- special tokens, errors, save/load -------------------------------------------------------------


def test_special_tokens_allowed_special(gpt2, enc):
    text = "Hi<|endoftext|>there"
    with pytest.raises(ValueError, match="special token"):
        gpt2.encode(text)
    with pytest.raises(ValueError):
        enc.encode(text)  # tiktoken refuses too
    assert gpt2.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    assert 50256 in gpt2.encode(text, allowed_special="all")
    assert gpt2.encode(text, allowed_special={ENDOFTEXT}) == gpt2.encode(text, allowed_special="all")
    assert gpt2.encode(text, allowed_special="none") == enc.encode_ordinary(text)
    assert 50256 not in gpt2.encode(text, allowed_special="none")
    assert gpt2.encode(ENDOFTEXT, allowed_special="all") == [50256]
    assert gpt2.decode([50256]) == ENDOFTEXT
    with pytest.raises(ValueError, match="not registered"):
        gpt2.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special"):
        gpt2.encode("x", allowed_special="sometimes")


def test_several_special_tokens():
    tokenizer = BPETokenizer()
    tokenizer.train("hello world " * 20, 270)
    tokenizer.register_special_tokens({"<|a|>": 1000, "<|a|><|b|>": 1001, "<|b|>": 1002})
    text = "x<|a|><|b|>y<|b|>z<|a|>"
    # the longest special token wins where two start at the same place
    ids = tokenizer.encode(text, allowed_special="all")
    assert [i for i in ids if i >= 1000] == [1001, 1002, 1000]
    assert tokenizer.decode(ids) == text
    # allowing only <|b|> while <|a|> occurs raises, like tiktoken
    with pytest.raises(ValueError, match=r"<\|a\|>"):
        tokenizer.encode(text, allowed_special={"<|b|>"})
    assert tokenizer.encode("x<|b|>", allowed_special={"<|b|>"})[-1] == 1002
    assert tokenizer.vocab_size == 1003  # ids 0..1002, with a gap before the special tokens


def test_register_special_tokens_rejects_clashes():
    tokenizer = BPETokenizer()
    tokenizer.train("hello hello hello", 260)
    with pytest.raises(ValueError, match="already"):
        tokenizer.register_special_tokens({"<|x|>": 257})
    with pytest.raises(ValueError, match="share an id"):
        tokenizer.register_special_tokens({"<|x|>": 500, "<|y|>": 500})
    with pytest.raises(ValueError):
        tokenizer.register_special_tokens({"": 600})


def test_bad_inputs(gpt2):
    with pytest.raises(TypeError, match="str"):
        gpt2.encode(b"bytes")
    with pytest.raises(TypeError, match="str"):
        gpt2.encode(None)
    with pytest.raises(ValueError, match="123456"):
        gpt2.decode([31373, 123456])
    with pytest.raises(ValueError, match="-1"):
        gpt2.decode([-1])
    with pytest.raises(ValueError, match="256"):
        BPETokenizer().train("abc", 10)


def test_decode_invalid_utf8_never_raises(gpt2, enc):
    trained = BPETokenizer()
    trained.train("abc", 260)
    assert trained.decode([0xFF, 97]) == "\ufffda"
    ids = gpt2.encode("😀 café")
    for cut in range(len(ids) + 1):  # every prefix, including half an emoji
        assert gpt2.decode(ids[:cut]) == enc.decode(ids[:cut])
    assert "\ufffd" in gpt2.decode(ids[:1])
    # a tensor-like sequence (anything with .tolist()) is accepted
    assert gpt2.decode(array.array("l", gpt2.encode("hello"))) == "hello"
    assert gpt2.decode(iter(gpt2.encode("hello"))) == "hello"


def test_save_load_roundtrip(tmp_path, shakespeare):
    text = shakespeare[:20000]
    tokenizer = BPETokenizer(special_tokens={ENDOFTEXT: 600})
    tokenizer.train(text, 512)
    path = tmp_path / "tok.json"
    tokenizer.save(path)
    loaded = BPETokenizer.load(path)
    assert isinstance(loaded, BPETokenizer)
    assert loaded.merges == tokenizer.merges
    assert loaded.vocab == tokenizer.vocab
    assert loaded.special_tokens == tokenizer.special_tokens
    assert loaded.pattern == tokenizer.pattern
    sample = shakespeare[50000:60000] + ENDOFTEXT + "😀 naïve"
    assert loaded.encode(sample, allowed_special="all") == tokenizer.encode(sample, allowed_special="all")
    json.loads(path.read_text(encoding="utf-8"))  # plain JSON

    plain = BPETokenizer(pattern=None)
    plain.train("aaabdaaabac", 260)
    plain.save(tmp_path / "plain.json")
    assert Tokenizer.load(tmp_path / "plain.json").merges == plain.merges
    assert Tokenizer.load(tmp_path / "plain.json").pattern is None

    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a tokenizer"):
        BPETokenizer.load(tmp_path / "other.json")


def test_save_load_gpt2(tmp_path, gpt2, shakespeare):
    gpt2.save(tmp_path / "gpt2.json")
    loaded = BPETokenizer.load(tmp_path / "gpt2.json")
    assert loaded.base_bytes == gpt2.base_bytes
    sample = shakespeare[:20000] + " 😀 日本語 <|endoftext|>"
    assert loaded.encode(sample, allowed_special="all") == gpt2.encode(sample, allowed_special="all")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_roundtrip_property(gpt2, text):
    assert gpt2.decode(gpt2.encode(text, allowed_special="all")) == text
    assert gpt2.decode(gpt2.encode(text, allowed_special="none")) == text


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_trained_roundtrip_property(small, text):
    assert small.decode(small.encode(text)) == text


# --- GPT-2 vs tiktoken ------------------------------------------------------------------------------


def test_tiktoken_gpt2_offline_and_cached(enc):
    assert T.tiktoken_gpt2() is enc
    assert enc.n_vocab == 50257
    assert enc.encode("Hello world") == [15496, 995]


def test_gpt2_vocab_equals_tiktoken(gpt2, enc):
    assert gpt2.vocab_size == 50257
    assert len(gpt2.merges) == 50000
    assert sorted(gpt2.merges.values()) == list(range(256, 50256))
    for i in range(50256):
        assert gpt2.vocab[i] == enc.decode_single_token_bytes(i), i
    # each merge joins two tokens into the token whose id it gives
    for (a, b), new_id in gpt2.merges.items():
        assert gpt2.vocab[a] + gpt2.vocab[b] == gpt2.vocab[new_id]


@pytest.mark.parametrize("text", GPT2_STRINGS)
def test_gpt2_equals_tiktoken_hand_picked(gpt2, enc, text):
    assert gpt2.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    assert gpt2.encode(text, allowed_special="none") == enc.encode_ordinary(text)
    assert gpt2.decode(gpt2.encode(text, allowed_special="all")) == text


def test_gpt2_equals_tiktoken_lone_surrogates(gpt2, enc):
    # no UTF-8 form: both replace a lone surrogate with U+FFFD and join a valid pair
    for text in ["\ud800", "a\udfffb", "\ud83d\ude00", "x\ud83d"]:
        assert gpt2.encode(text) == enc.encode(text)


def test_gpt2_equals_tiktoken_on_tiny_shakespeare(gpt2, enc, shakespeare):
    assert gpt2.encode(shakespeare) == enc.encode(shakespeare)
    rng = random.Random(0)
    fresh = T.gpt2_tokenizer()  # empty chunk cache: every slice starts mid-word somewhere
    for _ in range(200):
        start = rng.randrange(len(shakespeare) - 2000)
        piece = shakespeare[start : start + 2000]
        ids = fresh.encode(piece)
        assert ids == enc.encode(piece), start
        assert fresh.decode(ids) == piece


def test_gpt2_equals_tiktoken_on_generated_unicode(gpt2, enc):
    rng = random.Random(1234)
    for _ in range(400):
        text = random_unicode_text(rng, rng.randint(1, 200))
        assert gpt2.encode(text) == enc.encode(text), text
        assert gpt2.decode(gpt2.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs", "Cn"]), max_size=60))
def test_gpt2_equals_tiktoken_property(gpt2, enc, text):
    assert gpt2.encode(text, allowed_special="none") == enc.encode_ordinary(text)


def test_gpt2_tokenizer_returns_independent_copies(gpt2):
    other = T.gpt2_tokenizer()
    assert other is not gpt2
    other.register_special_tokens({"<|pad|>": 50257})
    assert "<|pad|>" not in gpt2.special_tokens


# --- character tokenizer and data ----------------------------------------------------------------


def test_char_tokenizer(shakespeare):
    tokenizer = CharTokenizer(shakespeare)
    assert tokenizer.vocab_size == 65
    assert list(tokenizer.stoi) == sorted(set(shakespeare))
    assert all(tokenizer.itos[i] == ch for ch, i in tokenizer.stoi.items())
    text = shakespeare[:1000]
    ids = tokenizer.encode(text)
    assert len(ids) == len(text) and max(ids) < 65
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(array.array("l", ids)) == text
    assert CharTokenizer("hello").encode("hole") == [1, 3, 2, 0]


def test_char_tokenizer_errors():
    tokenizer = CharTokenizer("hello")
    with pytest.raises(ValueError, match="'z'"):
        tokenizer.encode("hez")
    with pytest.raises(ValueError, match="4"):
        tokenizer.decode([0, 4])
    with pytest.raises(ValueError, match="-1"):
        tokenizer.decode([-1])
    with pytest.raises(TypeError):
        tokenizer.encode(5)
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer("")
    with pytest.raises(TypeError):
        CharTokenizer(["h", "i"])


def test_load_tiny_shakespeare(shakespeare):
    assert shakespeare.startswith("First Citizen:")
    assert len(shakespeare) == 1115394
    assert T.load_tiny_shakespeare() is shakespeare


def test_module_imports_nothing_of_ours():
    # tokenization is chapter 1: it must not import later chapters or the checks
    source = open(T.__file__, encoding="utf-8").read()
    assert "from solutions" not in source and "import solutions" not in source
