"""changed_positions (chapter 4): wrong probes that fresh learners got past the check after issue
19's second round, one per sentence of the exercise's rules; each now meets a layer where breaking
that sentence changes the answer (new probe kinds in solutions/checks/modules.py)."""

import pytest
import torch

from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function


def message(answer, seed=0):
    with pytest.raises(CheckFailure) as failure:
        check_function(SPECS["changed_positions"], answer, seed=seed, device="cpu")
    return str(failure.value)


def _probe(module, x, position, differ=lambda a, b: a != b, perturb=None):
    copy = x.clone()
    if perturb is None:
        copy[:, position] += 1.0
    else:
        perturb(copy, position)
    with torch.no_grad():
        a, b = module(x), module(copy)
    return differ(a, b).any(dim=-1)


def bitwise_compare(module, x, position):
    """Compares bit patterns: -0.0 and 0.0 differ in bits, not with != (rule 4)."""
    def differ(a, b):
        return a.contiguous().view(torch.int32) != b.contiguous().view(torch.int32) if a.dtype == torch.float32 else a != b
    return _probe(module, x, position, differ)


_cache = {}


def cached_base_output(module, x, position):
    """Remembers module(x) by (id(module), id(x)): stale when x's values change (rule 3)."""
    key = (id(module), id(x))
    copy = x.clone()
    copy[:, position] += 1.0
    with torch.no_grad():
        if key not in _cache:
            _cache[key] = module(x)
        a, b = _cache[key], module(copy)
    return (a != b).any(dim=-1)


def eval_side_effect(module, x, position):
    """Switches the caller's module to eval mode and leaves it there."""
    module.eval()
    return _probe(module, x, position)


def float32_compare(module, x, position):
    """Compares after casting to float32: float64 moves of 1e-9 vanish (rule 4, own dtype)."""
    return _probe(module, x, position, lambda a, b: a.float() != b.float())


def inplace_then_restore(module, x, position):
    """Adds 1.0 to x itself, runs, puts the values back: x's version counter moved (rule 2)."""
    with torch.no_grad():
        a = module(x)
        saved = x[:, position].clone()
        x[:, position] += 1.0
        b = module(x)
        x[:, position] = saved
    return (a != b).any(dim=-1)


def isclose_equal_nan(module, x, position):
    """Treats nan outputs as unchanged (with !=, nan != nan is True)."""
    return _probe(module, x, position, lambda a, b: ~torch.isclose(a, b, rtol=0, atol=0, equal_nan=True))


def no_no_grad(module, x, position):
    """Runs the module with autograd on (rule 3 says under torch.no_grad())."""
    copy = x.clone()
    copy[:, position] += 1.0
    return (module(x) != module(copy)).any(dim=-1)


def one_batched_call(module, x, position):
    """One call on cat([x, copy]): a layer that looks across the batch sees both (rule 3)."""
    copy = x.clone()
    copy[:, position] += 1.0
    with torch.no_grad():
        both = module(torch.cat([x, copy]))
    a, b = both[: x.shape[0]], both[x.shape[0]:]
    return (a != b).any(dim=-1)


def result_on_cpu(module, x, position):
    """The result made without device= (rule 4: on x's device)."""
    found = _probe(module, x, position)
    out = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
    if found.device.type != "meta":
        out |= found.cpu()
    return out


def set_to_one(module, x, position):
    """Sets the position to 1.0 instead of adding 1.0 (rule 2)."""
    def perturb(copy, p):
        copy[:, p] = 1.0
    return _probe(module, x, position, perturb=perturb)


def slice_negative(module, x, position):
    """copy[:, p:p + 1] is empty for p = -1 (rule 2: negative positions as in Python)."""
    def perturb(copy, p):
        copy[:, p:p + 1] += 1.0
    return _probe(module, x, position, perturb=perturb)


def squared_underflow(module, x, position):
    """A squared distance: nan outputs compare False, tiny moves underflow (rule 4)."""
    copy = x.clone()
    copy[:, position] += 1.0
    with torch.no_grad():
        a, b = module(x), module(copy)
    return ((a - b) ** 2).sum(-1) > 0


def subtract_inf(module, x, position):
    """(a - b) != 0: an unchanged inf output gives inf - inf = nan, reported as changed."""
    return _probe(module, x, position, lambda a, b: (a - b) != 0)


def subtract_one(module, x, position):
    """Subtracts 1.0: a layer flat below 0 (ReLU) hides the change (rule 2: add 1.0)."""
    def perturb(copy, p):
        copy[:, p] -= 1.0
    return _probe(module, x, position, perturb=perturb)


def sum_of_differences(module, x, position):
    """Sums the signed differences: +1 in one feature and -1 in another cancel (rule 4: any)."""
    copy = x.clone()
    copy[:, position] += 1.0
    with torch.no_grad():
        a, b = module(x), module(copy)
    return (a - b).sum(-1) != 0


def tolerance(module, x, position):
    """A tolerance of 1e-7: a layer that moves another position by 1e-9 looks position-wise."""
    return _probe(module, x, position, lambda a, b: (a - b).abs() > 1e-7)


WRONG = [
    (bitwise_compare, "turns -0.0 into 0.0"),
    (cached_base_output, "probed twice"),
    (eval_side_effect, "left the module in eval mode"),
    (float32_compare, "float64: a layer that moves the next position by 1e-9"),
    (inplace_then_restore, "changed and then put back"),
    (isclose_equal_nan, "nan and -inf outputs"),
    (no_no_grad, "only while autograd records"),
    (one_batched_call, "sums the previous position over the batch"),
    (result_on_cpu, "on device cpu"),
    (set_to_one, "equal to 1.0"),
    (slice_negative, "position -1"),
    (squared_underflow, "nan and -inf outputs"),
    (subtract_inf, "nan and -inf outputs"),
    (subtract_one, "inputs between -1 and 0"),
    (sum_of_differences, "gains in one feature what it loses in another"),
    (tolerance, "moves the next position by about 1e-9"),
]


@pytest.mark.parametrize("wrong, words", WRONG, ids=[w.__name__ for w, _ in WRONG])
def test_each_broken_rule_meets_a_layer_that_shows_it(wrong, words):
    _cache.clear()
    text = message(wrong)
    assert words in text, text


def test_the_new_probes_keep_the_reference_right_on_hidden_seeds():
    from solutions import mlp

    for seed in (0, 424242, 7):
        check_function(SPECS["changed_positions"], mlp.changed_positions, seed=seed, device="cpu")
