"""Every chapter-1 check: the reference passes, the untouched stub fails, known mistakes get their hint."""

import pytest

from solutions import checks as check
from solutions.checks.core import CheckFailure, check_function

SPECS = check.specs_for("01_tokenization")


def test_chapter_has_at_least_six_exercises():
    assert len(SPECS) >= 6


# Realistic wrong answers that the spec's diagnose() or error hints explain -------------------


def _most_frequent_first_seen(counts):
    return max(counts, key=counts.get)  # ties go to whichever pair was counted first


def _most_frequent_least(counts):
    return min(counts, key=lambda p: (counts[p], p))


def test_most_frequent_pair_tie_broken_differently_is_named():
    with pytest.raises(CheckFailure, match="tie at .* a tie to the smallest pair"):
        check.most_frequent_pair(_most_frequent_first_seen)
    with pytest.raises(CheckFailure, match=r"occurs (once|\d+ times) but"):
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
    with pytest.raises(CheckFailure, match="right keys in the wrong order"):
        check.train_bpe(lambda t, v: dict(sorted(_train(t, max(v, 256)).items())) if v >= 256 else _train(t, v))
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

    with pytest.raises(CheckFailure, match="(?s)UnicodeDecodeError.*\nHint: .*errors='replace'"):
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
        public = [repr(c.args) for c in spec.make_cases(0)]
        hidden = [repr(c.args) for c in spec.make_cases(987654)]
        assert public != hidden, spec.name


# The wrong implementations that once passed (issue: "checks that wrong code cannot pass") -----


def _merge_by_string_replace(ids, pair, new_id):
    # replaces ",a,b," in the comma-joined ids: str.replace does not see an occurrence that
    # shares its leading comma with the one just replaced, so [1, 2, 1, 2] keeps the second pair
    joined = "," + ",".join(map(str, ids)) + ","
    joined = joined.replace(f",{pair[0]},{pair[1]},", f",{new_id},")
    return [int(x) for x in joined.strip(",").split(",") if x]


def _encode_leftmost(text, merges):
    ids = list(text.encode("utf-8"))
    while True:
        pair = next(((a, b) for a, b in zip(ids, ids[1:]) if (a, b) in merges), None)
        if pair is None:
            return ids
        from solutions.tokenization import merge

        ids = merge(ids, pair, merges[pair])


def _train_sorted(text, vocab_size):
    from solutions.tokenization import train_bpe

    return dict(sorted(train_bpe(text, vocab_size).items()))


def test_string_replace_merge_is_rejected_on_a_pair_twice_in_a_row():
    with pytest.raises(CheckFailure) as info:
        check.merge(_merge_by_string_replace)
    total = len(check.SPECS["merge"].make_cases(0))
    assert f"Test input 2 of {total}: merge([5, 5, 5, 5], (5, 5), 256)" in str(info.value)  # shown whole
    assert _merge_by_string_replace([1, 2, 1, 2], (1, 2), 256) == [256, 1, 2]  # the case that once passed
    assert any(c.args == ([1, 2, 1, 2], (1, 2), 256) for c in check.SPECS["merge"].make_cases(0))
    for seed in (1, 2, 99):
        with pytest.raises(CheckFailure):
            check_function(check.SPECS["merge"], _merge_by_string_replace, seed=seed)


def test_leftmost_pair_encode_is_rejected_with_the_rank_rule():
    with pytest.raises(CheckFailure) as info:
        check.encode(_encode_leftmost)
    message = str(info.value)
    assert "{(98, 99): 256, (97, 98): 257}" in message  # the merges are shown, not cut
    assert "Hint: you merged the leftmost pair" in message


def test_train_bpe_sorted_by_pair_is_rejected_because_order_is_part_of_the_answer():
    with pytest.raises(CheckFailure, match="wrong order.*the order is part of the answer"):
        check.train_bpe(_train_sorted)


def test_merge_swallowing_a_run_is_not_told_the_last_id_is_lost():
    def swallow_run(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                j = i
                while j < len(ids) and ids[j] in pair:  # eats the rest of the run
                    j += 1
                out.append(new_id)
                i = j
            else:
                out.append(ids[i])
                i += 1
        return out

    with pytest.raises(CheckFailure) as info:
        check.merge(swallow_run)
    assert "last id is lost" not in str(info.value)


def test_encode_applying_the_highest_rank_first_is_not_told_it_counts_frequencies():
    from solutions.tokenization import get_pair_counts, merge

    def highest_first(text, merges):
        ids = list(text.encode("utf-8"))
        while len(ids) >= 2:
            known = [p for p in get_pair_counts(ids) if p in merges]
            if not known:
                break
            pair = max(known, key=merges.get)
            ids = merge(ids, pair, merges[pair])
        return ids

    with pytest.raises(CheckFailure) as info:
        check.encode(highest_first)
    assert "how often a pair occurs" not in str(info.value)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_hints_point_at_the_mistake_without_giving_code(spec):
    # a hint names the mistake; it never hands over the solution line
    for hint in [m.hint for m in spec.mistakes] + list(spec.error_hints.values()):
        for code in ("lambda", "max(", "min(", ".encode(", "len(", "return ", "for "):
            assert code not in hint, (spec.name, hint)


def test_a_failure_can_be_reproduced_in_one_line():
    namespace = {"check": check}
    with pytest.raises(CheckFailure) as info:
        check.merge(_merge_by_string_replace)
    line = next(l for l in str(info.value).splitlines() if l.startswith("To try it yourself: "))
    call = line.removeprefix("To try it yourself: ").replace("merge(", "_merge_by_string_replace(", 1)
    namespace["_merge_by_string_replace"] = _merge_by_string_replace
    assert eval(call, namespace) == [256, 5, 5]  # the failing case, reproduced
    from solutions.tokenization import merge

    assert merge(*check.inputs("merge", 3)) == [256, 256]
    with pytest.raises(ValueError, match="test inputs 1 to"):
        check.inputs("merge", 999)


def test_hidden_messages_show_no_input():
    from solutions.checks.core import compare, run
    from solutions.checks import wire

    spec = check.SPECS["merge"]
    cases = spec.make_cases(31337)
    with pytest.raises(CheckFailure) as info:
        compare(spec, cases, wire.round_trip(run(_merge_by_string_replace, cases)), wire.round_trip(run(spec.reference, cases)), hidden=True)
    assert "hidden test input" in str(info.value) and "check.inputs" not in str(info.value)
    assert "Test input" not in str(info.value)


# Wrong answers an adversarial learner found passing (they must fail now) ------------------------


def test_normalising_the_text_first_fails():
    import unicodedata

    for form in ("NFKC", "NFC"):
        with pytest.raises(CheckFailure):
            check.text_to_bytes(lambda text, form=form: list(unicodedata.normalize(form, text).encode("utf-8")))


def test_merge_returning_its_input_when_the_pair_is_absent_fails():
    from solutions.tokenization import merge

    def lazy(ids, pair, new_id):
        if not any((a, b) == pair for a, b in zip(ids, ids[1:])):
            return ids
        return merge(ids, pair, new_id)

    with pytest.raises(CheckFailure, match="returned its input .* itself"):
        check.merge(lazy)


@pytest.mark.parametrize("variant", ["range only", "missing byte as raw byte", "vague message"])
def test_decode_that_does_not_refuse_every_missing_id_by_name_fails(variant):
    def decode(ids, vocab):
        if variant == "range only":
            for i in ids:
                if i < 0 or i > max(vocab):
                    raise ValueError(f"id {i}")
        elif variant == "missing byte as raw byte":
            for i in ids:
                if i not in vocab and i >= 256:
                    raise ValueError(f"id {i}")
            return b"".join(vocab.get(i, bytes([i]) if i < 256 else b"") for i in ids).decode("utf-8", errors="replace")
        else:
            try:
                return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
            except KeyError:
                raise ValueError("unknown id") from None
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

    with pytest.raises(CheckFailure):
        check.decode(decode)
