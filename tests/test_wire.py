"""The wire format: plain JSON both ways, and no student object's methods survive the trip."""

import json
from collections import Counter

import pytest
import torch

from solutions.checks import wire
from solutions.checks.core import Case, CheckFailure, Outcome, Spec, Unsupported, check_function


def trip(value):
    return wire.decode(json.loads(json.dumps(wire.encode(value))))


@pytest.mark.parametrize(
    "value",
    [None, True, 3, -2**70, 0.5, "héllo", b"\xff\x00", [1, [2]], (1, (2, 3)), {(1, 2): 3, "a": [b"x"]}],
)
def test_plain_values_round_trip_exactly(value):
    out = trip(value)
    assert out == value and type(out) is type(value)


def test_special_floats():
    assert trip(float("inf")) == float("inf")
    assert trip(float("nan")) != trip(float("nan"))  # still a NaN


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.uint8])
def test_tensors_round_trip(dtype):
    t = (torch.arange(12).reshape(3, 4) % 3).to(dtype)
    out = trip(t)
    assert out.dtype == dtype and out.shape == t.shape and torch.equal(out, t)
    assert trip(torch.zeros(0, 5)).shape == (0, 5)
    assert trip(torch.nn.Parameter(torch.ones(2))).__class__ is torch.Tensor


class AlwaysEqual:
    def __eq__(self, other):
        return True


class SneakyInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class SneakyList(list):
    def __iter__(self):
        return iter([1, 2, 3])


def test_cheating_objects_become_plain_or_unsupported():
    assert isinstance(trip(AlwaysEqual()), Unsupported)
    assert trip(SneakyInt(5)) == 5 and type(trip(SneakyInt(5))) is int
    assert trip(SneakyList([9])) == [9]  # the base list's own items, not the overridden iterator
    assert type(trip(Counter("aab"))) is dict


def test_an_always_equal_answer_fails_a_check():
    spec = Spec(name="f", chapter="00", reference=lambda: [1, 2], make_cases=lambda seed: [Case(())])
    with pytest.raises(CheckFailure, match="should be a list, but it is an object of type .*AlwaysEqual"):
        check_function(spec, lambda: AlwaysEqual())
    with pytest.raises(CheckFailure, match="item 0 is 7, expected 1"):
        check_function(spec, lambda: [SneakyInt(7), 2])


def test_outcomes_travel_and_oversized_values_become_errors():
    outcomes = [Outcome(value={"x": torch.ones(2)}), Outcome(error=("KeyError", "'k'"), mutated=["argument 1"])]
    back = wire.loads(wire.dumps(outcomes))
    assert torch.equal(back[0].value["x"], torch.ones(2)) and back[1].error == ("KeyError", "'k'")
    assert back[1].mutated == ["argument 1"]
    (big,) = wire.loads(wire.dumps([Outcome(value=torch.zeros(wire.MAX_ITEMS + 1))]))
    assert big.error[0] == "UncheckableValue"
    loop = []
    loop.append(loop)
    (deep,) = wire.loads(wire.dumps([Outcome(value=loop)]))
    assert deep.error[0] == "UncheckableValue"


def test_malformed_wire_data_is_refused():
    with pytest.raises(ValueError):
        wire.decode({"$evil": 1})
    with pytest.raises(ValueError):
        wire.decode({"a": 1, "b": 2})


def test_texts_with_surrogates_keep_every_code_point_through_json():
    """JSON reads a high and a low surrogate side by side as one character: such texts (chapter 1
    checks them) travel as code points, so the sandbox gets the very text the reference got."""
    import json

    from solutions.checks import wire

    for text in ["a\ud83d\ude00b", "lone \ud948 high", "lone \udc00 low", "plain", "😀"]:
        for value in (text, [text], {text: (text,)}):
            back = wire.decode(json.loads(json.dumps(wire.encode(value))))
            assert back == value
    assert len(wire.decode(json.loads(json.dumps(wire.encode("\ud83d\ude00"))))) == 2
