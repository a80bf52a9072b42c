"""Mutation testing: every check rejects at least 95 % of its reference's mutants.

A mutant is the reference with one small change (see tests/mutants.py). A check that lets one
through would give full marks to code with that bug, so every exercise of every chapter is held
to the floor the design sets, in the notebook's cases and in the grader's hidden ones.
"""

import pytest

from mutants import EQUIVALENT, mutants, mutation_report
from solutions.checks import SPECS

FLOOR = 0.95


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=lambda s: s.name)
def test_check_kills_at_least_95_percent_of_mutants(spec):
    # the grader's kind of seed only, to keep the suite short: the stated-rule cases are the same
    # under every seed, and bench/bench_mutation.py measures the notebook's seed as well
    report = mutation_report(spec, seeds=(424242,))
    assert report.total >= 1, "the mutator found nothing to change"
    assert report.rate >= FLOOR, (
        f"{spec.name}: {report.killed}/{report.total - len(report.equivalent)} mutants killed "
        f"({report.rate:.0%}); survivors:\n  " + "\n  ".join(report.survivors)
    )


def test_every_listed_equivalent_mutant_still_exists():
    # an entry that no longer names a mutant (the reference changed) is removed, not kept
    for (exercise, description), reason in EQUIVALENT.items():
        assert reason, (exercise, description)
        assert description in {m.description for m in mutants(SPECS[exercise].reference)}, (exercise, description)
