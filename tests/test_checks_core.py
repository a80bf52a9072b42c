"""The check framework itself: messages for each kind of difference, and the rules of a check."""

import pytest
import torch

from solutions import checks as check
from solutions.checks.core import Case, CheckFailure, Mistake, NotImplementedYet, Spec, check_function, difference, run


def test_difference_names_type_dtype_shape_and_value_in_that_order():
    e = torch.zeros(2, 3)
    assert "should be a tensor" in difference([0.0] * 6, e)
    assert "dtype torch.float64, expected torch.float32" in difference(e.double(), e)
    assert "shape (3, 2), expected (2, 3)" in difference(torch.zeros(3, 2), e)
    wrong = e.clone()
    wrong[1, 2] = 1.0
    message = difference(wrong, e)
    assert "index [1, 2]" in message and "1 instead of 0" in message and "16.7% of the values" in message
    assert difference(e + 1e-7, e) is None  # inside the float32 tolerance


def test_difference_on_python_values():
    assert difference([1, 2, 3], [1, 2, 3]) is None
    assert difference((1, 2), [1, 2]) == "the result should be a list, but it is a tuple."
    assert difference([1, 2], [1, 2, 3]) == "the result has 2 items, expected 3."
    assert difference([1, 5, 3], [1, 2, 3]) == "item 1 is 5, expected 2."
    assert "missing the key (1, 2)" in difference({}, {(1, 2): 3})
    assert "unexpected key 'x'" in difference({"a": 1, "x": 2}, {"a": 1})
    assert "should be an int" in difference(True, 1)
    assert "should be an int" in difference(1.0, 1)
    assert difference(0.1 + 0.2, 0.3) is None
    assert difference(float("nan"), 0.3) is not None
    assert "should be a str" in difference(b"ab", "ab")


def _spec(**kw):
    defaults = dict(
        name="double",
        chapter="00_test",
        reference=lambda xs: [2 * x for x in xs],
        make_cases=lambda seed: [Case(([1, 2, 3],), label="xs=[1, 2, 3]"), Case(([],), label="xs=[]")],
    )
    defaults.update(kw)
    return Spec(**defaults)


def test_check_returns_none_and_prints_one_line(capsys):
    assert check_function(_spec(), lambda xs: [x + x for x in xs]) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "double" in out


def test_stub_wrong_answer_error_and_mutation_messages():
    def stub(xs):
        raise NotImplementedError()

    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        check_function(_spec(), stub)
    with pytest.raises(CheckFailure, match=r"double on xs=\[1, 2, 3\]: item 0 is 1, expected 2"):
        check_function(_spec(), lambda xs: list(xs))
    with pytest.raises(CheckFailure, match="raised ZeroDivisionError on xs=\\[1, 2, 3\\]"):
        check_function(_spec(), lambda xs: [1 / 0])

    def in_place(xs):
        xs[:] = [2 * x for x in xs]
        return xs

    with pytest.raises(CheckFailure, match="changed its input in place"):
        check_function(_spec(), in_place)
    with pytest.raises(CheckFailure, match="needs your function"):
        check_function(_spec(), 42)


def test_known_mistake_gets_its_hint_and_unknown_gets_none():
    spec = _spec(mistakes=[Mistake("squared", "you squared instead of doubling", lambda xs: [x * x for x in xs])])
    with pytest.raises(CheckFailure) as info:
        check_function(spec, lambda xs: [x * x for x in xs])
    assert "Hint: you squared instead of doubling" in str(info.value)
    with pytest.raises(CheckFailure) as info:
        check_function(spec, lambda xs: [x + 1 for x in xs])
    assert "Hint" not in str(info.value)


def test_reference_errors_must_be_matched():
    spec = _spec(reference=lambda x: 1 / x, make_cases=lambda seed: [Case((0,), label="x=0")])
    check_function(spec, lambda x: 1 / x)  # same exception type: fine
    with pytest.raises(CheckFailure, match="should raise ZeroDivisionError"):
        check_function(spec, lambda x: 0.0)


def test_tensor_check_on_cpu_with_device_argument():
    spec = _spec(
        reference=lambda x: x.softmax(-1),
        make_cases=lambda seed: [Case((torch.randn(3, 4, generator=torch.Generator().manual_seed(seed)),))],
    )
    check_function(spec, lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True), device="cpu")
    with pytest.raises(CheckFailure, match="differs at index"):
        check_function(spec, lambda x: x.softmax(0), device="cpu")
    with pytest.raises(CheckFailure, match="dtype torch.float64"):
        check_function(spec, lambda x: x.double().softmax(-1), device="cpu")


def test_run_never_raises_and_records_errors():
    (outcome,) = run(lambda: {}["missing"], [Case(())])
    assert outcome.error == ("KeyError", "'missing'")


def test_registry_entry_points_and_summary(capsys):
    assert callable(check.merge)
    with pytest.raises(AttributeError, match="no check called 'nonexistent'"):
        check.nonexistent
    check.merge(check.SPECS["merge"].reference)
    assert check.passed("merge")
    check.summary("01_tokenization")
    out = capsys.readouterr().out
    assert "passed" in out and "merge" in out and "Score:" in out


def test_earlier_exercises_are_replaced_by_references_while_checking():
    namespace = {}
    exec("def helper(x):\n    raise NotImplementedError()\ndef double(xs):\n    return [helper(x) for x in xs]", namespace)
    spec = _spec(uses={"helper": lambda x: 2 * x})
    check_function(spec, namespace["double"])  # the unfinished helper does not block `double`
    with pytest.raises(NotImplementedError):  # and the learner's namespace is untouched
        namespace["double"]([1])
