"""Check specs for chapter 5, blocks and the whole model: one :class:`Spec` per exercise.

Inputs come from a ``torch.Generator`` seeded by the check's seed, on the CPU. The norms are
checked on inputs of ordinary size, with an offset (a mean to subtract), and tiny ones (where eps
decides the result); the block and the model through the module driver, built from small
``Config`` values (GPT-2's switches, LLaMA's, and mixtures of both) that travel as plain data
(:func:`~solutions.checks.modules.built`), with weights drawn for every parameter so that no part
can be skipped unnoticed. A check of a class binds the reference versions of the parts it is made
of (this chapter's norms, earlier chapters' modules), so one wrong part fails only its own check.
"""

from __future__ import annotations

import math
import random
from typing import Any, Optional

import torch

from solutions import blocks as ref
from solutions import embeddings as ref_embeddings
from solutions import mlp as ref_mlp
from solutions.checks import core
from solutions.checks.core import Case, Mistake, Spec, difference
from solutions.checks.mlp import float32_diagnosis, formula_only
from solutions.checks.modules import built, built_args_driver, init_case, module_case, module_driver

CHAPTER = "05_blocks"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _config(**fields) -> dict:
    return built(ref.Config, **fields)


def _draw_weights(module: torch.nn.Module, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Weights for every parameter of ``module`` (names and shapes only are read), each of order 1
    at every step: norm scales near 1, biases and embeddings random, matrices scaled by
    1/sqrt(fan-in) so that float32 sums in another order stay within tolerance."""
    weights = {}
    for name, p in module.state_dict().items():
        leaf, shape = name.rsplit(".", 1)[-1], tuple(p.shape)
        if leaf == "w":  # a norm's scale
            weights[name] = 1 + 0.3 * torch.randn(shape, generator=g)
        elif len(shape) == 1 or leaf.startswith("b"):
            weights[name] = 0.3 * torch.randn(shape, generator=g)
        elif leaf in ("W_E", "W_pos"):
            weights[name] = torch.randn(shape, generator=g)
        elif leaf == "W_O":  # (n_heads, d_head, d_model): sums over n_heads * d_head
            weights[name] = torch.randn(shape, generator=g) / math.sqrt(shape[0] * shape[1])
        else:  # (d_in, d_out) or (n_heads, d_model, d_head): sums over the next-to-last axis
            weights[name] = torch.randn(shape, generator=g) / math.sqrt(shape[-2])
    return weights


def _shapes_of(cls, config: dict) -> torch.nn.Module:
    """The reference module for ``config``, for its parameters' names and shapes only. Built on
    the CPU (the configs are tiny; initialising on the meta device would import torch's compiler,
    seconds), without touching the global generator's state."""
    with torch.random.fork_rng(devices=[]):
        return cls(ref.Config(**config))


# --- 1-2. LayerNorm and RMSNorm -----------------------------------------------------------------


def _cases_norm(seed: int, parameters: tuple[str, ...]) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []

    def case(d_model: int, x: torch.Tensor, label: str, eps: float | None = None) -> Case:
        init = {"d_model": d_model} if eps is None else {"d_model": d_model, "eps": eps}
        weights = {"w": 1 + 0.3 * torch.randn(d_model, generator=g)}
        if "b" in parameters:
            weights["b"] = 0.3 * torch.randn(d_model, generator=g)
        cotangent = torch.randn(x.shape[:-1] + (d_model,), generator=g, dtype=x.dtype)
        # the exercise: store self.eps (the block builds its norms with config.layer_norm_eps)
        return module_case(init, weights, (x,), cotangent, label, attributes=("eps",))

    for label in ("a (batch, seq, d_model) tensor", "another size"):
        b, s, d = rng.randint(2, 3), rng.randint(4, 6), rng.randint(5, 9)
        cases.append(case(d, 3 + 2 * torch.randn(b, s, d, generator=g), label))  # an offset: a mean to subtract
    b, s, d = rng.randint(2, 3), rng.randint(4, 6), rng.randint(5, 9)
    cases.append(case(d, 1e-3 * torch.randn(b, s, d, generator=g), "tiny values, the default eps: eps decides"))
    cases.append(case(d, 0.05 * torch.randn(b, s, d, generator=g), "eps given", eps=0.01))
    cases.append(case(7, 2 * torch.randn(4, 7, generator=g) - 1, "two axes (seq, d_model)"))
    cases.append(case(6, torch.randn(2, 3, 2, 6, generator=g), "four axes"))
    cases.append(case(5, 2 + torch.randn(2, 3, 5, generator=g, dtype=torch.float64), "float64 input: float64 output"))
    constant = torch.full((2, 3, 5), 4.0)
    cases.append(case(5, constant, "constant positions: the variance is 0"))
    # E[x^2] - E[x]^2 cancels in float32 when the mean is large against the spread (at 100 it is off
    # by 8e-4 or more, while right orders of summation stay within 3e-5 of each other)
    cases.append(case(8, 100 + torch.randn(2, 3, 8, generator=g), "an offset of 100 against a spread of 1"))
    cases.append(case(4, 1e-4 * torch.tensor([[1.0, 2.0, 3.0, 6.0]]), "a tiny eps given (1e-12): never raised to a floor", eps=1e-12))
    meta = case(5, torch.randn(2, 3, 5, generator=g), "the meta device (finds tensors made without device=)")
    meta.device = "meta"
    cases.append(meta)
    cases.append(init_case({"d_model": 64}, "the initial parameters: w ones" + (", b zeros" if "b" in parameters else ""), seed))
    return cases


def _cases_LayerNorm(seed: int) -> list[Case]:
    return _cases_norm(seed, ("w", "b"))


def _cases_RMSNorm(seed: int) -> list[Case]:
    return _cases_norm(seed, ("w",))


class _LayerNormBase(torch.nn.Module):
    default_eps = 1e-5

    def __init__(self, d_model: int, eps: float | None = None):
        super().__init__()
        self.eps = self.default_eps if eps is None else eps
        self.w = torch.nn.Parameter(torch.ones(d_model))
        self.b = torch.nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.w + self.b


class _LayerNormUnbiased(_LayerNormBase):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(dim=-1, keepdim=True) + self.eps) * self.w + self.b


class _LayerNormEpsOutside(_LayerNormBase):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        return (x - mean) / (torch.sqrt(var) + self.eps) * self.w + self.b


class _LayerNormWrongAxis(_LayerNormBase):
    def forward(self, x):
        mean = x.mean(dim=-2, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-2, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.w + self.b


class _LayerNormNoMean(_LayerNormBase):
    def forward(self, x):
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + self.eps) * self.w + self.b


class _LayerNormNoEps(_LayerNormBase):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var) * self.w + self.b


class _LayerNormLLaMAEps(_LayerNormBase):
    default_eps = 1e-6


class _LayerNormInPlace(_LayerNormBase):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        if not x.requires_grad:
            x -= mean  # "no autograd here, save a copy": the caller's tensor changes
        else:
            x = x - mean
        var = x.pow(2).mean(dim=-1, keepdim=True)
        return x / torch.sqrt(var + self.eps) * self.w + self.b


# the exercises: written from the formula, with no torch normalisation function by any name (F.instance_norm
# on x reshaped to (N, 1, d_model), or F.batch_norm on x.T, is layer norm too; F.rms_norm of x - mean as well)
_NORM_FUNCTIONS = ("layer_norm", "rms_norm", "instance_norm", "batch_norm", "group_norm", "normalize")


def _norm_by_hand(formula: str) -> dict[str, str]:
    reason = (f"write the formula, {formula}, with tensor operations (mean, pow, sqrt): no torch normalisation "
              f"function, whatever its name (F.layer_norm, F.rms_norm, F.instance_norm, F.batch_norm, F.group_norm, "
              f"F.normalize, their nn modules): each computes the normalisation for you, and torch's own is what "
              f"the check compares with.")
    return {name: reason for name in _NORM_FUNCTIONS}


class _RMSNormBase(torch.nn.Module):
    default_eps = 1e-6

    def __init__(self, d_model: int, eps: float | None = None):
        super().__init__()
        self.eps = self.default_eps if eps is None else eps
        self.w = torch.nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.w


class _RMSNormMean(_RMSNormBase):
    def forward(self, x):
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.w


class _RMSNormEpsOutside(_RMSNormBase):
    def forward(self, x):
        return x / (torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True)) + self.eps) * self.w


class _RMSNormNoRoot(_RMSNormBase):
    def forward(self, x):
        return x / (x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.w


class _RMSNormLayerNormEps(_RMSNormBase):
    default_eps = 1e-5


class _RMSNormWrongAxis(_RMSNormBase):
    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(dim=-2, keepdim=True) + self.eps) * self.w


# --- 3. TransformerBlock ------------------------------------------------------------------------

_GPT2_LIKE = dict(norm="layernorm", mlp="gelu", positions="learned", bias=True)
_LLAMA_LIKE = dict(norm="rmsnorm", mlp="swiglu", positions="rope", bias=False, layer_norm_eps=1e-6)


def _block_case(g: torch.Generator, config: dict, batch: int, seq: int, label: str, scale: float = 1.0,
                dtype: torch.dtype | None = None) -> Case:
    weights = _draw_weights(_shapes_of(ref.TransformerBlock, config), g)
    x = scale * torch.randn(batch, seq, config["d_model"], generator=g)
    cotangent = torch.randn(batch, seq, config["d_model"], generator=g)
    if dtype is not None:  # the block converted after it is built (block.double()), with weights and x in dtype
        weights = {n: w.to(dtype) for n, w in weights.items()}
        x, cotangent = x.to(dtype), cotangent.to(dtype)
    return module_case({"config": _config(**config)}, weights, (x,), cotangent, label,
                       watch=("scaled_dot_product_attention",), dtype=dtype)


# The model's switches are independent: none may be read from another ("LLaMA has RoPE and no
# biases", so rope = not bias). The configs of the block's and the model's cases together show
# every pair of switches in all four combinations (a test keeps it so).
SWITCHES = ("norm", "mlp", "positions", "bias")


def _cases_TransformerBlock(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    n_heads, d_head = rng.choice([(2, 4), (3, 4), (2, 6)])  # d_head even: RoPE rotates pairs
    d_model = n_heads * d_head  # 8 or 12: differs from batch, seq and d_mlp
    sizes = dict(d_model=d_model, n_heads=n_heads, d_mlp=rng.randint(13, 19), d_vocab=50, n_ctx=16, n_layers=1)
    cases = [
        _block_case(g, {**sizes, **_GPT2_LIKE}, 2, rng.randint(4, 7), "a GPT-2 block (LayerNorm, GELU MLP, biases)"),
        _block_case(g, {**sizes, **_LLAMA_LIKE, "rope_base": 500.0}, 3, rng.randint(4, 7),
                    "a LLaMA block (RMSNorm, SwiGLU, RoPE with rope_base 500, no biases)"),
        # the switches are independent: none of them may be read from another (with the two above,
        # every pair of norm, mlp, positions, bias and fused in all four combinations)
        _block_case(g, {**sizes, "norm": "layernorm", "mlp": "swiglu", "positions": "learned", "bias": False}, 2, 5,
                    "SwiGLU with learned positions, no attention biases"),
        _block_case(g, {**sizes, "norm": "rmsnorm", "mlp": "gelu", "positions": "rope", "bias": True,
                        "rope_base": 50.0}, 2, 5, "RMSNorm with a GELU MLP, RoPE (rope_base 50) with attention biases"),
        # eps of order the variance: a norm built without config.layer_norm_eps shows
        _block_case(g, {**sizes, **_GPT2_LIKE, "layer_norm_eps": 0.05, "fused": True}, 2, 5,
                    "small inputs, layer_norm_eps = 0.05, fused attention", scale=0.2),
        _block_case(g, {**sizes, "norm": "rmsnorm", "mlp": "gelu", "positions": "learned", "bias": False,
                        "layer_norm_eps": 0.02, "fused": True}, 2, 4,
                    "RMSNorm with a GELU MLP, learned positions, no biases, fused attention", scale=0.2),
        _block_case(g, {**sizes, "norm": "layernorm", "mlp": "swiglu", "positions": "rope", "bias": True, "fused": True},
                    2, 6, "LayerNorm with SwiGLU, RoPE with attention biases, fused attention"),
        # converted after it is built: a block that computes in float32 and converts back shows at
        # float64's tolerance
        _block_case(g, {**sizes, "norm": "rmsnorm", "mlp": "swiglu", "positions": "rope", "bias": True}, 2, 5,
                    "the block converted to float64 (block.double()), float64 input", dtype=torch.float64),
    ]
    meta = _block_case(g, {**sizes, **_GPT2_LIKE}, 2, 3, "the meta device (finds tensors made without device=)")
    meta.device = "meta"
    cases.append(meta)
    return cases


class _BlockVariant(ref.TransformerBlock):
    """The reference block's parts; each variant changes how forward combines them."""


class _BlockNoAttnResidual(_BlockVariant):
    def forward(self, x):
        x = self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class _BlockNoMLPResidual(_BlockVariant):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return self.mlp(self.ln2(x))


class _BlockOneNorm(_BlockVariant):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln1(x))


class _BlockSharedNorm(ref.TransformerBlock):
    def __init__(self, config):
        super().__init__(config)
        self.ln2 = self.ln1  # one module under two names: both positions use the same parameters


class _BlockParallel(_BlockVariant):
    def forward(self, x):
        return x + self.attn(self.ln1(x)) + self.mlp(self.ln2(x))


class _BlockMLPFirst(_BlockVariant):
    def forward(self, x):
        x = x + self.mlp(self.ln2(x))
        return x + self.attn(self.ln1(x))


class _BlockResidualNormed(_BlockVariant):
    def forward(self, x):
        h = self.ln1(x)
        x = h + self.attn(h)  # the residual taken from the normalised stream
        h = self.ln2(x)
        return h + self.mlp(h)


class _BlockDefaultEps(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        Norm = ref.LayerNorm if config.norm == "layernorm" else ref.RMSNorm
        self.ln1, self.ln2 = Norm(config.d_model), Norm(config.d_model)
        self.attn = ref.CausalSelfAttention(config.d_model, config.n_heads, bias=config.bias,
                                            rope=config.positions == "rope", rope_base=config.rope_base,
                                            fused=config.fused)
        self.mlp = (ref_mlp.MLP if config.mlp == "gelu" else ref_mlp.SwiGLU)(config.d_model, config.d_mlp)

    forward = ref.TransformerBlock.forward


class _BlockSwitchFrom(ref.TransformerBlock):
    """attn built with one switch read from another (``bias`` from positions, ``rope`` from bias)."""

    def __init__(self, config, bias=lambda c: c.bias, rope=lambda c: c.positions == "rope"):
        torch.nn.Module.__init__(self)
        Norm = ref.LayerNorm if config.norm == "layernorm" else ref.RMSNorm
        self.ln1 = Norm(config.d_model, config.layer_norm_eps)
        self.ln2 = Norm(config.d_model, config.layer_norm_eps)
        self.attn = ref.CausalSelfAttention(config.d_model, config.n_heads, bias=bias(config), rope=rope(config),
                                            rope_base=config.rope_base, fused=config.fused)
        self.mlp = (ref_mlp.MLP if config.mlp == "gelu" else ref_mlp.SwiGLU)(config.d_model, config.d_mlp)


def _switch_from(**reads) -> type:
    # named TransformerBlock: a message about its parameters is then word for word the learner's
    return type("TransformerBlock", (_BlockSwitchFrom,), {
        "__init__": lambda self, config: _BlockSwitchFrom.__init__(self, config, **reads)})


_BlockBiasFromPositions = _switch_from(bias=lambda c: c.positions == "learned")
_BlockRopeFromBias = _switch_from(rope=lambda c: not c.bias)
_SWITCH_HINT = ("read each switch from its own field: bias=config.bias and rope=config.positions == \"rope\". GPT-2 "
                "has learned positions and biases and LLaMA RoPE and none, but a config may mix them: no switch "
                "follows from another.")


# --- 4. GPT -------------------------------------------------------------------------------------


def _gpt_case(g: torch.Generator, config: dict, batch: int, seq: int, label: str, bad_id: bool = False,
              dtype: torch.dtype | None = None) -> Case:
    weights = _draw_weights(_shapes_of(ref.GPT, config), g)
    if dtype is not None:
        weights = {n: w.to(dtype) for n, w in weights.items()}
    d_vocab = config["d_vocab"]
    tokens = torch.randint(0, d_vocab, (batch, seq), generator=g)
    tokens[0, 0], tokens[-1, -1] = 0, d_vocab - 1  # both ends of the vocabulary
    if bad_id:
        tokens[0, 1] = d_vocab
    cotangent = torch.randn(batch, seq, d_vocab, generator=g, dtype=dtype or torch.float32)
    # config: chapter 6 reads model.config (its n_ctx, to crop the context while sampling)
    return module_case({"config": _config(**config)}, weights, (tokens,), cotangent, label, attributes=("config",),
                       dtype=dtype)


def _cases_GPT(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    n_heads, d_head = rng.choice([(2, 4), (3, 2), (2, 3)])
    d_model = n_heads * d_head  # 8, 6 or 6
    base = dict(d_model=d_model, n_heads=n_heads, d_mlp=rng.randint(9, 13), d_vocab=rng.randint(17, 23),
                n_ctx=rng.randint(7, 9), n_layers=2)
    gpt2 = {**base, **_GPT2_LIKE, "tie_embeddings": True}
    llama = {**base, **_LLAMA_LIKE, "tie_embeddings": False, "d_model": 8, "n_heads": 2}
    # the switches are independent: none of them may be read from another (these six show every
    # pair of norm, mlp, positions, bias and tie_embeddings in all four combinations)
    cases = [
        _gpt_case(g, gpt2, 2, rng.randint(4, 6), "GPT-2's switches, tied embeddings"),
        _gpt_case(g, {**gpt2, "mlp": "swiglu", "bias": False, "tie_embeddings": False, "n_layers": 1}, 2, base["n_ctx"],
                  "learned positions with SwiGLU and no biases, its own W_U, a sequence of exactly n_ctx"),
        _gpt_case(g, llama, 3, rng.randint(4, 6), "LLaMA's switches (RMSNorm, SwiGLU, RoPE, no biases, untied)"),
        _gpt_case(g, {**llama, "bias": True, "tie_embeddings": True, "n_layers": 3}, 2, 5,
                  "RoPE with attention biases and tied embeddings, 3 layers"),
        _gpt_case(g, {**gpt2, "norm": "rmsnorm", "bias": False, "layer_norm_eps": 0.5}, 2, 5,
                  "RMSNorm with learned positions, no biases, tied, layer_norm_eps = 0.5"),
        _gpt_case(g, {**llama, "norm": "layernorm", "mlp": "gelu", "bias": True, "layer_norm_eps": 0.5,
                      "rope_base": 100.0}, 2, 5, "LayerNorm and GELU with RoPE (rope_base 100), layer_norm_eps = 0.5"),
    ]
    # converted after it is built, as model.double() or model.to("cuda") do: an unembedding kept
    # from __init__ (self.W_U = self.embed.W_E.T) stays float32 on the old storage
    cases.append(_gpt_case(g, gpt2, 2, 4, "the model converted to float64 after it is built (model.double()), "
                           "tied embeddings", dtype=torch.float64))
    # the same model called twice, the second time on a shorter sequence
    twice = _gpt_case(g, gpt2, 2, 6, "two calls of one model (6 tokens, then 3)")
    twice.kwargs = {"again": (torch.randint(0, gpt2["d_vocab"], (3, 3), generator=g),)}
    cases.append(twice)
    for config, what in ((gpt2, "learned positions"), (llama, "RoPE")):
        case = _gpt_case(g, config, 1, config["n_ctx"] + 1, f"a sequence longer than n_ctx ({what})")
        case.mentions = (f"n_ctx = {config['n_ctx']}",)  # the exercise: the message names the limit
        cases.append(case)
    case = _gpt_case(g, gpt2, 2, 4, "a token id outside the vocabulary", bad_id=True)
    case.mentions = (str(gpt2["d_vocab"]),)
    cases.append(case)
    # 16,384 numbers in W_O: its std (0.02 / sqrt(4) = 0.01) rounds to 3 decimals 9 standard errors
    # from a rounding boundary; std / sqrt(n_layers) (0.014) and no scaling (0.02) both show
    big = dict(d_model=128, n_heads=2, d_mlp=256, d_vocab=300, n_ctx=64, n_layers=2)
    cases.append(init_case({"config": _config(**big, **_GPT2_LIKE, tie_embeddings=False)},
                           "the initial parameters (GPT-2's switches, untied): W_O and W_out scaled down", seed))
    # 3 layers: 0.02 / sqrt(6) = 0.0082 rounds to 0.008 (7 standard errors from 0.0085), 0.02 / 3 to 0.007
    cases.append(init_case({"config": _config(**{**big, "n_layers": 3}, **_LLAMA_LIKE, tie_embeddings=False)},
                           "the initial parameters (LLaMA's switches, 3 layers): W_O and W_down scaled down", seed))
    return cases


class _GPTVariant(ref.GPT):
    """The reference model's forward with one step changed or left out (a flag per variant)."""

    check_context, add_positions, final_norm, always_tied, tied_detached = True, True, True, False, False

    def forward(self, tokens):
        if self.check_context and tokens.shape[-1] > self.config.n_ctx:
            raise ValueError(f"n_ctx = {self.config.n_ctx}")
        x = self.embed(tokens)
        if self.add_positions and self.config.positions == "learned":
            x = x + self.pos_embed(tokens)
        for block in self.blocks:
            x = block(x)
        if self.final_norm:
            x = self.ln_final(x)
        W_E = self.embed.W_E.detach() if self.tied_detached else self.embed.W_E
        return x @ (W_E.T if self.always_tied or self.config.tie_embeddings else self.W_U)


class _GPTNoFinalNorm(_GPTVariant):
    final_norm = False


class _GPTAlwaysTied(_GPTVariant):
    always_tied = True


class _GPTNoContextCheck(_GPTVariant):
    """Relies on PosEmbed to refuse a long sequence, which a RoPE model does not have."""

    check_context = False


class _GPTNoPositions(_GPTVariant):
    add_positions = False


class _GPTTiedDetached(_GPTVariant):
    """Tied through .detach(): the unembedding's share of W_E's gradient is lost."""

    tied_detached = True


class _GPTInitScaled(ref.GPT):
    """Redraws the residual-writing matrices with another factor (``factor(n_layers)``): no factor."""

    factor = staticmethod(lambda n_layers: 1.0)

    def __init__(self, config):
        super().__init__(config)
        std = 0.02 * self.factor(config.n_layers)
        for block in self.blocks:
            torch.nn.init.normal_(block.attn.W_O, mean=0.0, std=std)
            torch.nn.init.normal_(block.mlp.W_out if config.mlp == "gelu" else block.mlp.W_down, mean=0.0, std=std)


class _GPTInitSqrtLayers(_GPTInitScaled):
    factor = staticmethod(lambda n_layers: 1 / math.sqrt(n_layers))


# Mistakes told apart on the failing case alone, by running the wrong variant on it (one forward and
# backward, where a Mistake would run every variant on every case: seconds for a whole model).
_BLOCK_SLIPS = [
    (_BlockMLPFirst, "attention comes first, then the MLP: x = x + attn(ln1(x)), then x = x + mlp(ln2(x))."),
    (_BlockResidualNormed, "add each sublayer's output to the stream x itself, not to its normalised copy: "
                           "x = x + attn(ln1(x)), not h = ln1(x); x = h + attn(h)."),
]
_GPT_SLIPS = [
    (_GPTTiedDetached, "with tied embeddings W_E gets a gradient from the unembedding too, and here it is "
                       "missing: tie by using self.embed.W_E.T itself in forward, not W_E.detach(), W_E.data "
                       "or a copy."),
]


def _slip_diagnosis(slips: list) -> Any:
    """A ``diagnose`` that names the first of ``slips`` (wrong class, hint) whose result on the
    failing case is the learner's, within the spec's tolerance: a fact about this case alone; and
    on a float64 case, a result right to float32's precision only (computed in float32)."""
    in_float32 = float32_diagnosis((2e-4, 5e-5))

    def diagnose(case: Case, actual: Any, expected: Any) -> Optional[str]:
        return _slip(case, actual, expected) or in_float32(case, actual, expected)

    def _slip(case: Case, actual: Any, expected: Any) -> Optional[str]:
        weights = case.args[1]
        hints_wanted = getattr(core, "_HINTS", [True])[-1]  # off while mutation testing: verdicts only
        if not hints_wanted or not weights or not isinstance(actual, dict) or case.device == "meta":
            return None
        for wrong, hint in slips:
            try:
                with torch.random.fork_rng(devices=[]):
                    result = module_driver(wrong)(*case.args, **case.kwargs)
                if difference(actual, result, tolerance=(2e-4, 5e-5)) is None:
                    return hint
            except Exception:  # a diagnosis never fails a check; it only finds no hint
                continue
        return None

    return diagnose


# --- 5. count_parameters ----------------------------------------------------------------------


def _random_config(rng: random.Random) -> dict:
    n_heads = rng.randint(1, 16)
    d_head = 2 * rng.randint(1, 64)
    return dict(d_model=n_heads * d_head, n_heads=n_heads, d_mlp=rng.randint(1, 5000), d_vocab=rng.randint(2, 60000),
                n_ctx=rng.randint(1, 4096), n_layers=rng.randint(1, 48), norm=rng.choice(["layernorm", "rmsnorm"]),
                mlp=rng.choice(["gelu", "swiglu"]), positions=rng.choice(["learned", "rope"]),
                bias=rng.random() < 0.5, tie_embeddings=rng.random() < 0.5)


def _cases_count_parameters(seed: int) -> list[Case]:
    rng = random.Random(seed)
    presets = {
        "GPT-2 small": ref.Config.gpt2_small(),
        "GPT-3 175B": ref.Config.gpt3_175b(),
        "LLaMA-1 7B": ref.Config.llama_7b(),
    }
    fields = lambda c: {k: getattr(c, k) for k in ("d_model", "n_heads", "d_mlp", "d_vocab", "n_ctx", "n_layers", "norm", "mlp",  # noqa: E731
                                                   "positions", "bias", "tie_embeddings", "layer_norm_eps")}
    cases = [Case((_config(**fields(c)),), label=name) for name, c in presets.items()]
    cases.append(Case((_config(**{**fields(presets["GPT-2 small"]), "tie_embeddings": False}),), label="GPT-2 small, untied"))
    cases.append(Case((_config(**{**fields(presets["LLaMA-1 7B"]), "bias": True}),), label="LLaMA-1 7B with attention biases"))
    # every combination of the five switches once, at small sizes, in a seeded order
    switches = [(n, m, p, b, t) for n in ("layernorm", "rmsnorm") for m in ("gelu", "swiglu")
                for p in ("learned", "rope") for b in (True, False) for t in (True, False)]
    rng.shuffle(switches)
    for norm, mlp, positions, bias, tie in switches:
        n_heads, d_head = rng.randint(1, 4), 2 * rng.randint(1, 4)
        config = dict(d_model=n_heads * d_head, n_heads=n_heads, d_mlp=rng.randint(1, 40), d_vocab=rng.randint(2, 99),
                      n_ctx=rng.randint(1, 50), n_layers=rng.randint(1, 4), norm=norm, mlp=mlp, positions=positions,
                      bias=bias, tie_embeddings=tie)
        cases.append(Case((_config(**config),), label="small sizes, " + ", ".join(
            [norm, mlp, positions, "biases" if bias else "no biases", "tied" if tie else "untied"])))
    for _ in range(4):
        cases.append(Case((_config(**_random_config(rng)),), label="random sizes and switches"))
    return cases


def _counter(*, w_u_always=False, rope_positions=False, layernorm_w_only=False, no_final_norm=False, three_biases=False):
    def count(config) -> int:
        d, c = config.d_model, config
        norm = (d if layernorm_w_only else 2 * d) if c.norm == "layernorm" else d
        attention = 4 * d * d + ((3 if three_biases else 4) * d if c.bias else 0)
        mlp = 2 * d * c.d_mlp + c.d_mlp + d if c.mlp == "gelu" else 3 * d * c.d_mlp
        total = c.d_vocab * d + c.n_layers * (2 * norm + attention + mlp) + (0 if no_final_norm else norm)
        if c.positions == "learned" or rope_positions:
            total += c.n_ctx * d
        if w_u_always or not c.tie_embeddings:
            total += d * c.d_vocab
        return total

    return count


# --- 6. split_c_attn ----------------------------------------------------------------------------


def _cases_split_c_attn(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    shapes = [(3, 4), (5, 3), (2, 7), (4, 5)]
    rng.shuffle(shapes)
    for n_heads, d_head in shapes:  # d_model = 12, 15, 14, 20: never equal to n_heads or d_head
        d_model = n_heads * d_head
        W = torch.randn(d_model, 3 * d_model, generator=g)
        b = torch.randn(3 * d_model, generator=g)
        cases.append(Case((W, b, n_heads), label=f"d_model={d_model}, n_heads={n_heads}"))
    cases.append(Case((torch.randn(6, 18, generator=g), torch.randn(18, generator=g), 1), label="one head"))
    cases.append(Case((torch.randn(6, 18, generator=g), torch.randn(18, generator=g), 6), label="d_head = 1"))
    case = Case((torch.randn(12, 36, generator=g), torch.randn(36, generator=g), 5), label="n_heads does not divide d_model")
    case.mentions = ("12", "5")
    cases.append(case)
    case = Case((torch.randn(12, 36, generator=g), torch.randn(36, generator=g), 0), label="no heads")
    case.mentions = ("0",)
    cases.append(case)
    # the exercise: a message names the shape it expected and the one it got, as tuples; when W does
    # not fit, d_model comes from b's length (3 d_model)
    case = Case((torch.randn(36, 12, generator=g), torch.randn(36, generator=g), 3),
                label="W in nn.Linear's layout (3 d_model, d_model)")
    case.mentions = ("(12, 36)", "(36, 12)")
    cases.append(case)
    # the columns fit b (3 d_model = 36) but the rows are not d_model: W.shape[0] must be checked too
    case = Case((torch.randn(20, 36, generator=g), torch.randn(36, generator=g), 3),
                label="W of 20 rows with b of 36 = 3 * 12 numbers")
    case.mentions = ("(12, 36)", "(20, 36)")
    cases.append(case)
    case = Case((torch.randn(12, 36, generator=g), torch.randn(12, generator=g), 3), label="b of the wrong length")
    case.mentions = ("(36,)", "(12,)")
    cases.append(case)
    # the right number of values in the wrong shape: b's shape must be checked, not its numel
    for shape in ((36, 1), (1, 36)):
        case = Case((torch.randn(12, 36, generator=g), torch.randn(*shape, generator=g), 3),
                    label=f"b of shape {shape}: 36 numbers, but not (36,)")
        case.mentions = ("(36,)", str(shape))
        cases.append(case)
    # the rows fit b (d_model = 12) but the columns are not 3 d_model: W.shape[1] must be checked too
    case = Case((torch.randn(12, 40, generator=g), torch.randn(36, generator=g), 3),
                label="W of 40 columns with b of 36 = 3 * 12 numbers")
    case.mentions = ("(12, 36)", "(12, 40)")
    cases.append(case)
    cases.append(Case((torch.randn(12, 36, generator=g, dtype=torch.float64), torch.randn(36, generator=g, dtype=torch.float64), 4),
                      label="float64 weights: float64 heads"))
    case = Case((torch.randn(3, 12, 36, generator=g), torch.randn(36, generator=g), 3), label="W with three axes")
    case.mentions = ("(3, 12, 36)",)
    cases.append(case)
    return cases


def _validated(wrong):
    """``wrong`` after the reference's own input checks: a learner who validates as the exercise
    asks and makes this one mistake agrees with it on every case, so the hint can name it."""

    def split_c_attn(W, b, n_heads):
        ref.split_c_attn(W, b, n_heads)  # raises for the inputs the exercise refuses
        return wrong(W, b, n_heads)

    return split_c_attn


def _split_heads_last(W, b, n_heads):
    d_model = W.shape[0]
    if d_model % n_heads != 0 or W.shape[1] != 3 * d_model:
        raise ValueError(f"d_model = {d_model}, n_heads = {n_heads}")
    d_head = d_model // n_heads
    Ws = [w.reshape(d_model, d_head, n_heads).permute(2, 0, 1) for w in W.split(d_model, dim=1)]
    bs = [v.reshape(d_head, n_heads).T for v in b.split(d_model)]
    return (*Ws, *bs)


def _split_per_head(W, b, n_heads):
    d_model = W.shape[0]
    if d_model % n_heads != 0 or W.shape[1] != 3 * d_model:
        raise ValueError(f"d_model = {d_model}, n_heads = {n_heads}")
    d_head = d_model // n_heads
    Wh = W.reshape(d_model, n_heads, 3, d_head).permute(2, 1, 0, 3)  # each head's q, k, v side by side
    bh = b.reshape(n_heads, 3, d_head).permute(1, 0, 2)
    return (Wh[0], Wh[1], Wh[2], bh[0], bh[1], bh[2])


def _split_linear_layout(W, b, n_heads):
    d_model = W.shape[0]
    if d_model % n_heads != 0 or W.shape[1] != 3 * d_model:
        raise ValueError(f"d_model = {d_model}, n_heads = {n_heads}")
    d_head = d_model // n_heads
    # as if c_attn were an nn.Linear: rows are outputs, so each part is transposed
    Ws = [w.T.reshape(d_model, n_heads, d_head).permute(1, 0, 2) for w in W.split(d_model, dim=1)]
    bs = [v.reshape(n_heads, d_head) for v in b.split(d_model)]
    return (*Ws, *bs)


# ----------------------------------------------------------------------------------------------

_NORM_DIMS = ("batch", "seq", "d_model")
_NORMS = {"LayerNorm": ref.LayerNorm, "RMSNorm": ref.RMSNorm}
_EARLIER_PARTS = {"MLP": ref_mlp.MLP, "SwiGLU": ref_mlp.SwiGLU, "CausalSelfAttention": ref.CausalSelfAttention,
                  "Embed": ref_embeddings.Embed, "PosEmbed": ref_embeddings.PosEmbed}

SPECS = [
    Spec(
        name="LayerNorm",
        chapter=CHAPTER,
        reference=ref.LayerNorm,
        make_cases=_cases_LayerNorm,
        driver=module_driver,
        dims=_NORM_DIMS,
        mistakes=[
            Mistake("unbiased variance", "LayerNorm uses the biased variance: divide by d_model, not d_model - 1 "
                    "(torch.var is unbiased unless told otherwise).", _LayerNormUnbiased),
            Mistake("eps outside", "eps goes inside the square root: sqrt(var + eps), not sqrt(var) + eps.", _LayerNormEpsOutside),
            Mistake("wrong axis", "normalise each position over its own d_model numbers: the last axis, dim=-1.", _LayerNormWrongAxis),
            Mistake("no mean", "subtract the mean before dividing: (x - mean) / sqrt(var + eps).", _LayerNormNoMean),
            Mistake("no eps", "add eps inside the square root, sqrt(var + eps): a position whose numbers are all "
                    "equal has variance 0, and without eps it divides by 0.", _LayerNormNoEps),
            Mistake("LLaMA's eps", "LayerNorm's default eps is 1e-5 (GPT-2's); 1e-6 is LLaMA's RMSNorm default.",
                    _LayerNormLLaMAEps),
            Mistake("in place without grad", "forward subtracts the mean from its input in place (x -= mean) when the "
                    "input does not require grad: the caller's tensor, the residual stream of the block, changes "
                    "too. Compute a new tensor: x = x - mean.", _LayerNormInPlace),
        ],
        forbids=_norm_by_hand("(x - mean) / sqrt(var + eps) * w + b"),
    ),
    Spec(
        name="RMSNorm",
        chapter=CHAPTER,
        reference=ref.RMSNorm,
        make_cases=_cases_RMSNorm,
        driver=module_driver,
        dims=_NORM_DIMS,
        mistakes=[
            Mistake("subtracts the mean", "RMSNorm does not subtract the mean: x / sqrt(mean(x^2) + eps) * w.", _RMSNormMean),
            Mistake("eps outside", "eps goes inside the square root: sqrt(mean(x^2) + eps).", _RMSNormEpsOutside),
            Mistake("no square root", "divide by the root of the mean square, sqrt(mean(x^2) + eps), not the mean square itself.", _RMSNormNoRoot),
            Mistake("eps 1e-5", "RMSNorm's default eps is 1e-6 (LLaMA's), not LayerNorm's 1e-5.", _RMSNormLayerNormEps),
            Mistake("wrong axis", "the mean of the squares is over each position's d_model numbers: the last axis, dim=-1.", _RMSNormWrongAxis),
        ],
        forbids=_norm_by_hand("x / sqrt(mean(x**2) + eps) * w"),
    ),
    Spec(
        name="TransformerBlock",
        chapter=CHAPTER,
        reference=ref.TransformerBlock,
        make_cases=_cases_TransformerBlock,
        driver=module_driver,
        dims=_NORM_DIMS,
        uses={**_NORMS, **_EARLIER_PARTS},
        mistakes=[
            Mistake("post-LN", "GPT-2's block is pre-LN: x = x + attn(ln1(x)), then x = x + mlp(ln2(x)); the stream itself "
                    "is not normalised (ln(x + attn(x)) is the original Transformer's post-LN).", ref.PostLNBlock),
            Mistake("no residual around attention", "add attention's output to the stream: x = x + attn(ln1(x)).", _BlockNoAttnResidual),
            Mistake("no residual around the MLP", "add the MLP's output to the stream: x = x + mlp(ln2(x)).", _BlockNoMLPResidual),
            Mistake("one norm", "the MLP reads ln2(x), its own norm with its own parameters, not ln1(x).", _BlockOneNorm),
            Mistake("shared norm", "ln1 and ln2 are two separate modules, each with its own parameters: build two norms, "
                    "do not assign one to both names.", _BlockSharedNorm),
            Mistake("parallel", "the MLP reads the stream *after* attention has added to it: compute x = x + attn(ln1(x)) "
                    "first, then x + mlp(ln2(x)).", _BlockParallel),
            Mistake("default eps", "build the norms with config.layer_norm_eps, not their default eps.", _BlockDefaultEps),
            Mistake("bias from positions", _SWITCH_HINT, _BlockBiasFromPositions),
            Mistake("rope from bias", _SWITCH_HINT, _BlockRopeFromBias),
        ],
        diagnose=_slip_diagnosis(_BLOCK_SLIPS),
        points=2,
        # two sublayers of small float32 sums: another order (threads, a GPU) moves the last digits
        tolerance=(2e-4, 5e-5),
    ),
    Spec(
        name="GPT",
        chapter=CHAPTER,
        reference=ref.GPT,
        make_cases=_cases_GPT,
        driver=module_driver,
        dims=("batch", "seq", "d_vocab"),
        uses={**_NORMS, "TransformerBlock": ref.TransformerBlock, **_EARLIER_PARTS},
        mistakes=[
            Mistake("no ln_final", "normalise the stream once more with ln_final after the last block, before W_U.", _GPTNoFinalNorm),
            Mistake("no positions", "with learned positions, add pos_embed(tokens) to the token embeddings.", _GPTNoPositions),
            Mistake("always tied", "with tie_embeddings=False the model unembeds with its own W_U, not W_E.T.", _GPTAlwaysTied),
            Mistake("no context check", "check seq > config.n_ctx in GPT.forward itself: a RoPE model has no pos_embed "
                    "to refuse a long sequence.", _GPTNoContextCheck),
            Mistake("unscaled init", "redraw attn.W_O and the MLP's last matrix with std 0.02 / sqrt(2 * n_layers) "
                    "after building the blocks.", _GPTInitScaled),
            Mistake("sqrt(n_layers)", "the residual-writing matrices get std 0.02 / sqrt(2 * n_layers): two additions per "
                    "block, so 2 * n_layers in all.", _GPTInitSqrtLayers),
        ],
        diagnose=_slip_diagnosis(_GPT_SLIPS),
        points=2,
        tolerance=(2e-4, 5e-5),
    ),
    Spec(
        name="count_parameters",
        chapter=CHAPTER,
        reference=ref.count_parameters,
        make_cases=_cases_count_parameters,
        driver=built_args_driver,
        mistakes=[
            Mistake("W_U when tied", "with tied embeddings there is no W_U: the unembedding reuses W_E.", _counter(w_u_always=True)),
            Mistake("W_pos with RoPE", "a RoPE model has no position embedding W_pos.", _counter(rope_positions=True)),
            Mistake("LayerNorm w only", "a LayerNorm has two parameters per feature, w and b: 2 * d_model.", _counter(layernorm_w_only=True)),
            Mistake("no ln_final", "count ln_final too: one norm after the last block.", _counter(no_final_norm=True)),
            Mistake("three biases", "attention has four biases of d_model numbers each: b_Q, b_K, b_V and b_O.", _counter(three_biases=True)),
        ],
        forbids=formula_only("the model"),
    ),
    Spec(
        name="split_c_attn",
        chapter=CHAPTER,
        reference=ref.split_c_attn,
        make_cases=_cases_split_c_attn,
        mistakes=[
            Mistake("d_head-major heads", "within each of q, k, v the heads come one after another: the columns are "
                    "(n_heads d_head), head-major.", _validated(_split_heads_last)),
            Mistake("q, k, v per head", "c_attn's columns are [all of q | all of k | all of v], each d_model wide; the "
                    "heads are split inside each part.", _validated(_split_per_head)),
            Mistake("Linear layout", "Conv1D stores W as (d_in, d_out) and computes x @ W, like our weights: no transpose.", _validated(_split_linear_layout)),
        ],
        gradients=False,  # a rearrangement of loaded weights, compared by value
    ),
]
