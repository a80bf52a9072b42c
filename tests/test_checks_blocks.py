"""Chapter 5: a Config travels to the module driver as plain data; wrong answers fail with hints."""

import json

import einops
import pytest
import torch

from solutions import blocks as ref
from solutions import checks as check
from solutions.checks import SPECS, wire
from solutions.checks.core import CheckFailure, check_function, without_hints
from solutions.checks.modules import build_init, build_value, built
from solutions.mlp import MLP, SwiGLU


def fails(name, answer, match=None):
    # the verdict only: the search for a hint is what costs time, and it does not change the verdict
    for seed in (0, 424242):
        with without_hints(), pytest.raises(CheckFailure, match=match):
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


# --- wrong answers an adversarial learner found passing; each must now fail ----------------------


def _learner(cls):
    cls.__module__ = "learner"
    return cls


@_learner
class _LayerNormDetachedStats(ref.LayerNorm):
    def forward(self, x):  # statistics without a gradient: wrong gradient for x
        mean = x.mean(dim=-1, keepdim=True).detach()
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True).detach()
        return (x - mean) / torch.sqrt(var + self.eps) * self.w + self.b


@_learner
class _LayerNormFloat32(ref.LayerNorm):
    def forward(self, x):  # float64 in, float32 out
        return super().forward(x.float())


@_learner
class _LayerNormTorch(ref.LayerNorm):
    def forward(self, x):  # the notebook forbids it
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), self.w, self.b, self.eps)


@_learner
class _RMSNormDetached(ref.RMSNorm):
    def forward(self, x):
        rms = torch.sqrt((x * x).mean(dim=-1, keepdim=True) + self.eps).detach()
        return x / rms * self.w


@_learner
class _BlockDetachedStream(ref.TransformerBlock):
    def forward(self, x):  # no gradient reaches the blocks before
        x = x.detach() + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@_learner
class _BlockLlamaFromMLP(torch.nn.Module):
    def __init__(self, config):  # RoPE and biases read from config.mlp, rope_base dropped
        super().__init__()
        llama = config.mlp == "swiglu"
        Norm = ref.LayerNorm if config.norm == "layernorm" else ref.RMSNorm
        self.ln1 = Norm(config.d_model, config.layer_norm_eps)
        self.attn = ref.CausalSelfAttention(config.d_model, config.n_heads, bias=not llama, rope=llama, fused=config.fused)
        self.ln2 = Norm(config.d_model, config.layer_norm_eps)
        self.mlp = (SwiGLU if llama else MLP)(config.d_model, config.d_mlp)

    forward = ref.TransformerBlock.forward


@_learner
class _BlockRopeBaseIgnored(ref.TransformerBlock):
    def __init__(self, config):
        super().__init__(config)
        self.attn.rope_base = 10000.0


@_learner
class _GPTFinalNormDefaultEps(ref.GPT):
    def __init__(self, config):
        super().__init__(config)
        self.ln_final = ref.LayerNorm(config.d_model) if config.norm == "layernorm" else ref.RMSNorm(config.d_model)


@_learner
class _GPTUnembeddingCopiesEmbedding(ref.GPT):
    def __init__(self, config):
        super().__init__(config)
        if not config.tie_embeddings:
            self.W_U = torch.nn.Parameter(self.embed.W_E.detach().T.clone())


@_learner
class _GPTInitOverLayers(ref.GPT):
    def __init__(self, config):
        super().__init__(config)
        with torch.no_grad():
            for b in self.blocks:
                b.attn.W_O.normal_(0, 0.02 / config.n_layers)
                (b.mlp.W_out if config.mlp == "gelu" else b.mlp.W_down).normal_(0, 0.02 / config.n_layers)


@_learner
class _GPTCachedPositions(ref.GPT):
    def forward(self, tokens):
        if tokens.shape[1] > self.config.n_ctx:
            raise ValueError(f"n_ctx = {self.config.n_ctx}")
        x = self.embed(tokens)
        if self.config.positions == "learned":
            if not hasattr(self, "_pos"):
                self._pos = self.pos_embed(tokens)
            x = x + self._pos
        for b in self.blocks:
            x = b(x)
        return self.ln_final(x) @ (self.embed.W_E.T if self.config.tie_embeddings else self.W_U)


@_learner
class _GPTEverythingFromNorm(ref.GPT):
    def __init__(self, config):  # positions and the MLP's kind read from config.norm
        fake = ref.Config(**{**config.__dict__, "positions": "rope" if config.norm == "rmsnorm" else "learned",
                             "mlp": "swiglu" if config.norm == "rmsnorm" else "gelu"})
        super().__init__(fake)


def _split_without_checks(W, b, n_heads):
    d_model = W.shape[0]
    if d_model % n_heads:
        raise ValueError(f"n_heads = {n_heads} does not divide d_model = {d_model}")
    Ws = [einops.rearrange(w, "m (h d) -> h m d", h=n_heads) for w in W.split(d_model, dim=1)]
    bs = [einops.rearrange(x, "(h d) -> h d", h=n_heads) for x in b.split(d_model)]
    return (*Ws, *bs)


@pytest.mark.parametrize("name, answer", [
    ("LayerNorm", _LayerNormDetachedStats),
    ("LayerNorm", _LayerNormFloat32),
    ("LayerNorm", _LayerNormTorch),
    ("RMSNorm", _RMSNormDetached),
    ("TransformerBlock", _BlockDetachedStream),
    ("TransformerBlock", _BlockLlamaFromMLP),
    ("TransformerBlock", _BlockRopeBaseIgnored),
    ("GPT", _GPTFinalNormDefaultEps),
    ("GPT", _GPTUnembeddingCopiesEmbedding),
    ("GPT", _GPTInitOverLayers),
    ("GPT", _GPTCachedPositions),
    ("GPT", _GPTEverythingFromNorm),
    ("split_c_attn", _split_without_checks),
], ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_wrong_answers_found_by_a_learner_fail(name, answer):
    fails(name, answer)


def test_messages_name_the_expected_error_and_hide_the_drivers_record():
    @_learner
    class NoContextCheck(ref.GPT):
        def forward(self, tokens):
            x = self.embed(tokens) + (self.pos_embed(tokens) if self.config.positions == "learned" else 0)
            for b in self.blocks:
                x = b(x)
            return self.ln_final(x) @ (self.embed.W_E.T if self.config.tie_embeddings else self.W_U)

    with pytest.raises(CheckFailure) as failure:
        check_function(SPECS["GPT"], NoContextCheck, device="cpu")
    assert "should raise ValueError" in str(failure.value) and "ran without an error" in str(failure.value)
    assert "{'output'" not in str(failure.value)
