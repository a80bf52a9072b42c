"""Tests for solutions/blocks.py: the references against independent oracles.

Oracles: torch.nn.LayerNorm and torch.nn.RMSNorm (values and gradients); RMSNorm's formula in
float64; a pre-LN block written out with torch.nn.functional; PyTorch's own parameter count of
built models; published parameter counts (GPT-2 small, LLaMA-7B); Hugging Face transformers'
GPT2LMHeadModel and LlamaForCausalLM with small random weights, built offline from a config
(transformers is a test-only dependency), which must give the same logits as our model after
loading their state dicts.
"""

from __future__ import annotations

import dataclasses
import os

import einops
import pytest
import torch
import torch.nn.functional as F

from solutions.attention import Attention
from solutions.blocks import (
    GPT, Config, DecoderBlock, FastGPT, LayerNorm, PostLNBlock, RMSNorm, TransformerBlock, count_parameters,
    generate_greedy, layer_shapes, load_gpt2_state_dict, load_llama_state_dict, residual_stream_norms,
    rope_permutation, split_c_attn,
)
from solutions.mlp import gelu_tanh

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network in tests


def tiny(**changes) -> Config:
    return dataclasses.replace(Config(d_model=32, n_heads=4, d_mlp=64, d_vocab=50, n_ctx=16, n_layers=2), **changes)


LLAMA_TINY = dict(norm="rmsnorm", mlp="swiglu", positions="rope", bias=False, tie_embeddings=False,
                  layer_norm_eps=1e-6)


# --- norms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 5, 8), (3, 16), (1, 1, 7)])
def test_layernorm_matches_torch_values_and_gradients(shape):
    g = torch.Generator().manual_seed(0)
    d = shape[-1]
    ours, theirs = LayerNorm(d), torch.nn.LayerNorm(d, eps=1e-5)
    with torch.no_grad():
        w, b = torch.randn(d, generator=g), torch.randn(d, generator=g)
        ours.w.copy_(w), ours.b.copy_(b), theirs.weight.copy_(w), theirs.bias.copy_(b)
    x = (torch.randn(shape, generator=g) * 3 + 1).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    cot = torch.randn(shape, generator=g)
    y, y2 = ours(x), theirs(x2)
    torch.testing.assert_close(y, y2)
    y.backward(cot), y2.backward(cot)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(ours.w.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.b.grad, theirs.bias.grad)


def test_layernorm_init_eps_and_biased_variance():
    ln = LayerNorm(6)
    assert [n for n, _ in ln.named_parameters()] == ["w", "b"]
    assert torch.equal(ln.w, torch.ones(6)) and torch.equal(ln.b, torch.zeros(6))
    assert ln.eps == 1e-5 and LayerNorm(6, eps=1e-3).eps == 1e-3
    # a row of two numbers: biased variance 1, unbiased 2; with a large eps its place shows
    x = torch.tensor([[-1.0, 1.0]])
    torch.testing.assert_close(LayerNorm(2, eps=0.0)(x), x)
    torch.testing.assert_close(LayerNorm(2, eps=3.0)(x), x / 2)  # sqrt(1 + 3), eps inside the root


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rmsnorm_formula_and_torch(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 12, generator=g, dtype=dtype) * 2
    norm = RMSNorm(12).to(dtype)
    assert [n for n, _ in norm.named_parameters()] == ["w"] and torch.equal(norm.w, torch.ones(12, dtype=dtype))
    assert norm.eps == 1e-6
    with torch.no_grad():
        norm.w.copy_(torch.randn(12, generator=g, dtype=dtype))
    x64 = x.double()
    expected = x64 / torch.sqrt((x64**2).mean(-1, keepdim=True) + 1e-6) * norm.w.double()
    torch.testing.assert_close(norm(x), expected.to(dtype))
    if hasattr(torch.nn, "RMSNorm"):
        theirs = torch.nn.RMSNorm(12, eps=1e-6).to(dtype)
        with torch.no_grad():
            theirs.weight.copy_(norm.w)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        cot = torch.randn(x.shape, generator=g, dtype=dtype)
        norm(xa).backward(cot), theirs(xb).backward(cot)
        torch.testing.assert_close(norm(x), theirs(x))
        torch.testing.assert_close(xa.grad, xb.grad)
        torch.testing.assert_close(norm.w.grad, theirs.weight.grad)
    # eps inside the root: a zero row gives 0, not nan; a row of ones with eps = 3 gives 1/2
    assert torch.equal(RMSNorm(3)(torch.zeros(1, 3)), torch.zeros(1, 3))
    torch.testing.assert_close(RMSNorm(2, eps=3.0)(torch.ones(1, 2)), torch.full((1, 2), 0.5))


# --- block ------------------------------------------------------------------------------------


def test_block_names_and_is_pre_ln():
    torch.manual_seed(0)
    block = TransformerBlock(tiny())
    names = [n for n, _ in block.named_parameters()]
    assert names[:2] == ["ln1.w", "ln1.b"] and "attn.W_Q" in names and "mlp.W_in" in names and "ln2.b" in names
    assert block.ln1 is not block.ln2
    with torch.no_grad():
        for p in block.parameters():
            p.normal_()  # all non-trivial, so a wrong order or a forgotten residual shows
    block.double()  # float64: large random weights, exact comparison
    x = torch.randn(2, 6, 32, dtype=torch.float64)
    ln = lambda t, m: F.layer_norm(t, (32,), m.w, m.b, 1e-5)  # noqa: E731
    attn = Attention(32, 4).double()
    attn.load_state_dict(block.attn.state_dict())
    h = x + attn(ln(x, block.ln1))
    m = block.mlp
    expected = h + gelu_tanh(ln(h, block.ln2) @ m.W_in + m.b_in) @ m.W_out + m.b_out
    torch.testing.assert_close(block(x), expected)
    post = PostLNBlock(tiny()).double()
    post.load_state_dict(block.state_dict())
    assert not torch.allclose(post(x), block(x))


def test_llama_block_has_no_biases_and_rope_changes_scores():
    block = TransformerBlock(tiny(**LLAMA_TINY))
    names = {n for n, _ in block.named_parameters()}
    assert names == {"ln1.w", "ln2.w", "attn.W_Q", "attn.W_K", "attn.W_V", "attn.W_O",
                     "mlp.W_gate", "mlp.W_up", "mlp.W_down"}
    # RoPE makes attention see order even with identical inputs at every position
    x = torch.randn(1, 1, 32).expand(1, 5, 32)
    out = block.attn(x)
    assert out.shape == (1, 5, 32)
    no_rope = TransformerBlock(tiny(norm="rmsnorm", mlp="swiglu", bias=False))
    no_rope.load_state_dict(block.state_dict())
    torch.testing.assert_close(no_rope.attn(x)[0, 1:], no_rope.attn(x)[0, :-1])


def test_fused_switch_gives_the_same_model():
    for changes in ({}, LLAMA_TINY):
        torch.manual_seed(0)
        a = GPT(tiny(**changes))
        b = GPT(tiny(fused=True, **changes))
        b.load_state_dict(a.state_dict())
        tokens = torch.randint(0, 50, (2, 9))
        torch.testing.assert_close(a(tokens), b(tokens), atol=1e-5, rtol=1e-5)


# every switch of the config at least once on and once off, in 6 models (not all 32 products)
FAST_CASES = [
    {},
    dict(LLAMA_TINY),
    dict(norm="rmsnorm", mlp="gelu", positions="learned", bias=True, tie_embeddings=False),
    dict(norm="layernorm", mlp="swiglu", positions="rope", bias=True, tie_embeddings=True, rope_base=50.0),
    dict(norm="layernorm", mlp="gelu", positions="rope", bias=False, tie_embeddings=True, layer_norm_eps=0.05),
    dict(norm="rmsnorm", mlp="swiglu", positions="learned", bias=False, tie_embeddings=True, fused=True),
]


@pytest.mark.parametrize("changes", FAST_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "gpt2")
def test_fast_gpt_is_the_same_function_with_the_same_gradients(changes):
    """FastGPT (fused kernels) against GPT (the chapters' formulas), in float64 so that any
    difference beyond rounding shows: logits, and the gradient of every parameter."""
    torch.manual_seed(0)
    config = tiny(**changes)
    slow = GPT(config).double()
    fast = FastGPT(config).double()
    assert list(fast.state_dict()) == list(slow.state_dict())
    with torch.no_grad():  # away from the initialisation: biases and norm scales not 0 and 1
        for p in slow.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    fast.load_state_dict(slow.state_dict())
    tokens = torch.randint(0, config.d_vocab, (3, 11))
    cotangent = torch.randn(3, 11, config.d_vocab, dtype=torch.float64)
    (slow(tokens) * cotangent).sum().backward()
    (fast(tokens) * cotangent).sum().backward()
    torch.testing.assert_close(fast(tokens), slow(tokens), rtol=1e-10, atol=1e-10)
    for (name, p), q in zip(slow.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")


# --- model ------------------------------------------------------------------------------------


def test_gpt_names_shapes_tying_and_init():
    torch.manual_seed(0)
    model = GPT(tiny(n_layers=8, d_model=64, d_mlp=256))
    names = [n for n, _ in model.named_parameters()]
    assert names[:2] == ["embed.W_E", "pos_embed.W_pos"] and names[-2:] == ["ln_final.w", "ln_final.b"]
    assert "W_U" not in names  # tied
    tokens = torch.randint(0, 50, (3, 16))
    logits = model(tokens)
    assert logits.shape == (3, 16, 50)
    # tied: the logits are the final stream times W_E^T
    untied = GPT(tiny(n_layers=8, d_model=64, d_mlp=256, tie_embeddings=False))
    assert dict(untied.named_parameters())["W_U"].shape == (64, 50)
    state = model.state_dict() | {"W_U": model.embed.W_E.detach().T.clone()}
    untied.load_state_dict(state)
    torch.testing.assert_close(untied(tokens), logits)
    # the residual projections start smaller: std 0.02 / sqrt(2 n_layers) = 0.005
    W_O = torch.cat([b.attn.W_O.flatten() for b in model.blocks])
    W_in = torch.cat([b.mlp.W_in.flatten() for b in model.blocks])
    assert abs(W_O.std().item() - 0.005) < 0.0005 and abs(W_in.std().item() - 0.02) < 0.001


def test_gpt_adds_positions_and_uses_ln_final():
    torch.manual_seed(0)
    model = GPT(tiny())
    tokens = torch.full((1, 6), 7)
    logits = model(tokens)
    assert not torch.allclose(logits[0, 0], logits[0, 1])  # same token, different positions
    with torch.no_grad():
        model.ln_final.b.add_(1.0)
    assert not torch.allclose(model(tokens), logits)


@pytest.mark.parametrize("Model", [GPT, FastGPT])
def test_gpt_errors_name_the_limit(Model):
    for changes in ({}, LLAMA_TINY):
        model = Model(tiny(**changes))
        with pytest.raises(ValueError, match="n_ctx = 16"):
            model(torch.zeros(1, 17, dtype=torch.long))
        with pytest.raises(ValueError, match="d_vocab = 50"):
            model(torch.tensor([[1, 50]]))
        with pytest.raises(ValueError, match="d_vocab = 50"):
            model(torch.tensor([[-1, 2]]))
        with pytest.raises(TypeError, match="integer"):
            model(torch.zeros(1, 3))
        assert model(torch.zeros(1, 16, dtype=torch.long)).shape == (1, 16, 50)
        ids = torch.tensor([[1, 49, 7]])
        torch.testing.assert_close(model(ids.int()), model(ids))  # int32 ids are ids


def test_config_validation():
    with pytest.raises(ValueError, match="norm"):
        Config(norm="batchnorm")
    with pytest.raises(ValueError, match="divisible"):
        Config(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="even"):
        Config(d_model=12, n_heads=4, positions="rope")
    assert Config.gpt2_small().d_head == 64 and Config.llama_7b().d_head == 128


# --- parameter counts -------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {}, {"tie_embeddings": False}, {"bias": False}, {"norm": "rmsnorm"}, {"mlp": "swiglu"},
    {"positions": "rope"}, LLAMA_TINY, {"n_layers": 3, "d_mlp": 40, "d_vocab": 7, "n_ctx": 5},
])
def test_count_parameters_matches_built_models(changes):
    config = tiny(**changes)
    assert count_parameters(config) == sum(p.numel() for p in GPT(config).parameters())


def test_count_parameters_published_figures():
    assert count_parameters(Config.gpt2_small()) == 124_439_808  # the released GPT-2 small
    assert count_parameters(Config.llama_7b()) == 6_738_415_616  # LLaMA-7B, reported as 6.7B
    gpt3 = count_parameters(Config.gpt3_175b())
    assert gpt3 == 174_604_259_328  # Brown et al. 2020, Table 2.1: "175.0B"
    with torch.device("meta"):  # the same counts from built models, without memory
        assert sum(p.numel() for p in GPT(Config.gpt2_small()).parameters()) == 124_439_808
        assert sum(p.numel() for p in GPT(Config.llama_7b()).parameters()) == 6_738_415_616


# --- meta-device shapes -----------------------------------------------------------------------


def test_layer_shapes_llama_on_meta():
    rows = layer_shapes(Config.llama_7b(), batch=2, seq=2048)
    by_name = {r.name: r for r in rows}
    assert rows[0].name == "model" and rows[0].input == (2, 2048) and rows[0].output == (2, 2048, 32000)
    assert rows[0].parameters == 6_738_415_616
    assert by_name["embed"].output == (2, 2048, 4096)
    assert by_name["blocks.31.mlp"].input == (2, 2048, 4096) and by_name["blocks.31.mlp"].parameters == 3 * 4096 * 11008
    assert by_name["ln_final"].output == (2, 2048, 4096)
    assert [r.name for r in rows[2:7]] == ["blocks.0", "blocks.0.ln1", "blocks.0.attn", "blocks.0.ln2", "blocks.0.mlp"]
    assert "pos_embed" not in by_name
    gpt2 = {r.name: r for r in layer_shapes(Config.gpt2_small(), batch=1, seq=1024)}
    assert gpt2["pos_embed"].output == (1, 1024, 768) and gpt2["model"].output == (1, 1024, 50257)


# --- Hugging Face parity ----------------------------------------------------------------------

transformers = pytest.importorskip("transformers")


GPT2_SHAPES = [
    dict(n_embd=32, n_head=4, n_layer=2, vocab_size=60, n_positions=16),
    dict(n_embd=48, n_head=3, n_layer=3, vocab_size=101, n_positions=24),
    dict(n_embd=64, n_head=8, n_layer=1, vocab_size=37, n_positions=12, n_inner=96),
]


def random_hf(model):
    # HF's init leaves LayerNorms at 1/0 and biases at 0: draw everything so nothing hides
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.mark.parametrize("shape", GPT2_SHAPES)
def test_gpt2_logits_match_hugging_face(shape):
    hf_config = transformers.GPT2Config(**shape, bos_token_id=0, eos_token_id=0)
    hf = random_hf(transformers.GPT2LMHeadModel(hf_config))
    d_mlp = shape.get("n_inner") or 4 * shape["n_embd"]
    ours = GPT(Config(d_model=shape["n_embd"], n_heads=shape["n_head"], d_mlp=d_mlp, d_vocab=shape["vocab_size"],
                      n_ctx=shape["n_positions"], n_layers=shape["n_layer"]))
    load_gpt2_state_dict(ours, hf.state_dict())
    tokens = torch.randint(0, shape["vocab_size"], (2, shape["n_positions"]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(tokens).logits
        torch.testing.assert_close(ours(tokens), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours(tokens[:, :5]), expected[:, :5], atol=1e-4, rtol=1e-4)


def test_gpt2_loader_untied_and_errors():
    hf = random_hf(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2_SHAPES[0], bos_token_id=0, eos_token_id=0)))
    config = Config(d_model=32, n_heads=4, d_mlp=128, d_vocab=60, n_ctx=16, n_layers=2, tie_embeddings=False)
    ours = GPT(config)
    load_gpt2_state_dict(ours, hf.state_dict())
    tokens = torch.randint(0, 60, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf(tokens).logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="GPT-2 config"):
        load_gpt2_state_dict(GPT(dataclasses.replace(config, **LLAMA_TINY)), hf.state_dict())
    with pytest.raises(ValueError, match="do not fit"):
        load_gpt2_state_dict(GPT(dataclasses.replace(config, n_ctx=8)), hf.state_dict())
    with pytest.raises(ValueError, match="no place"):
        load_gpt2_state_dict(GPT(dataclasses.replace(config, n_layers=1)), hf.state_dict())


LLAMA_SHAPES = [
    dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64, vocab_size=50),
    dict(hidden_size=48, num_attention_heads=2, num_hidden_layers=3, intermediate_size=80, vocab_size=71,
         rope_theta=500.0),
    dict(hidden_size=64, num_attention_heads=8, num_hidden_layers=1, intermediate_size=128, vocab_size=33,
         rms_norm_eps=1e-5, tie_word_embeddings=True),
]


def llama_config(shape):
    shape = dict(shape)
    theta = shape.pop("rope_theta", 10000.0)
    try:  # transformers 5 reads rope_theta from rope_parameters
        return transformers.LlamaConfig(**shape, num_key_value_heads=shape["num_attention_heads"],
                                        max_position_embeddings=32, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                                        rope_parameters={"rope_type": "default", "rope_theta": theta}), theta
    except TypeError:  # pragma: no cover (older transformers)
        return transformers.LlamaConfig(**shape, num_key_value_heads=shape["num_attention_heads"],
                                        max_position_embeddings=32, rope_theta=theta), theta


@pytest.mark.parametrize("shape", LLAMA_SHAPES)
def test_llama_logits_match_hugging_face(shape):
    hf_config, theta = llama_config(shape)
    hf = random_hf(transformers.LlamaForCausalLM(hf_config))
    ours = GPT(Config(d_model=shape["hidden_size"], n_heads=shape["num_attention_heads"],
                      d_mlp=shape["intermediate_size"], d_vocab=shape["vocab_size"], n_ctx=32,
                      n_layers=shape["num_hidden_layers"], norm="rmsnorm", mlp="swiglu", positions="rope",
                      bias=False, tie_embeddings=shape.get("tie_word_embeddings", False),
                      layer_norm_eps=shape.get("rms_norm_eps", 1e-6), rope_base=theta))
    load_llama_state_dict(ours, hf.state_dict())
    tokens = torch.randint(0, shape["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf(tokens).logits, atol=1e-4, rtol=1e-4)


def test_llama_rope_permutation_is_needed_and_gqa_refused():
    assert rope_permutation(8).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    shape = LLAMA_SHAPES[0]
    hf_config, _ = llama_config(shape)
    hf = random_hf(transformers.LlamaForCausalLM(hf_config))
    config = Config(d_model=32, n_heads=4, d_mlp=64, d_vocab=50, n_ctx=32, n_layers=2, **LLAMA_TINY)
    ours = GPT(config)
    load_llama_state_dict(ours, hf.state_dict())
    tokens = torch.randint(0, 50, (1, 12))
    with torch.no_grad():
        # without the permutation the rotations pair the wrong numbers: the logits differ
        state = ours.state_dict()
        for i in range(2):
            for name in ("W_Q", "W_K"):
                key = f"blocks.{i}.attn.{name}"
                state[key] = state[key][..., torch.argsort(rope_permutation(8))]
        wrong = GPT(config)
        wrong.load_state_dict(state)
        assert not torch.allclose(wrong(tokens), hf(tokens).logits, atol=1e-3)
    gqa_config = transformers.LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                          num_hidden_layers=1, intermediate_size=64, vocab_size=50,
                                          bos_token_id=0, eos_token_id=0, pad_token_id=0)
    gqa = transformers.LlamaForCausalLM(gqa_config)
    with pytest.raises(ValueError, match="grouped-query attention"):
        load_llama_state_dict(GPT(dataclasses.replace(config, n_layers=1)), gqa.state_dict())
    with pytest.raises(ValueError, match="LLaMA config"):
        load_llama_state_dict(GPT(tiny()), hf.state_dict())


# --- page helpers -----------------------------------------------------------------------------


def test_page_helpers():
    torch.manual_seed(0)
    model = GPT(tiny(n_layers=3))
    tokens = torch.randint(0, 50, (2, 10))
    norms = residual_stream_norms(model, tokens)
    assert norms["stream"].shape == (4,) and norms["attn"].shape == (3,) and norms["mlp"].shape == (3,)
    out = generate_greedy(model, tokens[:, :4], 5)
    assert out.shape == (2, 9) and torch.equal(out[:, :4], tokens[:, :4])
    assert torch.equal(out[:, 4], model(tokens[:, :4])[:, -1].argmax(-1))
    block = DecoderBlock(32, 4)
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    y = block(x, memory)
    assert y.shape == (2, 5, 32)
    changed = memory.clone()
    changed[:, -1] += 1.0  # the last source position is visible to every decoder position
    assert (block(x, changed) - y).abs().amax(dim=-1).gt(0).all()


@pytest.mark.parametrize("n_heads, d_head", [(1, 6), (3, 4), (4, 5)])
def test_split_c_attn_inverts_the_fusion_and_matches_the_fused_projection(n_heads, d_head):
    d_model = n_heads * d_head
    W, b = torch.randn(d_model, 3 * d_model), torch.randn(3 * d_model)
    W_Q, W_K, W_V, b_Q, b_K, b_V = split_c_attn(W, b, n_heads)
    assert W_Q.shape == (n_heads, d_model, d_head) and b_Q.shape == (n_heads, d_head)
    # what OpenAI's attention computes: x @ W + b, split into q | k | v, then into heads
    x = torch.randn(2, 5, d_model)
    fused = (x @ W + b).split(d_model, dim=-1)
    for part, W_x, b_x in zip(fused, (W_Q, W_K, W_V), (b_Q, b_K, b_V)):
        heads = einops.rearrange(part, "batch seq (n_heads d_head) -> batch n_heads seq d_head", n_heads=n_heads)
        ours = einops.einsum(x, W_x, "batch seq d_model, n_heads d_model d_head -> batch n_heads seq d_head") + b_x[:, None, :]
        torch.testing.assert_close(ours, heads)


def test_split_c_attn_refuses_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"\(36, 12\)"):
        split_c_attn(torch.zeros(36, 12), torch.zeros(36), 3)
    with pytest.raises(ValueError, match=r"\(12,\)"):
        split_c_attn(torch.zeros(12, 36), torch.zeros(12), 3)
    with pytest.raises(ValueError, match="n_heads = 5"):
        split_c_attn(torch.zeros(12, 36), torch.zeros(36), 5)
