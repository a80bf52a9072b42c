"""The check framework itself: messages for each kind of difference, and the rules of a check."""

import pytest
import torch

from solutions import checks as check
from solutions.checks.core import Case, CheckFailure, Mistake, NotImplementedYet, Spec, Unsupported, check_function, difference, run
from solutions.checks.modules import module_case, module_driver


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
    from solutions.tokenization import merge as reference_merge

    with pytest.raises(CheckFailure, match="the course's reference"):
        check.merge(reference_merge)  # handing in the reference earns nothing
    assert not check.passed("merge")

    def my_merge(ids, pair, new_id):
        return reference_merge(ids, pair, new_id)

    check.merge(my_merge)
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


# --- tensors, modules and devices (the framework that chapters 2-6 use) -----------------------


def test_shape_messages_name_the_dimensions_and_recognise_a_transpose():
    expected = torch.zeros(2, 5, 16)
    message = difference(torch.zeros(2, 16, 5), expected, dims=("batch", "seq", "d_model"))
    assert "expected (batch=2, seq=5, d_model=16)" in message
    assert "yours look like (batch, d_model, seq)" in message
    assert "look like" not in difference(torch.zeros(2, 5, 15), expected, dims=("batch", "seq", "d_model"))


def test_a_spec_tolerance_applies_to_python_floats_too():
    spec = _spec(reference=lambda: 1.0, make_cases=lambda seed: [Case(())], tolerance=(1e-5, 1e-5))
    check_function(spec, lambda: 1.0 + 2e-6)  # a loss.item() a little off: fine under the spec's tolerance
    with pytest.raises(CheckFailure):
        check_function(_spec(reference=lambda: 1.0, make_cases=lambda seed: [Case(())]), lambda: 1.0 + 2e-6)


def test_error_hints_match_the_message_not_only_the_type():
    def boom(message):
        def fn(xs):
            raise RuntimeError(message)
        return fn

    spec = _spec(error_hints={"RuntimeError: same device": "device hint", "RuntimeError": "any other runtime error"})
    with pytest.raises(CheckFailure, match="Hint: device hint"):
        check_function(spec, boom("Expected all tensors to be on the same device"))
    with pytest.raises(CheckFailure, match="Hint: any other runtime error"):
        check_function(spec, boom("mat1 and mat2 shapes cannot be multiplied"))


def test_a_case_seed_makes_random_code_reproducible():
    spec = _spec(reference=lambda n: torch.rand(n), make_cases=lambda seed: [Case((3,), seed=11)])
    check_function(spec, lambda n: torch.rand(n))  # same draws after the same seed
    with pytest.raises(CheckFailure):
        check_function(spec, lambda n: torch.rand(n + 1)[1:])


def test_an_uncomparable_reference_result_is_a_bug_in_the_spec():
    with pytest.raises(TypeError, match="bug in the spec"):
        difference(1, Unsupported("builtins.object"))


class _Scale(torch.nn.Module):
    """A tiny module exercise: y = x * w (w of shape (d,)), with a buffer-free forward."""

    def __init__(self, d: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(d))

    def forward(self, x):
        return x * self.w


def _module_spec(**kw):
    def cases(seed):
        g = torch.Generator().manual_seed(seed)  # one seed, one set of cases
        c = module_case({"d": 3}, {"w": torch.randn(3, generator=g)}, (torch.randn(2, 3, generator=g),), torch.randn(2, 3, generator=g), "x")
        meta = module_case(*c.args, label="meta")
        meta.device = "meta"
        return [c, meta]

    return _spec(name="_Scale", reference=_Scale, make_cases=cases, driver=module_driver, **kw)


def test_module_checks_compare_outputs_and_gradients_and_name_parameters():
    spec = _module_spec()
    check_function(spec, _Scale)

    class Empty(torch.nn.Module):  # the right name and nothing else: passed before modules were checkable
        def __init__(self, d):
            super().__init__()

    with pytest.raises(CheckFailure, match="has no parameter 'w' \\(shape \\(3,\\)\\)"):
        check_function(spec, Empty)

    class Renamed(_Scale):
        def __init__(self, d):
            torch.nn.Module.__init__(self)
            self.weight = torch.nn.Parameter(torch.randn(d))

    with pytest.raises(CheckFailure, match="no parameter 'w'.*it has: weight \\(3,\\)"):
        check_function(spec, Renamed)

    class Extra(_Scale):
        def __init__(self, d):
            super().__init__(d)
            self.b = torch.nn.Parameter(torch.zeros(d))

    with pytest.raises(CheckFailure, match="parameter or buffer 'b' that the exercise does not ask for"):
        check_function(spec, Extra)

    class Detached(_Scale):
        def forward(self, x):
            return x * self.w.detach()

    with pytest.raises(CheckFailure, match="the gradient of w is None: no gradient reaches it"):
        check_function(spec, Detached)
    with pytest.raises(CheckFailure, match="needs your class _Scale itself"):
        check_function(spec, _Scale(3))


def test_a_tensor_made_without_device_is_found_on_the_cpu():
    class OnTheCpu(_Scale):
        def forward(self, x):
            return x * self.w + torch.zeros(x.shape[-1])  # no device=: wrong on a GPU

    with pytest.raises(CheckFailure, match="on the meta device.*not on the device of the inputs|same device|meta"):
        check_function(_module_spec(), OnTheCpu)


def test_earlier_classes_are_bound_for_the_check_and_restored(monkeypatch):
    import types

    module = types.ModuleType("learner_notebook")
    monkeypatch.setitem(__import__("sys").modules, "learner_notebook", module)
    exec(
        "import torch\n"
        "class Helper:\n    pass\n"
        "class _Scale(torch.nn.Module):\n"
        "    def __init__(self, d):\n        super().__init__()\n        self.w = torch.nn.Parameter(torch.randn(d))\n"
        "    def forward(self, x):\n        return Helper.apply(x, self.w)\n",
        module.__dict__,
    )
    module._Scale.__module__ = "learner_notebook"

    class RefHelper:
        @staticmethod
        def apply(x, w):
            return x * w

    learner_helper = module.Helper
    check_function(_module_spec(uses={"Helper": RefHelper}), module._Scale)  # super() still works
    assert module.Helper is learner_helper  # and the learner's own class is back
