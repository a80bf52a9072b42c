"""Check specs for chapter 2, embeddings: one :class:`Spec` per exercise, in notebook order.

Inputs come from a ``torch.Generator`` seeded by the check's seed, on the CPU. Every dimension of
a case gets its own size (batch 2-3, seq 4-6, d_vocab 7-11, d_model 12-16, ...), so that a swapped
axis always shows as a wrong shape, and the sizes stay small: each check takes milliseconds.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import torch
import torch.nn.functional as F

from solutions import embeddings as ref
from solutions.checks.core import Case, Mistake, Spec
from solutions.checks.modules import fresh_result_driver, init_case, module_case, module_driver

CHAPTER = "02_embeddings"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sizes(rng: random.Random) -> dict[str, int]:
    """One size per dimension name, all different from each other."""
    return {
        "batch": rng.randint(2, 3),
        "seq": rng.randint(4, 6),
        "d_vocab": rng.randint(7, 11),
        "d_model": rng.randint(12, 16),
    }


def _tokens(g: torch.Generator, batch: int, seq: int, d_vocab: int) -> torch.Tensor:
    tokens = torch.randint(0, d_vocab, (batch, seq), generator=g)
    tokens[0, 0], tokens[-1, -1] = 0, d_vocab - 1  # the first and the last id always occur
    return tokens


# --- 1, 2. one_hot_embed and lookup_embed ---------------------------------------------------


def _cases_embed_function(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for label, dtype in [("float32 weights", torch.float32), ("float64 weights", torch.float64), ("random sizes", torch.float32)]:
        s = _sizes(rng)
        tokens = _tokens(g, s["batch"], s["seq"], s["d_vocab"])
        W_E = torch.randn(s["d_vocab"], s["d_model"], generator=g).to(dtype)
        cases.append(Case((tokens, W_E), label=label))
    # the largest id is not used: a one-hot vector sized by the ids alone is too short
    W_E = torch.randn(9, 13, generator=g)
    cases.append(Case((torch.tensor([[1, 2, 3, 2], [0, 1, 1, 3]]), W_E), label="ids that do not reach d_vocab - 1"))
    cases.append(Case((torch.tensor([[4, 4, 4, 4, 4]]), W_E), label="one id repeated"))
    # ids of any integer dtype: torch indexes with int64/int32 only, F.one_hot takes int64 only
    for dtype in (torch.int16, torch.int8):
        cases.append(Case((_tokens(g, 2, 5, 9).to(dtype), W_E), label=f"{str(dtype)[6:]} ids (an integer dtype too)"))
    # uint8 ids shaped like W_E: indexing would read them as a mask and return picked entries
    cases.append(Case((_tokens(g, 9, 13, 9).to(torch.uint8), W_E), label="uint8 ids (torch reads a uint8 index as a mask)"))
    # a vocabulary the size of GPT-2's: ids of 32,768 and more do not fit in int16
    big = torch.randn(40_003, 2, generator=g)
    cases.append(Case((torch.tensor([[40_000, 7, 32_768, 40_002]]), big), label="ids above 32,767 (GPT-2 has 50,257 tokens)"))
    return cases


def _embed_columns(tokens: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
    return W_E.T[tokens.long().clamp(max=W_E.shape[1] - 1)]


def _lookup_as_given(tokens: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
    # a uint8 index is a mask, exactly as a bool one; bool spares the learner torch's warning
    return W_E[tokens.bool() if tokens.dtype == torch.uint8 else tokens]


def _one_hot_as_given(tokens: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
    return F.one_hot(tokens, num_classes=W_E.shape[0]).to(W_E.dtype) @ W_E


def _lookup_not_product(tokens: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
    return W_E[tokens.long()]


_NOT_A_PRODUCT = (
    "compute the product one_hot @ W_E itself: reading rows of W_E is exercise 2. The two agree only "
    "while W_E is finite: in the product every row of W_E is multiplied by 0 or 1, and 0 * inf = nan."
)


_AS_LONG = (
    "convert the ids to int64 first (tokens.long()): the ids may come in any integer dtype, "
    "but torch indexes with int64 or int32 ids only (int16 and int8 are an IndexError), F.one_hot "
    "takes int64 only, and a uint8 (or bool) index is read as a mask that picks entries, not as ids."
)

_EMBED_ERROR_HINTS = {
    "RuntimeError: one_hot is only applicable": _AS_LONG,
    "RuntimeError: (cannot be multiplied|size of tensor|must match|mat1 and mat2)": (
        "the one-hot vectors must have d_vocab entries (the number of rows of W_E), whatever the "
        "largest id in this batch is."
    ),
    "RuntimeError: (dtype|Long|Float|Double)": (
        "one_hot gives integers: convert the one-hot vectors to W_E's dtype before multiplying."
    ),
}


# --- 3. Embed -------------------------------------------------------------------------------


# Every dtype that is not an integer one is refused with a TypeError (a contract sentence: each gets a
# case, so a list of refused dtypes that forgets one shows); every integer dtype is looked up. The
# dtypes the grader's wire does not carry (complex, uint16/32/64) are made where the module runs.
_NOT_INTEGER_DTYPES = ("float16", "bfloat16", "float64", "complex64") + (
    ("float8_e4m3fn",) if hasattr(torch, "float8_e4m3fn") else ())
_WIDE_UNSIGNED_DTYPES = tuple(d for d in ("uint16", "uint32", "uint64") if hasattr(torch, d))


def _cases_Embed(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for label in ("a batch of ids", "other sizes", "other sizes again"):
        s = _sizes(rng)
        tokens = _tokens(g, s["batch"], s["seq"], s["d_vocab"])
        weights = {"W_E": torch.randn(s["d_vocab"], s["d_model"], generator=g)}
        cotangent = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
        # the same module called again on other ids of another shape: nothing is kept between calls
        again = _tokens(g, s["batch"] + 1, s["seq"] - 1, s["d_vocab"]).flip(-1)
        cases.append(module_case({"d_vocab": s["d_vocab"], "d_model": s["d_model"]}, weights, (tokens,), cotangent, label,
                                 attributes=("d_vocab",), again=(again,)))
    # a vocabulary the size of GPT-2's: ids of 32,768 and more do not fit in int16
    big_vocab = {"W_E": torch.randn(40_003, 2, generator=g)}
    cases.append(module_case({"d_vocab": 40_003, "d_model": 2}, big_vocab, (torch.tensor([[40_000, 7, 32_768, 40_002]]),),
                             torch.randn(1, 4, 2, generator=g), "ids above 32,767 (GPT-2 has 50,257 tokens)"))
    weights = {"W_E": torch.randn(9, 12, generator=g)}
    cotangent = torch.randn(2, 3, 12, generator=g)
    for bad, label in [(9, "an id equal to d_vocab"), (-1, "a negative id"), (50, "an id far outside the vocabulary")]:
        # the bad id is not in the first sequence, nor among the first ids: a message that shows
        # the first few ids does not name it
        tokens = torch.tensor([[1, 0, 2, 5, 8, 3, 7], [3, 6, 4, 0, 2, 1, 4]])
        tokens[1, 5] = bad
        case = module_case({"d_vocab": 9, "d_model": 12}, weights, (tokens,), torch.randn(2, 7, 12, generator=g), label)
        case.mentions = (str(bad), "9")  # the exercise: the message names the id and d_vocab
        cases.append(case)
    # several bad ids: the first in reading order (45) is neither the largest, the smallest, the
    # last nor the first found column by column (31)
    tokens = torch.tensor([[1, 0, 2, 5, 8, 3, 7, 6, 1, 4, 45, 2], [3, 31, 4, 57, 2, 6, 5, 1, 23, 0, 40, 4]])
    case = module_case({"d_vocab": 9, "d_model": 12}, weights, (tokens,), torch.randn(2, 12, 12, generator=g),
                       "several ids outside the vocabulary (the first is 45)")
    case.mentions = ("45", "9")
    cases.append(case)
    # the module converted after it is built (model.double()): its output follows W_E's dtype
    w64 = {"W_E": torch.randn(9, 12, generator=g, dtype=torch.float64)}
    cases.append(module_case({"d_vocab": 9, "d_model": 12}, w64, (_tokens(g, 2, 3, 9),),
                             torch.randn(2, 3, 12, generator=g, dtype=torch.float64),
                             "the module converted to float64 (model.double())", dtype="float64"))
    ints = _tokens(g, 2, 3, 9).to(torch.int32)
    cases.append(module_case({"d_vocab": 9, "d_model": 12}, weights, (ints,), cotangent, "int32 ids (an integer dtype too)"))
    # shaped like W_E (d_vocab, d_model): indexed as they are, bool "ids" and uint8 ids would be
    # a mask that silently picks entries
    big = _tokens(g, 9, 12, 9)
    big_cotangent = torch.randn(9, 12, 12, generator=g)
    cases.append(module_case({"d_vocab": 9, "d_model": 12}, weights, (big < 4,), big_cotangent,
                             "bool ids (bool is not an integer dtype)"))
    cases.append(module_case({"d_vocab": 9, "d_model": 12}, weights, (big.to(torch.uint8),), big_cotangent,
                             "uint8 ids (torch reads a uint8 index as a mask)"))
    for dtype in (torch.int16, torch.int8):
        small = _tokens(g, 2, 3, 9).to(dtype)
        cases.append(module_case({"d_vocab": 9, "d_model": 12}, weights, (small,), cotangent, f"{str(dtype)[6:]} ids (an integer dtype too)"))
    # a vocabulary larger than the ids' dtype holds: compared with d_vocab in that dtype, d_vocab
    # itself wraps around (300 is 44 in uint8, 200 is -56 in int8), and valid ids are refused
    for dtype, d_vocab, top in [(torch.uint8, 300, 255), (torch.int8, 200, 127), (torch.int16, 40_003, 32_767)]:
        ids = torch.randint(0, top + 1, (2, 5), generator=g)
        ids[0, 0], ids[1, -1] = top, 100
        cases.append(module_case({"d_vocab": d_vocab, "d_model": 2}, {"W_E": torch.randn(d_vocab, 2, generator=g)},
                                 (ids.to(dtype),), torch.randn(2, 5, 2, generator=g),
                                 f"{str(dtype)[6:]} ids with d_vocab = {d_vocab:,} (more than {str(dtype)[6:]} holds)"))
    for dtype in _WIDE_UNSIGNED_DTYPES:
        ids = _tokens(g, 2, 3, 9)
        cases.append(module_case({"d_vocab": 9, "d_model": 12}, weights, (ids,), cotangent,
                                 f"{dtype} ids (an integer dtype too)", convert=dtype))
    floats = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0]])
    cases.append(module_case({"d_vocab": 9, "d_model": 12}, weights, (floats,), cotangent, "ids of a float dtype"))
    for dtype in _NOT_INTEGER_DTYPES:
        cases.append(module_case({"d_vocab": 9, "d_model": 12}, weights, (torch.tensor([[1, 2, 3], [0, 1, 2]]),), cotangent,
                                 f"{dtype} ids ({dtype} is not an integer dtype)", convert=dtype))
    # seq = 0: an empty batch of ids has no bad id (and no minimum)
    cases.append(module_case({"d_vocab": 9, "d_model": 12}, weights, (torch.zeros(2, 0, dtype=torch.long),),
                             torch.zeros(2, 0, 12), "no ids at all (seq = 0)"))
    cases.append(init_case({"d_vocab": 1000, "d_model": 100}, "W_E as initialised: N(0, 0.02^2)", seed))
    return cases


class _EmbedNoCheck(torch.nn.Module):
    def __init__(self, d_vocab: int, d_model: int):
        super().__init__()
        self.W_E = torch.nn.Parameter(torch.randn(d_vocab, d_model) * 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens.long()]


class _EmbedFloatsOnly(ref.Embed):
    """Refuses floating-point ids only: bool ids reach the indexing, which reads them as a mask."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dtype.is_floating_point:
            raise TypeError(f"tokens must be integers, got {tokens.dtype}")
        if tokens.is_complex():  # read as their real part (without torch's warning)
            tokens = tokens.real
        return ref.Embed.forward(self, tokens.long() if tokens.dtype != torch.bool else tokens.int())


class _EmbedComplexAccepted(ref.Embed):
    """Refuses floating-point and bool ids: complex ids (not floating point for torch) are read as
    their real part."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be integers, got {tokens.dtype}")
        return ref.Embed.forward(self, tokens.real.long() if tokens.is_complex() else tokens)


class _EmbedRangeInOwnDtype(ref.Embed):
    """Compares the ids with d_vocab in their own dtype, before converting them to int64."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise TypeError(f"tokens must be integers, got {tokens.dtype}")
        bad = tokens[(tokens < 0) | (tokens >= self.d_vocab)]
        if bad.numel():
            raise ValueError(f"token id {bad[0].item()} is outside 0..{self.d_vocab - 1} (d_vocab = {self.d_vocab})")
        return self.W_E[tokens.long()]


class _EmbedAsGiven(ref.Embed):
    """Validates, then indexes with the ids in the dtype they came in."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        ref.Embed.forward(self, tokens)
        return _lookup_as_given(tokens, self.W_E)


def diagnose_initialisation(case: Case, actual: Any, expected: Any) -> Optional[str]:
    """A parameter that is never initialised: its statistics are NaN while the case runs."""
    if not (isinstance(actual, dict) and isinstance(actual.get("init"), dict)):
        return None
    for name, stats in actual["init"].items():
        std = stats.get("std") if isinstance(stats, dict) else None
        if isinstance(std, float) and std != std:  # NaN
            return (
                f"{name} is never initialised: torch.empty(...) only reserves memory, whatever numbers "
                f"it held stay there (the check fills them with NaN to show it). Initialise it in "
                f"__init__, e.g. nn.init.normal_(self.{name}, mean=0.0, std=...) as the exercise says."
            )
    return None


# --- 4. PosEmbed ----------------------------------------------------------------------------


def _cases_PosEmbed(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for label, extra in [("seq shorter than n_ctx", 3), ("seq much shorter than n_ctx", 9), ("seq equal to n_ctx", 0)]:
        s = _sizes(rng)
        n_ctx = s["seq"] + extra
        n_ctx = n_ctx if n_ctx not in (s["batch"], s["d_model"]) else n_ctx + 1
        tokens = _tokens(g, s["batch"], s["seq"], s["d_vocab"])
        weights = {"W_pos": torch.randn(n_ctx, s["d_model"], generator=g)}
        cotangent = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
        # the same module called again with another batch and another length (longer where n_ctx
        # allows it, else shorter): a module keeps nothing from an earlier call
        seq2 = s["seq"] + 2 if s["seq"] + 2 <= n_ctx else 1
        again = _tokens(g, s["batch"] + 1, seq2, s["d_vocab"])
        cases.append(module_case({"n_ctx": n_ctx, "d_model": s["d_model"]}, weights, (tokens,), cotangent, label,
                                 attributes=("n_ctx",), again=(again,)))
    tokens = torch.tensor([[0, 1, 2, 3, 4, 5, 6]])
    weights = {"W_pos": torch.randn(6, 13, generator=g)}
    case = module_case({"n_ctx": 6, "d_model": 13}, weights, (tokens,), torch.randn(1, 7, 13, generator=g), "seq one longer than n_ctx")
    case.mentions = ("7", "6")  # the exercise: the message names seq and n_ctx
    cases.append(case)
    # the module converted after it is built (model.double()): its output follows W_pos's dtype
    w64 = {"W_pos": torch.randn(6, 13, generator=g, dtype=torch.float64)}
    cases.append(module_case({"n_ctx": 6, "d_model": 13}, w64, (torch.tensor([[3, 1, 4, 1, 5]]),),
                             torch.randn(1, 5, 13, generator=g, dtype=torch.float64),
                             "the module converted to float64 (model.double())", dtype="float64"))
    # positions do not depend on the ids: the same ids in another order, on the meta device too
    s = _sizes(rng)
    tokens = torch.randint(0, 3, (s["batch"], s["seq"]), generator=g)
    weights = {"W_pos": torch.randn(s["seq"] + 2, s["d_model"], generator=g)}
    cotangent = torch.randn(s["batch"], s["seq"], s["d_model"], generator=g)
    case = module_case({"n_ctx": s["seq"] + 2, "d_model": s["d_model"]}, weights, (tokens,), cotangent, "ids that are not positions")
    cases.append(case)
    meta = module_case(*case.args, label="the meta device (finds tensors made without device=)")
    meta.device = "meta"
    cases.append(meta)
    cases.append(init_case({"n_ctx": 1000, "d_model": 100}, "W_pos as initialised: N(0, 0.01^2)", seed))
    return cases


class _PosEmbedByIds(torch.nn.Module):
    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.W_pos = torch.nn.Parameter(torch.randn(n_ctx, d_model) * 0.01)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.W_pos.shape[0]:
            raise ValueError("too long")
        return self.W_pos[tokens]


class _PosEmbedCached(ref.PosEmbed):
    """Keeps the output of its first call and returns it ever after."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "_kept"):
            self._kept = ref.PosEmbed.forward(self, tokens)
        return self._kept


class _PosEmbedNoBatch(torch.nn.Module):
    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.W_pos = torch.nn.Parameter(torch.randn(n_ctx, d_model) * 0.01)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.W_pos.shape[0]:
            raise ValueError("too long")
        return self.W_pos[: tokens.shape[1]]


# --- 5. sinusoidal_encoding -----------------------------------------------------------------


def _cases_sinusoidal_encoding(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case((6, 4), label="n_ctx=6, d_model=4"),
        Case((50, 16), label="positions up to 49"),
        Case((1, 8), label="one position"),
        Case((7, 10, 100.0), label="another base"),
        Case((6, 4, 100.0), label="the sizes of the first input with another base (nothing kept from an earlier call)"),
        Case((5, 7), label="an odd d_model"),
    ]
    for _ in range(4):
        n_ctx, d_model = rng.randint(3, 40), 2 * rng.randint(2, 12)
        if n_ctx == d_model:
            n_ctx += 1
        cases.append(Case((n_ctx, d_model, rng.choice([10000.0, 10000.0, 500.0])), label="random sizes"))
    # float32 keeps about 7 digits: angles p * w_i made in float32 are off by 1e-4 and more here
    cases.append(Case((8192, 12), label="8,192 positions (angles in float64)"))
    return cases


_SHARED_RESULT = (
    "the check filled the tensor that a first call with the same arguments returned with NaN, as a "
    "caller that changes its result in place (pe += ...) would, and this second call returned NaN: "
    "your function hands one stored tensor to every caller (a cache such as functools.lru_cache). "
    "Return a new tensor on every call (a cache may keep one, and return a .clone() of it)."
)

_FLOAT32_ANGLES = (
    "the values are right at the first positions and drift at later ones, as angles made in float32 "
    "do: float32 keeps about 7 digits, so at position 8,000 an angle is off by about 1e-3. Compute "
    "the positions, frequencies and angles in float64, and convert only the result."
)


def _shared_result(actual: Any, expected: Any) -> bool:
    return (isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor) and actual.shape == expected.shape
            and actual.is_floating_point() and actual.numel() > 0 and bool(actual.isnan().all())
            and not bool(expected.isnan().any()))


def _drifts(actual: Any, expected: Any, axis: int, tolerance: tuple[float, float]) -> bool:
    """Whether ``actual`` is right at the first 100 positions (along ``axis``) and wrong, by a little
    (less than 0.05), only at later ones: the mark of angles made with too few digits."""
    if not (isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor)
            and actual.shape == expected.shape and actual.dtype == expected.dtype
            and actual.is_floating_point() and actual.device.type != "meta" and expected.shape[axis] > 1000):
        return False
    a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
    close = torch.isclose(a, e, rtol=tolerance[0], atol=tolerance[1])
    early = close.narrow(axis, 0, 100)
    return bool(early.all()) and not bool(close.all()) and float((a - e).abs().max()) < 0.05


def _diagnose_sinusoid(case: Case, actual: Any, expected: Any) -> Optional[str]:
    if _shared_result(actual, expected):
        return _SHARED_RESULT
    if _drifts(actual, expected, 0, (1e-4, 1e-5)):
        return _FLOAT32_ANGLES
    return None


def _sinusoids(n_ctx: int, d_model: int, base: float, *, swap: bool = False, exponent: str = "2i", start: int = 0,
               layout: str = "interleaved") -> torch.Tensor:
    if d_model % 2:
        raise ValueError("odd")
    p = torch.arange(start, start + n_ctx, dtype=torch.float64)[:, None]
    i = torch.arange(d_model // 2, dtype=torch.float64)
    freqs = base ** (-(2 * i if exponent == "2i" else i) / d_model)
    a, b = (p * freqs).sin(), (p * freqs).cos()
    if swap:
        a, b = b, a
    if layout == "halves":
        return torch.cat([a, b], dim=-1).float()
    return torch.stack([a, b], dim=-1).reshape(n_ctx, d_model).float()


def _pe_swapped(n_ctx: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    return _sinusoids(n_ctx, d_model, base, swap=True)


def _pe_halves(n_ctx: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    return _sinusoids(n_ctx, d_model, base, layout="halves")


def _pe_exponent_i(n_ctx: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    return _sinusoids(n_ctx, d_model, base, exponent="i")


def _pe_from_one(n_ctx: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    return _sinusoids(n_ctx, d_model, base, start=1)


# --- 6. sinusoidal_shift_matrix -------------------------------------------------------------


def _cases_sinusoidal_shift_matrix(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        Case((0, 4), label="k=0: no shift"),
        Case((1, 6), label="k=1"),
        Case((3, 8, 100.0), label="another base"),
        Case((1, 6, 300.0), label="k and d_model of an earlier input with another base (nothing kept from an earlier call)"),
        Case((-2, 6), label="a negative k"),
        Case((2, 5), label="an odd d_model"),
    ]
    for _ in range(4):
        cases.append(Case((rng.randint(1, 30), 2 * rng.randint(2, 8), rng.choice([10000.0, 300.0])), label="random k and d_model"))
    # offsets across long contexts: angles k * w_i made in float32 are off by more than 1e-4
    cases.append(Case((100_000, 64), label="k = 100,000 (angles in float64)"))
    cases.append(Case((-30_000, 32), label="k = -30,000 (angles in float64)"))
    # k is any integer: no clipping and no wrapping (k mod 2**20, say)
    cases.append(Case((3_000_001, 8), label="k = 3,000,001"))
    cases.append(Case((-(2**21 + 3), 6), label="k = -2,097,155"))
    return cases


def _shift_transposed(k: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    return ref.sinusoidal_shift_matrix(k, d_model, base).T.contiguous()


_SHIFT_WRONG_WAY = (
    "your M moves the encoding k positions the wrong way (PE[p] @ M gives PE[p - k]): M acts on "
    "row vectors from the right, so check which 2x2 entry gets -sin, and the sign of k."
)


def _diagnose_shift(case: Case, actual: Any, expected: Any) -> Optional[str]:
    """A fact about the learner's M on this case: where PE[p] @ M lands."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape or actual.dtype != expected.dtype:
        return None
    if _shared_result(actual, expected):
        return _SHARED_RESULT
    k, d_model = case.args[:2]
    if abs(k) >= 1000 and float((actual.detach().cpu().double() - expected.detach().cpu().double()).abs().max()) < 0.05:
        return (
            f"your M is close to the block matrix at k = {k:,}, but not within 1e-4, as with angles k * w_i "
            f"made in float32 (float32 keeps about 7 digits). Compute the frequencies and the angles in "
            f"float64, and convert only M."
        )
    if k == 0:
        return None
    base = case.args[2] if len(case.args) > 2 else 10000.0
    pe = ref.sinusoidal_encoding(2 * abs(k) + 8, d_model, base).to(actual.device)
    p = abs(k) + 3
    if torch.allclose(pe[p] @ actual, pe[p - k], atol=1e-4):
        return _SHIFT_WRONG_WAY
    return None


# --- 7. apply_rope --------------------------------------------------------------------------


def _cases_apply_rope(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    s = _sizes(rng)
    cases.append(Case((torch.randn(s["batch"], s["seq"], 8, generator=g),), label="(batch, seq, d_head)"))
    cases.append(Case((torch.randn(s["batch"], s["seq"], 8, generator=g), 500.0),
                      label="the sizes of the first input with another base (nothing kept from an earlier call)"))
    cases.append(Case((torch.randn(2, 3, 5, 6, generator=g),), label="(batch, n_heads, seq, d_head)"))
    cases.append(Case((torch.randn(3, 7, 10, generator=g), 100.0), label="another base"))
    cases.append(Case((torch.randn(2, 9, 4, generator=g, dtype=torch.float64),), label="float64 input"))
    same = torch.randn(1, 1, 12, generator=g).expand(2, 6, 12).contiguous()
    cases.append(Case((same,), label="the same vector at every position"))
    cases.append(Case((torch.randn(2, 4, 5, generator=g),), label="an odd d_head"))
    for _ in range(3):
        shape = (rng.randint(2, 3), rng.randint(4, 9), 2 * rng.randint(5, 8))
        cases.append(Case((torch.randn(*shape, generator=g),), label="random sizes"))
    cases.append(Case((torch.randn(2, 40, 6, generator=g),), label="a long sequence"))
    # angles made in float32 are off by about 1e-3 at position 8,000 (float32 keeps 7 digits); with
    # d_head = 4 the second frequency is 0.01 and hides it, d_head = 12 has frequencies near 1
    cases.append(Case((torch.randn(1, 8200, 12, generator=g),), label="8,200 positions (angles in float64)"))
    # bfloat16 holds whole numbers exactly only up to 256: positions and angles are not made in it
    cases.append(Case((torch.randn(1, 300, 2, generator=g).to(torch.bfloat16),), label="bfloat16, 300 positions"))
    # bfloat16 rotated in bfloat16 (not float32): cos * x - sin * y rounds twice, off by up to 0.25
    cases.append(Case((3 * torch.randn(2, 512, 8, generator=g).to(torch.bfloat16),),
                      label="bfloat16, 512 positions (rotated in float32)"))
    # positions are 0 .. seq - 1 however long the sequence: no table capped at some length
    cases.append(Case((torch.randn(1, 20_000, 2, generator=g),), label="20,000 positions"))
    meta = Case((torch.randn(2, 5, 8, generator=g),), label="the meta device (finds tensors made without device=)")
    meta.device = "meta"
    cases.append(meta)
    return cases


def _rope(x: torch.Tensor, base: float = 10000.0, *, pairing: str = "interleaved", sign: float = 1.0,
          exponent: str = "2i", start: int = 0) -> torch.Tensor:
    seq, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError("odd")
    i = torch.arange(d // 2, dtype=torch.float64, device=x.device)
    theta = base ** (-(2 * i if exponent == "2i" else i) / d)
    angles = sign * torch.arange(start, start + seq, dtype=torch.float64, device=x.device)[:, None] * theta
    cos, sin = angles.cos(), angles.sin()
    xf = x.double()
    if pairing == "interleaved":
        x0, x1 = xf[..., 0::2], xf[..., 1::2]
        out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)
    else:  # rotate_half: dimension i with i + d/2
        x0, x1 = xf[..., : d // 2], xf[..., d // 2:]
        out = torch.cat([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.to(x.dtype)


def _diagnose_rope(case: Case, actual: Any, expected: Any) -> Optional[str]:
    """Facts about this case: a float64 result as accurate as float32 only; a long sequence right at
    first and drifting later."""
    if not (isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor) and actual.shape == expected.shape
            and actual.dtype == expected.dtype and actual.device.type != "meta"):
        return None
    if expected.dtype == torch.float64:
        a, e = actual.detach().cpu(), expected.detach().cpu()
        if bool(torch.isclose(a, e, rtol=1e-5, atol=1e-6).all()):
            return (
                "for a float64 input your result is only as accurate as float32 (it differs from the "
                "formula in the 8th digit): compute in the input's dtype (float32 at least), not always in "
                "float32, and make the angles in float64."
            )
    if _drifts(actual, expected, -2, (1e-4, 1e-5)):
        return _FLOAT32_ANGLES
    return None


def _rope_rotate_half(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    return _rope(x, base, pairing="halves")


def _rope_backwards(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    return _rope(x, base, sign=-1.0)


def _rope_exponent_i(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    return _rope(x, base, exponent="i")


def _rope_from_one(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    return _rope(x, base, start=1)


# --- 8. cosine_similarity -------------------------------------------------------------------


def _cases_cosine_similarity(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for label in ("rows of different lengths", "other sizes"):
        n, m, d = rng.randint(2, 4), rng.randint(5, 7), rng.randint(8, 12)
        a = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g) * 5
        b = torch.randn(m, d, generator=g) * torch.rand(m, 1, generator=g) * 5
        cases.append(Case((a, b), label=label))
    # non-zero vectors shorter than eps = 1e-8 on both sides: they are divided by 1e-8, not by
    # their length, so their similarities are smaller than their direction's cosine
    a = torch.randn(4, 6, generator=g)
    short_a = torch.cat([a[:2] / a[:2].norm(dim=-1, keepdim=True) * torch.tensor([[1e-9], [3e-9]]), a[2:]])
    short_b = torch.cat([torch.randn(2, 6, generator=g), 5e-9 * a[2:3] / a[2:3].norm(), torch.randn(1, 6, generator=g)])
    cases.append(Case((short_a, short_b), label="vectors shorter than 1e-8 (not zero) on both sides"))
    a = torch.randn(3, 9, generator=g)
    b = torch.cat([torch.zeros(1, 9), 2.5 * a[:1], -a[1:2], torch.randn(2, 9, generator=g)])
    cases.append(Case((a, b), label="a zero vector, a scaled copy and an opposite vector"))
    cases.append(Case((a.double(), b.double()), label="float64"))
    tiny_a = torch.cat([torch.zeros(1, 9), 1e-5 * a[:1], 1e-4 * a[1:2], a[2:3]])
    tiny_b = torch.cat([1e-5 * b[1:2], torch.zeros(1, 9), 3e-4 * b[3:4], torch.randn(2, 9, generator=g)])
    cases.append(Case((tiny_a, tiny_b), label="zero and very short vectors on both sides"))
    # one row on either side: the result is still (n, m), with an axis of length 1
    cases.append(Case((torch.randn(1, 7, generator=g), torch.randn(5, 7, generator=g)), label="one row in a (n = 1)"))
    cases.append(Case((torch.randn(4, 7, generator=g), torch.randn(1, 7, generator=g)), label="one row in b (m = 1)"))
    cases.append(Case((torch.randn(1, 7, generator=g), torch.randn(1, 7, generator=g)), label="one row on each side (n = m = 1)"))
    return cases


def _no_short_vector(case: Case) -> bool:
    """Gradients of cosine_similarity are compared where every vector is longer than 1e-6: at a
    zero vector the length has a kink, and below eps = 1e-8 the gradient is ~1/eps = 1e8, where
    right answers (F.normalize, F.cosine_similarity, a clamped norm) differ in rounding."""
    return all(float(x.norm(dim=-1).min()) > 1e-6 for x in case.args)


def _cosine_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b.T


def _cosine_one_side(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)) @ b.T


def _cosine_zero_only(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r = (a @ b.T) / (a.norm(dim=-1)[:, None] * b.norm(dim=-1)[None, :])
    return torch.nan_to_num(r, nan=0.0)


def _cosine_squeezed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ref.cosine_similarity(a, b).squeeze()


_EPS_PER_VECTOR = (
    "divide by max(|v|, 1e-8) for each vector: a vector shorter than 1e-8 that is not zero is "
    "divided by 1e-8 too, so its similarities come out smaller than its direction's cosine. "
    "Replacing nan by 0 afterwards (or testing for zero vectors) gets only exact zeros right."
)


# --- 9. nearest_neighbours ------------------------------------------------------------------


def _cases_nearest_neighbours(seed: int) -> list[Case]:
    rng, g = random.Random(seed), _gen(seed)
    cases = []
    for label in ("random vectors", "other sizes"):
        d_vocab, d_model = rng.randint(9, 14), rng.randint(5, 8)
        W_E = torch.randn(d_vocab, d_model, generator=g) * torch.rand(d_vocab, 1, generator=g) * 4
        query = torch.randn(d_model, generator=g)
        cases.append(Case((query, W_E, rng.randint(2, 5)), label=label))
    W_E = torch.randn(10, 6, generator=g)
    W_E[7] = W_E[2]  # an exact tie: the smaller id comes first
    W_E[4] = 10 * W_E[5]  # longer, not more similar
    cases.append(Case((W_E[2] + 0.01 * torch.randn(6, generator=g), W_E, 4), label="a tie and a long vector"))
    cases.append(Case((W_E[5].clone(), W_E, 3), label="a scaled copy of the query"))
    cases.append(Case((torch.randn(6, generator=g), W_E, 10), label="k = d_vocab"))
    cases.append(Case((torch.randn(6, generator=g), W_E, 1), label="k = 1"))
    cases.append(Case((torch.randn(6, generator=g), W_E, 0), label="k = 0: no neighbours"))
    many = torch.randn(24, 5, generator=g)
    many[[3, 9, 17, 20]] = many[11].clone()  # five equal rows, spread over ids 3..20: ties in id order
    cases.append(Case((many[11] + 0.01 * torch.randn(5, generator=g), many, 8), label="five-way tie among 24 rows"))
    near = torch.randn(18, 4, generator=g)
    query = torch.randn(4, generator=g)
    near[6] = query * (1 + 1e-3)  # the same direction: similarity 1
    near[2] = query + 1e-3 * torch.randn(4, generator=g)  # almost the same: a little less than 1
    cases.append(Case((query, near, 3), label="two almost equal similarities"))
    # float64 similarities about 1e-12 apart, the most similar at the largest id: computed in
    # float32 they are all 1 give or take a rounding, and come out in another order
    query = torch.randn(4, generator=g, dtype=torch.float64)
    rows = torch.randn(10, 4, generator=g, dtype=torch.float64)
    side = torch.randn(4, generator=g, dtype=torch.float64)
    side = side - (side @ query) / (query @ query) * query  # orthogonal to the query
    side = side / side.norm() * query.norm()
    for row in range(2, 8):  # row 7 most similar, row 2 least
        rows[row] = query + (7 - row + 1) * 1e-6 * side  # cosine 1 - (angle^2) / 2, angles 1e-6 apart
    cases.append(Case((query, rows, 6), label="float64: six similarities about 1e-12 apart, the largest id most similar"))
    cases.append(Case((torch.randn(6, generator=g), W_E, 11), label="k > d_vocab"))
    cases.append(Case((torch.randn(6, generator=g), W_E, -1), label="a negative k"))
    # rows shorter than 1e-8 in the query's direction: exercise 8 divides them by 1e-8, so they are
    # less similar than their direction (a cosine with another eps, like F.normalize's 1e-12, ranks
    # them first)
    query = torch.randn(5, generator=g)
    rows = torch.randn(12, 5, generator=g)
    rows[[1, 4, 8]] = query / query.norm() * torch.tensor([[2e-9], [5e-9], [8e-9]])
    rows[10] = query + 0.3 * torch.randn(5, generator=g)
    cases.append(Case((query, rows, 4), label="rows shorter than 1e-8 in the query's direction"))
    # a group of equal similarities that the cut at k splits: the smaller ids are kept
    for n, k in [(40, 6), (24, 3)]:
        rows = torch.randn(n, 4, generator=g)
        tied = torch.arange(2, n, 3)
        rows[tied] = rows[0].clone()
        rows[1] = 3.0 * rows[0] + 0.5 * torch.randn(4, generator=g)
        cases.append(Case((rows[0] + 0.05 * torch.randn(4, generator=g), rows, k),
                          label=f"{len(tied) + 1} equal rows split by the cut at k = {k}"))
    return cases


def _nearest_by_dot(query: torch.Tensor, W_E: torch.Tensor, k: int) -> torch.Tensor:
    if k > W_E.shape[0]:
        raise ValueError("k")
    return torch.sort(W_E @ query, descending=True, stable=True).indices[:k]


def _nearest_normalized(query: torch.Tensor, W_E: torch.Tensor, k: int) -> torch.Tensor:
    if not 0 <= k <= W_E.shape[0]:
        raise ValueError("k")
    sims = F.normalize(W_E, dim=-1) @ F.normalize(query, dim=0)
    return torch.sort(sims, descending=True, stable=True).indices[:k]


def _nearest_topk_then_ties(query: torch.Tensor, W_E: torch.Tensor, k: int) -> torch.Tensor:
    if not 0 <= k <= W_E.shape[0]:
        raise ValueError("k")
    values, ids = torch.topk(ref.cosine_similarity(query[None], W_E)[0], k)
    order = sorted(range(k), key=lambda j: (-values[j].item(), ids[j].item()))
    return ids[order]


def _nearest_least_similar(query: torch.Tensor, W_E: torch.Tensor, k: int) -> torch.Tensor:
    if k > W_E.shape[0]:
        raise ValueError("k")
    return torch.sort(ref.cosine_similarity(query[None], W_E)[0], stable=True).indices[:k]


# ----------------------------------------------------------------------------------------------

_EMBED_DIMS = ("batch", "seq", "d_model")

SPECS = [
    Spec(
        name="one_hot_embed",
        chapter=CHAPTER,
        reference=ref.one_hot_embed,
        make_cases=_cases_embed_function,
        # inf in W_E: the product gives nan where a look-up gives the row (0 * inf = nan)
        families={1: ("huge64", "inf")},
        error_hints=_EMBED_ERROR_HINTS,
        mistakes=[
            Mistake("columns", "you read columns of W_E; token t's vector is row t (W_E is (d_vocab, d_model)).", _embed_columns),
            Mistake("ids as given", _AS_LONG, _one_hot_as_given),
            Mistake("look-up", _NOT_A_PRODUCT, _lookup_not_product),
        ],
        dims=_EMBED_DIMS,
    ),
    Spec(
        name="lookup_embed",
        chapter=CHAPTER,
        reference=ref.lookup_embed,
        make_cases=_cases_embed_function,
        mistakes=[
            Mistake("columns", "you read columns of W_E; token t's vector is row t (W_E is (d_vocab, d_model)).", _embed_columns),
            Mistake("ids as given", _AS_LONG, _lookup_as_given),
        ],
        error_hints={"IndexError: tensors used as indices": _AS_LONG},
        dims=_EMBED_DIMS,
    ),
    Spec(
        name="Embed",
        chapter=CHAPTER,
        reference=ref.Embed,
        make_cases=_cases_Embed,
        driver=module_driver,
        dims=_EMBED_DIMS,
        mistakes=[
            Mistake(
                "no range check",
                "an id outside 0..d_vocab-1 must raise a ValueError that names the limit. Indexing "
                "does not do it for you: a negative id silently reads a row from the end.",
                _EmbedNoCheck,
            ),
            Mistake(
                "floats only refused",
                "bool is not an integer dtype: refuse it with a TypeError too (indexing would read a "
                "bool tensor as a mask), like every other dtype that is not an integer one, rather "
                "than testing only is_floating_point.",
                _EmbedFloatsOnly,
            ),
            Mistake(
                "complex accepted",
                "complex is not an integer dtype either, and torch's is_floating_point() is False for "
                "it: refuse every dtype that is not an integer one with a TypeError (converting complex "
                "ids drops their imaginary part).",
                _EmbedComplexAccepted,
            ),
            Mistake(
                "range in the ids' dtype",
                "convert the ids with tokens.long() before you compare them with d_vocab: torch compares "
                "a uint8, int8 or int16 tensor with a number in that small dtype, where d_vocab wraps "
                "around (300 is 44 in uint8, 200 is -56 in int8), so valid ids are refused.",
                _EmbedRangeInOwnDtype,
            ),
            Mistake("ids as given", _AS_LONG, _EmbedAsGiven),
        ],
        diagnose=diagnose_initialisation,
        error_hints={
            "RuntimeError: (min|max|amin|amax)\\(\\).*(numel\\(\\) == 0|empty)": (
                "with seq = 0 there are no ids, and an empty tensor has no minimum or maximum: test the "
                "ids without .min()/.max() (e.g. a mask of the bad ones), or only when tokens.numel() > 0."
            ),
            "NotImplementedError: not implemented for 'UInt": (
                "torch has few operations for uint16, uint32 and uint64 tensors: convert the ids with "
                "tokens.long() first, then compare them with d_vocab and index."
            ),
            "IndexError: tensors used as indices": (
                "torch indexes with int64 or int32 ids only: refuse a float or bool dtype with a "
                "TypeError before indexing, and convert other integer ids with tokens.long()."
            ),
            "IndexError: (mask|boolean)": (
                "the index was read as a mask: torch does that with a bool or uint8 tensor. bool is a "
                "TypeError; uint8 ids are ids: convert them with tokens.long() before indexing."
            ),
            "IndexError": "check the ids yourself before indexing, and raise a ValueError that names d_vocab.",
        },
        points=2,
    ),
    Spec(
        name="PosEmbed",
        chapter=CHAPTER,
        reference=ref.PosEmbed,
        make_cases=_cases_PosEmbed,
        driver=module_driver,
        dims=_EMBED_DIMS,
        mistakes=[
            Mistake("ids as positions", "row p of W_pos belongs to position p (0, 1, ..., seq-1), whatever token stands there.", _PosEmbedByIds),
            Mistake("no batch axis", "the result has a batch axis like the token embedding's: repeat the rows for every sequence of the batch.", _PosEmbedNoBatch),
            Mistake(
                "first output kept",
                "forward must compute its result on every call: one module is called many times, with "
                "other batches and lengths, and whatever it keeps from an earlier call is wrong later.",
                _PosEmbedCached,
            ),
        ],
        error_hints={"IndexError": "a sequence longer than n_ctx must raise a ValueError that names n_ctx."},
        diagnose=diagnose_initialisation,
        points=2,
    ),
    Spec(
        name="sinusoidal_encoding",
        chapter=CHAPTER,
        reference=ref.sinusoidal_encoding,
        make_cases=_cases_sinusoidal_encoding,
        # called twice per case, the first result spoiled in between: a result shared between callers shows
        driver=fresh_result_driver,
        diagnose=_diagnose_sinusoid,
        dims=("n_ctx", "d_model"),
        mistakes=[
            Mistake("sin/cos swapped", "even dimensions (2i) hold the sine and odd ones (2i+1) the cosine.", _pe_swapped),
            Mistake("halves", "sine and cosine of pair i sit side by side, in dimensions 2i and 2i+1, not in two halves.", _pe_halves),
            Mistake("exponent", "the frequency of pair i is base^(-2i/d_model): the exponent counts dimensions, two per pair.", _pe_exponent_i),
            Mistake("positions from 1", "positions start at 0: row 0 is sin(0), cos(0).", _pe_from_one),
        ],
    ),
    Spec(
        name="sinusoidal_shift_matrix",
        chapter=CHAPTER,
        reference=ref.sinusoidal_shift_matrix,
        make_cases=_cases_sinusoidal_shift_matrix,
        driver=fresh_result_driver,
        dims=("d_model", "d_model"),
        diagnose=_diagnose_shift,
        mistakes=[Mistake("transposed", _SHIFT_WRONG_WAY, _shift_transposed)],
        tolerance=(1e-4, 1e-4),  # any M with the property to float32 precision, e.g. fitted by least squares
    ),
    Spec(
        name="apply_rope",
        chapter=CHAPTER,
        reference=ref.apply_rope,
        make_cases=_cases_apply_rope,
        families={0: ("float16", "bfloat16")},
        diagnose=_diagnose_rope,
        mistakes=[
            Mistake("rotate_half", "RoFormer pairs neighbouring dimensions (2i, 2i+1); pairing i with i + d_head/2 is Hugging Face's LLaMA layout.", _rope_rotate_half),
            Mistake("backwards", "the rotation goes the other way: x'[2i] = x[2i] cos - x[2i+1] sin.", _rope_backwards),
            Mistake("exponent", "theta_i = base^(-2i/d_head): the exponent counts dimensions, two per pair.", _rope_exponent_i),
            Mistake("positions from 1", "positions start at 0: the first position is not rotated.", _rope_from_one),
        ],
        points=2,
    ),
    Spec(
        name="cosine_similarity",
        chapter=CHAPTER,
        reference=ref.cosine_similarity,
        make_cases=_cases_cosine_similarity,
        dims=("n", "m"),
        mistakes=[
            Mistake("dot product", "divide by both lengths: a cosine does not grow with the vectors' lengths.", _cosine_dot),
            Mistake("one side", "normalise the rows of b as well as those of a.", _cosine_one_side),
            Mistake("zero vectors only", _EPS_PER_VECTOR, _cosine_zero_only),
            Mistake("squeezed", "the result is (n, m) also when n or m is 1: keep both axes (no .squeeze()), so that "
                    "sims[i, j] always means row i of a and row j of b.", _cosine_squeezed),
        ],
        families={0: ("tiny", "zeros", "large", "huge64"), 1: ("tiny",)},
        gradients=_no_short_vector,
    ),
    Spec(
        name="nearest_neighbours",
        chapter=CHAPTER,
        reference=ref.nearest_neighbours,
        make_cases=_cases_nearest_neighbours,
        uses={"cosine_similarity": ref.cosine_similarity},
        mistakes=[
            Mistake("dot product", "rank by cosine similarity, not by the dot product: a long vector is not a similar one.", _nearest_by_dot),
            Mistake("ascending", "most similar first: sort in descending order.", _nearest_least_similar),
            Mistake(
                "another eps",
                "rank by exercise 8's cosine_similarity, eps = 1e-8 included: a row shorter than 1e-8 is "
                "divided by 1e-8, so it is less similar than its direction (F.normalize's eps is 1e-12).",
                _nearest_normalized,
            ),
            Mistake(
                "ties cut by topk",
                "equal similarities that the cut at k splits: torch.topk may keep a larger id and drop a "
                "smaller one, and no reordering of the k it kept brings that one back. Sort all the "
                "similarities with a stable sort, then keep the first k.",
                _nearest_topk_then_ties,
            ),
        ],
    ),
]

# A tensor made on the CPU next to inputs on a GPU: the same sentence for every exercise here.
for _spec in SPECS:
    _spec.error_hints.setdefault(
        "RuntimeError: Expected all tensors to be on the same device",
        "some tensor is on another device than the inputs: create tensors with device=x.device.",
    )
del _spec
