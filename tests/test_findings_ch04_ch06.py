"""Chapters 4-6: wrong answers that fresh learners got past the checks (issue 19), each copied here
with why it is wrong; each must now fail with a message that leads to the mistake.

Also the named mistakes the pages discuss that got no hint before (AdamW without bias correction,
Adam + L2, split_c_attn's (d_head n_heads) order and nn.Linear layout, LayerNorm without eps or
with LLaMA's eps, the MLP before attention, a residual taken from the normalised stream, weight
tying through .detach() or a copy): a learner who makes exactly that mistake, and otherwise does
what the exercise asks (validates its inputs, stores its attributes), reads its hint.
"""

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solutions import blocks as ref_blocks
from solutions.checks import SPECS
from solutions.checks.core import CheckFailure, check_function, without_hints


def message(name, answer, seed=0, hints=True):
    """The sentence the learner reads for ``answer`` (the check must fail); ``hints=False`` skips
    the search for a known mistake (seconds for a whole model) where no hint is asserted."""
    with pytest.raises(CheckFailure) as failure:
        if hints:
            check_function(SPECS[name], answer, seed=seed, device="cpu")
        else:
            with without_hints():
                check_function(SPECS[name], answer, seed=seed, device="cpu")
    return str(failure.value)


def _learner(cls):
    cls.__module__ = "learner"  # defined in a notebook, not in the course package
    return cls


# --- chapter 4 ----------------------------------------------------------------------------------


def relu_F_relu(x):
    """The exercise says "not with F.relu, torch.relu or nn.ReLU"; numerically the same."""
    return F.relu(x)


def relu_nn_ReLU(x):
    """The same rule through the module."""
    return nn.ReLU()(x)


def relu_times_mask(x):
    """x * (x > 0) is nan at -inf (-inf * 0), where max(x, 0) is 0; no case had an infinity."""
    return x * (x > 0)


def gelu_exact_F_gelu(x):
    """The exercise says "Do not call F.gelu"."""
    return F.gelu(x)


def gelu_tanh_F_gelu(x):
    """The exercise says "Do not call F.gelu"."""
    return F.gelu(x, approximate="tanh")


def test_relu_as_x_times_a_mask_fails_at_minus_infinity():
    text = message("relu", relu_times_mask)
    assert "+inf or -inf" in text and "nan instead of 0" in text
    assert "Hint: x * (x > 0) is nan at x = -inf" in text


@_learner
class SwiGLU_F_silu(nn.Module):
    """The exercise says "write it with torch.sigmoid (not F.silu)"."""

    def __init__(self, d_model, d_mlp=None):
        super().__init__()
        self.d_model = d_model
        if d_mlp is None:
            d_mlp = 256 * ((int(2 * 4 * d_model / 3) + 255) // 256)
        self.d_mlp = d_mlp
        self.W_gate = nn.Parameter(torch.empty(d_model, d_mlp))
        self.W_up = nn.Parameter(torch.empty(d_model, d_mlp))
        self.W_down = nn.Parameter(torch.empty(d_mlp, d_model))
        for W in (self.W_gate, self.W_up, self.W_down):
            nn.init.normal_(W, std=0.02)

    def forward(self, x):
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x has last axis {x.shape[-1]}, expected d_model = {self.d_model}")
        return (F.silu(x @ self.W_gate) * (x @ self.W_up)) @ self.W_down


def test_swiglu_with_F_silu_is_refused():
    SwiGLU_F_silu.__name__ = "SwiGLU"
    assert "calls torch's `silu`" in message("SwiGLU", SwiGLU_F_silu)


def changed_positions_feature0(module, x, position):
    """Rule 2 says "add 1.0 to every number of the copy at position"; this changes feature 0 only,
    so a layer that mixes positions through another feature looks position-wise."""
    copy = x.clone()
    copy[:, position, 0] += 1.0
    with torch.no_grad():
        y0, y1 = module(x), module(copy)
    return (y0 != y1).any(dim=-1)


def changed_positions_tolerance(module, x, position):
    """Rule 4 says "Compare exactly, with !="; a tolerance of 1e-6 misses a faint mix."""
    copy = x.clone()
    copy[:, position] += 1.0
    with torch.no_grad():
        y0, y1 = module(x), module(copy)
    return ((y0 - y1).abs() > 1e-6).any(dim=-1)


@pytest.mark.parametrize("answer, words", [
    (changed_positions_feature0, ["can change feature", "Hint: add 1.0 to every number of the copy at position"]),
    (changed_positions_tolerance, ["moves by less than 1e-6", "Hint: compare exactly, with !="]),
], ids=["feature 0 only", "tolerance 1e-6"])
def test_changed_positions_follows_every_rule(answer, words):
    text = message("changed_positions", answer)
    for word in words:
        assert word in text


# --- chapter 5 ----------------------------------------------------------------------------------


@_learner
class LayerNorm(nn.Module):
    """Subtracts the mean in place when the input does not require grad ("saving memory at
    inference"): in a pre-LN block, x + attn(ln1(x)) then adds to the centred stream."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        if not x.requires_grad:
            x -= mean
        else:
            x = x - mean
        var = (x**2).mean(dim=-1, keepdim=True)
        return x / torch.sqrt(var + self.eps) * self.w + self.b


def test_layernorm_that_changes_its_input_without_grad_fails():
    text = message("LayerNorm", LayerNorm)
    assert "changes its input in place when the input does not require grad" in text
    assert "Hint: forward subtracts the mean from its input in place" in text


def _norm(eps_inside=True, default_eps=1e-5):
    @_learner
    class LayerNorm(nn.Module):
        def __init__(self, d_model, eps=default_eps):
            super().__init__()
            self.eps = eps
            self.w = nn.Parameter(torch.ones(d_model))
            self.b = nn.Parameter(torch.zeros(d_model))

        def forward(self, x):
            mean = x.mean(dim=-1, keepdim=True)
            var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
            return (x - mean) / torch.sqrt(var + self.eps if eps_inside else var) * self.w + self.b

    return LayerNorm


@pytest.mark.parametrize("answer, hint", [
    (_norm(eps_inside=False), "Hint: add eps inside the square root"),
    (_norm(default_eps=1e-6), "Hint: LayerNorm's default eps is 1e-5"),
], ids=["no eps", "LLaMA's eps"])
def test_layernorm_eps_mistakes_get_their_hints(answer, hint):
    assert hint in message("LayerNorm", answer)


def _heads(W, b, n_heads, d_model):
    """The split itself, right in every version below (their mistakes are in the checks before)."""
    hw = lambda m: einops.rearrange(m, "d (h dh) -> h d dh", h=n_heads)  # noqa: E731
    hb = lambda v: einops.rearrange(v, "(h dh) -> h dh", h=n_heads)  # noqa: E731
    return (*map(hw, W.split(d_model, dim=1)), *map(hb, b.split(d_model)))


def split_c_attn_given_only(W, b, n_heads):
    """The notebook asks for a message that says the shape expected and the shape given; this one
    names only the given shape (whose numbers, 36 and 12, were all the check looked for)."""
    if W.ndim != 2 or W.shape[1] != 3 * W.shape[0]:
        raise ValueError(f"c_attn weight has the wrong shape {tuple(W.shape)}")
    d_model = W.shape[0]
    if tuple(b.shape) != (3 * d_model,):
        raise ValueError(f"c_attn bias has the wrong shape {tuple(b.shape)} for W {tuple(W.shape)}")
    if n_heads <= 0 or d_model % n_heads:
        raise ValueError(f"n_heads = {n_heads} does not divide d_model = {d_model}")
    return _heads(W, b, n_heads, d_model)


def split_c_attn_no_d_model_check(W, b, n_heads):
    """Takes d_model from W.shape[1] // 3 and never checks W.shape[0]: W (20, 36) with b (36,) is
    accepted and gives W_Q of shape (n_heads, 20, d_head) instead of a ValueError."""
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (d_model, 3 * d_model), got {tuple(W.shape)}")
    d_model = W.shape[-1] // 3
    if tuple(b.shape) != (3 * d_model,):
        raise ValueError(f"expected shape {(3 * d_model,)} for b, got {tuple(b.shape)} (W is {tuple(W.shape)})")
    if n_heads <= 0 or d_model % n_heads:
        raise ValueError(f"n_heads = {n_heads} does not divide d_model = {d_model}")
    return _heads(W, b, n_heads, d_model)


def _split_checked_columns_only(W, b, n_heads):
    """The same gap with messages that name both shapes: only the W (20, 36) case shows it."""
    expected = (len(b) // 3, len(b)) if b.ndim == 1 else (W.shape[0], 3 * W.shape[0])
    if W.ndim != 2 or W.shape[1] != expected[1] or b.ndim != 1 or len(b) % 3:
        raise ValueError(f"expected W of shape {expected}, got {tuple(W.shape)}")
    if n_heads < 1 or expected[0] % n_heads:
        raise ValueError(f"n_heads = {n_heads} does not divide d_model = {expected[0]}")
    return _heads(W, b, n_heads, expected[0])


def test_split_c_attn_names_both_shapes_and_checks_the_rows():
    assert "message should name '(12, 36)' and '(36, 12)'" in message("split_c_attn", split_c_attn_given_only)
    assert "message should name" in message("split_c_attn", split_c_attn_no_d_model_check)
    text = message("split_c_attn", _split_checked_columns_only)
    assert "W of 20 rows" in text and "should raise ValueError" in text


def _split(columns, transpose=False):
    def split_c_attn(W, b, n_heads):
        if W.ndim != 2 or W.shape[1] != 3 * W.shape[0]:
            d = len(b) // 3 if b.ndim == 1 and len(b) % 3 == 0 else W.shape[0]
            raise ValueError(f"W should be {(d, 3 * d)}, got {tuple(W.shape)}")
        d_model = W.shape[0]
        if tuple(b.shape) != (3 * d_model,):
            raise ValueError(f"b should be {(3 * d_model,)}, got {tuple(b.shape)}")
        if n_heads < 1 or d_model % n_heads:
            raise ValueError(f"n_heads = {n_heads} does not divide d_model = {d_model}")
        Ws = [w.T if transpose else w for w in W.split(d_model, dim=1)]
        return (*(einops.rearrange(w, f"d ({columns}) -> h d dh", h=n_heads) for w in Ws),
                *(einops.rearrange(v, f"({columns}) -> h dh", h=n_heads) for v in b.split(d_model)))

    return split_c_attn


@pytest.mark.parametrize("answer, hint", [
    (_split("dh h"), "Hint: within each of q, k, v the heads come one after another"),
    (_split("h dh", transpose=True), "Hint: Conv1D stores W as (d_in, d_out)"),
], ids=["(dh h)", "nn.Linear transpose"])
def test_split_c_attn_layout_mistakes_get_their_hints(answer, hint):
    assert hint in message("split_c_attn", answer)


class _Block(ref_blocks.TransformerBlock):
    pass


@_learner
class _BlockMLPFirst(_Block):
    def forward(self, x):
        x = x + self.mlp(self.ln2(x))
        return x + self.attn(self.ln1(x))


@_learner
class _BlockResidualNormed(_Block):
    def forward(self, x):
        x = self.ln1(x)
        x = x + self.attn(x)
        x = self.ln2(x)
        return x + self.mlp(x)


@pytest.mark.parametrize("answer, hint", [
    (_BlockMLPFirst, "Hint: attention comes first, then the MLP"),
    (_BlockResidualNormed, "Hint: add each sublayer's output to the stream x itself"),
], ids=["MLP first", "residual from the normalised stream"])
def test_block_order_mistakes_get_their_hints(answer, hint):
    answer.__name__ = "TransformerBlock"
    assert hint in message("TransformerBlock", answer)


@_learner
class _GPTTiedDetached(ref_blocks.GPT):
    def forward(self, tokens):
        if tokens.shape[-1] > self.config.n_ctx:
            raise ValueError(f"seq > n_ctx = {self.config.n_ctx}")
        x = self.embed(tokens)
        if self.config.positions == "learned":
            x = x + self.pos_embed(tokens)
        for block in self.blocks:
            x = block(x)
        W_U = self.embed.W_E.detach().T if self.config.tie_embeddings else self.W_U
        return self.ln_final(x) @ W_U


@_learner
class _GPTTiedCopy(_GPTTiedDetached):
    def __init__(self, config):
        super().__init__(config)
        if config.tie_embeddings:
            self.W_U = nn.Parameter(self.embed.W_E.T)  # a second leaf: it trains on its own

    def forward(self, tokens):
        if tokens.shape[-1] > self.config.n_ctx:
            raise ValueError(f"seq > n_ctx = {self.config.n_ctx}")
        x = self.embed(tokens)
        if self.config.positions == "learned":
            x = x + self.pos_embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x) @ self.W_U


@pytest.mark.parametrize("answer, words", [
    (_GPTTiedDetached, ["the gradient of embed.W_E", "Hint: with tied embeddings W_E gets a gradient from the unembedding"]),
    (_GPTTiedCopy, ["'W_U' that the exercise does not ask for", "it should have exactly: embed.W_E"]),
], ids=["detach", "copy"])
def test_weight_tying_mistakes_get_their_hints(answer, words):
    answer.__name__ = "GPT"
    text = message("GPT", answer, hints=answer is not _GPTTiedCopy)
    for word in words:
        assert word in text


# --- chapter 6 ----------------------------------------------------------------------------------


def apply_temperature_greedy_shortcut(logits, temperature):
    """The exercise asks for logits / temperature for every positive temperature; this turns a
    tiny T into an argmax mask, which differs where the top logits are close."""
    if temperature <= 0:
        raise ValueError("temperature must be positive; for T = 0 use greedy decoding")
    if temperature < 1e-3:
        return torch.where(logits == logits.max(-1, keepdim=True).values, 0.0, float("-inf"))
    return logits / temperature


def _validated_ce(logits, targets):
    if logits.dim() != 3:
        raise ValueError(f"logits must be 3-D (batch, seq, d_vocab), got {tuple(logits.shape)}")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets must have shape {tuple(logits.shape[:2])}, got {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError("targets must be integer ids")
    d_vocab = logits.shape[-1]
    if targets.numel() and (targets.min() < 0 or targets.max() >= d_vocab):
        raise ValueError(f"target ids must lie in 0..{d_vocab - 1} (d_vocab = {d_vocab})")


def cross_entropy_builtin(logits, targets):
    """F.cross_entropy may be used to test, not in the answer."""
    _validated_ce(logits, targets)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def cross_entropy_nll_loss(logits, targets):
    """The same built-in loss in two steps (and torch's log_softmax instead of the learner's)."""
    _validated_ce(logits, targets)
    return F.nll_loss(torch.log_softmax(logits, -1).flatten(0, 1), targets.flatten())


def _log_softmax(logits):
    m = logits.max(dim=-1, keepdim=True).values
    s = logits - m
    return s - torch.log(torch.exp(s).sum(dim=-1, keepdim=True))


def cross_entropy_detached(logits, targets):
    """The right number computed under torch.no_grad(): the loss has no grad_fn, so the notebook's
    training cell then fails with "element 0 of tensors does not require grad"."""
    _validated_ce(logits, targets)
    with torch.no_grad():
        lp = _log_softmax(logits)
        return -lp.gather(-1, targets.long()[..., None]).squeeze(-1).mean()


def cross_entropy_from_item(logits, targets):
    """The right number rebuilt from .item(): no graph either."""
    _validated_ce(logits, targets)
    lp = _log_softmax(logits)
    return torch.tensor(-lp.gather(-1, targets.long()[..., None]).mean().item(), dtype=logits.dtype)


def log_softmax_a(logits):
    """Forbidden: the exercise says without torch.log_softmax, F.log_softmax or torch.logsumexp."""
    return torch.log_softmax(logits, -1)


def log_softmax_b(logits):
    return F.log_softmax(logits, dim=-1)


def log_softmax_c(logits):
    return logits - torch.logsumexp(logits, -1, keepdim=True)


def log_softmax_d(logits):
    return logits - logits.logsumexp(-1, keepdim=True)


def sample_from_probs_countnz(probs, uniforms):
    """The fallback must be the last token of non-zero probability; (number of non-zero tokens) - 1
    is that token only when every zero comes after it (after top-k / top-p they sit anywhere)."""
    if uniforms.shape != probs.shape[:-1]:
        raise ValueError(f"uniforms must have shape {tuple(probs.shape[:-1])}, got {tuple(uniforms.shape)}")
    d_vocab = probs.shape[-1]
    cdf = torch.cumsum(probs, dim=-1)
    idx = (cdf <= uniforms[..., None]).sum(-1)
    last_nz = (probs > 0).sum(-1) - 1
    return torch.where(idx >= d_vocab, last_nz, idx)


def weight_decay_groups_startsW(names):
    """The rule is a last part that starts with "W_"; startswith("W") also decays Wqkv, Weight, W."""
    if len(set(names)) != len(names):
        raise ValueError("duplicate parameter names")
    decay, no_decay = [], []
    for n in names:
        last = n.split(".")[-1]
        if last.startswith("W") and last not in ("W_E", "W_pos"):
            decay.append(n)
        else:
            no_decay.append(n)
    return decay, no_decay


@pytest.mark.parametrize("name, answer, words", [
    ("relu", relu_F_relu, ["calls torch's `relu`", "torch.maximum"]),
    ("relu", relu_nn_ReLU, ["calls torch's `relu`"]),
    ("gelu_exact", gelu_exact_F_gelu, ["calls torch's `gelu`", "torch.erf"]),
    ("gelu_tanh", gelu_tanh_F_gelu, ["calls torch's `gelu`", "torch.tanh"]),
    ("apply_temperature", apply_temperature_greedy_shortcut, ["temperature 1e-4", "Hint: divide by the temperature for every T > 0"]),
    ("cross_entropy", cross_entropy_builtin, ["calls torch's `cross_entropy`", "use your log_softmax"]),
    ("cross_entropy", cross_entropy_nll_loss, ["calls torch's `log_softmax`"]),
    ("cross_entropy", cross_entropy_detached, ["the result carries no gradient", "torch.no_grad()"]),
    ("cross_entropy", cross_entropy_from_item, ["the result carries no gradient", ".item()"]),
    ("log_softmax", log_softmax_a, ["calls torch's `log_softmax`", "log-sum-exp trick"]),
    ("log_softmax", log_softmax_b, ["calls torch's `log_softmax`"]),
    ("log_softmax", log_softmax_c, ["calls torch's `logsumexp`"]),
    ("log_softmax", log_softmax_d, ["calls torch's `logsumexp`"]),
    ("sample_from_probs", sample_from_probs_countnz, ["zeros before and between", "Hint: the fallback is the last token"]),
    ("weight_decay_groups", weight_decay_groups_startsW, ["start with W but not W_", "Hint: the rule is a last part that starts with W_"]),
], ids=lambda v: getattr(v, "__name__", v if isinstance(v, str) else ""))
def test_a_function_finding_fails_with_a_message_that_leads_to_the_mistake(name, answer, words):
    text = message(name, answer)
    for word in words:
        assert word in text


def _adam(*, correct=True, l2=False):
    def adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        if step < 1:
            raise ValueError(f"step counts from 1, got {step}")
        if not param.shape == grad.shape == exp_avg.shape == exp_avg_sq.shape:
            raise ValueError("param, grad, exp_avg and exp_avg_sq must have the same shape")
        if l2:
            grad = grad + weight_decay * param
        else:
            param = param * (1 - lr * weight_decay)
        m = beta1 * exp_avg + (1 - beta1) * grad
        v = beta2 * exp_avg_sq + (1 - beta2) * grad**2
        m_hat, v_hat = (m / (1 - beta1**step), v / (1 - beta2**step)) if correct else (m, v)
        return param - lr * m_hat / (v_hat.sqrt() + eps), m, v

    return adamw_update


@pytest.mark.parametrize("answer, hint", [
    (_adam(correct=False), "Hint: divide m by 1 - beta1^step"),
    (_adam(l2=True), "Hint: AdamW's decay is decoupled"),
], ids=["no bias correction", "Adam + L2"])
def test_adamw_mistakes_the_page_discusses_get_their_hints(answer, hint):
    assert hint in message("adamw_update", answer)
