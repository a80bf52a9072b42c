"""The check framework's contract mechanisms (issue 19): gradients are part of the answer,
forbidden calls are observed, special-value families are derived, earlier references are bound
wherever the answer reaches them, modules keep their promised attributes. Each is proved both ways:
the reference passes, the wrong answer fails with the sentence written for it, and the record
travels through the grader's wire."""

import pytest
import torch
import torch.nn.functional as F

from solutions.checks import families, wire
from solutions.checks.core import Case, CheckFailure, Mistake, Spec, check_function, run
from solutions.checks.modules import module_case, module_driver
from solutions.checks.outcome import SANDBOX_FIELDS


def _scale_spec(**kw):
    def scale(x, w):
        """x * w: differentiable in both."""
        return x * w

    g = torch.Generator().manual_seed(0)
    defaults = dict(
        name="scale",
        chapter="00_test",
        reference=scale,
        make_cases=lambda seed: [Case((torch.randn(3, 4, generator=g), torch.randn(4, generator=g)), label="x and w")],
    )
    defaults.update(kw)
    return Spec(**defaults)


def test_a_detached_result_fails_with_its_own_sentence_naming_the_exercise():
    check_function(_scale_spec(), lambda x, w: w * x)  # right in value and gradient
    with pytest.raises(CheckFailure, match=r"scale on x and w: the result carries no gradient") as failure:
        check_function(_scale_spec(), lambda x, w: (x * w).detach())
    assert "torch.no_grad()" in str(failure.value) and ".detach()" in str(failure.value)

    def under_no_grad(x, w):
        with torch.no_grad():
            return x * w

    with pytest.raises(CheckFailure, match="carries no gradient"):
        check_function(_scale_spec(), under_no_grad)


def test_a_gradient_cut_from_one_input_names_that_argument():
    with pytest.raises(CheckFailure, match=r"no gradient reaches `w`"):
        check_function(_scale_spec(), lambda x, w: x * w.detach())


def test_a_wrong_gradient_with_right_values_fails():
    class Rounded(torch.autograd.Function):  # right forward, backward of another function
        @staticmethod
        def forward(ctx, x, w):
            return x * w

        @staticmethod
        def backward(ctx, g):
            return 2 * g, None

    with pytest.raises(CheckFailure, match=r"the gradient with respect to `x` differs"):
        check_function(_scale_spec(), lambda x, w: Rounded.apply(x, w))


def test_an_answer_that_breaks_only_when_inputs_require_grad_is_named():
    def in_place(x, w):
        if x.requires_grad:
            x.mul_(w)  # a leaf that requires grad: torch refuses
            return x
        return x * w

    with pytest.raises(CheckFailure, match=r"called with inputs that require grad \(as in training\), raised RuntimeError"):
        check_function(_scale_spec(), in_place)


def test_gradients_are_not_compared_where_the_spec_or_the_reference_says_so():
    detached = lambda x, w: (x * w).detach()  # noqa: E731
    check_function(_scale_spec(gradients=False), detached)
    check_function(_scale_spec(gradients=lambda case: False), detached)

    def reference_without_graph(x, w):
        with torch.no_grad():
            return x * w

    check_function(_scale_spec(reference=reference_without_graph), detached)


def test_a_known_mistake_that_differs_only_in_its_gradient_gets_its_hint():
    spec = _scale_spec(mistakes=[Mistake("detached", "HINT: detached", lambda x, w: (x * w).detach())])
    with pytest.raises(CheckFailure, match="HINT: detached"):
        check_function(spec, lambda x, w: (x * w).detach())


def _relu_spec():
    def relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))

    return Spec(
        name="relu",
        chapter="00_test",
        reference=relu,
        make_cases=lambda seed: [Case((torch.linspace(-2, 2, 8),), label="a grid")],
        forbids={"relu": "write it with torch.where."},
    )


@pytest.mark.parametrize("wrong", [F.relu, torch.relu, lambda x: x.relu(), lambda x: torch.nn.ReLU()(x)])
def test_a_forbidden_call_is_refused_however_it_is_reached(wrong):
    with pytest.raises(CheckFailure, match=r"relu on a grid calls torch's `relu`, which this exercise asks you not to use: write it with torch.where."):
        check_function(_relu_spec(), wrong)


def test_allowed_calls_pass_and_calls_inside_bound_references_do_not_count():
    check_function(_relu_spec(), lambda x: x.clamp(min=0))

    def outer_reference(x):
        return helper(x) + 1  # noqa: F821 (bound by the check)

    def uses_relu(x):  # an earlier exercise's reference may use what this one forbids
        return F.relu(x)

    spec = Spec(name="outer", chapter="00_test", reference=outer_reference,
                make_cases=lambda seed: [Case((torch.linspace(-2, 2, 9),))],
                forbids={"relu": "by hand."}, uses={"helper": uses_relu})
    namespace = {"helper": None}
    exec("def outer(x):\n    return helper(x) + 1\n", namespace)  # noqa: S102
    check_function(spec, namespace["outer"])


def test_the_record_of_calls_and_gradients_travels_through_the_wire():
    spec = _relu_spec()
    cases = spec.make_cases(0)
    assert cases[0].forbid == ("relu",) and cases[0].gradient
    (outcome,) = wire.round_trip(run(F.relu, cases))
    assert outcome.calls == ["relu"]
    assert outcome.has_graph == [True] and outcome.grad_of == ["1"]
    assert isinstance(outcome.grads[0], torch.Tensor) and outcome.grads[0].shape == (8,)
    assert set(SANDBOX_FIELDS) >= {"gradient", "forbid"}


def test_the_grader_sends_the_contract_fields_to_the_sandbox():
    from solutions.grading import harness
    from solutions.grading.planning import encode_cases

    cases = _relu_spec().make_cases(0)
    (sent,) = encode_cases(cases)
    received = harness._case(sent)
    assert received.forbid == ("relu",) and received.gradient is True and received.label == ""


def test_earlier_references_are_bound_for_helpers_of_the_answer_too():
    """A cross_entropy whose own helper calls a wrong log_softmax (+1), then subtracts 1: two
    mistakes that cancel only if the helper is left with the learner's log_softmax."""

    def log_softmax_ref(x):
        return x - x.logsumexp(-1, keepdim=True)

    def cross_entropy_ref(logits, targets):
        return -log_softmax_ref(logits).gather(-1, targets[:, None]).mean()

    g = torch.Generator().manual_seed(1)
    spec = Spec(name="cross_entropy", chapter="00_test", reference=cross_entropy_ref,
                make_cases=lambda seed: [Case((torch.randn(4, 5, generator=g), torch.tensor([0, 3, 1, 4])))],
                uses={"log_softmax": log_softmax_ref})
    namespace: dict = {}
    exec(  # noqa: S102 -- a notebook's namespace
        "def log_softmax(x):\n    return x - x.logsumexp(-1, keepdim=True) + 1\n"
        "def nll(logits, targets):\n    return -log_softmax(logits).gather(-1, targets[:, None]).mean()\n"
        "def cross_entropy(logits, targets):\n    return nll(logits, targets) + 1\n",
        namespace,
    )
    with pytest.raises(CheckFailure):
        check_function(spec, namespace["cross_entropy"])
    assert namespace["log_softmax"].__code__.co_name == "log_softmax"  # put back afterwards
    assert namespace["log_softmax"](torch.zeros(2)).tolist() != log_softmax_ref(torch.zeros(2)).tolist()


def test_families_derive_the_special_values_they_name():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    base = [Case((x, 3), label="base")]
    names = ("zeros", "inf", "neg_inf", "large", "shift", "tiny", "ties", "float16", "bfloat16", "float64")
    derived = families.derive({0: names}, base, seed=5)
    by = dict(zip(names, (c.args[0] for c in derived)))
    assert (by["zeros"] == 0).any() and torch.signbit(by["zeros"][by["zeros"] == 0]).any()
    assert torch.isposinf(by["inf"]).any() and torch.isneginf(by["inf"]).any()
    assert torch.isneginf(by["neg_inf"]).any() and torch.isfinite(by["neg_inf"]).any(-1).all()
    assert by["large"].abs().max() > 100 and (by["shift"] < -9000).all()
    assert 0 < by["tiny"].abs().max() < 1e-25
    assert torch.equal(by["ties"][:, 0], by["ties"][:, 1])
    assert [by[d].dtype for d in ("float16", "bfloat16", "float64")] == [torch.float16, torch.bfloat16, torch.float64]
    assert all(c.args[1] == 3 and c.label.startswith("base, ") for c in derived)
    assert torch.equal(families.derive({0: ("zeros",)}, base, 5)[0].args[0], by["zeros"])  # seeded
    with pytest.raises(ValueError, match="unknown special-value family"):
        families.derive({0: ("nope",)}, base, 0)
    with pytest.raises(ValueError, match="argument 2"):
        families.derive({1: ("zeros",)}, base, 0)


def test_a_spec_family_catches_what_random_inputs_miss():
    spec = _relu_spec()
    spec = Spec(name="relu", chapter="00_test", reference=spec.reference, make_cases=spec.make_cases,
                families={0: ("inf",)}, gradients=lambda case: not bool((case.args[0] == 0).any()))
    mul_mask = lambda x: x * (x > 0)  # noqa: E731 -- -inf * 0 is nan
    check_function(_relu_spec(), mul_mask)  # the grid alone lets it through
    with pytest.raises(CheckFailure, match=r"some entries \+inf or -inf.*nan instead of 0"):
        check_function(spec, mul_mask)


class _Scale(torch.nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.d_model = d
        self.w = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * self.w


def _module_spec(reference=_Scale):
    g = torch.Generator().manual_seed(0)
    w = {"w": torch.randn(5, generator=g)}
    x, cot = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    return Spec(name="Scale", chapter="00_test", reference=reference, driver=module_driver,
                make_cases=lambda seed: [module_case({"d": 5}, w, (x,), cot, "x", attributes=("d_model",))])


def test_a_module_without_a_promised_attribute_is_named():
    class Renamed(_Scale):
        def __init__(self, d):
            super().__init__(d)
            del self.d_model
            self.dim = d

    check_function(_module_spec(), type("Scale", (_Scale,), {}))
    with pytest.raises(CheckFailure, match=r"has no attribute 'd_model'.*self.d_model = "):
        check_function(_module_spec(), Renamed)

    class WrongValue(_Scale):
        def __init__(self, d):
            super().__init__(d)
            self.d_model = d + 1

    with pytest.raises(CheckFailure, match=r"the attribute 'd_model' is 6, expected 5"):
        check_function(_module_spec(), WrongValue)


def test_a_module_that_works_in_place_when_its_input_has_no_grad_fails():
    class InPlace(_Scale):
        def forward(self, x):
            if not x.requires_grad:
                return x.mul_(self.w)
            return x * self.w

    with pytest.raises(CheckFailure, match="changes its input in place when the input does not require grad"):
        check_function(_module_spec(), InPlace)

    class Other(_Scale):
        def forward(self, x):
            return x * self.w if x.requires_grad else x * self.w.detach() * 2

    with pytest.raises(CheckFailure, match="output of forward on inputs that do not require grad"):
        check_function(_module_spec(), Other)


def test_a_misshaped_module_output_is_reported_as_its_shape_not_as_a_backward_error():
    class Transposed(_Scale):
        def forward(self, x):
            return (x * self.w).T

    with pytest.raises(CheckFailure, match=r"the output of forward has shape \(5, 2\)") as failure:
        check_function(_module_spec(), Transposed)
    assert "backward" not in str(failure.value)


def test_items_of_a_returned_tuple_are_named_by_meaning():
    def split(x):
        return x[:-1], x[1:]

    spec = Spec(name="split", chapter="00_test", reference=split, result_names=("the inputs x", "the targets y"),
                make_cases=lambda seed: [Case((torch.arange(6),), label="ids")])
    check_function(spec, lambda x: (x[:-1].clone(), x[1:].clone()))
    with pytest.raises(CheckFailure, match=r"split on ids: the targets y differs at index \[0\]: 2 instead of 1"):
        check_function(spec, lambda x: (x[:-1], x[2:].tolist() and torch.cat([x[2:], x[:1]])))
