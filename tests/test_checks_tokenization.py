"""Every chapter-1 check: the reference passes, the untouched stub fails, known mistakes get their hint."""

import pytest

from solutions import checks as check
from solutions.checks.core import CheckFailure, NotImplementedYet, check_function

SPECS = check.specs_for("01_tokenization")


def test_chapter_has_at_least_six_exercises():
    assert len(SPECS) >= 6


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_reference_passes(spec, capsys):
    check_function(spec, spec.reference)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_untouched_stub_fails(spec):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(NotImplementedYet):
        check_function(spec, stub)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_other_seeds_also_pass(spec):
    for seed in (1, 2, 12345):
        check_function(spec, spec.reference, seed=seed)


MISTAKES = [(spec, m) for spec in SPECS for m in spec.mistakes]


@pytest.mark.parametrize("spec,mistake", MISTAKES, ids=[f"{s.name}-{m.name}" for s, m in MISTAKES])
def test_known_mistake_fails_with_its_own_hint(spec, mistake):
    for seed in (0, 7):  # the public seed and a hidden one
        with pytest.raises(CheckFailure) as info:
            check_function(spec, mistake.variant, seed=seed)
        assert f"Hint: {mistake.hint}" in str(info.value)


# Realistic wrong answers that the spec's diagnose() or error hints explain -------------------


def _most_frequent_first_seen(counts):
    return max(counts, key=counts.get)  # ties go to whichever pair was counted first


def _most_frequent_least(counts):
    return min(counts, key=lambda p: (counts[p], p))


def test_most_frequent_pair_tie_broken_differently_is_named():
    with pytest.raises(CheckFailure, match="tie at .* ties go to the smallest pair"):
        check.most_frequent_pair(_most_frequent_first_seen)
    with pytest.raises(CheckFailure, match=r"occurs \d+ times but"):
        check.most_frequent_pair(_most_frequent_least)


def _train(text, vocab_size, *, first_id=256, n_merges=None, pick=None):
    from solutions.tokenization import get_pair_counts, merge

    if vocab_size < 256:
        raise ValueError("vocab_size must be at least 256")
    ids, merges = list(text.encode("utf-8")), {}
    for k in range(n_merges if n_merges is not None else vocab_size - 256):
        counts = get_pair_counts(ids)
        if not counts:
            break
        pair = pick(counts) if pick else max(counts, key=lambda p: (counts[p], [-x for x in p]))
        merges[pair] = first_id + k
        ids = merge(ids, pair, first_id + k)
    return merges


def test_train_bpe_wrong_answers_are_explained():
    with pytest.raises(CheckFailure, match="ties go to the smallest pair"):
        check.train_bpe(lambda t, v: _train(t, v, pick=_most_frequent_first_seen))
    with pytest.raises(CheckFailure, match="new ids start at 256"):
        check.train_bpe(lambda t, v: _train(t, v, first_id=255))
    with pytest.raises(CheckFailure, match="vocab_size counts the 256 byte tokens"):
        check.train_bpe(lambda t, v: _train(t, v, n_merges=v))
    with pytest.raises(CheckFailure, match="should raise ValueError"):
        check.train_bpe(lambda t, v: _train(t, max(v, 256)))
    assert check_function(check.SPECS["train_bpe"], lambda t, v: _train(t, v)) is None


def test_text_to_bytes_returning_bytes_is_explained():
    with pytest.raises(CheckFailure, match="a list of ints"):
        check.text_to_bytes(lambda text: text.encode("utf-8"))


def test_strict_decode_is_explained():
    def strict(ids, vocab):
        return b"".join(vocab[i] for i in ids).decode("utf-8")

    with pytest.raises(CheckFailure, match="UnicodeDecodeError.*\nHint: .*errors='replace'"):
        check.decode(strict)


def test_merge_in_place_is_refused():
    from solutions.tokenization import merge

    def in_place(ids, pair, new_id):
        result = merge(ids, pair, new_id)
        ids[:] = result
        return ids

    with pytest.raises(CheckFailure, match="changed its input in place"):
        check.merge(in_place)


def test_hidden_seed_changes_the_inputs():
    for spec in SPECS:
        public = [c.label for c in spec.make_cases(0)]
        hidden = [c.label for c in spec.make_cases(987654)]
        assert public != hidden, spec.name
