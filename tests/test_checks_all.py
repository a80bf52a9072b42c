"""Every check of every chapter, both ways: the reference passes, wrong code fails with its hint.

Parametrised over ``solutions.checks.SPECS``, so a new chapter is covered by adding its specs.
Chapter-specific wrong answers live in test_checks_<topic>.py; the framework's own rules in
test_checks_core.py.
"""

import pytest
import torch

from solutions import checks as check
from solutions.checks import wire
from solutions.checks.core import (
    CheckFailure,
    NotImplementedYet,
    check_function,
    expected_outcomes,
    on_device,
    prepare,
    run,
)

SPECS = list(check.SPECS.values())
MISTAKES = [(spec, m) for spec in SPECS for m in spec.mistakes]
HIDDEN = 424242  # stands for the grader's secret seed


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_reference_passes_on_the_public_and_other_seeds(spec, capsys):
    for seed in (0, 1, 2, HIDDEN):
        check_function(spec, spec.reference, seed=seed, device="cpu")
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_untouched_stub_fails(spec):
    if isinstance(spec.reference, type):  # a class whose methods are stubs
        class Stub(spec.reference.__bases__[0]):
            def __init__(self, *args, **kwargs):
                super().__init__()
                raise NotImplementedError()

        Stub.__name__ = spec.name
        stub = Stub
    else:
        def stub(*args, **kwargs):
            raise NotImplementedError()

    with pytest.raises(NotImplementedYet):
        check_function(spec, stub, device="cpu")


@pytest.mark.parametrize("spec,mistake", MISTAKES, ids=[f"{s.name}-{m.name}" for s, m in MISTAKES])
def test_known_mistake_fails_with_its_own_hint(spec, mistake):
    for seed in (0, 7, HIDDEN):  # the public seed and hidden ones
        with pytest.raises(CheckFailure) as info:
            check_function(spec, mistake.variant, seed=seed, device="cpu")
        assert f"Hint: {mistake.hint}" in str(info.value)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_hidden_seeds_draw_other_inputs(spec):
    assert repr([c.args for c in spec.make_cases(0)]) != repr([c.args for c in spec.make_cases(HIDDEN)])
    # and one seed always draws the same ones (the grader and the checks' cache rely on it)
    assert repr([c.args for c in spec.make_cases(HIDDEN)]) == repr([c.args for c in spec.make_cases(HIDDEN)])


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_results_stay_within_the_declared_output_budget(spec):
    # every result must fit through the wire to the grader, with room to spare
    for seed in (0, HIDDEN):
        for outcome in run(prepare(spec, spec.reference), [on_device(c, "cpu") for c in spec.make_cases(seed)]):
            budget = wire._Budget()
            wire.encode(outcome.value, _budget=budget)
            assert budget.items <= spec.max_output_items <= wire.MAX_ITEMS, spec.name


@pytest.mark.parametrize("spec", [s for s in SPECS if s.dims and len(set(s.dims)) == len(s.dims)], ids=lambda s: s.name)
def test_every_dimension_gets_its_own_size(spec):
    # a swapped axis must show as a wrong shape: in most cases no two named dimensions share a
    # size (a square case, seq_q = seq_k, is there on purpose, but never alone)
    shapes = []
    for want in expected_outcomes(spec, spec.make_cases(0), "cpu"):
        value = want.value["output"] if isinstance(want.value, dict) and "output" in want.value else want.value
        if isinstance(value, torch.Tensor) and value.dim() == len(spec.dims) and value.numel() and value.device.type != "meta":
            shapes.append(tuple(value.shape))
    distinct = [s for s in shapes if len(set(s)) == len(s)]
    assert shapes and len(distinct) >= len(shapes) / 2, (spec.name, shapes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)")
def test_same_verdicts_on_cuda():
    for spec in SPECS:
        for device in ("cpu", "cuda"):
            check_function(spec, spec.reference, device=device)
            for mistake in spec.mistakes:
                with pytest.raises(CheckFailure) as info:
                    check_function(spec, mistake.variant, device=device)
                assert f"Hint: {mistake.hint}" in str(info.value), (spec.name, mistake.name, device)


def _tensors(value, out):
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _tensors(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _tensors(v, out)
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_tolerances_leave_room_for_another_summation_order(spec):
    # The same code on 1 and on 2 threads adds floats in another order, as a GPU does; the
    # difference must use at most a quarter of the check's tolerance, so that one answer gets
    # one verdict on every machine (CPU or CUDA, notebook or grader).
    from solutions.checks.core import _spec_tolerance, _tolerance_for, tolerance_of

    threads = torch.get_num_threads()
    worst = 0.0
    try:
        for seed in (0, HIDDEN):
            cases = [c for c in (on_device(c, "cpu") for c in spec.make_cases(seed)) if c.device is None]
            torch.set_num_threads(1)
            one = run(prepare(spec, spec.reference), cases)
            torch.set_num_threads(2)
            two = run(prepare(spec, spec.reference), cases)
            for a, b in zip(one, two):
                for p, q in zip(_tensors(a.value, []), _tensors(b.value, [])):
                    if p.is_floating_point() and p.numel():
                        rtol, atol = _tolerance_for(_spec_tolerance(spec), p.dtype) or tolerance_of(p.dtype)
                        worst = max(worst, ((p - q).abs() / (atol + rtol * q.abs())).max().item())
    finally:
        torch.set_num_threads(threads)
    assert worst <= 0.25, f"{spec.name}: {worst:.2f} of the tolerance"
