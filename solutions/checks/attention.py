"""Check specs for chapter 3, attention: one :class:`Spec` per exercise, in notebook order.

Inputs come from a ``torch.Generator`` seeded by the check's seed, on the CPU. Every axis gets
its own size (batch 2-3, n_heads 4-5, seq_q 6-7, seq_k 8-9, d_head 10-12), so swapped queries and
keys or a wrong split of the heads show as a wrong shape or wrong numbers; masks are tried with
seq_q = seq_k and with fewer queries than keys (a KV cache), and padding only on the right, so
that no query is left with nothing to attend to, except in the cases that say so: the step-by-step
functions are tried on queries that see no key at all (their rows are nan, and must stay nan).
"""

from __future__ import annotations

import math
import random

import torch

from solutions import attention as ref
from solutions.checks.core import Case, Mistake, Spec
from solutions.checks.embeddings import diagnose_initialisation
from solutions.checks.modules import init_case, module_case
from solutions.checks.objects import (cache_case, cache_driver, decoding_case, decoding_driver, switch_case,
                                      switchable_module_driver)

CHAPTER = "03_attention"
_HEADS = ("batch", "n_heads")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sizes(rng: random.Random) -> dict[str, int]:
    return {"batch": rng.randint(2, 3), "n_heads": rng.randint(4, 5), "seq_q": rng.randint(6, 7),
            "seq_k": rng.randint(8, 9), "d_head": rng.randint(10, 12)}


def _qkv(g: torch.Generator, s: dict, seq_q: int, seq_k: int) -> tuple[torch.Tensor, ...]:
    q = torch.randn(s["batch"], s["n_heads"], seq_q, s["d_head"], generator=g)
    k = torch.randn(s["batch"], s["n_heads"], seq_k, s["d_head"], generator=g)
    v = torch.randn(s["batch"], s["n_heads"], seq_k, s["d_head"], generator=g)
    return q, k, v


# --- the step-by-step functions, and the wrong ways to write them ------------------------------


def _scores_unscaled(q, k):
    return q @ k.transpose(-2, -1)


def _scores_by_d_head(q, k):
    return q @ k.transpose(-2, -1) / q.shape[-1]


def _scores_swapped(q, k):
    return k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1])


def _allowed(seq_q: int, seq_k: int, device, diagonal_shift: int = 0, top_left: bool = False) -> torch.Tensor:
    ones = torch.ones(seq_q, seq_k, dtype=torch.bool, device=device)
    return torch.tril(ones, diagonal=(0 if top_left else seq_k - seq_q) + diagonal_shift)


def _mask_variant(fill: float = float("-inf"), diagonal_shift: int = 0, top_left: bool = False):
    def mask(scores):
        seq_q, seq_k = scores.shape[-2:]
        if seq_q > seq_k:
            raise ValueError(f"seq_q = {seq_q} > seq_k = {seq_k}")
        return scores.masked_fill(~_allowed(seq_q, seq_k, scores.device, diagonal_shift, top_left), fill)

    return mask


_mask_zero = _mask_variant(fill=0.0)
_mask_hides_self = _mask_variant(diagonal_shift=-1)
_mask_sees_next = _mask_variant(diagonal_shift=1)
_mask_top_left = _mask_variant(top_left=True)


def _mask_from_values(scores):
    # tril zeroes the future, then every 0 is taken for a masked entry: allowed zeros too
    seq_q, seq_k = scores.shape[-2:]
    if seq_q > seq_k:
        raise ValueError(f"seq_q = {seq_q} > seq_k = {seq_k}")
    kept = torch.tril(scores, diagonal=seq_k - seq_q)
    return kept.masked_fill(kept == 0, float("-inf"))


def _mask_additive(scores):
    # adds a matrix of 0 and -inf: -inf only where the score was finite (inf - inf = nan)
    seq_q, seq_k = scores.shape[-2:]
    if seq_q > seq_k:
        raise ValueError(f"seq_q = {seq_q} > seq_k = {seq_k}")
    allowed = _allowed(seq_q, seq_k, scores.device)
    return scores + torch.zeros(seq_q, seq_k, dtype=scores.dtype, device=scores.device).masked_fill(~allowed, float("-inf"))


def _no_masked_key(case: Case) -> bool:
    """Gradients of causal_mask are compared where nothing is masked: at a masked entry the
    output is -inf whatever the score, so a right answer may pass 0 back (masked_fill, where) or
    1 (adding a -inf mask); the softmax after it multiplies either by a weight of 0."""
    scores = case.args[0]
    return scores.shape[-2] == 1


def _pattern_clamped(scores):
    return torch.softmax(scores.clamp(min=-20.0), dim=-1)


_EXACT_ZERO = (
    "a masked score of -inf must get a weight of exactly 0, and very negative finite scores "
    "(-1e4, -40) are real scores, not masked ones: keep -inf as it is (no clamp, no finite stand-in "
    "such as -20 or -1e4) and let torch.softmax subtract each row's maximum."
)


def _diagnose_pattern(case: Case, actual, expected):
    """A fact about this case: masked (-inf) scores got a weight, or finite scores were flattened."""
    if not (isinstance(actual, torch.Tensor) and actual.shape == expected.shape and actual.dtype == expected.dtype):
        return None
    if actual.device.type == "meta":
        return None
    if _hides_nan(actual, expected):
        return _NAN_ROW
    scores = case.args[0].to(actual.device)
    live = ~torch.isnan(expected)  # rows of only -inf are nan: their "weights" are not weights
    if bool((actual[torch.isneginf(scores) & live] != 0).any()):
        return _EXACT_ZERO  # a masked key got a weight
    # rows whose different, very negative finite scores got one and the same weight: flattened
    low = (torch.isfinite(scores) & (scores < -20)).reshape(-1, scores.shape[-1])
    got, want = actual.reshape(low.shape).double(), expected.reshape(low.shape).double()
    for row in range(low.shape[0]):
        picked = low[row]
        if int(picked.sum()) > 1 and float(got[row][picked].std()) == 0.0 and float(want[row][picked].std()) > 1e-6:
            return _EXACT_ZERO
    return None


def _pattern_over_queries(scores):
    return scores.softmax(dim=-2)


def _pattern_without_nan(scores):
    # a finite stand-in for -inf: a row of only -inf becomes uniform instead of nan
    return torch.softmax(torch.nan_to_num(scores, neginf=-1e9), dim=-1)


_NAN_ROW = (
    "a row with nothing to attend to must come out as nan: the softmax of a row of only -inf is "
    "0/0, and torch.softmax gives nan. Keep that nan (no nan_to_num before or after, no finite "
    "stand-in such as -1e9 for -inf): a uniform or all-zero row would hide a query that saw no key at all."
)


def _hides_nan(actual, expected) -> bool:
    """Whether the answer has finite numbers where the reference has nan or inf (a fact about this case)."""
    if not (isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor)
            and actual.shape == expected.shape and actual.device.type != "meta" and expected.is_floating_point()):
        return False
    return bool((~torch.isfinite(expected.cpu()) & torch.isfinite(actual.detach().cpu())).any())


def _diagnose_output(case: Case, actual, expected):
    if _hides_nan(actual, expected):
        return ("return pattern @ v as it is: a nan in the pattern (the row of a query that saw only padding keys) "
                "must give nan in the output, and an infinite weight an infinite or nan output; do not replace "
                "them (nan_to_num) or skip them: they show a query that had nothing to attend to, or a bug upstream.")
    return None


def _finite_arguments(case: Case) -> bool:
    """Gradients are compared where every argument is finite."""
    return all(bool(torch.isfinite(t).all()) for t in case.args if isinstance(t, torch.Tensor)
               and t.is_floating_point() and t.device.type != "meta")


def _pattern_gradients(case: Case) -> bool:
    """Gradients of attention_pattern are compared where every row has a finite softmax, and not
    on the float64 case compared without an absolute tolerance: there a right formula's gradient
    may be a tiny number where the reference's is exactly 0."""
    return case.label != _EMPTY_ROW and not case.label.startswith(_SPREAD)


def _sdpa_variant(scale: bool = True, fill: float = float("-inf"), after_softmax: bool = False,
                  query_softmax: bool = False, padding_kept: bool = False):
    def attend(q, k, v, causal=True, key_padding_mask=None):
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        seq_q, seq_k = scores.shape[-2:]
        blocked = torch.zeros(seq_q, seq_k, dtype=torch.bool, device=q.device)
        if causal:
            blocked = ~_allowed(seq_q, seq_k, q.device)
        if key_padding_mask is not None:
            padding = ~key_padding_mask if padding_kept else key_padding_mask
            blocked = blocked | padding[:, None, None, :]
        if after_softmax:
            pattern = scores.softmax(dim=-1).masked_fill(blocked, 0.0)
        else:
            pattern = scores.masked_fill(blocked, fill).softmax(dim=-2 if query_softmax else -1)
        return pattern @ v

    return attend


def _split_view_only(x, n_heads):
    batch, seq, d_model = x.shape
    if d_model % n_heads:
        raise ValueError("not divisible")
    return x.reshape(batch, n_heads, seq, d_model // n_heads)


def _merge_reshape_only(x):
    batch, n_heads, seq, d_head = x.shape
    return x.reshape(batch, seq, n_heads * d_head)


def _split_interleaved(x, n_heads):
    # "(d_head n_heads)": head h gets columns h, h + n_heads, h + 2 n_heads, ...
    batch, seq, d_model = x.shape
    if d_model % n_heads:
        raise ValueError("not divisible")
    return x.view(batch, seq, d_model // n_heads, n_heads).permute(0, 3, 1, 2)


def _merge_interleaved(x):
    batch, n_heads, seq, d_head = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, seq, d_head * n_heads)


_INTERLEAVED = (
    "the heads are interleaved: head h must get the columns h*d_head .. (h+1)*d_head - 1, a block "
    "of d_head neighbours, i.e. \"(n_heads d_head)\" in einops, with n_heads first; "
    "\"(d_head n_heads)\" (or viewing as (batch, seq, d_head, n_heads)) gives head h every n_heads-th column."
)


# --- cases ------------------------------------------------------------------------------------


def _cases_attention_scores(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for label in ("(batch, n_heads, seq, d_head)", "other sizes"):
        s = _sizes(rng)
        q, k, _ = _qkv(g, s, s["seq_q"], s["seq_k"])
        cases.append(Case((q, k), label=label))
    cases.append(Case((torch.randn(7, 5, generator=g), torch.randn(9, 5, generator=g)), label="one head: (seq, d_head)"))
    cases.append(Case((torch.randn(2, 6, 16, generator=g).double(), torch.randn(2, 6, 16, generator=g).double()), label="float64, seq_q = seq_k"))
    return cases


def _cases_causal_mask(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    s = _sizes(rng)
    # the first case is the one the special-value families are derived from: all sizes differ
    cases = [
        Case((torch.randn(s["batch"], s["n_heads"], 6, 9, generator=g),), label="fewer queries than keys: they are the last positions"),
        Case((torch.randn(s["batch"], s["n_heads"], 7, 7, generator=g),), label="seq_q = seq_k"),
        Case((torch.randn(2, 1, 9, generator=g),), label="one new query (a KV cache)"),
        Case((torch.randn(5, 5, generator=g),), label="a single (seq, seq) matrix"),
        Case((torch.randn(2, 4, 7, generator=g).double(),), label="float64 scores"),
    ]
    cases.append(Case((torch.zeros(2, 5),), label="scores of exactly 0 (an allowed score may be 0)"))
    # seq_q = 3 of seq_k = 5: the masked (future) entries are [0, 3], [0, 4] and [1, 4]
    future = torch.randn(3, 5, generator=g)
    future[0, 3], future[0, 4], future[1, 4], future[2, 1] = float("inf"), float("-inf"), float("inf"), float("inf")
    cases.append(Case((future,), label="masked scores of +inf and -inf, and an allowed +inf (masked ones become -inf)"))
    case = Case((torch.randn(2, 6, 4, generator=g),), label="more queries than keys", mentions=("6", "4"))
    cases.append(case)
    meta = Case((torch.randn(2, 3, 6, 6, generator=g),), label="the meta device (finds tensors made without device=)")
    meta.device = "meta"
    cases.append(meta)
    return cases


_SPREAD = "float64 masked scores up to about 100 apart"
_EMPTY_ROW = "a row of only -inf (a query with no key to attend to: nan)"


def _cases_attention_pattern(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    s = _sizes(rng)
    scores = torch.randn(s["batch"], s["n_heads"], s["seq_q"], s["seq_k"], generator=g)
    masked = ref.causal_mask(torch.randn(2, 3, 6, 6, generator=g))
    cases = [
        Case((scores,), label="(batch, n_heads, seq_q, seq_k)"),
        Case((masked,), label="causally masked scores (-inf above the diagonal)"),
        Case((1000 * torch.randn(2, 5, 8, generator=g),), label="large scores: exp would overflow"),
        Case((torch.randn(3, 9, generator=g).double(),), label="float64"),
        Case((ref.causal_mask(3 * torch.randn(2, 5, 5, generator=g) - 40),), label="masked scores whose allowed scores are all below -20"),
        Case((ref.causal_mask(torch.randn(3, 4, 6, generator=g) - 1e4),), label="masked scores whose allowed scores are near -1e4"),
    ]
    # compared exactly where the weight is 0 and relatively elsewhere (the spec's tolerance64 has
    # no absolute part): a masked key's weight is exactly 0, and a score 100 below the row's
    # maximum gets exp(-100), not a clamped exp(-80) and not 0
    spread = ref.causal_mask(30 * torch.randn(2, 6, 6, generator=g, dtype=torch.float64))
    cases.append(Case((spread,), label=f"{_SPREAD} (weights like exp(-100), exact zeros)"))
    # a row with nothing to attend to (a query that saw only padding): only -inf, softmax 0/0 = nan
    empty = torch.randn(4, 5, generator=g)
    empty[1] = float("-inf")
    empty[3, 1:] = float("-inf")
    cases.append(Case((empty,), label=_EMPTY_ROW))
    return cases


def _cases_attention_output(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    s = _sizes(rng)
    pattern = torch.randn(s["batch"], s["n_heads"], s["seq_q"], s["seq_k"], generator=g).softmax(-1)
    v = torch.randn(s["batch"], s["n_heads"], s["seq_k"], s["d_head"], generator=g)
    square = ref.causal_mask(torch.randn(2, 6, 6, generator=g)).softmax(-1)
    return [
        Case((pattern, v), label="(batch, n_heads, seq_q, seq_k) and (batch, n_heads, seq_k, d_head)"),
        Case((square, torch.randn(2, 6, 11, generator=g)), label="a causal pattern"),
        Case((square.double(), torch.randn(2, 6, 11, generator=g).double()), label="float64"),
        Case((square[0], torch.randn(6, 5, generator=g)), label="one head: (seq_q, seq_k) and (seq_k, d_head)"),
    ]


def _padding(batch: int, seq_k: int, rng: random.Random) -> torch.Tensor:
    """True where a key is padding: the last few positions of some sequences (never all)."""
    mask = torch.zeros(batch, seq_k, dtype=torch.bool)
    for b in range(batch):
        n = rng.randint(0, seq_k // 2)
        if n:
            mask[b, seq_k - n:] = True
    mask[0, -1] = True  # at least one padded key
    return mask


def _cases_sdpa(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    s = _sizes(rng)
    q, k, v = _qkv(g, s, 7, 7)
    cases.append(Case((q, k, v), label="causal self-attention"))
    cases.append(Case((q, k, v, False), label="bidirectional (causal=False)"))
    q, k, v = _qkv(g, s, 3, s["seq_k"])
    cases.append(Case((q, k, v, True), label="causal, fewer queries than keys"))
    q, k, v = _qkv(g, s, 7, 7)
    cases.append(Case((q, k, v, True, _padding(s["batch"], 7, rng)), label="causal with padding on the right"))
    q, k, v = _qkv(g, s, s["seq_q"], s["seq_k"])
    cases.append(Case((q, k, v, False, _padding(s["batch"], s["seq_k"], rng)), label="bidirectional with padding (cross-attention)"))
    # every real score near -1e5: a finite stand-in for -inf (-1e4, -1e9 ...) is not below them all
    u = torch.randn(s["d_head"], generator=g)
    k = u.expand(s["batch"], s["n_heads"], 6, s["d_head"]).clone()
    q = -1e5 * u.expand(s["batch"], s["n_heads"], 4, s["d_head"]).clone()
    v = torch.randn(s["batch"], s["n_heads"], 6, s["d_head"], generator=g)
    cases.append(Case((q, k, v, False, _padding(s["batch"], 6, rng)), label="padding, and real scores of about -1e5"))
    # padding keys that score far above the real ones: a finite penalty (- 1e9) leaves them on top
    padding = _padding(s["batch"], 7, rng)
    u = torch.randn(s["d_head"], generator=g)
    q = 1e19 * u.expand(s["batch"], s["n_heads"], 5, s["d_head"]).clone()
    k = torch.where(padding[:, None, :, None], torch.zeros(()), -u).expand(-1, s["n_heads"], -1, -1).clone()
    v = torch.randn(s["batch"], s["n_heads"], 7, s["d_head"], generator=g)
    cases.append(Case((q, k, v, False, padding), label=_PADDING_ON_TOP))
    # queries with no key left: a sequence of padding only, and left padding under the causal mask
    # (its first queries see only padding keys); their softmax rows are 0/0 = nan
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[0], padding[1, :2] = True, True
    q, k, v = _qkv(g, {**s, "batch": 2}, 6, 6)
    cases.append(Case((q, k, v, True, padding), label=_NO_KEY_LEFT))
    return cases


_PADDING_ON_TOP = "padding keys whose scores lie some 1e19 above the real keys' scores"
_NO_KEY_LEFT = ("a sequence of padding only, and left padding with the causal mask "
                "(queries that see no key at all: nan)")


def _sdpa_gradients(case: Case) -> bool:
    """Gradients are compared where every query has a key to attend to (elsewhere they are nan)."""
    return case.label != _NO_KEY_LEFT


def _diagnose_sdpa(case: Case, actual, expected):
    """Facts about this case: a query with no key left got numbers, padding keys scored on top."""
    if _hides_nan(actual, expected):
        return (
            "a query whose keys are all masked (here: all padding, or only padding before it under the "
            "causal mask) has nothing to attend to: its scores are all -inf, its softmax is 0/0 = nan, and "
            "so is its output, as exercises 1-4 put together give it. Keep the nan (F.scaled_dot_product_attention "
            "returns 0 there, which hides such a query); mask with -inf, not a finite number."
        )
    if case.label == _PADDING_ON_TOP:
        return (
            "in this case the padding keys score far above the real ones (some 1e19): a padding key must get "
            "weight exactly 0 whatever its score, so set its score to -inf (masked_fill), not lower it by a "
            "finite amount such as 1e9 or fill it with a finite number."
        )
    return None


def _cases_split_heads(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for n_heads, d_head in ((3, 4), (4, 5), (rng.randint(2, 3), rng.randint(6, 7))):
        cases.append(Case((torch.randn(2, rng.randint(8, 9), n_heads * d_head, generator=g), n_heads), label=f"n_heads={n_heads}"))
    # n_heads = d_head: code that tells the two axes apart by their sizes meets a tie
    cases.append(Case((torch.randn(3, 5, 16, generator=g), 4), label="n_heads = d_head = 4"))
    cases.append(Case((torch.randn(2, 5, 10, generator=g), 3), label="d_model not divisible by n_heads",
                      mentions=("not divisible",)))
    return cases


def _cases_merge_heads(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = [Case((torch.randn(2, n, rng.randint(6, 7), d, generator=g),), label=f"{n} heads of {d}") for n, d in ((3, 4), (4, 5), (5, 8))]
    # n_heads = d_head: code that tells the two axes apart by their sizes meets a tie
    cases.append(Case((torch.randn(3, 4, 5, 4, generator=g),), label="4 heads of 4 (n_heads = d_head)"))
    return cases


def _attention_weights(g: torch.Generator, d_model: int, n_heads: int) -> dict[str, torch.Tensor]:
    d_head = d_model // n_heads
    return {
        "W_Q": torch.randn(n_heads, d_model, d_head, generator=g) * 0.3,
        "W_K": torch.randn(n_heads, d_model, d_head, generator=g) * 0.3,
        "W_V": torch.randn(n_heads, d_model, d_head, generator=g) * 0.3,
        "W_O": torch.randn(n_heads, d_head, d_model, generator=g) * 0.3,
        "b_Q": torch.randn(n_heads, d_head, generator=g) * 0.3,
        "b_K": torch.randn(n_heads, d_head, generator=g) * 0.3,
        "b_V": torch.randn(n_heads, d_head, generator=g) * 0.3,
        "b_O": torch.randn(d_model, generator=g) * 0.3,
    }


# what exercise 8 says to store; exercise 10 (forward_cached) may read n_heads and d_head
_PROMISED = ("n_heads", "d_head", "causal", "fused")


def _cases_Attention(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    d_model, n_heads = 12, 3  # d_head = 4; batch 2, seq 7, seq_kv 5: all different
    w = _attention_weights(g, d_model, n_heads)
    x = torch.randn(2, 7, d_model, generator=g)
    cot = torch.randn(2, 7, d_model, generator=g)
    context = torch.randn(2, 9, d_model, generator=g)  # longer than x: a causal mask would hide some of it
    other_context = torch.randn(2, 9, d_model, generator=g)  # another sentence of the same shape
    for fused in (False, True):
        name = "fused" if fused else "step by step"
        watch = ("scaled_dot_product_attention",)  # the switch decides which path runs

        def case(extra: dict, inputs: tuple, label: str, **options):
            config = {"d_model": d_model, "n_heads": n_heads, "fused": fused, **extra}
            return module_case(config, w, inputs, cot, f"{label}, {name}", watch=watch, attributes=_PROMISED, **options)

        cases.append(case({}, (x,), "causal"))
        cases.append(case({"causal": False}, (x,), "bidirectional"))
        cases.append(case({}, (x, context), "cross-attention"))
        cases.append(case({}, (x, None, _padding(2, 7, rng)), "causal with padding"))
        cases.append(case({"causal": False}, (x, None, _padding(2, 7, rng)), "bidirectional with padding"))
        cases.append(case({}, (x, context, _padding(2, 9, rng)), "cross-attention with padding"))
        # the same module called again with another context of the same shape: nothing of the
        # first context may be kept
        cases.append(case({}, (x, context), "cross-attention, then again with another context of the same shape",
                          again=(x, other_context)))
        # the switches are attributes that forward reads each time: set after building, they count
        switched = module_case({"d_model": d_model, "n_heads": n_heads, "fused": fused}, w, (x,), cot,
                               f"built with fused={fused}, then m.fused = {not fused} set", watch=watch,
                               attributes=_PROMISED)
        cases.append(switch_case(switched, {"fused": not fused}))
        cases.append(switch_case(case({}, (x,), "built with causal=True, then m.causal = False set"), {"causal": False}))
        meta = case({}, (x, None, _padding(2, 7, rng)), "the meta device (finds tensors made without device=)")
        meta.device = "meta"
        cases.append(meta)
    w = _attention_weights(g, 20, 4)
    x = torch.randn(3, 6, 20, generator=g)
    cases.append(module_case({"d_model": 20, "n_heads": 4, "causal": False, "fused": True}, w, (x,), torch.randn(3, 6, 20, generator=g),
                             "other sizes", attributes=_PROMISED))
    cases.append(module_case({"d_model": 10, "n_heads": 3}, {}, (torch.randn(1, 2, 10, generator=g),), None, "d_model not divisible by n_heads"))
    cases.append(init_case({"d_model": 240, "n_heads": 4}, "the initial parameters: N(0, 0.02^2) weights, zero biases", seed))
    return cases


def _project(attn, x: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Queries from x, keys and values from source, biases included: (batch, n_heads, seq, d_head)."""
    q = torch.einsum("bsm,hmd->bhsd", x, attn.W_Q) + attn.b_Q[:, None, :]
    k = torch.einsum("bsm,hmd->bhsd", source, attn.W_K) + attn.b_K[:, None, :]
    v = torch.einsum("bsm,hmd->bhsd", source, attn.W_V) + attn.b_V[:, None, :]
    return q, k, v


def _combine(attn, z: torch.Tensor) -> torch.Tensor:
    """The heads' outputs summed into the residual stream through W_O, plus b_O."""
    return torch.einsum("bhsd,hdm->bsm", z, attn.W_O) + attn.b_O


class _AttentionVariant(ref.Attention):
    """The reference module with one step replaced by a wrong one (the wrong variants below)."""

    attend = staticmethod(ref.scaled_dot_product_attention)

    def is_causal(self, q: torch.Tensor, k: torch.Tensor, context) -> bool:
        return self.causal and context is None

    def forward(self, x, context=None, key_padding_mask=None):
        q, k, v = _project(self, x, x if context is None else context)
        return _combine(self, type(self).attend(q, k, v, self.is_causal(q, k, context), key_padding_mask))


def _attention_with(attend, name: str):
    variant = type(name, (_AttentionVariant,), {"attend": staticmethod(attend)})
    variant.__name__ = "Attention"
    return variant


class _AttentionNoBias(_AttentionVariant):
    def forward(self, x, context=None, key_padding_mask=None):
        return super().forward(x, context, key_padding_mask) - self.b_O


class _AttentionIgnoreBuffer(ref.Attention):
    """ARENA's IGNORE: a constant kept as a (persistent) buffer, so it is part of the state."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("IGNORE", torch.tensor(-1e5))


_AttentionIgnoreBuffer.__name__ = "Attention"


class _AttentionCausalAcross(_AttentionVariant):
    def is_causal(self, q, k, context):  # masks a context too, wherever it is long enough
        return self.causal and q.shape[-2] <= k.shape[-2]


def _cases_KVCache(seed: int) -> list[Case]:
    g = _gen(seed)

    def kv(n, dtype=torch.float32):
        return torch.randn(2, 3, n, 4, generator=g).to(dtype), torch.randn(2, 3, n, 4, generator=g).to(dtype)

    def small(n):  # one head of one number: a long cache that stays within the output budget
        return torch.randn(1, 1, n, 1, generator=g), torch.randn(1, 1, n, 1, generator=g)

    meta = cache_case([kv(2), kv(1)], label="the meta device (finds tensors made without device=)")
    meta.device = "meta"  # the cache keeps the keys' device: a CPU stand-in shows here as on a GPU
    return [
        cache_case([kv(5), kv(1), kv(1)], label="a prompt of 5, then one token at a time"),
        cache_case([kv(1)], label="one update"),
        cache_case([kv(2), kv(3), kv(1), kv(4)], label="pieces of several lengths"),
        cache_case([kv(12)] + [kv(1) for _ in range(10)], label="a long prompt, then 10 tokens"),
        # two caches alive at once (one per layer of a model), fed in turn: nothing is shared
        cache_case([kv(2), kv(1), kv(1)], beside=[kv(3), kv(1), kv(2)], label="two caches at once (one per layer)"),
        # no fixed capacity: past GPT-2's context of 1,024 positions (small heads keep it cheap)
        cache_case([small(9000), small(1), small(99)], label="9,100 positions: a cache has no size limit"),
        # a model run in half precision: the cache keeps the keys' dtype
        cache_case([kv(3, torch.float16), kv(1, torch.float16)], label="float16 keys and values"),
        cache_case([kv(2, torch.bfloat16), kv(1, torch.bfloat16)], label="bfloat16 keys and values"),
        meta,
    ]


class _CacheKeepsLast:
    def __init__(self):
        self.k = self.v = None

    def update(self, k_new, v_new):
        self.k, self.v = k_new, v_new
        return self.k, self.v

    def __len__(self):
        return 0 if self.k is None else self.k.shape[-2]


class _CacheShared(_CacheKeepsLast):
    # the pieces live in lists of the class: every cache appends to the same ones
    _ks: list = []
    _vs: list = []

    def __init__(self):
        self.k = self.v = None
        self._ks.clear()
        self._vs.clear()

    def update(self, k_new, v_new):
        self._ks.append(k_new)
        self._vs.append(v_new)
        self.k, self.v = torch.cat(self._ks, dim=-2), torch.cat(self._vs, dim=-2)
        return self.k, self.v


class _CacheEmptyStart(_CacheKeepsLast):
    def __init__(self):
        self.k, self.v = torch.empty(0), torch.empty(0)

    def update(self, k_new, v_new):
        self.k, self.v = torch.cat([self.k, k_new], dim=-2), torch.cat([self.v, v_new], dim=-2)
        return self.k, self.v

    def __len__(self):
        return self.k.shape[-2] if self.k.dim() > 1 else 0


def _cases_forward_cached(seed: int) -> list[Case]:
    g = _gen(seed)
    w = _attention_weights(g, 12, 3)
    x = torch.randn(2, 9, 12, generator=g)
    cases = [
        decoding_case(w, x, [1] * 9, label="one token at a time"),
        decoding_case(w, x, [5, 1, 1, 1, 1], label="a prompt of 5, then one token at a time"),
        decoding_case(w, x, [9], label="the whole sequence at once"),
        decoding_case(w, x, [3, 4, 2], label="pieces of several lengths"),
    ]
    w = _attention_weights(g, 20, 4)
    cases.append(decoding_case(w, torch.randn(3, 6, 20, generator=g), [2, 1, 3], label="other sizes"))
    # more than 1,024 keys: every new token attends to all of them (no window)
    w = _attention_weights(g, 4, 2)
    cases.append(decoding_case(w, torch.randn(1, 1100, 4, generator=g), [1090, 4, 6],
                               label="1,100 positions: each new token attends to all 1,100 keys"))
    return cases


def _cached_without_offset(attn, x_new, cache):
    # the new queries are treated as the first positions: the top-left mask of is_causal
    q, k, v = _project(attn, x_new, x_new)
    k, v = cache.update(k, v)
    scores = _mask_top_left(ref.attention_scores(q, k))
    return _combine(attn, ref.attention_output(ref.attention_pattern(scores), v))


def _cached_new_keys_only(attn, x_new, cache):
    # forgets the cache: attends to the new positions only
    q, k, v = _project(attn, x_new, x_new)
    cache.update(k, v)
    return _combine(attn, ref.scaled_dot_product_attention(q, k, v, causal=True))


# ----------------------------------------------------------------------------------------------

_NO_SCALE = "divide the scores by sqrt(d_head): without it their variance grows with d_head and the softmax saturates."
_BY_D_HEAD = "divide by the square root of d_head, not by d_head itself."
_SWAPPED = "rows are queries and columns are keys: scores[i, j] = q_i . k_j, so q @ k^T."
_ZERO_FILL = "fill masked scores with -inf, not 0: exp(0) = 1 still gives a masked key weight."
_AFTER_SOFTMAX = "mask the scores before the softmax; zeroing the pattern afterwards leaves rows that no longer sum to 1."
_QUERY_AXIS = "the softmax runs over the keys (the last axis): each query's weights sum to 1."
_TOP_LEFT = "the queries are the last seq_q of the seq_k positions (query i sits at seq_k - seq_q + i), not the first."

SPECS = [
    Spec(
        name="attention_scores",
        chapter=CHAPTER,
        reference=ref.attention_scores,
        make_cases=_cases_attention_scores,
        dims=_HEADS + ("seq_q", "seq_k"),
        mistakes=[
            Mistake("no scale", _NO_SCALE, _scores_unscaled),
            Mistake("by d_head", _BY_D_HEAD, _scores_by_d_head),
            Mistake("swapped", _SWAPPED, _scores_swapped),
        ],
        # not "large": q . k of 1e3-sized terms cancels to O(1), and another summation order (a
        # right answer) then differs by more than float32's tolerances
        families={0: ("zeros", "float16")},
    ),
    Spec(
        name="causal_mask",
        chapter=CHAPTER,
        reference=ref.causal_mask,
        make_cases=_cases_causal_mask,
        dims=_HEADS + ("seq_q", "seq_k"),
        mistakes=[
            Mistake("zero", _ZERO_FILL, _mask_zero),
            Mistake("hides itself", "a query may attend to its own position: the diagonal stays unmasked.", _mask_hides_self),
            Mistake("sees the next", "the key right after a query's position is the future: mask it too.", _mask_sees_next),
            Mistake("top-left", _TOP_LEFT, _mask_top_left),
            Mistake("from the values", "decide what to mask from the positions alone (torch.tril of a boolean "
                    "matrix of ones), never from the scores' values: an allowed score can be exactly 0, and "
                    "it must stay 0.", _mask_from_values),
            Mistake("added", "a masked score becomes -inf whatever it was: adding a mask of 0 and -inf turns a "
                    "masked +inf into nan (inf - inf) and leaves a masked nan as nan. Set the masked scores with "
                    "masked_fill(~allowed, float('-inf')) instead of adding.", _mask_additive),
        ],
        gradients=_no_masked_key,
        families={0: ("zeros", "neg_inf", "inf", "float16", "bfloat16")},
    ),
    Spec(
        name="attention_pattern",
        chapter=CHAPTER,
        reference=ref.attention_pattern,
        make_cases=_cases_attention_pattern,
        mistakes=[
            Mistake("query axis", _QUERY_AXIS, _pattern_over_queries),
            Mistake("clamped", _EXACT_ZERO, _pattern_clamped),
            Mistake("finite for -inf", _NAN_ROW, _pattern_without_nan),
        ],
        diagnose=_diagnose_pattern,
        gradients=_pattern_gradients,
        families={0: ("neg_inf", "shift", "large", "ties", "float16")},
        # float64 weights are compared relatively, with no absolute part: exactly 0 where a key is
        # masked, exp(-100) where a score lies 100 below its row's maximum (see the cases)
        tolerance64=(1e-9, 0.0),
    ),
    Spec(
        name="attention_output",
        chapter=CHAPTER,
        reference=ref.attention_output,
        make_cases=_cases_attention_output,
        dims=_HEADS + ("seq_q", "d_head"),
        families={0: ("zeros", "inf", "float16")},
        diagnose=_diagnose_output,
        gradients=_finite_arguments,
    ),
    Spec(
        name="scaled_dot_product_attention",
        chapter=CHAPTER,
        reference=ref.scaled_dot_product_attention,
        make_cases=_cases_sdpa,
        families={0: ("float64",)},
        gradients=_sdpa_gradients,
        diagnose=_diagnose_sdpa,
        dims=_HEADS + ("seq_q", "d_head"),
        uses={f.__name__: f for f in (ref.attention_scores, ref.causal_mask, ref.attention_pattern, ref.attention_output)},
        mistakes=[
            Mistake("no scale", _NO_SCALE, _sdpa_variant(scale=False)),
            Mistake("zero", _ZERO_FILL, _sdpa_variant(fill=0.0)),
            Mistake("after softmax", _AFTER_SOFTMAX, _sdpa_variant(after_softmax=True)),
            Mistake("query axis", _QUERY_AXIS, _sdpa_variant(query_softmax=True)),
            Mistake("padding kept", "key_padding_mask is True where a key is padding: those keys are the ones to hide.", _sdpa_variant(padding_kept=True)),
        ],
        forbids={"scaled_dot_product_attention": (
            "this exercise builds attention step by step from your exercises 1-4 (scores, causal mask, "
            "padding mask, softmax, weighted sum). PyTorch's fused kernel F.scaled_dot_product_attention "
            "belongs to Attention's fused=True path (exercise 8), which is compared with this one."
        )},
    ),
    Spec(
        name="split_heads",
        chapter=CHAPTER,
        reference=ref.split_heads,
        make_cases=_cases_split_heads,
        families={0: ("bfloat16", "float64")},
        dims=("batch", "n_heads", "seq", "d_head"),
        mistakes=[
            Mistake("view only", "a view straight to (batch, n_heads, seq, d_head) cuts the memory into blocks of positions: view as (batch, seq, n_heads, d_head), then transpose.", _split_view_only),
            Mistake("interleaved", _INTERLEAVED, _split_interleaved),
        ],
    ),
    Spec(
        name="merge_heads",
        chapter=CHAPTER,
        reference=ref.merge_heads,
        make_cases=_cases_merge_heads,
        families={0: ("bfloat16", "float64")},
        dims=("batch", "seq", "d_model"),
        mistakes=[
            Mistake("reshape only", "move the heads back behind seq (transpose) before joining them: a reshape alone mixes positions.", _merge_reshape_only),
            Mistake("interleaved", _INTERLEAVED, _merge_interleaved),
        ],
    ),
    Spec(
        name="Attention",
        chapter=CHAPTER,
        reference=ref.Attention,
        make_cases=_cases_Attention,
        driver=switchable_module_driver,
        dims=("batch", "seq", "d_model"),
        uses={f.__name__: f for f in (ref.attention_scores, ref.causal_mask, ref.attention_pattern,
                                      ref.attention_output, ref.scaled_dot_product_attention,
                                      ref.split_heads, ref.merge_heads, ref.fused_attention)},
        mistakes=[
            Mistake("no scale", _NO_SCALE, _attention_with(_sdpa_variant(scale=False), "NoScale")),
            Mistake("after softmax", _AFTER_SOFTMAX, _attention_with(_sdpa_variant(after_softmax=True), "After")),
            Mistake("no b_O", "add the output bias b_O after summing the heads through W_O.", _AttentionNoBias),
            Mistake("causal across", "the causal mask is for self-attention only: with a context, every query sees every key of it.", _AttentionCausalAcross),
            Mistake("IGNORE buffer", "a buffer registered with register_buffer is part of the module's state_dict, like a "
                    "parameter, so the check's weights (exactly the eight parameters) do not load into it. Masking "
                    "needs no stored constant: masked_fill with float('-inf'); or, if you keep one, register it "
                    "with persistent=False, which keeps it out of the state_dict.", _AttentionIgnoreBuffer),
        ],
        diagnose=diagnose_initialisation,
        error_hints={
            "RuntimeError: attn_mask should not be set when is_causal": (
                "F.scaled_dot_product_attention does not take attn_mask together with is_causal=True: the "
                "CPU's kernel may let it pass, a GPU's refuses it (this case runs on the `meta` device, "
                "which refuses it as a GPU does). With a padding mask, put the causal triangle into the "
                "boolean attn_mask yourself (True = may attend) and leave is_causal=False."
            ),
        },
        points=2,
        tolerance=(2e-4, 5e-5),  # gradients are float32 sums over batch, seq and heads
    ),
    Spec(
        name="KVCache",
        chapter=CHAPTER,
        reference=ref.KVCache,
        make_cases=_cases_KVCache,
        driver=cache_driver,
        mistakes=[
            Mistake("keeps the last", "update appends the new keys and values to the cached ones (along seq) and returns all of them.", _CacheKeepsLast),
            Mistake("empty start", "an empty cache holds None (self.k = self.v = None, as the exercise says), and the first update "
                    "stores the new keys and values as they are. A stand-in such as torch.empty(0) is float32 and on the CPU: "
                    "torch.cat with it turns float16/bfloat16 keys into float32 (and GPU keys meet a CPU tensor).", _CacheEmptyStart),
            Mistake("shared", "every cache keeps its own keys and values (a model has one cache per layer): store them "
                    "on self (self.k, self.v, set in __init__), not in a list or tensor of the class or module, which "
                    "every cache shares.", _CacheShared),
        ],
    ),
    Spec(
        name="forward_cached",
        chapter=CHAPTER,
        reference=ref.forward_cached,
        make_cases=_cases_forward_cached,
        driver=decoding_driver,
        dims=("batch", "seq", "d_model"),
        uses={f.__name__: f for f in (ref.attention_scores, ref.causal_mask, ref.attention_pattern,
                                      ref.attention_output, ref.scaled_dot_product_attention)},
        mistakes=[
            Mistake("no offset", "the new queries are the last positions, after the cached ones: a top-left causal mask (is_causal) treats them as the first. " + _TOP_LEFT, _cached_without_offset),
            Mistake("no cache", "attend to all keys and values, the cached ones too: update returns them.", _cached_new_keys_only),
        ],
        forbids={"scaled_dot_product_attention": (
            "attend with your scaled_dot_product_attention of exercise 5 (causal=True), whose causal_mask puts the "
            "new queries after the cached keys. PyTorch's F.scaled_dot_product_attention lines its is_causal "
            "triangle up with the first key instead, and this exercise is about that offset."
        )},
        points=2,
    ),
]
