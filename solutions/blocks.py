"""Transformer blocks and the whole model (chapter 5).

A decoder-only Transformer is a stack of identical blocks between an embedding and an unembedding.
Each block reads the **residual stream** x (batch, seq, d_model) through a normalisation, and
*adds* what attention and the MLP compute back into it (pre-LN, GPT-2's arrangement):

    x = x + attn(ln1(x))        attention moves information between positions
    x = x + mlp(ln2(x))         the MLP works on every position on its own

The model embeds the tokens (chapter 2), runs the blocks, normalises once more (``ln_final``)
and maps every position to d_vocab logits with ``W_U`` (or with W_E^T: weight tying).

This file holds:

* ``LayerNorm`` (Ba et al. 2016) and ``RMSNorm`` (Zhang & Sennrich 2019; LLaMA);
* ``Config``, one dataclass with the model's sizes and switches, and presets for GPT-2 small,
  GPT-3 175B and LLaMA-1 7B;
* ``TransformerBlock`` and ``GPT``, built from a Config; ``count_parameters`` from the config
  alone; ``split_c_attn`` (GPT-2's fused attention weights into ours); ``layer_shapes`` on
  PyTorch's meta device (no memory, no arithmetic);
* loaders for Hugging Face's GPT-2 and LLaMA weights;
* ``FastGPT``: the same model through PyTorch's fused kernels, which chapter 6 trains;
* helpers for the chapter page: the residual stream layer by layer, a post-LN block, a decoder
  block with cross-attention, greedy generation.

Shapes use the course's dimension names: batch, seq, d_model, n_heads, d_head, d_mlp, d_vocab,
n_ctx, n_layers. Vectors are rows: a linear map is ``x @ W``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import einops
import torch
import torch.nn.functional as F
from torch import nn

from solutions.attention import Attention, fused_attention, scaled_dot_product_attention
from solutions.embeddings import Embed, PosEmbed, apply_rope
from solutions.mlp import MLP, SwiGLU


# ----------------------------------------------------------------------------------------------
# Part 1: the exercises
# ----------------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """Layer normalisation (Ba, Kiros & Hinton 2016) over the last axis, d_model.

        LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * w + b

    mean and var are taken over the d_model numbers of each position; var is the *biased*
    variance (divide by d_model, not d_model - 1), and eps sits inside the square root. Both
    are what torch.nn.LayerNorm computes. Parameters: w (d_model,) starting at ones, b
    (d_model,) starting at zeros, so a fresh LayerNorm only normalises.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, d_model) -> (batch, seq, d_model); any leading axes work."""
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)  # biased: divided by d_model
        return (x - mean) / torch.sqrt(var + self.eps) * self.w + self.b


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich 2019), LLaMA's norm.

        RMSNorm(x) = x / sqrt(mean(x^2) + eps) * w

    No mean is subtracted and there is no bias: only the scale of each position's vector is
    normalised. eps sits inside the square root (1e-6 in LLaMA). Parameter: w (d_model,),
    starting at ones.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, d_model) -> (batch, seq, d_model); any leading axes work."""
        rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x / rms * self.w


@dataclass
class Config:
    """Sizes and switches of the model; the defaults are GPT-2 small (Radford et al. 2019).

    norm: "layernorm" (GPT-2) or "rmsnorm" (LLaMA), with eps ``layer_norm_eps``;
    mlp: "gelu" (chapter 4's MLP, with biases) or "swiglu" (no biases);
    positions: "learned" (W_pos added to the embeddings) or "rope" (q and k rotated in attention);
    bias: whether attention has biases (b_Q, b_K, b_V, b_O);
    tie_embeddings: whether the unembedding is W_E^T instead of its own W_U;
    fused: attention through PyTorch's fused kernel instead of the step-by-step path.
    """

    d_model: int = 768
    n_heads: int = 12
    d_mlp: int = 3072
    d_vocab: int = 50257
    n_ctx: int = 1024
    n_layers: int = 12
    norm: str = "layernorm"
    mlp: str = "gelu"
    positions: str = "learned"
    bias: bool = True
    tie_embeddings: bool = True
    layer_norm_eps: float = 1e-5
    rope_base: float = 10000.0
    fused: bool = False

    def __post_init__(self):
        for field, allowed in (("norm", ("layernorm", "rmsnorm")), ("mlp", ("gelu", "swiglu")),
                               ("positions", ("learned", "rope"))):
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got {getattr(self, field)!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model = {self.d_model} is not divisible by n_heads = {self.n_heads}")
        if self.positions == "rope" and self.d_head % 2 != 0:
            raise ValueError(f"RoPE rotates pairs of numbers: d_head = {self.d_head} must be even")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def gpt2_small(cls) -> "Config":
        """GPT-2 small, 124M (Radford et al. 2019, Table 2; sizes from the released hparams)."""
        return cls()

    @classmethod
    def gpt3_175b(cls) -> "Config":
        """GPT-3 175B (Brown et al. 2020, Table 2.1): GPT-2's architecture, 96 layers of 12288."""
        return cls(d_model=12288, n_heads=96, d_mlp=4 * 12288, d_vocab=50257, n_ctx=2048, n_layers=96)

    @classmethod
    def llama_7b(cls) -> "Config":
        """LLaMA-1 7B (Touvron et al. 2023, Table 2; d_mlp and eps from Meta's released code)."""
        return cls(d_model=4096, n_heads=32, d_mlp=11008, d_vocab=32000, n_ctx=2048, n_layers=32,
                   norm="rmsnorm", mlp="swiglu", positions="rope", bias=False,
                   tie_embeddings=False, layer_norm_eps=1e-6)


class CausalSelfAttention(Attention):
    """Chapter 3's ``Attention`` (causal, per-head weights) with LLaMA's two switches.

    bias=False drops b_Q, b_K, b_V and b_O; rope=True rotates every head's queries and keys with
    chapter 2's ``apply_rope`` (positions 0 .. seq-1) before the scores. With bias=True and
    rope=False it computes exactly what ``Attention`` computes.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, rope: bool = False,
                 rope_base: float = 10000.0, fused: bool = False):
        super().__init__(d_model, n_heads, causal=True, fused=fused)
        self.bias, self.rope, self.rope_base = bias, rope, rope_base
        if not bias:
            del self.b_Q, self.b_K, self.b_V, self.b_O

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, d_model) -> (batch, seq, d_model)."""
        pattern = "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head"
        q = einops.einsum(x, self.W_Q, pattern)
        k = einops.einsum(x, self.W_K, pattern)
        v = einops.einsum(x, self.W_V, pattern)
        if self.bias:
            q, k, v = q + self.b_Q[:, None, :], k + self.b_K[:, None, :], v + self.b_V[:, None, :]
        if self.rope:
            q, k = apply_rope(q, self.rope_base), apply_rope(k, self.rope_base)
        attend = fused_attention if self.fused else scaled_dot_product_attention
        z = attend(q, k, v, causal=True)
        out = einops.einsum(z, self.W_O, "batch n_heads seq d_head, n_heads d_head d_model -> batch seq d_model")
        return out + self.b_O if self.bias else out


class TransformerBlock(nn.Module):
    """One pre-LN block (GPT-2): x + attn(ln1(x)), then + mlp(ln2(x)).

    Submodules: ln1, attn, ln2, mlp, built from the config: LayerNorm or RMSNorm (two separate
    ones, each with its own parameters), CausalSelfAttention, MLP or SwiGLU.
    """

    def __init__(self, config: Config):
        super().__init__()
        Norm = LayerNorm if config.norm == "layernorm" else RMSNorm
        self.ln1 = Norm(config.d_model, config.layer_norm_eps)
        self.attn = CausalSelfAttention(config.d_model, config.n_heads, bias=config.bias,
                                        rope=config.positions == "rope", rope_base=config.rope_base,
                                        fused=config.fused)
        self.ln2 = Norm(config.d_model, config.layer_norm_eps)
        if config.mlp == "gelu":
            self.mlp = MLP(config.d_model, config.d_mlp)
        else:
            self.mlp = SwiGLU(config.d_model, config.d_mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: the residual stream (batch, seq, d_model) -> (batch, seq, d_model)."""
        # each sublayer reads a normalised copy and *adds* its result: the stream itself is never
        # normalised, so the identity path from the embeddings to the output stays open
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    """The decoder-only Transformer: embeddings, n_layers blocks, ln_final, unembedding.

    Parameters: embed.W_E (d_vocab, d_model); pos_embed.W_pos (n_ctx, d_model) when positions
    are learned; blocks.0 .. blocks.{n_layers-1}; ln_final; W_U (d_model, d_vocab) unless the
    embeddings are tied, in which case the unembedding is embed.W_E.T and there is no W_U.

    Initialisation: every part as in its chapter (weights N(0, 0.02^2), W_pos N(0, 0.01^2)), except
    attn.W_O and the MLP's last matrix (W_out or W_down), which write into the residual stream: std
    0.02 / sqrt(2 * n_layers), so 2 * n_layers additions keep the stream's variance at init about as
    one does. GPT-2's paper scales residual weights by 1/sqrt(N), N residual layers (Radford et al.
    2019, section 2.3); 0.02 / sqrt(2 * n_layers) is how nanoGPT writes it.
    """

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.embed = Embed(config.d_vocab, config.d_model)
        if config.positions == "learned":
            self.pos_embed = PosEmbed(config.n_ctx, config.d_model)
        self.blocks = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layers)])
        self.ln_final = (LayerNorm if config.norm == "layernorm" else RMSNorm)(config.d_model, config.layer_norm_eps)
        if not config.tie_embeddings:
            self.W_U = nn.Parameter(torch.empty(config.d_model, config.d_vocab))
            nn.init.normal_(self.W_U, mean=0.0, std=0.02)
        std = 0.02 / math.sqrt(2 * config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.W_O, mean=0.0, std=std)
            nn.init.normal_(block.mlp.W_out if config.mlp == "gelu" else block.mlp.W_down, mean=0.0, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: integer (batch, seq), ids in 0..d_vocab-1 -> logits (batch, seq, d_vocab)."""
        seq = tokens.shape[-1]
        if seq > self.config.n_ctx:
            raise ValueError(f"the sequence has {seq} tokens but the model's context is "
                             f"n_ctx = {self.config.n_ctx}")
        x = self.embed(tokens)  # raises a ValueError naming d_vocab for an id outside it
        if self.config.positions == "learned":
            x = x + self.pos_embed(tokens)
        for block in self.blocks:
            x = block(x)
        x = self.ln_final(x)
        W_U = self.embed.W_E.T if self.config.tie_embeddings else self.W_U
        return einops.einsum(x, W_U, "batch seq d_model, d_model d_vocab -> batch seq d_vocab")


def count_parameters(config: Config) -> int:
    """The number of parameters of ``GPT(config)``, from the config alone (no model is built).

    Per block: two norms (2 d_model each for LayerNorm: w and b; d_model for RMSNorm), attention
    4 d_model^2 (+ 4 d_model of biases if config.bias: n_heads * d_head = d_model each for b_Q,
    b_K, b_V, and d_model for b_O), the MLP 2 d_model d_mlp + d_mlp + d_model (GELU) or
    3 d_model d_mlp (SwiGLU). Plus W_E, W_pos (learned positions only), ln_final, and W_U only
    when the embeddings are not tied.
    """
    d, c = config.d_model, config
    norm = 2 * d if c.norm == "layernorm" else d
    attention = 4 * d * d + (4 * d if c.bias else 0)
    mlp = 2 * d * c.d_mlp + c.d_mlp + d if c.mlp == "gelu" else 3 * d * c.d_mlp
    block = 2 * norm + attention + mlp
    total = c.d_vocab * d + c.n_layers * block + norm
    if c.positions == "learned":
        total += c.n_ctx * d
    if not c.tie_embeddings:
        total += d * c.d_vocab
    return total


def split_c_attn(W: torch.Tensor, b: torch.Tensor, n_heads: int) -> tuple[torch.Tensor, ...]:
    """GPT-2's fused attention projection, split into our per-head W_Q, W_K, W_V, b_Q, b_K, b_V.

    W: (d_model, 3 d_model), OpenAI's ``c_attn`` weight as Hugging Face's ``Conv1D`` stores it: it
    computes x @ W + b (an nn.Linear would store the transpose). Its columns are [q | k | v], each
    d_model wide, and within each the heads one after another: (n_heads d_head), head-major.
    b: (3 d_model,), laid out the same way.

    Returns W_Q, W_K, W_V of shape (n_heads, d_model, d_head) and b_Q, b_K, b_V of shape
    (n_heads, d_head), the layout of chapter 3's ``Attention``. Raises ValueError when the shapes
    do not fit together (naming the shape expected and the one given) or n_heads does not divide d_model.
    """
    if W.ndim != 2 or W.shape[1] != 3 * W.shape[0]:
        # d_model read from b (3 d_model numbers), so that W in nn.Linear's layout, (36, 12) with
        # b (36,), is told "expected (12, 36), got (36, 12)"
        raise ValueError(f"W should have shape (d_model, 3 d_model) = {(b.numel() // 3, 3 * (b.numel() // 3))}, got {tuple(W.shape)}")
    d_model = W.shape[0]
    if tuple(b.shape) != (3 * d_model,):
        raise ValueError(f"b should have shape (3 d_model,) = {(3 * d_model,)}, got {tuple(b.shape)}")
    if n_heads < 1 or d_model % n_heads != 0:
        raise ValueError(f"d_model = {d_model} is not divisible by n_heads = {n_heads}")
    W_Q, W_K, W_V = W.split(d_model, dim=1)  # [q | k | v] side by side
    b_Q, b_K, b_V = b.split(d_model, dim=0)
    heads = "d_model (n_heads d_head) -> n_heads d_model d_head"
    bias_heads = "(n_heads d_head) -> n_heads d_head"
    return (*(einops.rearrange(w, heads, n_heads=n_heads) for w in (W_Q, W_K, W_V)),
            *(einops.rearrange(v, bias_heads, n_heads=n_heads) for v in (b_Q, b_K, b_V)))


class LayerShape(NamedTuple):
    name: str             # the module's name in the model ("blocks.0.attn"); "model" for the whole
    input: tuple          # the shape of its first input
    output: tuple         # the shape of its output
    parameters: int       # its parameters, its submodules' included


def layer_shapes(config: Config, batch: int, seq: int) -> list[LayerShape]:
    """Input and output shapes of every module of ``GPT(config)``, in the order they run.

    The model is built on PyTorch's meta device: tensors there have a shape and a dtype but no
    memory and no numbers, so even LLaMA-7B "runs" in a fraction of a second. Forward hooks
    record each module's shapes.
    """
    with torch.device("meta"):
        model = GPT(config)
    # Embed checks the ids by reading them, and a meta tensor has no numbers to read
    model.embed.forward = lambda tokens: model.embed.W_E[tokens]
    rows: dict[str, LayerShape] = {}
    handles = []
    for name, module in model.named_modules():
        name = name or "model"
        n_params = sum(p.numel() for p in module.parameters())

        def before(module, args, name=name, n_params=n_params):
            rows[name] = LayerShape(name, tuple(args[0].shape), (), n_params)

        def after(module, args, output, name=name):
            rows[name] = rows[name]._replace(output=tuple(output.shape))

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        with torch.no_grad():
            model(torch.zeros(batch, seq, dtype=torch.long, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return list(rows.values())


def _strip(state_dict: dict, prefix: str) -> dict:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _load(model: "GPT", ours: dict, theirs: dict, used: set) -> None:
    unused = sorted(set(theirs) - used)
    if unused:
        raise ValueError(f"weights the model has no place for: {unused[:5]}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.items()}
    if expected != got:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        shapes = [f"{k}: ours {expected[k]}, theirs {got[k]}" for k in expected if k in got and expected[k] != got[k]]
        raise ValueError(f"the weights do not fit this model's config: missing {missing[:5]}, "
                         f"extra {extra[:5]}, shapes {shapes[:5]}")
    model.load_state_dict(ours)


def load_gpt2_state_dict(model: GPT, hf_state_dict: dict) -> None:
    """Copy a Hugging Face ``GPT2LMHeadModel`` (or ``GPT2Model``) state dict into ``model``.

    Hugging Face's GPT-2 keeps OpenAI's layout: its ``Conv1D`` layers compute x @ W + b with W
    of shape (d_in, d_out), as ours do (an nn.Linear would store W^T); attention's three
    projections are fused into one ``c_attn`` (d_model, 3 d_model): [q | k | v] side by side,
    each split into heads as (n_heads d_head), head-major. ``model`` must have GPT-2's
    architecture (layernorm, gelu, learned positions, biases) and the same sizes.
    """
    c = model.config
    if (c.norm, c.mlp, c.positions, c.bias) != ("layernorm", "gelu", "learned", True):
        raise ValueError("load_gpt2_state_dict needs a GPT-2 config: norm='layernorm', mlp='gelu', "
                         "positions='learned', bias=True")
    theirs = _strip(dict(hf_state_dict), "transformer.")
    # old versions of transformers store the causal mask as buffers named attn.bias / attn.masked_bias
    theirs = {k: v for k, v in theirs.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    used: set = set()

    def take(key: str) -> torch.Tensor:
        used.add(key)
        return theirs[key]

    ours = {"embed.W_E": take("wte.weight"), "pos_embed.W_pos": take("wpe.weight"),
            "ln_final.w": take("ln_f.weight"), "ln_final.b": take("ln_f.bias")}
    for i in range(c.n_layers):
        h, b = f"h.{i}.", f"blocks.{i}."
        W_Q, W_K, W_V, b_Q, b_K, b_V = split_c_attn(take(h + "attn.c_attn.weight"),
                                                    take(h + "attn.c_attn.bias"), c.n_heads)
        ours |= {
            b + "ln1.w": take(h + "ln_1.weight"), b + "ln1.b": take(h + "ln_1.bias"),
            b + "attn.W_Q": W_Q, b + "attn.W_K": W_K, b + "attn.W_V": W_V,
            b + "attn.b_Q": b_Q, b + "attn.b_K": b_K, b + "attn.b_V": b_V,
            b + "attn.W_O": einops.rearrange(take(h + "attn.c_proj.weight"),
                                             "(n_heads d_head) d_model -> n_heads d_head d_model", n_heads=c.n_heads),
            b + "attn.b_O": take(h + "attn.c_proj.bias"),
            b + "ln2.w": take(h + "ln_2.weight"), b + "ln2.b": take(h + "ln_2.bias"),
            b + "mlp.W_in": take(h + "mlp.c_fc.weight"), b + "mlp.b_in": take(h + "mlp.c_fc.bias"),
            b + "mlp.W_out": take(h + "mlp.c_proj.weight"), b + "mlp.b_out": take(h + "mlp.c_proj.bias"),
        }
    if "lm_head.weight" in theirs:
        W_U = take("lm_head.weight").T  # nn.Linear layout (d_vocab, d_model)
        if not c.tie_embeddings:
            ours["W_U"] = W_U
        elif not torch.equal(W_U.T, ours["embed.W_E"]):
            raise ValueError("the model ties its embeddings, but these weights have an lm_head different from wte")
    elif not c.tie_embeddings:
        raise ValueError("the model has its own W_U, but the weights have no lm_head.weight")
    _load(model, ours, theirs, used)


def rope_permutation(d_head: int) -> torch.Tensor:
    """Indices p with ours[..., j] = hf[..., p[j]]: Hugging Face's RoPE pairing -> ours.

    Hugging Face's LLaMA (``rotate_half``) rotates dimension i together with i + d_head/2 at
    frequency i; ``apply_rope`` rotates 2i with 2i + 1. So our dimension 2i is their i, and our
    2i + 1 is their i + d_head/2: p = [0, d/2, 1, d/2 + 1, ...]. Permuting the output dimensions
    of W_Q and W_K of every head the same way changes no score (a dot product does not care in
    which order its terms are summed), and makes the rotations agree.
    """
    half = d_head // 2
    return einops.rearrange(torch.stack([torch.arange(half), torch.arange(half) + half]), "two half -> (half two)")


def load_llama_state_dict(model: GPT, hf_state_dict: dict) -> None:
    """Copy a Hugging Face ``LlamaForCausalLM`` (or ``LlamaModel``) state dict into ``model``.

    Hugging Face uses nn.Linear, (d_out, d_in): every matrix is transposed into our layout, and
    q_proj/k_proj rows are permuted from its RoPE pairing to ours (``rope_permutation``).
    Grouped-query attention (fewer key/value heads than query heads) is refused: our attention
    has one key and one value per query head. ``model`` must have LLaMA's architecture.
    """
    c = model.config
    if (c.norm, c.mlp, c.positions) != ("rmsnorm", "swiglu", "rope"):
        raise ValueError("load_llama_state_dict needs a LLaMA config: norm='rmsnorm', mlp='swiglu', positions='rope'")
    theirs = _strip(dict(hf_state_dict), "model.")
    theirs = {k: v for k, v in theirs.items() if not k.endswith("rotary_emb.inv_freq")}  # a buffer in old versions
    used: set = set()

    def take(key: str) -> torch.Tensor:
        used.add(key)
        return theirs[key]

    perm = rope_permutation(c.d_head)
    qk = lambda W: einops.rearrange(W, "(n_heads d_head) d_model -> n_heads d_model d_head", n_heads=c.n_heads)[..., perm]  # noqa: E731
    ours = {"embed.W_E": take("embed_tokens.weight"), "ln_final.w": take("norm.weight")}
    for i in range(c.n_layers):
        h, b = f"layers.{i}.", f"blocks.{i}."
        W_k = theirs[h + "self_attn.k_proj.weight"]
        if W_k.shape[0] != c.d_model:
            raise ValueError(f"grouped-query attention is not supported: k_proj has {W_k.shape[0]} outputs, "
                             f"{W_k.shape[0] // c.d_head} key/value heads for n_heads = {c.n_heads} query heads")
        ours |= {
            b + "ln1.w": take(h + "input_layernorm.weight"),
            b + "attn.W_Q": qk(take(h + "self_attn.q_proj.weight")),
            b + "attn.W_K": qk(take(h + "self_attn.k_proj.weight")),
            b + "attn.W_V": einops.rearrange(take(h + "self_attn.v_proj.weight"),
                                             "(n_heads d_head) d_model -> n_heads d_model d_head", n_heads=c.n_heads),
            b + "attn.W_O": einops.rearrange(take(h + "self_attn.o_proj.weight"),
                                             "d_model (n_heads d_head) -> n_heads d_head d_model", n_heads=c.n_heads),
            b + "ln2.w": take(h + "post_attention_layernorm.weight"),
            b + "mlp.W_gate": take(h + "mlp.gate_proj.weight").T,
            b + "mlp.W_up": take(h + "mlp.up_proj.weight").T,
            b + "mlp.W_down": take(h + "mlp.down_proj.weight").T,
        }
        if c.bias:  # attention_bias=True in the Hugging Face config
            for name in "QKV":
                bias = take(h + f"self_attn.{name.lower()}_proj.bias").reshape(c.n_heads, c.d_head)
                ours[b + f"attn.b_{name}"] = bias[:, perm] if name in "QK" else bias
            ours[b + "attn.b_O"] = take(h + "self_attn.o_proj.bias")
    if "lm_head.weight" in theirs and not c.tie_embeddings:
        ours["W_U"] = take("lm_head.weight").T
    elif "lm_head.weight" in theirs:
        if not torch.equal(take("lm_head.weight"), ours["embed.W_E"]):
            raise ValueError("the model ties its embeddings, but these weights have an lm_head different from embed_tokens")
    elif not c.tie_embeddings:
        raise ValueError("the model has its own W_U, but the weights have no lm_head.weight")
    _load(model, ours, theirs, used)


# ----------------------------------------------------------------------------------------------
# Part 2: helpers for the chapter page
# ----------------------------------------------------------------------------------------------


def residual_stream_norms(model: GPT, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """What happens to the residual stream, layer by layer, in one forward pass.

    Returns float tensors of n_layers + 1 or n_layers numbers, each the L2 norm of a vector
    (batch, seq, d_model) -> averaged over batch and seq: "stream" (n_layers + 1): the stream
    before each block and after the last; "attn" and "mlp" (n_layers): what each block's
    attention and MLP add to it.
    """
    records: dict[str, list[torch.Tensor]] = {"stream": [], "attn": [], "mlp": []}

    def norm(t: torch.Tensor) -> torch.Tensor:
        return t.norm(dim=-1).mean()

    hooks = []
    for block in model.blocks:
        hooks.append(block.register_forward_pre_hook(lambda m, args: records["stream"].append(norm(args[0]))))
        hooks.append(block.attn.register_forward_hook(lambda m, args, out: records["attn"].append(norm(out))))
        hooks.append(block.mlp.register_forward_hook(lambda m, args, out: records["mlp"].append(norm(out))))
    hooks.append(model.ln_final.register_forward_pre_hook(lambda m, args: records["stream"].append(norm(args[0]))))
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.stack(v) for k, v in records.items()}


class FastGPT(GPT):
    """``GPT`` computed through PyTorch's fused kernels: the model chapter 6 trains.

    The same parameters, names, initialisation and state dict as ``GPT(config)``, so weights
    move between the two with ``load_state_dict``, and the same function to float32 rounding
    (tests/test_blocks.py compares logits and every gradient, for every switch of the config).
    Only ``forward`` differs, in the kernels it calls:

    * one matmul for the three projections of every head: [W_Q | W_K | W_V] laid side by side
      as (d_model, 3 d_model), GPT-2's ``c_attn`` layout (``split_c_attn`` undoes it), instead of
      three per-head einsums; the weights are re-laid on every call (a copy of 3 d_model^2
      numbers, small beside the matmul over batch * seq rows);
    * ``F.scaled_dot_product_attention`` whatever ``config.fused`` says; ``F.layer_norm`` /
      ``F.rms_norm`` and ``F.gelu(approximate="tanh")`` instead of the formulas written out,
      which are several elementwise passes each, forward and backward;
    * ``F.linear`` with the bias folded into the matmul, ``F.embedding`` for the look-up.

    Measured in ``bench/bench_training.py``: about 1.4x the training throughput of ``GPT`` on
    the chapter's small model (bench/README.md). The chapters' ``GPT`` stays the one to read.
    Errors: the same ValueError as ``GPT`` for a sequence longer than n_ctx or an id outside
    the vocabulary.
    """

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: integer (batch, seq), ids in 0..d_vocab-1 -> logits (batch, seq, d_vocab)."""
        c = self.config
        seq = tokens.shape[-1]
        if seq > c.n_ctx:
            raise ValueError(f"the sequence has {seq} tokens but the model's context is n_ctx = {c.n_ctx}")
        if tokens.dtype != torch.int64 or (tokens.numel() and (tokens.min() < 0 or tokens.max() >= c.d_vocab)):
            self.embed(tokens)  # Embed's checks: TypeError for floats, a ValueError naming a bad id
            tokens = tokens.long()  # int32 and smaller integer ids are fine
        x = F.embedding(tokens, self.embed.W_E)
        if c.positions == "learned":
            x = x + self.pos_embed.W_pos[:seq]  # broadcast over the batch
        for block in self.blocks:
            x = x + self._attention(block.attn, self._norm(block.ln1, x))
            x = x + self._mlp(block.mlp, self._norm(block.ln2, x))
        x = self._norm(self.ln_final, x)
        return F.linear(x, self.embed.W_E) if c.tie_embeddings else F.linear(x, self.W_U.T)

    def _norm(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.config.norm == "layernorm":
            return F.layer_norm(x, x.shape[-1:], norm.w, norm.b, norm.eps)
        if hasattr(F, "rms_norm"):  # torch >= 2.4
            return F.rms_norm(x, x.shape[-1:], norm.w, norm.eps)
        return norm(x)

    def _attention(self, attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        W_qkv = einops.rearrange(torch.cat([attn.W_Q, attn.W_K, attn.W_V]),
                                 "(three n_heads) d_model d_head -> (three n_heads d_head) d_model", three=3)
        b_qkv = torch.cat([attn.b_Q, attn.b_K, attn.b_V]).flatten() if c.bias else None
        qkv = F.linear(x, W_qkv, b_qkv)  # (batch, seq, 3 d_model)
        q, k, v = einops.rearrange(qkv, "batch seq (three n_heads d_head) -> three batch n_heads seq d_head",
                                   three=3, n_heads=c.n_heads)
        if c.positions == "rope":
            q, k = apply_rope(q, c.rope_base), apply_rope(k, c.rope_base)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        z = einops.rearrange(z, "batch n_heads seq d_head -> batch seq (n_heads d_head)")
        # F.linear(z, W) is z @ W.T: heads side by side, (n_heads d_head, d_model), as a view
        return F.linear(z, attn.W_O.flatten(0, 1).T, attn.b_O if c.bias else None)

    def _mlp(self, mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.config.mlp == "gelu":
            hidden = F.gelu(F.linear(x, mlp.W_in.T, mlp.b_in), approximate="tanh")
            return F.linear(hidden, mlp.W_out.T, mlp.b_out)
        hidden = F.silu(F.linear(x, mlp.W_gate.T)) * F.linear(x, mlp.W_up.T)
        return F.linear(hidden, mlp.W_down.T)


class PostLNBlock(TransformerBlock):
    """The original Transformer's arrangement (Vaswani et al. 2017): normalise *after* adding.

        x = ln1(x + attn(x));  x = ln2(x + mlp(x))

    Same parameters as TransformerBlock; only the order differs. The stream itself is normalised
    twice per block, so no identity path runs from the embeddings to the output.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class DecoderBlock(nn.Module):
    """A decoder block of an encoder-decoder Transformer (Vaswani et al. 2017, figure 1), pre-LN.

        x = x + self_attn(ln1(x))                       causal, over the decoder's own positions
        x = x + cross_attn(ln2(x), context=memory)      queries from x, keys/values from the encoder
        x = x + mlp(ln3(x))

    memory: the encoder's output (batch, seq_enc, d_model). Cross-attention is chapter 3's
    ``Attention`` with its ``context`` argument, unmasked: every decoder position may read the
    whole source sentence.
    """

    def __init__(self, d_model: int, n_heads: int, d_mlp: int | None = None):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = LayerNorm(d_model), LayerNorm(d_model), LayerNorm(d_model)
        self.self_attn = Attention(d_model, n_heads, causal=True)
        self.cross_attn = Attention(d_model, n_heads, causal=False)
        self.mlp = MLP(d_model, d_mlp)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, d_model), memory: (batch, seq_enc, d_model) -> (batch, seq, d_model)."""
        x = x + self.self_attn(self.ln1(x))
        x = x + self.cross_attn(self.ln2(x), context=memory)
        return x + self.mlp(self.ln3(x))


@torch.no_grad()
def generate_greedy(model: GPT, tokens: torch.Tensor, n_new: int) -> torch.Tensor:
    """Append ``n_new`` tokens to tokens (batch, seq), each the most likely next one (argmax).

    Recomputes the whole sequence at every step (no KV cache: simple, and fast enough for a
    demo); keeps only the last n_ctx tokens as context.
    """
    for _ in range(n_new):
        logits = model(tokens[:, -model.config.n_ctx:])
        tokens = torch.cat([tokens, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return tokens
