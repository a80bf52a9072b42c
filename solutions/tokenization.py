"""Tokenization: turning text into integer ids and back (chapter 1).

A language model reads integers, not characters. This module builds the tokenizers the course
uses:

* byte-level BPE (byte-pair encoding), the scheme behind GPT-2: start from the 256 possible
  bytes of UTF-8, then again and again merge the most frequent adjacent pair into a new token;
* a character-level tokenizer, small enough to train a model on in minutes (chapter 6).

The first part holds the exercise functions, written as plainly as possible: learners write
them again under the same names and compare. The second part packages the same rules into
classes in the style of Karpathy's minbpe, fast enough to train on Tiny Shakespeare in a
second or two and to rebuild GPT-2's tokenizer id for id.

The rules, used everywhere in this file:

* training: the i-th merge learned gets id 256 + i, so a lower id means an earlier merge;
  each step takes the most frequent pair, and ties go to the smallest pair (tuple order);
* encoding: replay training, applying the learned merge with the lowest id among the
  adjacent pairs until none applies;
* decoding: join the tokens' bytes and decode UTF-8 with ``errors="replace"``, so it never
  raises, not even on half a character.
"""

from __future__ import annotations

import functools
import heapq
import json
import os
from collections import Counter
from importlib import resources
from typing import TYPE_CHECKING, Iterable, Union

import regex  # the `re` module has no \p{L} (any letter) classes, which GPT-2's pattern needs

if TYPE_CHECKING:
    import tiktoken

# GPT-2's pre-tokenization pattern, as published in its encoder.py. Text is first cut into
# chunks: common English contractions, a word with an optional leading space, a run of digits,
# a run of punctuation, runs of whitespace. BPE then runs inside each chunk only, so a token
# never spans a word and its punctuation ("dog." and "dog!" share the token " dog").
# `\s+(?!\S)` keeps the last space of a run out of the run, so that it can start the next word.
# tiktoken spells the same pattern a little differently (possessive quantifiers, for speed).
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

ENDOFTEXT = "<|endoftext|>"

Pair = tuple[int, int]


def _require_str(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")


def _require_vocab_size(vocab_size: int) -> None:
    if not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < 256:
        raise ValueError(
            f"vocab_size must be at least 256 (one token per byte), got {vocab_size}"
        )


# ----------------------------------------------------------------------------------------------
# Part 1: the exercise functions
# ----------------------------------------------------------------------------------------------


def text_to_bytes(text: str) -> list[int]:
    """The UTF-8 bytes of ``text``, as ints from 0 to 255.

    UTF-8 is the alphabet of byte-level BPE: every string, in any script, becomes a sequence
    over just 256 symbols, so no text is ever "out of vocabulary".
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return list(text.encode("utf-8"))


def get_pair_counts(ids: list[int]) -> dict[Pair, int]:
    """How often each adjacent pair occurs in ``ids``, counting overlapping pairs.

    [1, 1, 1] holds the pair (1, 1) twice: at positions 0-1 and 1-2.
    """
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def most_frequent_pair(counts: dict[Pair, int]) -> Pair:
    """The pair with the highest count; ties go to the smallest pair (Python tuple order).

    The tie rule makes training deterministic: without it, two correct implementations could
    learn different merges from the same text.
    """
    if not counts:
        raise ValueError("counts is empty: there is no pair to choose")
    top = max(counts.values())
    return min(pair for pair, count in counts.items() if count == top)


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    Occurrences do not overlap: merging (5, 5) in [5, 5, 5] gives [new_id, 5], because the
    first two ids are used up before the scan reaches the third.
    """
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(text: str, vocab_size: int) -> dict[Pair, int]:
    """Learn ``vocab_size - 256`` merges from ``text`` by plain byte-level BPE.

    Rule: start from the UTF-8 bytes of the whole text; at each step count the adjacent pairs,
    take the most frequent one (ties to the smallest pair), give it the next free id (256,
    257, ...) and merge it everywhere. Stop early when no pair is left (the text has become a
    single token). Returns the merges in the order learned.

    This version recounts every pair after each merge, which is slow on long texts but easy to
    check; ``BPETokenizer.train`` learns the same merges incrementally.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (one token per byte), got {vocab_size}")
    ids = text_to_bytes(text)
    merges = {}
    for new_id in range(256, vocab_size):
        counts = get_pair_counts(ids)
        if not counts:
            break
        pair = most_frequent_pair(counts)
        ids = merge(ids, pair, new_id)
        merges[pair] = new_id
    return merges


def build_vocab(merges: dict[Pair, int]) -> dict[int, bytes]:
    """Map every id to the bytes it stands for: the 256 single bytes, then one entry per merge.

    A merged token's bytes are its two parts' bytes joined. Merges are visited in id order, so
    both parts already have their bytes when a merge is reached.
    """
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in sorted(merges.items(), key=lambda item: item[1]):
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


def encode(text: str, merges: dict[Pair, int]) -> list[int]:
    """Turn ``text`` into ids: its UTF-8 bytes, then the learned merges, lowest id first.

    The lowest id is the merge learned first, so encoding replays training: a merge gets its
    turn only after the merges that built its parts. Stop when no adjacent pair is a merge.
    """
    ids = text_to_bytes(text)
    while len(ids) >= 2:
        counts = get_pair_counts(ids)
        pair = min(counts, key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = merge(ids, pair, merges[pair])
    return ids


def decode(ids: list[int], vocab: dict[int, bytes]) -> str:
    """Turn ids back into text: join their bytes and decode UTF-8, invalid bytes becoming U+FFFD.

    A run of tokens need not end on a character boundary (a model may stop halfway through an
    emoji), so decoding replaces what is not valid UTF-8 instead of raising.
    """
    try:
        data = b"".join(vocab[i] for i in ids)
    except KeyError as err:
        raise ValueError(f"unknown token id {err.args[0]!r}: it is not in the vocabulary") from None
    return data.decode("utf-8", errors="replace")


def compression_ratio(text: str, ids: list[int]) -> float:
    """UTF-8 bytes per token: how many bytes one token stands for, on average.

    Higher is better for a model: the same text becomes a shorter sequence.
    """
    if len(ids) == 0:
        raise ValueError("ids is empty: the compression ratio of zero tokens is undefined")
    return len(text.encode("utf-8")) / len(ids)


# ----------------------------------------------------------------------------------------------
# Part 2: tokenizer classes
# ----------------------------------------------------------------------------------------------

_FORMAT = "transformer-course-bpe-v1"  # first field of a saved tokenizer


class Tokenizer:
    """A byte-level BPE tokenizer: merges, the vocabulary they give, and special tokens.

    Attributes:
        merges: (id, id) -> new id, in the order learned; applying lower ids first encodes text.
        vocab: id -> the bytes it stands for; special tokens included (as their UTF-8 text).
        special_tokens: text -> id of tokens that are never split, such as "<|endoftext|>".
        pattern: the regex that cuts text into chunks before BPE, or None for no cutting.
        base_bytes: the byte each id 0..255 stands for. bytes(range(256)) for tokenizers
            trained here; GPT-2 numbers its bytes in another order (printable ones first).

    The base class only uses a vocabulary; ``BPETokenizer.train`` learns one from text.
    """

    # Encoding caches the ids of each chunk it has seen: in real text a few thousand words make
    # up most chunks, so most chunks skip BPE altogether. The cache is emptied when full, and
    # long chunks are not cached (they rarely repeat), so its memory stays bounded.
    cache_size = 50_000
    cache_max_chunk_len = 64

    def __init__(
        self, pattern: str | None = None, special_tokens: dict[str, int] | None = None
    ) -> None:
        self.pattern = pattern
        self.special_tokens: dict[str, int] = {}
        self._set_merges({}, bytes(range(256)))
        if special_tokens:
            self.register_special_tokens(special_tokens)

    @property
    def vocab_size(self) -> int:
        """Ids run from 0 to vocab_size - 1, special tokens included: the rows a model's
        embedding table needs."""
        return max(self.vocab) + 1

    # --- building the vocabulary --------------------------------------------------------------

    def _set_merges(self, merges: dict[Pair, int], base_bytes: bytes) -> None:
        """Install merges and rebuild everything derived from them (vocab, lookup tables, cache)."""
        if len(base_bytes) != 256 or len(set(base_bytes)) != 256:
            raise ValueError("base_bytes must hold each of the 256 byte values once")
        self.merges = dict(merges)
        self.base_bytes = bytes(base_bytes)
        vocab = {i: bytes([b]) for i, b in enumerate(self.base_bytes)}
        for (a, b), new_id in sorted(self.merges.items(), key=lambda item: item[1]):
            vocab[new_id] = vocab[a] + vocab[b]
        self._merge_vocab = vocab  # without special tokens
        # bytes.translate maps raw bytes to base ids in C; identity for trained tokenizers
        self._byte_to_id = bytes.maketrans(self.base_bytes, bytes(range(256)))
        self._compiled = regex.compile(self.pattern) if self.pattern is not None else None
        self._rebuild_specials()

    def register_special_tokens(self, special_tokens: dict[str, int]) -> None:
        """Add tokens that encode as one id and are never split or merged.

        Their ids must not be used by the byte/merge vocabulary, nor shared. Registering a
        token again replaces its id.
        """
        for text, token_id in special_tokens.items():
            _require_str(text)
            if not text:
                raise ValueError("a special token cannot be the empty string")
            if not isinstance(token_id, int) or token_id < 0:
                raise ValueError(
                    f"special token {text!r} needs a non-negative int id, got {token_id!r}"
                )
            if token_id in self._merge_vocab:
                raise ValueError(
                    f"special token {text!r} has id {token_id}, which the vocabulary already "
                    f"uses for {self._merge_vocab[token_id]!r}"
                )
        combined = {**self.special_tokens, **special_tokens}
        if len(set(combined.values())) != len(combined):
            raise ValueError(f"two special tokens would share an id: {combined}")
        self.special_tokens = combined
        self._rebuild_specials()

    def _rebuild_specials(self) -> None:
        self.vocab = dict(self._merge_vocab)
        for text, token_id in self.special_tokens.items():
            self.vocab[token_id] = text.encode("utf-8")
        self._cache: dict[str, list[int]] = {}

    # --- encoding -----------------------------------------------------------------------------

    def encode(self, text: str, allowed_special: Union[str, set[str]] = "none_raise") -> list[int]:
        """Encode ``text`` into ids; special tokens follow tiktoken's rules.

        ``allowed_special`` says what to do with special tokens written in ``text``:

        * "none_raise" (default): raise ValueError if any appears. Text from users should not
          be able to inject "<|endoftext|>", so the caller has to opt in;
        * "all": each one becomes its single id;
        * "none": treat them as ordinary text (several ordinary tokens);
        * a set of special tokens: those become their id; any other one raises.
        """
        _require_str(text)
        if allowed_special == "all":
            allowed, disallowed = set(self.special_tokens), set()
        elif allowed_special == "none":
            allowed, disallowed = set(), set()
        elif allowed_special == "none_raise":
            allowed, disallowed = set(), set(self.special_tokens)
        elif isinstance(allowed_special, (set, frozenset)):
            unknown = allowed_special - self.special_tokens.keys()
            if unknown:
                raise ValueError(f"not registered as special tokens: {sorted(unknown)}")
            allowed, disallowed = set(allowed_special), self.special_tokens.keys() - allowed_special
        else:
            raise ValueError(
                f"allowed_special must be 'all', 'none', 'none_raise' or a set of special "
                f"tokens, got {allowed_special!r}"
            )
        for special in sorted(disallowed):
            if special in text:
                raise ValueError(
                    f"the text contains the special token {special!r}, which is not allowed. "
                    f"Pass allowed_special='all' (or a set holding it) to encode it as one token, "
                    f"or allowed_special='none' to encode it as ordinary text."
                )
        if not allowed:
            return self.encode_ordinary(text)
        # Cut the text at the allowed special tokens (longest first, so that one special token
        # that starts another cannot win), then encode the pieces between them.
        alternatives = "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True))
        ids: list[int] = []
        for i, piece in enumerate(regex.split(f"({alternatives})", text)):
            if i % 2 == 1:  # split() puts the captured separators at the odd positions
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with special tokens treated as ordinary text (like tiktoken's)."""
        _require_str(text)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (e.g. "\ud800") has no UTF-8 form. tiktoken replaces it with
            # U+FFFD after pairing up valid surrogate pairs; doing the same keeps ids equal.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        chunks = self._compiled.findall(text) if self._compiled is not None else [text]
        cache = self._cache
        ids: list[int] = []
        for chunk in chunks:
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk.encode("utf-8"))
                if len(chunk) <= self.cache_max_chunk_len:
                    if len(cache) >= self.cache_size:
                        cache.clear()
                    cache[chunk] = chunk_ids
            ids.extend(chunk_ids)
        return ids

    def _encode_chunk(self, data: bytes) -> list[int]:
        """BPE on one chunk: the rule of ``encode``, finding the best pair in one pass."""
        ids = list(data.translate(self._byte_to_id))
        merges = self.merges
        while len(ids) >= 2:
            best_pair, best_id = None, None
            for pair in zip(ids, ids[1:]):
                new_id = merges.get(pair)
                if new_id is not None and (best_id is None or new_id < best_id):
                    best_pair, best_id = pair, new_id
            if best_pair is None:
                break
            ids = merge(ids, best_pair, best_id)
        return ids

    # --- decoding -----------------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> str:
        """Turn ids back into text; bytes that are not valid UTF-8 become U+FFFD."""
        # a tensor or an array of ids (a model's output) becomes a list of ints
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        vocab = self.vocab
        try:
            data = b"".join([vocab[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or i not in vocab)
            raise ValueError(
                f"unknown token id {bad!r}: ids go from 0 to {max(vocab)} in this vocabulary"
            ) from None
        return data.decode("utf-8", errors="replace")

    # --- saving and loading -------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer to ``path`` as one JSON object (``load`` reads it back)."""
        data = {
            "format": _FORMAT,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "base_bytes": list(self.base_bytes),
            # [a, b, new_id] in id order: the order in which encoding applies them
            "merges": [[a, b, i] for (a, b), i in sorted(self.merges.items(), key=lambda m: m[1])],
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a tokenizer written by ``save``."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a tokenizer saved by Tokenizer.save")
        tokenizer = cls(pattern=data["pattern"])
        merges = {(a, b): i for a, b, i in data["merges"]}
        tokenizer._set_merges(merges, bytes(data["base_bytes"]))
        tokenizer.register_special_tokens(data["special_tokens"])
        return tokenizer

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={len(self.special_tokens)})"
        )


class BPETokenizer(Tokenizer):
    """A byte-level BPE tokenizer that can be trained; GPT-2's pre-splitting by default.

    ``pattern=None`` trains and encodes on the whole text as one chunk, like ``train_bpe``
    and ``encode``.
    """

    def __init__(
        self,
        pattern: str | None = GPT2_SPLIT_PATTERN,
        special_tokens: dict[str, int] | None = None,
    ) -> None:
        super().__init__(pattern=pattern, special_tokens=special_tokens)

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> None:
        """Learn ``vocab_size - 256`` merges from ``text``, replacing any earlier merges.

        Same rule as ``train_bpe`` (most frequent pair, ties to the smallest pair, stop when no
        pair is left), applied inside the chunks that ``pattern`` cuts. What makes it fast:

        1. Equal chunks merge alike, so each distinct chunk is kept once with its frequency as
           a weight (Tiny Shakespeare: about 300,000 chunks, 15,000 distinct).
        2. Pairs are counted once. Merging (a, b) changes counts only next to where (a, b)
           occurs, so only the chunks that hold it are visited (an index pair -> chunks tells
           which) and only the pairs touching each occurrence are updated.
        3. The most frequent pair comes off a heap of (-count, pair), which orders ties the
           same way as ``most_frequent_pair``. A changed count is pushed again; entries whose
           count is out of date are skipped when they come off ("lazy deletion").

        With ``pattern=None`` the whole text is one chunk, rescanned at every merge: fine for
        short texts only.
        """
        _require_str(text)
        _require_vocab_size(vocab_size)
        clashing = {s: i for s, i in self.special_tokens.items() if 256 <= i < vocab_size}
        if clashing:
            raise ValueError(
                f"special token ids {clashing} fall in the range 256..{vocab_size - 1} "
                f"that training gives to merges; use ids >= vocab_size"
            )
        chunks = self._compiled.findall(text) if self._compiled is not None else [text]
        chunk_freq = Counter(chunk for chunk in chunks if chunk)
        words = [list(chunk.encode("utf-8")) for chunk in chunk_freq]
        freqs = list(chunk_freq.values())

        counts: dict[Pair, int] = {}  # pair -> occurrences, weighted by chunk frequency
        where: dict[Pair, set[int]] = {}  # pair -> indices of the chunks that (may) hold it
        for w, (ids, freq) in enumerate(zip(words, freqs)):
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + freq
                where.setdefault(pair, set()).add(w)
        heap = [(-count, pair) for pair, count in counts.items()]
        heapq.heapify(heap)

        merges: dict[Pair, int] = {}
        vocab = {i: bytes([i]) for i in range(256)}
        for new_id in range(256, vocab_size):
            while heap:
                neg_count, pair = heapq.heappop(heap)
                if counts.get(pair) == -neg_count:
                    break  # an up-to-date entry: the most frequent pair
            else:
                break  # no pair left anywhere: stop early, like train_bpe
            merges[pair] = new_id
            vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
            if verbose:
                print(f"merge {new_id - 255}/{vocab_size - 256}: {pair} -> {new_id} "
                      f"{vocab[new_id]!r} ({-neg_count} occurrences)")
            delta: dict[Pair, int] = {}
            for w in where.pop(pair):
                words[w] = _merge_and_count(words[w], pair, new_id, freqs[w], delta, where, w)
            for changed, diff in delta.items():
                count = counts.get(changed, 0) + diff
                if count > 0:
                    counts[changed] = count
                    heapq.heappush(heap, (-count, changed))
                else:
                    counts.pop(changed, None)
        self._set_merges(merges, bytes(range(256)))


def _merge_and_count(
    ids: list[int],
    pair: Pair,
    new_id: int,
    freq: int,
    delta: dict[Pair, int],
    where: dict[Pair, set[int]],
    w: int,
) -> list[int]:
    """``merge`` for the trainer: also record in ``delta`` how pair counts change.

    Each occurrence of (a, b) turns (left, a) into (left, new) and (b, right) into (new, right).
    ``left`` is read from the output, so two merges side by side, as in a b a b, are counted
    right: the first one makes (new, a), the second turns it into (new, new).
    """
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if ids[i] == a and i + 1 < n and ids[i + 1] == b:
            delta[pair] = delta.get(pair, 0) - freq
            if out:
                left = out[-1]
                delta[(left, a)] = delta.get((left, a), 0) - freq
                delta[(left, new_id)] = delta.get((left, new_id), 0) + freq
                where.setdefault((left, new_id), set()).add(w)
            if i + 2 < n:
                right = ids[i + 2]
                delta[(b, right)] = delta.get((b, right), 0) - freq
                delta[(new_id, right)] = delta.get((new_id, right), 0) + freq
                where.setdefault((new_id, right), set()).add(w)
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# ----------------------------------------------------------------------------------------------
# Part 3: GPT-2's tokenizer, the tiktoken oracle, the data
# ----------------------------------------------------------------------------------------------


def _data_file(*parts: str) -> "resources.abc.Traversable":
    # importlib.resources finds the files inside an installed package too (wheel, zip)
    path = resources.files("solutions") / "data"
    for part in parts:
        path = path / part
    return path


def _gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, used to store bytes in text files.

    The 188 printable bytes stand for themselves; the other 68 (space, newline, control bytes,
    ...) are moved to the characters from U+0100 on, in byte order. A space becomes 'Ġ' and a
    newline 'Ċ', which is why those letters fill vocab.bpe.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


@functools.lru_cache(maxsize=1)
def _gpt2_merges() -> tuple[bytes, dict[Pair, int]]:
    """Read GPT-2's base byte order and merges from encoder.json (ids) and vocab.bpe (merges)."""
    byte_of_char = {ch: b for b, ch in _gpt2_bytes_to_unicode().items()}

    def to_bytes(token: str) -> bytes:
        return bytes(byte_of_char[ch] for ch in token)

    encoder = json.loads(_data_file("gpt2", "encoder.json").read_text(encoding="utf-8"))
    id_of = {to_bytes(tok): i for tok, i in encoder.items() if tok != ENDOFTEXT}
    # ids 0..255 are GPT-2's single-byte tokens: the byte each one stands for
    token_of_id = {i: tok for tok, i in id_of.items()}
    base_bytes = b"".join(token_of_id[i] for i in range(256))

    merges: dict[Pair, int] = {}
    lines = _data_file("gpt2", "vocab.bpe").read_text(encoding="utf-8").split("\n")
    for line in lines[1:]:  # the first line is "#version: 0.2"
        if not line:
            continue
        left, right = (to_bytes(part) for part in line.split(" "))
        # vocab.bpe stores merges as pairs of strings; here they become (id, id) -> id, and the
        # merged token's id (its rank) comes from encoder.json
        merges[(id_of[left], id_of[right])] = id_of[left + right]
    return base_bytes, merges


def gpt2_tokenizer() -> BPETokenizer:
    """GPT-2's tokenizer rebuilt from its published files; ids equal tiktoken's "gpt2".

    Its 50,000 merges come from vocab.bpe and their ids from encoder.json; <|endoftext|> is
    50256. Each call returns a new tokenizer (the files are read once).

    One caveat: the pattern runs on the `regex` module here and on a Rust engine in tiktoken.
    Each carries its own copy of Unicode's tables, so a character added in a recent Unicode
    version (17.0, with regex 2025+ and tiktoken 0.14) may be a letter to one engine and
    unassigned to the other, and be cut differently. Older characters agree.
    """
    base_bytes, merges = _gpt2_merges()
    tokenizer = BPETokenizer(pattern=GPT2_SPLIT_PATTERN)
    tokenizer._set_merges(merges, base_bytes)
    tokenizer.register_special_tokens({ENDOFTEXT: 50256})
    return tokenizer


# sha256 of the vendored gpt2.tiktoken; it equals OpenAI's r50k_base.tiktoken (the same BPE)
_GPT2_TIKTOKEN_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


@functools.lru_cache(maxsize=1)
def tiktoken_gpt2() -> "tiktoken.Encoding":
    """tiktoken's "gpt2" encoding, built offline from the vendored gpt2.tiktoken.

    ``tiktoken.get_encoding("gpt2")`` would download its files; building the Encoding directly
    needs no network and no environment variable. Used as the reference to check ours against.
    """
    import base64
    import hashlib

    import tiktoken  # only the oracle needs it

    # Parsed here rather than with tiktoken.load, which copies the file into a cache folder:
    # this must also work where nothing may be written (a grading sandbox).
    data = _data_file("gpt2", "gpt2.tiktoken").read_bytes()
    if hashlib.sha256(data).hexdigest() != _GPT2_TIKTOKEN_SHA256:
        raise RuntimeError("the vendored gpt2.tiktoken is damaged (its sha256 does not match)")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: 50256},
        explicit_n_vocab=50257,
    )


class CharTokenizer:
    """Character-level tokenizer: one id per distinct character of a text, in sorted order.

    Tiny vocabulary (65 characters for Tiny Shakespeare), long sequences: the simplest
    tokenizer a model can be trained on.
    """

    def __init__(self, text: str) -> None:
        _require_str(text)
        if not text:
            raise ValueError("text is empty: a character tokenizer needs at least one character")
        chars = sorted(set(text))
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(chars)}
        self.itos: dict[int, str] = {i: ch for i, ch in enumerate(chars)}
        self.vocab_size: int = len(chars)

    def encode(self, text: str) -> list[int]:
        """One id per character; ValueError naming any character not in the vocabulary."""
        _require_str(text)
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError:
            unknown = sorted(set(text) - self.stoi.keys())
            raise ValueError(f"characters not in the vocabulary: {unknown}") from None

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids``; ValueError on an id outside 0..vocab_size-1."""
        # a tensor or an array of ids (a model's output) becomes a list of ints
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        try:
            return "".join([self.itos[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or i not in self.itos)
            raise ValueError(
                f"id {bad!r} is out of range: ids go from 0 to {self.vocab_size - 1}"
            ) from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


@functools.lru_cache(maxsize=1)
def load_tiny_shakespeare() -> str:
    """The Tiny Shakespeare corpus (about 1.1 million characters), shipped with the package."""
    return _data_file("tinyshakespeare.txt").read_text(encoding="utf-8")
