"""Wrong answers that got past the checks after issue 19's second round, each kept here with why
it is wrong; each must now fail with a message that leads to the mistake."""

import pytest
import torch

from solutions import blocks as ref_blocks
from solutions import training as ref_training
from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function, without_hints


def message(name, answer, seed=0):
    with pytest.raises(CheckFailure) as failure:
        with without_hints():
            check_function(SPECS[name], answer, seed=seed, device="cpu")
    return str(failure.value)


# --- chapter 5 ----------------------------------------------------------------------------------


class GPTTiedCachedAtInit(ref_blocks.GPT):
    """W_U = W_E.T computed once in __init__: a view of W_E's storage *then*. load_state_dict
    copies in place, so the values follow; model.double() or model.to("cuda") replace W_E's
    storage, and the cached view stays float32 on the CPU (forward then fails or uses stale
    numbers)."""

    def __init__(self, config):
        super().__init__(config)
        self.W_U_tied = self.embed.W_E.T if config.tie_embeddings else None

    def forward(self, tokens):
        if tokens.shape[-1] > self.config.n_ctx:
            raise ValueError(f"n_ctx = {self.config.n_ctx}")
        x = self.embed(tokens)
        if self.config.positions == "learned":
            x = x + self.pos_embed(tokens)
        for block in self.blocks:
            x = block(x)
        x = self.ln_final(x)
        return x @ (self.W_U_tied if self.config.tie_embeddings else self.W_U)


class GPTWithoutConfig(ref_blocks.GPT):
    """Everything right, but the config is not kept as self.config: chapter 6's sampling reads
    model.config.n_ctx and crashes there."""

    def __init__(self, config):
        super().__init__(config)
        self._cfg = config
        del self.config

    @property
    def config_(self):
        return self._cfg

    def forward(self, tokens):
        self.config = self._cfg
        try:
            return ref_blocks.GPT.forward(self, tokens)
        finally:
            del self.config


def test_a_tied_unembedding_cached_in_init_fails_when_the_model_is_converted():
    text = message("GPT", GPTTiedCachedAtInit)
    assert "float64" in text and "model.double()" in text, text


def test_a_gpt_without_self_config_is_told_to_keep_it():
    text = message("GPT", GPTWithoutConfig)
    assert "no attribute 'config'" in text and "self.config" in text, text


# --- chapter 6 ----------------------------------------------------------------------------------


def lr_at_returning_min_lr_as_given(step, max_lr, min_lr, warmup_steps, max_steps):
    """Returns min_lr itself after max_steps: the int 0 when the schedule is given in ints,
    where the exercise promises a Python float."""
    rate = ref_training.lr_at(step, max_lr, min_lr, warmup_steps, max_steps)
    return min_lr if step >= max_steps else rate


def clip_grad_norm_in_float16(grads, max_norm):
    """Sums the squares in the gradients' own dtype: float16 squares add up past 65504 for a
    norm above 256, the norm is inf and every gradient becomes 0."""
    if max_norm <= 0:
        raise ValueError("max_norm must be positive")
    if not grads:
        return [], torch.tensor(0.0)
    total = torch.sqrt(sum((g**2).sum() for g in grads)).float()
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * scale.to(g.dtype) for g in grads], total


def clip_grad_norm_in_float32(grads, max_norm):
    """Always measures in float32: float64 gradients beyond float32's range give an infinite
    norm (and the float64 precision is lost for the others)."""
    if max_norm <= 0:
        raise ValueError("max_norm must be positive")
    if not grads:
        return [], torch.tensor(0.0)
    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * scale.to(g.dtype) for g in grads], total.to(grads[0].dtype)


def top_k_naming_shape_1(logits, k):
    """Validates against the last axis but names shape[1] in its message: with logits of shape
    (batch, seq, d_vocab) the message gives seq as d_vocab."""
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k must be in 1..d_vocab = {logits.shape[1]}, got {k}")
    return ref_training.top_k_filter(logits, k)


@pytest.mark.parametrize("name, wrong, words", [
    ("lr_at", lr_at_returning_min_lr_as_given, ("Python float", "the int 0")),
    ("clip_grad_norm", clip_grad_norm_in_float16, ("float16 squares overflow", "the clipped gradients")),
    ("clip_grad_norm", clip_grad_norm_in_float32, ("float32",)),
    ("top_k_filter", top_k_naming_shape_1, ("should name '9'",)),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_chapter_6_wrong_answers_fail(name, wrong, words):
    text = message(name, wrong)
    assert all(w in text for w in words), text
