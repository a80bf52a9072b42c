"""The MLP: the position-wise feed-forward network of every Transformer block (chapter 4).

Attention (chapter 3) moves information between positions; the MLP then works on each position
on its own, with the same weights everywhere ("attention communicates, the MLP computes"):

    MLP(x) = act(x @ W_in + b_in) @ W_out + b_out        (Vaswani et al. 2017, section 3.3, eq. 2)

with a hidden width ``d_mlp`` of usually 4 * d_model. This file holds:

* the activations, each written from its formula: ReLU (the original Transformer), the exact
  GELU x * Phi(x) and its tanh approximation (Hendrycks & Gimpel 2016), which GPT-2 and this
  course's model use;
* ``MLP``, GPT-2's MLP, with parameters W_in, b_in, W_out, b_out;
* ``changed_positions``, a probe that shows which output positions depend on one input position:
  for the MLP, only that position itself;
* ``mlp_param_count``, the MLP's number of parameters;
* ``SwiGLU`` (advanced), the gated MLP of LLaMA (Shazeer 2020; Touvron et al. 2023).

Shapes use the course's dimension names: batch, seq, d_model, d_mlp. Vectors are rows, so a
linear layer is ``x @ W`` with W of shape (d_in, d_out).
"""

from __future__ import annotations

import math

import einops
import torch
from torch import nn


def relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU(x) = max(x, 0), elementwise (Vaswani et al. 2017, eq. 2). Same shape and dtype as x."""
    return torch.maximum(x, torch.zeros_like(x))


def gelu_exact(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU (Hendrycks & Gimpel 2016), elementwise. Same shape and dtype as x.

        GELU(x) = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))

    Phi is the cumulative distribution function of the standard normal distribution: the input
    is weighted by the probability that a standard normal variable is smaller than it.
    """
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU (Hendrycks & Gimpel 2016, section 2), GPT-2's activation.

        GELU(x) ~ 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))

    Elementwise; same shape and dtype as x. It differs from the exact GELU by at most 4.7e-4
    (at x = +-2.70), but a model must use the form it was trained with to reproduce its outputs.
    """
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class MLP(nn.Module):
    """GPT-2's MLP: act(x @ W_in + b_in) @ W_out + b_out, with act = gelu_tanh.

    Parameters: W_in (d_model, d_mlp), b_in (d_mlp,), W_out (d_mlp, d_model), b_out (d_model,).
    d_mlp defaults to 4 * d_model (Vaswani et al. 2017: 2048 = 4 * 512; GPT-2 small: 3072 = 4 * 768).
    Weights start from N(0, 0.02^2) and biases from zero, as in GPT-2's released code.
    """

    def __init__(self, d_model: int, d_mlp: int | None = None):
        super().__init__()
        self.d_model = d_model
        self.d_mlp = 4 * d_model if d_mlp is None else d_mlp
        self.W_in = nn.Parameter(torch.empty(d_model, self.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(self.d_mlp))
        self.W_out = nn.Parameter(torch.empty(self.d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        nn.init.normal_(self.W_in, mean=0.0, std=0.02)
        nn.init.normal_(self.W_out, mean=0.0, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, d_model) -> (batch, seq, d_model)."""
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x has {x.shape[-1]} features in its last axis, but the MLP expects d_model = {self.d_model}")
        pre = einops.einsum(x, self.W_in, "batch seq d_model, d_model d_mlp -> batch seq d_mlp") + self.b_in
        post = gelu_tanh(pre)  # the only non-linear step, between the two layers
        return einops.einsum(post, self.W_out, "batch seq d_mlp, d_mlp d_model -> batch seq d_model") + self.b_out


def changed_positions(module: nn.Module, x: torch.Tensor, position: int) -> torch.Tensor:
    """Which output positions of ``module`` change when the input at ``position`` changes.

    x: float (batch, seq, d_model); module maps (batch, seq, d_model) to (batch, seq, d_out).
    Adds 1.0 to every feature of x[:, position] in a copy (x itself is left unchanged), runs the
    module on x and on the copy, and returns a bool (batch, seq) tensor on x's device: True
    where any output number differs (exactly, with !=) from the output for x.

    For an MLP the answer is True at ``position`` only: every position is computed on its own,
    with the same weights, so the other rows come out bit for bit the same. A layer that mixes
    positions (attention) changes other rows too.
    """
    with torch.no_grad():  # a probe: no gradients needed
        before = module(x)
        perturbed = x.clone()
        perturbed[:, position] += 1.0
        after = module(perturbed)
    return (after != before).any(dim=-1)


def mlp_param_count(d_model: int, d_mlp: int) -> int:
    """The number of parameters of ``MLP(d_model, d_mlp)``: two weight matrices and two biases.

        d_model * d_mlp (W_in) + d_mlp (b_in) + d_mlp * d_model (W_out) + d_model (b_out)

    Sizes below 1 are a ValueError.
    """
    if d_model < 1 or d_mlp < 1:
        raise ValueError(f"d_model and d_mlp must be at least 1, got d_model = {d_model}, d_mlp = {d_mlp}")
    return 2 * d_model * d_mlp + d_mlp + d_model


class SwiGLU(nn.Module):
    """The gated MLP of LLaMA (Shazeer 2020, eq. 6; Touvron et al. 2023, section 2.2).

        SwiGLU(x) = (silu(x @ W_gate) * (x @ W_up)) @ W_down,     silu(z) = z * sigmoid(z)

    Parameters, no biases (as in LLaMA): W_gate (d_model, d_mlp), W_up (d_model, d_mlp),
    W_down (d_mlp, d_model), initialised N(0, 0.02^2) like the course's other weights.

    d_mlp defaults to LLaMA's rule: int(2 * 4 * d_model / 3), rounded up to a multiple of 256
    (``FeedForward`` with ``multiple_of = 256`` in Meta's released LLaMA code); d_model = 4096
    (LLaMA-7B) gives 11008. Three matrices of d_model * (8/3) d_model hold as many numbers as the
    two of d_model * 4 d_model of a plain MLP.
    """

    def __init__(self, d_model: int, d_mlp: int | None = None):
        super().__init__()
        self.d_model = d_model
        if d_mlp is None:
            multiple_of = 256
            d_mlp = int(2 * 4 * d_model / 3)
            d_mlp = multiple_of * ((d_mlp + multiple_of - 1) // multiple_of)  # round up
        self.d_mlp = d_mlp
        self.W_gate = nn.Parameter(torch.empty(d_model, self.d_mlp))
        self.W_up = nn.Parameter(torch.empty(d_model, self.d_mlp))
        self.W_down = nn.Parameter(torch.empty(self.d_mlp, d_model))
        for W in (self.W_gate, self.W_up, self.W_down):
            nn.init.normal_(W, mean=0.0, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, d_model) -> (batch, seq, d_model)."""
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x has {x.shape[-1]} features in its last axis, but SwiGLU expects d_model = {self.d_model}")
        gate = einops.einsum(x, self.W_gate, "batch seq d_model, d_model d_mlp -> batch seq d_mlp")
        up = einops.einsum(x, self.W_up, "batch seq d_model, d_model d_mlp -> batch seq d_mlp")
        hidden = gate * torch.sigmoid(gate) * up  # silu(gate), opening or closing each unit of up
        return einops.einsum(hidden, self.W_down, "batch seq d_mlp, d_mlp d_model -> batch seq d_model")
