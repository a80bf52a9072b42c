"""Tokenization: turning text into integer ids and back (chapter 1).

A language model reads integers, not characters. This module builds the tokenizers the course
uses:

* byte-level BPE (byte-pair encoding), the scheme behind GPT-2: start from the 256 possible
  bytes of UTF-8, then again and again merge the most frequent adjacent pair into a new token;
* a character-level tokenizer, small enough to train a model on in minutes (chapter 6).

The first part holds the exercise functions, written as plainly as possible: learners write
them again under the same names and compare. The second part packages the same rules into
classes in the style of Karpathy's minbpe, fast enough to train on Tiny Shakespeare in a
second or two and to rebuild GPT-2's tokenizer id for id; they also load tokenizers shipped in
GPT-2's file format, train with special tokens, and encode a file of any size lazily.

The rules, used everywhere in this file:

* training: the i-th merge learned gets id 256 + i, so a lower id means an earlier merge;
  each step takes the most frequent pair, and ties go to the smallest pair (tuple order);
* encoding: replay training, applying the learned merge with the lowest id among the
  adjacent pairs until none applies;
* decoding: join the tokens' bytes and decode UTF-8 with ``errors="replace"``, so it never
  raises, not even on half a character.
"""

from __future__ import annotations

import copy
import functools
import heapq
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Union

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
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
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

# Chunks of fewer bytes than this are encoded by rescanning, like `encode`: for the few bytes of
# a short word, one pass over a short list is cheaper than building a heap (measured on Tiny
# Shakespeare's and Python code's distinct chunks: the heap wins from about 8 bytes on). Longer
# chunks use the heap (`_encode_chunk_heap`), which stays O(n log n) however long they are.
_HEAP_MIN_BYTES = 8


class Tokenizer:
    """A byte-level BPE tokenizer: merges, the vocabulary they give, and special tokens.

    Attributes:
        merges: (id, id) -> new id, in the order learned; applying lower ids first encodes text.
        vocab: id -> the bytes it stands for; special tokens included (as their UTF-8 text).
        special_tokens: text -> id of tokens that are never split, such as "<|endoftext|>".
        unreachable: id -> bytes of vocabulary entries that are neither a byte nor a merge's
            result nor special, kept from a loaded vocabulary (GPT-2's vocab.json lists
            "<|endoftext|>" as an ordinary entry): they decode to their bytes, and encoding
            never produces them, since no merge makes them.
        pattern: the regex that cuts text into chunks before BPE, or None for no cutting.
        base_bytes: the byte each id 0..255 stands for. bytes(range(256)) for tokenizers
            trained here; GPT-2 numbers its bytes in another order (printable ones first).

    The base class only uses a vocabulary; ``BPETokenizer.train`` learns one from text, and
    ``from_gpt2_files`` / ``from_vocab_and_merges`` load one that was trained elsewhere.

    Every method that changes a tokenizer (``register_special_tokens``, ``train``, and the
    private ``_set_merges`` behind them and the loaders) checks all of its input before it
    changes anything: a call that raises leaves the tokenizer as it was. Treat the attributes
    as read-only; assigning to them skips those checks.
    """

    # Encoding caches the ids of each chunk it has seen: in real text a few thousand words make
    # up most chunks, so most chunks skip BPE altogether. The cache is emptied when full, and
    # long chunks are not cached (they rarely repeat), so its memory stays bounded.
    cache_size = 50_000
    cache_max_chunk_len = 64
    # encode_iterable gathers about this many characters before it encodes what is settled
    stream_batch_chars = 8192

    def __init__(
        self, pattern: str | None = None, special_tokens: dict[str, int] | None = None
    ) -> None:
        """Raises TypeError or ValueError for a pattern that is not a valid regex, or for
        special tokens that ``register_special_tokens`` would refuse."""
        self._compiled = _compile_pattern(pattern)
        self.pattern = pattern
        self.special_tokens: dict[str, int] = {}
        self._set_merges({}, bytes(range(256)), special_tokens or {})

    @property
    def vocab_size(self) -> int:
        """Ids run from 0 to vocab_size - 1, special tokens included: the rows a model's
        embedding table needs."""
        return max(self.vocab) + 1

    # --- building the vocabulary --------------------------------------------------------------

    def _set_merges(
        self,
        merges: dict[Pair, int],
        base_bytes: bytes,
        special_tokens: Mapping[str, int] | None = None,
        unreachable: Mapping[int, bytes] | None = None,
    ) -> None:
        """Install merges (and special tokens, and unreachable entries) and rebuild everything
        derived from them.

        ``special_tokens=None`` keeps the registered special tokens; ``unreachable=None`` means
        none (a new set of merges, as training makes, replaces the whole vocabulary). Everything
        is checked first (see ``_build_merge_vocab``, ``_add_unreachable`` and
        ``_check_special_tokens``); if a check raises TypeError or ValueError, nothing has changed.
        """
        merge_vocab = _add_unreachable(_build_merge_vocab(merges, base_bytes), unreachable or {})
        specials = self.special_tokens if special_tokens is None else special_tokens
        _check_special_tokens(specials, merge_vocab, unreachable or {})
        # every check passed: nothing below can fail, so the tokenizer never ends up half-updated
        self.merges = dict(merges)
        self.base_bytes = bytes(base_bytes)
        self.unreachable = dict(unreachable or {})
        self._merge_vocab = merge_vocab  # without special tokens
        # bytes.translate maps raw bytes to base ids in C; identity for trained tokenizers
        self._byte_to_id = bytes.maketrans(self.base_bytes, bytes(range(256)))
        self.special_tokens = dict(specials)
        self._rebuild_specials()

    def register_special_tokens(self, special_tokens: Mapping[str, int]) -> None:
        """Add tokens that encode as one id and are never split or merged.

        Args:
            special_tokens: text -> id. Registering a token again replaces its id.

        Raises (and then changes nothing):
            TypeError: not a mapping, a text that is not a str, an id that is not an int.
            ValueError: an empty text, a text with a lone surrogate (it has no UTF-8 bytes), a
                negative id, an id that the byte/merge vocabulary uses (except an unreachable
                entry holding the token's own text, which becomes special), or two special
                tokens that would share an id.
        """
        if not isinstance(special_tokens, Mapping):
            raise TypeError(
                f"special_tokens must be a dict of text -> id, got {type(special_tokens).__name__}"
            )
        combined = {**self.special_tokens, **special_tokens}
        _check_special_tokens(combined, self._merge_vocab, self.unreachable)
        self.special_tokens = combined
        self._rebuild_specials()

    def _rebuild_specials(self) -> None:
        self.vocab = dict(self._merge_vocab)
        for text, token_id in self.special_tokens.items():
            self.vocab[token_id] = text.encode("utf-8")
        self._cache: dict[str, list[int]] = {}

    # --- loading a tokenizer trained elsewhere ------------------------------------------------

    @classmethod
    def from_vocab_and_merges(
        cls,
        vocab: Mapping[int, bytes],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Mapping[str, int] | None = None,
        pattern: str | None = GPT2_SPLIT_PATTERN,
    ) -> "Tokenizer":
        """Build a byte-level BPE tokenizer from a vocabulary and a list of merges.

        This is how tokenizers trained by other libraries are described: ids 0..255 are the
        single bytes (in any order), and each merge joins two tokens, given by their bytes,
        into the token whose id the vocabulary gives.

        Args:
            vocab: id -> the bytes the token stands for. It may hold the special tokens too
                (as their UTF-8 text, at their ids), like GPT-2's encoder.json.
            merges: (left bytes, right bytes) in the order they were learned.
            special_tokens: text -> id; they must not collide with the vocabulary's ids.
            pattern: the pre-tokenization regex (GPT-2's by default), or None.

        The course's rule is that encoding applies the merge with the lowest id first, so the
        merged ids must increase along ``merges`` (true for GPT-2 and for tokenizers trained
        here). Tokenizers whose ids are not in merge order (RoBERTa's, for example) are refused.

        A vocabulary entry that is neither a byte, a merge's result nor a special token is kept
        as it is, in ``unreachable``: GPT-2's vocab.json, and many models', list "<|endoftext|>"
        (id 50256) as an ordinary entry. It decodes to its bytes; encoding never produces it
        (no merge makes it), so the string "<|endoftext|>" encodes as ordinary text unless it
        is declared special.

        Raises TypeError or ValueError, naming the entry: an id or bytes of the wrong type, a
        byte missing from ids 0..255, two ids with the same bytes, a merge whose part or whose
        result is not in the vocabulary, a merge listed twice, ids that do not increase along
        the merges, or a bad special token.
        """
        special_tokens = {} if special_tokens is None else special_tokens
        if not isinstance(special_tokens, Mapping):
            raise TypeError(
                f"special_tokens must be a dict of text -> id, got {type(special_tokens).__name__}"
            )
        id_merges, base_bytes, unreachable = _merges_from_bytes(vocab, merges, special_tokens)
        tokenizer = cls(pattern=pattern)
        tokenizer._set_merges(id_merges, base_bytes, special_tokens, unreachable)
        return tokenizer

    @classmethod
    def from_gpt2_files(
        cls,
        vocab_file: "str | os.PathLike | resources.abc.Traversable",
        merges_file: "str | os.PathLike | resources.abc.Traversable",
        pattern: str | None = GPT2_SPLIT_PATTERN,
    ) -> "Tokenizer":
        """Load a tokenizer shipped in GPT-2's format, as many models ship theirs.

        Args:
            vocab_file: ``vocab.json`` (GPT-2 calls it ``encoder.json``): a JSON object
                token -> id, where each token's bytes are written with GPT-2's printable
                byte alphabet (a space is "Ġ", a newline "Ċ").
            merges_file: ``merges.txt`` (GPT-2: ``vocab.bpe``): one merge per line, the two
                parts separated by a space, in the order learned; a first line starting with
                "#version" is skipped.
            pattern: the pre-tokenization regex, GPT-2's by default.

        Entries of the vocabulary that are neither one byte nor the result of a merge (such
        as "<|endoftext|>") become special tokens, with their text as written in the file.
        Everything else goes through ``from_vocab_and_merges``.

        Raises ValueError naming the file (and line) for invalid JSON, a key written twice, an
        id given to two tokens, a line that is not two tokens, a character outside GPT-2's
        byte alphabet, and everything ``from_vocab_and_merges`` refuses.
        """
        # str.translate + latin-1 turns GPT-2's characters back into bytes in C; a character
        # outside the alphabet becomes U+FFFF, which latin-1 cannot encode
        table = {ord(ch): b for b, ch in _gpt2_bytes_to_unicode().items()}
        table.update({c: 0xFFFF for c in range(256) if c not in table})

        def to_bytes(token: str) -> bytes | None:
            try:
                return token.translate(table).encode("latin-1")
            except UnicodeEncodeError:
                return None

        token_ids = _read_vocab_json(vocab_file)
        merges: list[tuple[bytes, bytes]] = []
        merges_name = _file_name(merges_file)
        for number, line in enumerate(_read_text(merges_file).split("\n"), start=1):
            line = line.rstrip("\r")
            if not line or (number == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts):
                raise ValueError(
                    f"{merges_name}, line {number}: a merge is two tokens separated by one "
                    f"space, got {line!r}"
                )
            left, right = (to_bytes(part) for part in parts)
            if left is None or right is None:
                raise ValueError(
                    f"{merges_name}, line {number}: {line!r} has a character outside GPT-2's "
                    f"byte alphabet, so it stands for no bytes"
                )
            merges.append((left, right))

        merged = {left + right for left, right in merges}
        vocab: dict[int, bytes] = {}
        special_tokens: dict[str, int] = {}
        for token, token_id in token_ids.items():
            data = to_bytes(token)
            if data is not None and (len(data) == 1 or data in merged):
                vocab[token_id] = data
            else:
                special_tokens[token] = token_id
        return cls.from_vocab_and_merges(vocab, merges, special_tokens, pattern=pattern)

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
        allowed, disallowed = self._special_sets(allowed_special)
        _refuse_disallowed(text, disallowed)
        if not allowed:
            return self.encode_ordinary(text)
        # Cut the text at the allowed special tokens (longest first, so that one special token
        # that starts another cannot win), then encode the pieces between them.
        ids: list[int] = []
        for i, piece in enumerate(_specials_regex(allowed).split(text)):
            if i % 2 == 1:  # split() puts the captured separators at the odd positions
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def _special_sets(self, allowed_special: Union[str, set[str]]) -> tuple[set[str], set[str]]:
        """(allowed, disallowed) special tokens for ``encode``'s ``allowed_special``."""
        if isinstance(allowed_special, str):
            if allowed_special == "all":
                return set(self.special_tokens), set()
            if allowed_special == "none":
                return set(), set()
            if allowed_special == "none_raise":
                return set(), set(self.special_tokens)
        elif isinstance(allowed_special, (set, frozenset)):
            unknown = allowed_special - self.special_tokens.keys()
            if unknown:
                raise ValueError(f"not registered as special tokens: {sorted(unknown, key=str)}")
            return set(allowed_special), self.special_tokens.keys() - allowed_special
        raise ValueError(
            f"allowed_special must be 'all', 'none', 'none_raise' or a set of special "
            f"tokens, got {allowed_special!r}"
        )

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with special tokens treated as ordinary text (like tiktoken's)."""
        _require_str(text)
        text = _fix_surrogates(text)
        chunks = self._compiled.findall(text) if self._compiled is not None else [text]
        return self._encode_chunks(chunks)

    def _encode_chunks(self, chunks: Iterable[str]) -> list[int]:
        """The ids of chunks cut by the pattern: from the cache, else by BPE (then cached)."""
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
        """BPE on one chunk: the rule of ``encode``, finding the best pair in one pass.

        Each merge rescans the chunk, so a chunk of n bytes costs up to n passes: quick for
        words, far too slow for 100,000 letters without a space (minified code, base64, DNA).
        Long chunks go to ``_encode_chunk_heap``, which gives the same ids.
        """
        ids = list(data.translate(self._byte_to_id))
        if len(ids) >= _HEAP_MIN_BYTES:
            return self._encode_chunk_heap(ids)
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

    def _encode_chunk_heap(self, ids: list[int]) -> list[int]:
        """The same BPE in O(n log n): a heap of mergeable adjacent pairs over a linked list.

        Every adjacent pair that is a merge goes on a heap as (merge id, position of its left
        token); popping gives the lowest merge id, leftmost first, which is exactly the order
        in which ``encode`` merges (all occurrences of the lowest merge, left to right). Merging
        touches only the two neighbours: the merged token's new pairs go on the heap. Pairs
        that a merge destroyed stay on the heap and are skipped when they come off ("lazy
        deletion"): an entry is current only if the two tokens now at that place still form
        the pair whose merge id it holds. A merge's id is always higher than its parts', so the
        new pairs never jump ahead of the merge being done.

        Args:
            ids: base ids of the chunk's bytes (changed in place).
        Returns:
            the chunk's ids.
        """
        merges = self.merges
        n = len(ids)
        # position i's right neighbour is nxt[i] (n: none), its left one prv[i] (-1: none);
        # a merged-away position gets the id -1, which forms no pair
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        # A heap entry (merge id, position) is stored as the one int merge_id * n + position:
        # ints order the same way as the pairs and are cheaper to build and compare (about a
        # quarter faster on a 100,000-byte chunk).
        heap = [
            new_id * n + i
            for i, new_id in enumerate(map(merges.get, zip(ids, ids[1:])))
            if new_id is not None
        ]
        heapq.heapify(heap)
        pop, push, get = heapq.heappop, heapq.heappush, merges.get
        while heap:
            new_id, i = divmod(pop(heap), n)
            j = nxt[i]
            if j == n or get((ids[i], ids[j])) != new_id:
                continue  # out of date: one of its tokens was merged into something else
            ids[i], ids[j] = new_id, -1
            k = nxt[j]
            nxt[i] = k
            if k != n:
                prv[k] = i
                right = get((new_id, ids[k]))
                if right is not None:
                    push(heap, right * n + i)
            p = prv[i]
            if p != -1:
                left = get((ids[p], new_id))
                if left is not None:
                    push(heap, left * n + p)
        return [token for token in ids if token != -1]

    def encode_iterable(
        self, iterable: Iterable[str], allowed_special: Union[str, set[str]] = "none_raise"
    ) -> Iterator[int]:
        """Encode a text given in pieces (an open file, a generator of lines), lazily.

        Yields exactly the ids of ``encode("".join(iterable), allowed_special)``, without ever
        holding the whole text: memory stays bounded by ``stream_batch_chars`` plus the
        longest chunk of the text (with ``pattern=None`` the whole text is one chunk, so it is
        all held). Pieces may be cut anywhere: inside a word, a run of whitespace, a special
        token or a surrogate pair.

        ``allowed_special`` is checked now and works as in ``encode``. With "none_raise" (or a
        set), a disallowed special token raises ValueError when the text reaching it is read;
        the ids of the text before it may have been yielded already.

        Raises:
            ValueError: a bad ``allowed_special`` (at the call), or a disallowed special token.
            TypeError: a piece that is not a str (when it is reached).
        """
        allowed, disallowed = self._special_sets(allowed_special)  # checked before any piece
        return self._encode_stream(iter(iterable), allowed_special, allowed, disallowed)

    def _encode_stream(
        self,
        pieces: Iterator[str],
        allowed_special: Union[str, set[str]],
        allowed: set[str],
        disallowed: set[str],
    ) -> Iterator[int]:
        """The generator behind ``encode_iterable``: gather text, encode what is settled."""
        specials = _specials_regex(allowed) if allowed else None
        # a special token that starts in the last `hold` characters may not be complete yet
        hold = max((len(s) for s in allowed | disallowed), default=1) - 1
        pending: list[str] = []  # text read but not encoded yet, in pieces (joined when needed)
        pending_len = 0
        next_try = self.stream_batch_chars
        carry = ""  # a high surrogate at the end of a piece waits for its low half
        for number, piece in enumerate(pieces):
            if not isinstance(piece, str):
                raise TypeError(f"piece {number} of the text is a {type(piece).__name__}, not a str")
            piece = carry + piece
            carry = ""
            if piece and "\ud800" <= piece[-1] <= "\udbff":
                piece, carry = piece[:-1], piece[-1]
            # Surrogates are fixed piece by piece; since no piece ends between the two halves
            # of a pair, this gives what fixing the whole text gives.
            piece = _fix_surrogates(piece)
            pending.append(piece)
            pending_len += len(piece)
            if pending_len < next_try:
                continue
            text = "".join(pending)
            _refuse_disallowed(text, disallowed)  # a split special token is whole in `text`
            ids, cut = self._encode_settled(text, specials, hold)
            yield from ids
            rest = text[cut:]
            pending, pending_len = [rest], len(rest)
            # Try again after another batch, or once the held text has doubled: a chunk of a
            # million letters is then rescanned a logarithmic number of times, not per piece.
            next_try = pending_len + max(self.stream_batch_chars, pending_len)
        text = "".join(pending) + _fix_surrogates(carry)
        yield from self.encode(text, allowed_special)

    def _encode_settled(
        self, text: str, specials: "regex.Pattern | None", hold: int
    ) -> tuple[list[int], int]:
        r"""Encode the start of ``text`` whose ids cannot change, whatever text follows.

        Returns (ids, c): ``ids`` are the first ids of ``encode(text + more)`` for any ``more``,
        and they encode ``text[:c]``; c is 0 when nothing is settled yet. Encoding ``text[c:]``
        with what follows gives the rest of the ids (c is right after a special token or at
        the start of a chunk, and the pattern has no lookbehind).

        1. Special tokens: one that starts before ``len(text) - hold`` lies wholly in ``text``,
           so the left-to-right scan for them is settled up to there, and so is the ordinary
           text between them.
        2. Chunks: in the ordinary text after that, every chunk of the pattern but the last
           two is settled. For GPT-2's pattern: a chunk that ends before the end of the text
           was decided by characters in the text, except that a contraction ('re, 'll, 've)
           can need two characters more: text ending in "'l" cuts as "'", "l", but "'ll" is
           one chunk. A run of letters, digits, punctuation or whitespace that reaches the end
           can only grow (or a whitespace run split), and those are the last two chunks at most.
           The tests check this on adversarial cuts for GPT-2's and GPT-4's patterns.

        The settled chunks are encoded one by one, never as the string ``text[:c]``: cut there,
        the text would end differently and be chunked differently ("\n\na" is "\n", "\n",
        "a", but "\n\n" alone is one chunk).
        """
        ids: list[int] = []
        limit = len(text) - hold
        if limit <= 0:
            return ids, 0
        start = 0  # where the ordinary text after the last settled special token begins
        if specials is not None:
            for match in specials.finditer(text):
                if match.start() >= limit:
                    break
                ids.extend(self.encode_ordinary(text[start : match.start()]))
                ids.append(self.special_tokens[match.group()])
                start = match.end()
                if start >= limit:
                    return ids, start
        if self._compiled is None:
            return ids, start  # the ordinary text is one chunk, which may still grow
        segment = text[start:limit]
        chunks = self._compiled.findall(segment)  # in C: much faster than a loop over matches
        if len(chunks) < 2:
            return ids, start
        if sum(map(len, chunks)) == len(segment):
            # the chunks cover the segment (GPT-2's pattern matches every character), so the
            # last chunk but one starts where the last two chunks' text begins
            held = len(segment) - len(chunks[-1]) - len(chunks[-2])
        else:  # a pattern that skips characters: ask the matches where they start
            held = [m.start() for m in self._compiled.finditer(segment)][-2]
        ids.extend(self._encode_chunks(chunks[:-2]))
        return ids, start + held

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
            "unreachable": [[i, list(data)] for i, data in sorted(self.unreachable.items())],
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a tokenizer written by ``save``.

        Raises ValueError (naming the file) for invalid JSON, a file that ``save`` did not
        write, or contents that do not make a valid tokenizer.
        """
        name = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name!r} is not valid JSON: {err}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{name!r} is not a tokenizer saved by Tokenizer.save")
        try:
            merges = {(a, b): i for a, b, i in data["merges"]}
            base_bytes = bytes(data["base_bytes"])
            # files saved before unreachable entries existed have none
            unreachable = {i: bytes(b) for i, b in data.get("unreachable", [])}
            tokenizer = cls(pattern=data["pattern"])
            tokenizer._set_merges(merges, base_bytes, data["special_tokens"], unreachable)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{name!r} does not hold a valid tokenizer: {err}") from None
        return tokenizer

    def __copy__(self) -> "Tokenizer":
        """``copy.copy(tokenizer)``: an independent tokenizer with the same vocabulary.

        Its dicts are copied (their keys and values are immutable, so that suffices) and its
        chunk cache starts empty; much faster than building the tokenizer again.
        """
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        for name in ("merges", "vocab", "_merge_vocab", "special_tokens", "unreachable"):
            setattr(other, name, dict(getattr(self, name)))
        other._cache = {}
        return other

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

    def train(
        self,
        text: str,
        vocab_size: int,
        verbose: bool = False,
        special_tokens: Sequence[str] | None = None,
    ) -> None:
        """Learn up to ``vocab_size - 256`` merges from ``text``, replacing any earlier merges.

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

        Special tokens are hard boundaries: the text is cut at every special token before
        anything else, so no merge crosses one or is learned from its characters (a corpus of
        documents joined by "<|endoftext|>" trains as separate documents).

        * ``special_tokens=None`` keeps the registered special tokens (and cuts at them); their
          ids must lie outside 256..vocab_size-1, the ids that merges get.
        * ``special_tokens=["<|endoftext|>", ...]`` replaces the registered ones. They get the
          ids right after the last merge, in the order given, and ``vocab_size`` counts them:
          at most ``vocab_size - 256 - len(special_tokens)`` merges are learned. GPT-2 is the
          example: 50,000 merges, "<|endoftext|>" = 50256, vocab_size 50257.

        The new merges replace the whole vocabulary: entries kept from a loaded one
        (``unreachable``) are dropped. A lone surrogate in ``text`` trains as U+FFFD, the
        character ``encode`` gives it.

        Raises (and then changes nothing):
            TypeError: text not a str, vocab_size not an int, special_tokens not a list of str.
            ValueError: vocab_size below 256 (or below 256 + the special tokens), an empty,
                repeated or lone-surrogate special token, or a registered special token whose
                id merges need.
        """
        _require_str(text)
        _require_vocab_size(vocab_size)
        if special_tokens is None:
            n_merges = vocab_size - 256
            clashing = {s: i for s, i in self.special_tokens.items() if 256 <= i < vocab_size}
            if clashing:
                raise ValueError(
                    f"special token ids {clashing} fall in the range 256..{vocab_size - 1} "
                    f"that training gives to merges; use ids >= vocab_size, or pass "
                    f"special_tokens=[...] to train() to number them after the merges"
                )
            boundaries = set(self.special_tokens)
        else:
            if isinstance(special_tokens, (str, bytes)) or not isinstance(special_tokens, Iterable):
                raise TypeError(
                    f"special_tokens must be a list of str, got {type(special_tokens).__name__}"
                )
            special_tokens = list(special_tokens)
            for token in special_tokens:
                if not isinstance(token, str):
                    raise TypeError(f"a special token must be a str, got {token!r}")
                if not token:
                    raise ValueError("a special token cannot be the empty string")
                _require_utf8(token, "a special token")
            if len(set(special_tokens)) != len(special_tokens):
                raise ValueError(f"special_tokens lists a token twice: {special_tokens}")
            n_merges = vocab_size - 256 - len(special_tokens)
            if n_merges < 0:
                raise ValueError(
                    f"vocab_size {vocab_size} has no room for 256 bytes and "
                    f"{len(special_tokens)} special tokens"
                )
            boundaries = set(special_tokens)

        # a lone surrogate has no bytes: it becomes U+FFFD, as encode_ordinary makes it
        text = _fix_surrogates(text)
        # the documents between special tokens (split() puts the tokens themselves at the odd
        # positions), then the chunks of each document
        documents = _specials_regex(boundaries).split(text)[::2] if boundaries else [text]
        chunk_freq: Counter[str] = Counter()
        for document in documents:
            if self._compiled is not None:
                chunk_freq.update(self._compiled.findall(document))
            else:
                chunk_freq[document] += 1
        del chunk_freq[""]
        merges = _learn_merges(chunk_freq, n_merges, verbose)

        if special_tokens is None:
            self._set_merges(merges, bytes(range(256)))
        else:
            first = 256 + len(merges)  # right after the last merge, even if training stopped early
            numbered = {token: first + k for k, token in enumerate(special_tokens)}
            self._set_merges(merges, bytes(range(256)), numbered)


def _learn_merges(chunk_freq: Counter[str], n_merges: int, verbose: bool) -> dict[Pair, int]:
    """The trainer behind ``BPETokenizer.train``: up to ``n_merges`` merges, ids from 256."""
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
    for new_id in range(256, 256 + n_merges):
        while heap:
            neg_count, pair = heapq.heappop(heap)
            if counts.get(pair) == -neg_count:
                break  # an up-to-date entry: the most frequent pair
        else:
            break  # no pair left anywhere: stop early, like train_bpe
        merges[pair] = new_id
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        if verbose:
            print(f"merge {new_id - 255}/{n_merges}: {pair} -> {new_id} "
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
    return merges


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


# --- checks and helpers of the classes ----------------------------------------------------------


def _is_int(value: object) -> bool:
    return type(value) is int  # not isinstance: True and False are ints too in Python


def _compile_pattern(pattern: str | None) -> "regex.Pattern | None":
    """The compiled pre-tokenization pattern; TypeError/ValueError for a bad one."""
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str or None, got {type(pattern).__name__}")
    try:
        return regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"pattern is not a valid regular expression: {err}") from None


def _build_merge_vocab(merges: Mapping[Pair, int], base_bytes: bytes) -> dict[int, bytes]:
    """The vocabulary (id -> bytes, no special tokens) that ``merges`` build on ``base_bytes``.

    Checks, changing nothing: ``base_bytes`` holds each byte value once; ``merges`` maps pairs
    of int ids to int ids; each new id is at least 256 and given once; each merge's parts have
    lower ids than it (bytes or earlier merges), since encoding applies lower ids first.

    Raises:
        TypeError: wrong types (not bytes, not a dict, a key that is not a pair of ints, ...).
        ValueError: the rules above.
    """
    if not isinstance(base_bytes, (bytes, bytearray)):
        raise TypeError(f"base_bytes must be bytes, got {type(base_bytes).__name__}")
    if len(base_bytes) != 256 or len(set(base_bytes)) != 256:
        raise ValueError("base_bytes must hold each of the 256 byte values once")
    if not isinstance(merges, Mapping):
        raise TypeError(f"merges must be a dict of (id, id) -> id, got {type(merges).__name__}")
    for pair, new_id in merges.items():
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(map(_is_int, pair))):
            raise TypeError(f"a merge's key must be a pair of int ids, got {pair!r}")
        if not _is_int(new_id):
            raise TypeError(f"merge {pair} must give an int id, got {new_id!r}")
    vocab = {i: bytes([b]) for i, b in enumerate(base_bytes)}
    for (a, b), new_id in sorted(merges.items(), key=lambda item: item[1]):
        if new_id < 256:
            raise ValueError(f"merge {(a, b)} gives id {new_id}, but ids 0..255 are the bytes")
        if new_id in vocab:
            raise ValueError(f"two merges give the id {new_id}")
        for part in (a, b):
            if part not in vocab:
                raise ValueError(
                    f"merge {(a, b)} -> {new_id} uses id {part}, which is neither a byte nor a "
                    f"merge with a lower id (encoding applies merges lowest id first)"
                )
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


def _check_vocab_entry(token_id: object, data: object) -> None:
    """TypeError unless a vocabulary entry is a non-negative int id -> non-empty bytes."""
    if not _is_int(token_id) or token_id < 0:
        raise TypeError(f"vocab ids must be non-negative ints, got {token_id!r}")
    if not isinstance(data, bytes) or not data:
        raise TypeError(f"vocab[{token_id}] must be non-empty bytes, got {data!r}")


def _add_unreachable(merge_vocab: dict[int, bytes], unreachable: Mapping[int, bytes]) -> dict[int, bytes]:
    """``merge_vocab`` with the entries no merge makes (see ``Tokenizer.unreachable``) added.

    Raises TypeError/ValueError, changing nothing, unless each entry has an int id of 256 or
    more that no byte or merge uses, and non-empty bytes.
    """
    if not isinstance(unreachable, Mapping):
        raise TypeError(f"unreachable must be a dict of id -> bytes, got {type(unreachable).__name__}")
    combined = dict(merge_vocab)
    for token_id, data in unreachable.items():
        _check_vocab_entry(token_id, data)
        if token_id < 256:
            raise ValueError(f"an unreachable entry needs an id of 256 or more, got {token_id}")
        if token_id in merge_vocab:
            raise ValueError(f"unreachable entry {token_id} ({data!r}) has the id of a merge")
        combined[token_id] = data
    return combined


def _check_special_tokens(
    special_tokens: Mapping[str, int],
    merge_vocab: dict[int, bytes],
    unreachable: Mapping[int, bytes] | None = None,
) -> None:
    """Raise TypeError/ValueError unless each special token is a non-empty str that has UTF-8
    bytes, with its own non-negative int id that ``merge_vocab`` does not use (an unreachable
    entry holding exactly the token's text may become special)."""
    if not isinstance(special_tokens, Mapping):
        raise TypeError(
            f"special_tokens must be a dict of text -> id, got {type(special_tokens).__name__}"
        )
    unreachable = unreachable or {}
    owner: dict[int, str] = {}
    for text, token_id in special_tokens.items():
        if not isinstance(text, str):
            raise TypeError(f"a special token must be a str, got {text!r}")
        if not text:
            raise ValueError("a special token cannot be the empty string")
        _require_utf8(text, "a special token")
        if not _is_int(token_id):
            raise TypeError(f"special token {text!r} needs an int id, got {token_id!r}")
        if token_id < 0:
            raise ValueError(f"special token {text!r} needs a non-negative id, got {token_id}")
        if token_id in unreachable and unreachable[token_id] == text.encode("utf-8"):
            pass  # a loaded entry such as GPT-2's <|endoftext|>, now declared special
        elif token_id in merge_vocab:
            raise ValueError(
                f"special token {text!r} has id {token_id}, which the vocabulary already "
                f"uses for {merge_vocab[token_id]!r}"
            )
        if token_id in owner:
            raise ValueError(
                f"two special tokens would share an id: {owner[token_id]!r} and {text!r} "
                f"both have id {token_id}"
            )
        owner[token_id] = text


def _require_utf8(text: str, what: str) -> None:
    """ValueError for a str that holds a lone surrogate: it has no UTF-8 bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"{what} {text!r} holds a lone surrogate ({text[err.start]!r}), which has no UTF-8 bytes"
        ) from None


@functools.lru_cache(maxsize=64)
def _specials_regex_cached(specials: frozenset[str]) -> "regex.Pattern":
    # longest first: where two special tokens start at the same place, the longer one wins
    alternatives = "|".join(regex.escape(s) for s in sorted(specials, key=lambda s: (-len(s), s)))
    return regex.compile(f"({alternatives})")


def _specials_regex(specials: Iterable[str]) -> "regex.Pattern":
    """A regex that finds the special tokens (captured, so that split() keeps them)."""
    return _specials_regex_cached(frozenset(specials))


def _refuse_disallowed(text: str, disallowed: Iterable[str]) -> None:
    for special in sorted(disallowed):
        if special in text:
            raise ValueError(
                f"the text contains the special token {special!r}, which is not allowed. "
                f"Pass allowed_special='all' (or a set holding it) to encode it as one token, "
                f"or allowed_special='none' to encode it as ordinary text."
            )


def _fix_surrogates(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD and surrogate pairs joined.

    A lone surrogate (e.g. "\\ud800") has no UTF-8 form. tiktoken replaces it with U+FFFD after
    pairing up valid surrogate pairs; doing the same keeps ids equal.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _merges_from_bytes(
    vocab: Mapping[int, bytes],
    merges: Sequence[tuple[bytes, bytes]],
    special_tokens: Mapping[str, int],
) -> tuple[dict[Pair, int], bytes, dict[int, bytes]]:
    """Turn a vocabulary id -> bytes and merges as byte pairs into (id merges, base_bytes,
    unreachable entries).

    The checks of ``Tokenizer.from_vocab_and_merges``; special tokens are checked later, by
    ``_check_special_tokens``, except that a vocabulary entry at a special token's id must
    be its text. The unreachable entries are those that are neither a byte, a merge's result
    nor a special token.
    """
    if not isinstance(vocab, Mapping):
        raise TypeError(f"vocab must be a dict of id -> bytes, got {type(vocab).__name__}")
    if isinstance(merges, (str, bytes)) or not isinstance(merges, Sequence):
        raise TypeError(f"merges must be a list of (bytes, bytes) pairs, got {type(merges).__name__}")
    special_ids = {token_id: text for text, token_id in special_tokens.items()}
    id_of: dict[bytes, int] = {}
    for token_id, data in vocab.items():
        _check_vocab_entry(token_id, data)
        if token_id in special_ids:
            text = special_ids[token_id]
            if isinstance(text, str) and data != text.encode("utf-8"):
                raise ValueError(
                    f"special token {text!r} has id {token_id}, which the vocabulary uses for "
                    f"{data!r}"
                )
            continue
        if data in id_of:
            raise ValueError(
                f"ids {id_of[data]} and {token_id} both stand for {data!r}: merges given as "
                f"bytes would be ambiguous"
            )
        id_of[data] = token_id
    for token_id in range(256):
        if token_id not in vocab or len(vocab[token_id]) != 1:
            raise ValueError(
                f"ids 0..255 must be the 256 single bytes, but id {token_id} is "
                f"{vocab.get(token_id, 'missing')!r}"
            )
    base_bytes = b"".join(vocab[i] for i in range(256))
    if len(set(base_bytes)) != 256:
        raise ValueError("ids 0..255 must stand for 256 different bytes")

    id_merges: dict[Pair, int] = {}
    made: set[int] = set(range(256))
    last_id = 255
    for number, item in enumerate(merges):
        if not (isinstance(item, (tuple, list)) and len(item) == 2
                and all(isinstance(part, bytes) for part in item)):
            raise TypeError(f"merge {number} must be a pair of bytes, got {item!r}")
        left, right = item
        for part in (left, right):
            if part not in id_of:
                raise ValueError(f"merge {number} ({left!r}, {right!r}): {part!r} is not in the vocabulary")
        merged = left + right
        if merged not in id_of:
            raise ValueError(
                f"merge {number} ({left!r}, {right!r}) makes {merged!r}, which is not in the vocabulary"
            )
        pair, new_id = (id_of[left], id_of[right]), id_of[merged]
        if pair in id_merges:
            raise ValueError(f"merge {number} ({left!r}, {right!r}) is listed twice")
        if new_id <= last_id:
            raise ValueError(
                f"merge {number} ({left!r}, {right!r}) makes id {new_id}, but the merge before it "
                f"made id {last_id}: this tokenizer applies merges lowest id first, so ids must "
                f"increase along the merges"
            )
        id_merges[pair] = last_id = new_id
        made.add(new_id)
    unreachable = {i: vocab[i] for i in sorted(vocab) if i not in made and i not in special_ids}
    return id_merges, base_bytes, unreachable


def _read_text(path: "str | os.PathLike | resources.abc.Traversable") -> str:
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
    return path.read_text(encoding="utf-8")


def _file_name(path: "str | os.PathLike | resources.abc.Traversable") -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)


def _read_vocab_json(path: "str | os.PathLike | resources.abc.Traversable") -> dict[str, int]:
    """A GPT-2 style vocab.json: token -> id, each key and each id once."""
    name = _file_name(path)

    def no_duplicate_keys(items: list[tuple[str, object]]) -> dict[str, object]:
        data = dict(items)
        if len(data) != len(items):
            seen: set[str] = set()
            twice = next(key for key, _ in items if key in seen or seen.add(key))
            raise ValueError(f"{name}: the token {twice!r} is written twice")
        return data

    try:
        data = json.loads(_read_text(path), object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{name} must hold a JSON object token -> id, got {type(data).__name__}")
    owner: dict[int, str] = {}
    for token, token_id in data.items():
        if not _is_int(token_id) or token_id < 0:
            raise ValueError(f"{name}: the id of {token!r} must be a non-negative int, got {token_id!r}")
        if token_id in owner:
            raise ValueError(f"{name}: the tokens {owner[token_id]!r} and {token!r} both have id {token_id}")
        owner[token_id] = token
    return data


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
def _gpt2_from_files() -> BPETokenizer:
    return BPETokenizer.from_gpt2_files(
        _data_file("gpt2", "encoder.json"), _data_file("gpt2", "vocab.bpe")
    )


def gpt2_tokenizer() -> BPETokenizer:
    """GPT-2's tokenizer rebuilt from its published files; ids equal tiktoken's "gpt2".

    Built by ``BPETokenizer.from_gpt2_files`` from encoder.json (GPT-2's vocab.json) and
    vocab.bpe (its merges.txt), like any tokenizer shipped in that format: 50,000 merges, and
    <|endoftext|> = 50256 as the one entry that is neither a byte nor a merge. The files are
    read once; each call returns a new, independent copy.

    One caveat: the pattern runs on the `regex` module here and on a Rust engine in tiktoken.
    Each carries its own copy of Unicode's tables, so a character added in a recent Unicode
    version (17.0, with regex 2025+ and tiktoken 0.14) may be a letter to one engine and
    unassigned to the other, and be cut differently. Older characters agree.
    """
    return copy.copy(_gpt2_from_files())


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
