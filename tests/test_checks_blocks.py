"""Chapter 5: a Config travels to the module driver as plain data; wrong answers fail with hints."""

import json

import pytest
import torch

from solutions import blocks as ref
from solutions import checks as check
from solutions.checks import SPECS, wire
from solutions.checks.core import CheckFailure, check_function
from solutions.checks.modules import build_init, build_value, built


def fails(name, answer, match=None):
    for seed in (0, 424242):
        with pytest.raises(CheckFailure, match=match):
            check_function(SPECS[name], answer, seed=seed, device="cpu")


def test_a_built_config_is_plain_data_and_is_built_again():
    value = built(ref.Config, d_model=8, n_heads=2, norm="rmsnorm")
    assert json.loads(json.dumps(wire.encode(value))) is not None  # nothing but plain data
    config = build_value(wire.decode(wire.encode(value)))
    assert config == ref.Config(d_model=8, n_heads=2, norm="rmsnorm")
    assert build_init({"config": value, "eps": 0.1}) == {"config": config, "eps": 0.1}
    with pytest.raises(ValueError, match="course package"):
        built(json.JSONDecoder)


def test_check_inputs_gives_a_config_that_builds_the_learners_class():
    init, weights, inputs, cotangent, *_ = check.inputs("TransformerBlock", 1)
    assert isinstance(init["config"], ref.Config)
    block = ref.TransformerBlock(**init)
    block.load_state_dict(weights)
    assert block(*inputs).shape == inputs[0].shape
    (config,) = check.inputs("count_parameters", 1)
    assert ref.count_parameters(config) == 124_439_808  # GPT-2 small, the first case


def test_a_failure_shows_the_config_and_how_to_reproduce_it():
    class TransformerBlock(ref.TransformerBlock):  # the MLP reads ln1 too
        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln1(x))

    TransformerBlock.__module__ = "learner"
    with pytest.raises(CheckFailure) as failure:
        check_function(SPECS["TransformerBlock"], TransformerBlock, device="cpu")
    text = str(failure.value)
    assert "TransformerBlock(config=Config(d_model=" in text
    assert "check.inputs('TransformerBlock', 1)" in text
    assert "its own norm" in text  # the hint of the one-norm mistake
