"""A small mutation tester for the exercise references: does each check reject wrong code?

Mutation testing asks the question the course cares most about: for every small change to a
reference (an operator, a comparison, a constant, an off-by-one, a swapped or deleted statement,
two arguments in another order), does the check fail? A change that still passes is a
"survivor": either the change does not alter behaviour (an equivalent mutant, listed with the
reason in ``EQUIVALENT``) or the check's cases are too weak.

Well-kept mutation tools (mutmut, cosmic-ray) mutate files on disk and rerun a whole test suite
per mutant; here a mutant is one function or class compiled in memory and handed to the check,
which takes milliseconds, so every exercise of the course is mutated on every test run.

Used by ``tests/test_mutation.py`` (the 95 % floor per exercise) and ``bench/bench_mutation.py``
(prints the kill rate per exercise and the survivors).
"""

from __future__ import annotations

import __future__
import ast
import contextlib
import copy
import inspect
import io
import signal
import sys
import textwrap
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from solutions.checks.core import CheckFailure, Spec, check_function, without_hints

# A hidden seed, standing in for the grader's: its cases must kill as much as the notebook's.
SEEDS = (0, 424242)
TIMEOUT_S = 2.0  # a mutant that loops forever (i += 0) counts as killed, as the grader's time limit would

# (exercise, mutant description) -> why the mutant behaves exactly like the reference.
# Swaps of independent statements and changes to exception messages are not generated at all.
EQUIVALENT: dict[tuple[str, str], str] = {
    ("most_frequent_pair", "line 7: delete `if not counts:`"):
        "max() of no counts raises ValueError too, the type the exercise asks for",
    ("most_frequent_pair", "line 7: swap `if not counts:` with the next statement"):
        "max() of no counts raises ValueError before the test is reached: the same type",
    ("most_frequent_pair", "line 8: delete `raise ValueError('counts is empty: there is no ...`"):
        "max() of no counts raises ValueError on the next line: the same type",
    ("sinusoidal_shift_matrix", "line 17: swap `M[0::2, 0::2] = torch.diag(cos)` with the next statement"):
        "the two assignments fill disjoint blocks of M (even/odd rows and columns)",
    ("sinusoidal_shift_matrix", "line 18: swap `M[0::2, 1::2] = torch.diag(-sin)` with the next statement"):
        "the two assignments fill disjoint blocks of M (even/odd rows and columns)",
    ("sinusoidal_shift_matrix", "line 19: swap `M[1::2, 0::2] = torch.diag(sin)` with the next statement"):
        "the two assignments fill disjoint blocks of M (even/odd rows and columns)",
    ("Embed", "line 24: swap `if tokens.dtype == torch.bool or tokens.is_floa...` with the next statement"):
        "the next statement only converts the ids to int64, which no dtype refuses: the TypeError "
        "still comes before any comparison or look-up",
    ("apply_rope", "line 29: Eq -> NotEq"):
        "the angle table is made on the CPU instead of x's device and moved there: the same float64 "
        "angles (on the meta device too); only Apple's MPS, which has no float64, needs the CPU",
    ("apply_rope", "line 29: string 'cpu' -> ''"):
        "the CPU is chosen only on Apple's MPS, which the tests do not run on",
    ("apply_rope", "line 29: string 'mps' -> ''"):
        "no device's type is '': the table is made on x's device, as for every device but MPS",
    ("apply_rope", "line 33: swap the first two arguments of promote_types()"):
        "type promotion is symmetric: promote_types(a, b) is promote_types(b, a)",
    ("apply_rope", "line 34: swap `cos, sin = (angles.cos().to(x.device, compute),...` with the next statement"):
        "the next statement only splits x into pairs: neither depends on the other",
    ("cosine_similarity", "line 11: drop the unary USub"):
        "a and b are (n, d) matrices: dim=1 and dim=-1 are the same axis",
    ("cosine_similarity", "line 12: drop the unary USub"):
        "a and b are (n, d) matrices: dim=1 and dim=-1 are the same axis",
    ("relu", "line 3: swap the first two arguments of maximum()"):
        "torch.maximum is symmetric: maximum(x, 0) and maximum(0, x) are the same numbers",
    ("changed_positions", "line 14: swap `before = module(x)` with the next statement"):
        "x.clone() does not change x: the module sees the same input in either order",
    ("changed_positions", "line 16: Add -> Sub in `perturbed[:, position] += 1.0`"):
        "subtracting 1 instead of adding it changes the same positions (any non-zero change does)",
    ("changed_positions", "line 16: constant 1.0 -> 2.0"):
        "a change of 2 instead of 1 changes the same positions (any non-zero change does)",
    ("changed_positions", "line 16: constant 1.0 -> 0.5"):
        "a change of 0.5 instead of 1 changes the same positions (any non-zero change does)",
    ("SwiGLU", "line 21: constant 1 -> 2"):
        "int(8 d_model / 3) is never 1 more than a multiple of 256 for an integer d_model "
        "(8 d_model would have to be 3 to 5 more than a multiple of 768), so the rounding is the same",
    ("attention_scores", "line 14: swap the first two arguments of transpose()"):
        "transpose(-2, -1) and transpose(-1, -2) swap the same two axes",
    ("split_heads", "line 14: swap the first two arguments of transpose()"):
        "transpose(1, 2) and transpose(2, 1) swap the same two axes",
    ("merge_heads", "line 8: swap the first two arguments of transpose()"):
        "transpose(1, 2) and transpose(2, 1) swap the same two axes",
    ("scaled_dot_product_attention", "line 19: swap `if causal:` with the next statement"):
        "the causal and the padding mask both only fill scores with -inf: their order does not matter",
    ("Attention", "line 13: swap `super().__init__()` with the next statement"):
        "the next statement only checks its arguments and raises; it touches no module state",
    ("Attention", "line 48: Add -> Sub in `k + self.b_K[:, None, :]`"):
        "a key bias adds q . b_K to every score of a query alike; the softmax ignores a constant "
        "shift, so b_K changes neither the output nor any gradient (its own gradient is 0 either way)",
    ("KVCache", "line 21: drop the unary USub"):
        "keys are (batch, n_heads, seq, d_head): axis 2 is axis -2",
    ("KVCache", "line 22: drop the unary USub"):
        "values are (batch, n_heads, seq, d_head): axis 2 is axis -2",
    ("KVCache", "line 27: drop the unary USub"):
        "keys are (batch, n_heads, seq, d_head): axis 2 is axis -2",
    ("nearest_neighbours", "line 11: constant 0 -> -1"):
        "the similarities have shape (1, d_vocab): row 0 and row -1 are the same row",
    ("count_parameters", "line 16: swap `if c.positions == 'learned':` with the next statement"):
        "the two ifs add independent terms (W_pos, W_U) to the total: their order does not matter",
    ("split_c_attn", "line 23: constant 0 -> -1"):
        "b has one axis (checked above), so dim=-1 is dim=0",
    ("split_c_attn", "line 18: swap `if tuple(b.shape) != (3 * d_model,):` with the next statement"):
        "two checks of different arguments in the other order: differs only for a b and an n_heads both wrong",
    ("GPT", "line 34: swap `if seq > self.config.n_ctx:` with the next statement"):
        "the embedding does not look at the length: differs only for a sequence both too long and with a bad id",
    ("GPT", "line 42: swap `x = self.ln_final(x)` with the next statement"):
        "the next statement only picks W_U; ln_final still runs before the unembedding",
    # chapter 6: two input checks in the other order differ only for inputs wrong in both ways
    ("get_batch", "line 15: swap `if data.ndim != 1 or starts.ndim != 1:` with the next statement"):
        "both checks raise ValueError; swapped, they differ only for inputs wrong in both ways",
    ("get_batch", "line 18: swap `if any((t.is_floating_point() or t.is_complex()...` with the next statement"):
        "both checks raise ValueError; swapped, they differ only for inputs wrong in both ways",
    ("get_batch", "line 23: swap `if starts.numel() and (starts.min() < 0 or star...` with the next statement"):
        "the next statement only computes offsets; the check still runs before any indexing",
    ("get_batch", "line 22: constant 0 -> -1"):
        "data has one axis (checked above): shape[-1] is shape[0]",
    ("cross_entropy", "line 15: swap `if logits.ndim != 3 or targets.shape != logits....` with the next statement"):
        "both checks raise ValueError; swapped, they differ only for targets wrong in both ways",
    ("cross_entropy", "line 24: drop the unary USub"):
        "squeeze of an axis that is not of size 1 does nothing, and the mean is over every number anyway",
    ("cross_entropy", "line 24: constant 1 -> 0"):
        "squeeze of an axis that is not of size 1 does nothing, and the mean is over every number anyway",
    ("cross_entropy", "line 24: constant 1 -> 2"):
        "squeeze of an axis that is not of size 1 does nothing, and the mean is over every number anyway",
    ("adamw_update", "line 23: swap `if step < 1:` with the next statement"):
        "both checks raise ValueError; swapped, they differ only for inputs wrong in both ways",
    ("adamw_update", "line 25: swap `if not param.shape == grad.shape == exp_avg.sha...` with the next statement"):
        "the next statement only scales param; the check still raises before anything is returned",
    ("clip_grad_norm", "line 19: swap `if not grads:` with the next statement"):
        "the next statement only picks the norm's dtype (float32 for no gradients); an empty list still returns first",
    ("lr_at", "line 19: swap `if step < warmup_steps:` with the next statement"):
        "step < warmup_steps and step >= max_steps cannot both hold, as warmup_steps <= max_steps (checked above)",
    ("sample_from_probs", "line 21: swap the first two arguments of minimum()"):
        "minimum is symmetric",
    ("GPT", "line 33: drop the unary USub"):
        "tokens are (batch, seq) (Embed refuses other shapes' ids the same way): shape[1] is shape[-1]",
}

_BINOP_SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv, ast.MatMult: ast.Mult,
    ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr,
}
_CMP_SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_NAME_SWAPS = {"min": "max", "max": "min", "any": "all", "all": "any", "True": "False", "False": "True"}
_ATTR_SWAPS = {"sin": "cos", "cos": "sin", "max": "min", "min": "max", "sum": "mean", "mean": "sum",
               "argmax": "argmin", "argmin": "argmax", "tril": "triu", "triu": "tril"}


class MutantTimeout(BaseException):
    """Raised by the alarm; a BaseException so that the check's `except Exception` lets it through."""


@dataclass
class Mutant:
    description: str  # e.g. "line 7: `<` -> `<=`"
    obj: Any  # the mutated function or class


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first))
                ids.add(id(first.value))
    return ids


def _inside_raise(tree: ast.AST) -> set[int]:
    # An exception's message is not part of any exercise's contract (checks compare the
    # exception's type), so the words and numbers inside a `raise` are not mutated; deleting or
    # moving the `raise` statement itself still is.
    return {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Raise) for inner in ast.walk(node) if inner is not node}


def _dotted(node: ast.AST) -> Optional[str]:
    """"self.W_E" for an attribute chain on a name, "x" for a name, None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    if isinstance(node, ast.Subscript):  # x[i] = ... writes x
        return _dotted(node.value)
    return None


# Names bound to modules in the namespace of the code being mutated: calling torch.arange does
# not change `torch`. Set by mutants() before it looks for sites.
_MODULE_NAMES: set[str] = set()


def _names(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    """(what the statement writes, what it reads), as names or dotted paths ("self.W_E").

    An item or attribute assignment writes its base path; a method call may change the object
    it is called on, and an in-place function (PyTorch's trailing underscore, `nn.init.normal_`)
    the arguments it is given."""
    written, read = set(), set()
    inside_chain = set()
    for node in ast.walk(stmt):
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            path = _dotted(node)
            if path is not None:
                inside_chain.update(id(n) for n in ast.walk(node.value) if isinstance(n, (ast.Name, ast.Attribute)))
                (written if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(path)
        if isinstance(node, ast.Call):
            in_place = isinstance(node.func, (ast.Attribute, ast.Name)) and (
                (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id).endswith("_"))
            callee = node.func.value if isinstance(node.func, ast.Attribute) else None
            for target in [callee, *(node.args if in_place else [])]:
                path = _dotted(target) if target is not None else None
                if path is not None and path.split(".")[0] not in _MODULE_NAMES:
                    written.add(path)
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and id(node) not in inside_chain:
            (written if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(node.id)
    return written, read


def _overlap(xs: set[str], ys: set[str]) -> bool:
    return any(x == y or x.startswith(y + ".") or y.startswith(x + ".") for x in xs for y in ys)


def _is_guard(stmt: ast.stmt) -> bool:
    """`if <test>: raise ...`: a check of the input that only ever raises."""
    return isinstance(stmt, ast.If) and not stmt.orelse and all(isinstance(s, ast.Raise) for s in stmt.body)


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    """Whether swapping two adjacent statements cannot change behaviour.

    Two method definitions are independent; so are two statements of which neither writes what
    the other reads or writes, and neither leaves the block. A guard (`if ...: raise`) may also
    trade places with an assignment to a local name that it does not read: on input the guard
    rejects, both orders raise (the assignment could only raise in its stead, and the checks
    compare exception types, so that would be caught as a difference anyway)."""
    if isinstance(a, ast.FunctionDef) and isinstance(b, ast.FunctionDef):
        return a.name != b.name
    (wa, ra), (wb, rb) = _names(a), _names(b)
    if _overlap(wa, wb | rb) or _overlap(wb, ra):
        return False
    for guard, other in ((a, b), (b, a)):
        if _is_guard(guard) and isinstance(other, ast.Assign) and all(isinstance(t, (ast.Name, ast.Tuple)) for t in other.targets):
            return True
    leaves = (ast.Return, ast.Raise, ast.Break, ast.Continue)
    return not any(isinstance(n, leaves) for st in (a, b) for n in ast.walk(st))


def _inside_annotations(tree: ast.AST) -> set[int]:
    # annotations are not evaluated (the modules use `from __future__ import annotations`)
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(inner) for root in roots for inner in ast.walk(root)}


def _sites(tree: ast.AST) -> list[tuple[str, Callable[[ast.AST], None], ast.AST]]:
    """Every mutation this tree allows: (description, how to apply it to a node, the node)."""
    skip = _docstring_nodes(tree) | _inside_raise(tree) | _inside_annotations(tree)
    sites: list[tuple[str, Callable[[ast.AST], None], ast.AST]] = []

    def add(node: ast.AST, description: str, apply: Callable[[ast.AST], None], at: ast.AST | None = None) -> None:
        where = at if at is not None else node
        sites.append((f"line {getattr(where, 'lineno', '?')}: {description}", apply, node))

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BINOP_SWAPS:
            new = _BINOP_SWAPS[type(node.op)]
            # the expression is named too: one line may hold several operators of a kind
            add(node, f"{type(node.op).__name__} -> {new.__name__} in `{_short(node)}`", lambda n, new=new: setattr(n, "op", new()))
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in _CMP_SWAPS:
                    new = _CMP_SWAPS[type(op)]

                    def apply(n, k=k, new=new):
                        n.ops[k] = new()

                    add(node, f"{type(op).__name__} -> {new.__name__}", apply)
        if isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            add(node, f"{type(node.op).__name__} -> {new.__name__}", lambda n, new=new: setattr(n, "op", new()))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            add(node, f"drop the unary {type(node.op).__name__}", _drop_unary)
        if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
            v = node.value
            if isinstance(v, int):
                for new_value in sorted({v + 1, v - 1, 0} - {v}):
                    add(node, f"constant {v} -> {new_value}", lambda n, nv=new_value: setattr(n, "value", nv))
            elif isinstance(v, float):
                for new_value in ((v * 2, v / 2) if v else (1.0,)):
                    add(node, f"constant {v!r} -> {new_value!r}", lambda n, nv=new_value: setattr(n, "value", nv))
            elif isinstance(v, str) and v:
                add(node, f"string {v!r} -> ''", lambda n: setattr(n, "value", ""))
        if isinstance(node, ast.Name) and node.id in _NAME_SWAPS and isinstance(node.ctx, ast.Load):
            new_name = _NAME_SWAPS[node.id]
            add(node, f"{node.id} -> {new_name}", lambda n, nn=new_name: setattr(n, "id", nn))
        if isinstance(node, ast.Attribute) and node.attr in _ATTR_SWAPS:
            new_attr = _ATTR_SWAPS[node.attr]
            add(node, f".{node.attr} -> .{new_attr}", lambda n, na=new_attr: setattr(n, "attr", na))
        if (isinstance(node, ast.Call) and len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args[:2])
                and ast.dump(node.args[0]) != ast.dump(node.args[1])):  # swapping equal arguments changes nothing
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else ast.unparse(node.func)
            add(node, f"swap the first two arguments of {callee}()", lambda n: n.args.__setitem__(slice(0, 2), [n.args[1], n.args[0]]))
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            s = node.slice
            for part in ("lower", "upper"):
                if getattr(s, part) is not None:
                    add(node, f"drop the slice's {part} bound", lambda n, p=part: setattr(n.slice, p, None))
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                continue
            for k, stmt in enumerate(body):
                if id(stmt) in skip:
                    continue
                if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
                    add(node, f"delete `{_first_line(stmt)}`", _replace_with_pass(field, k), stmt)
                if k + 1 < len(body) and id(body[k + 1]) not in skip and not _independent(stmt, body[k + 1]):
                    add(node, f"swap `{_first_line(stmt)}` with the next statement", _swap(field, k), stmt)
    return sites


def _drop_unary(node: ast.UnaryOp) -> None:
    # `-x` becomes `+x`; `not x` becomes `not not x`, the truth value of x itself
    if isinstance(node.op, ast.USub):
        node.op = ast.UAdd()
    else:
        node.op = ast.Not()
        node.operand = ast.UnaryOp(op=ast.Not(), operand=node.operand)


def _short(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."


def _first_line(stmt: ast.stmt) -> str:
    text = ast.unparse(stmt).split("\n")[0]
    return text if len(text) <= 50 else text[:47] + "..."


def _replace_with_pass(field: str, k: int) -> Callable[[ast.AST], None]:
    def apply(parent: ast.AST) -> None:
        body = getattr(parent, field)
        body[k] = ast.copy_location(ast.Pass(), body[k])

    return apply


def _swap(field: str, k: int) -> Callable[[ast.AST], None]:
    def apply(parent: ast.AST) -> None:
        body = getattr(parent, field)
        body[k], body[k + 1] = body[k + 1], body[k]

    return apply


def mutants(obj: Any) -> Iterator[Mutant]:
    """Every single-point mutant of a function or class, compiled in its module's namespace."""
    source = textwrap.dedent(inspect.getsource(obj))
    module = sys.modules[obj.__module__]
    _MODULE_NAMES.clear()
    _MODULE_NAMES.update(k for k, v in vars(module).items() if isinstance(v, types.ModuleType))
    tree = ast.parse(source)
    n_sites = len(_sites(tree))
    for k in range(n_sites):
        mutated = copy.deepcopy(tree)  # deep copies keep the walk order, so site k is the same place
        description, apply, node = _sites(mutated)[k]
        apply(node)
        ast.fix_missing_locations(mutated)
        namespace = dict(vars(module))
        try:
            code = compile(mutated, f"<mutant of {obj.__qualname__}>", "exec",
                           flags=__future__.annotations.compiler_flag, dont_inherit=True)
            exec(code, namespace)
        except Exception:  # a mutant that does not even compile or define: trivially killed
            yield Mutant(description, None)
            continue
        yield Mutant(description, namespace[obj.__name__])


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise MutantTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def killed(spec: Spec, mutant: Mutant, seeds: tuple[int, ...] = SEEDS) -> bool:
    """Whether the check rejects the mutant on every one of ``seeds`` (a hang counts as rejected).

    A mutant that seems to survive is tried again with a longer time limit: on a busy machine an
    alarm can land inside library code that swallows it, and a survivor must be a real one.
    """
    return _killed(spec, mutant, seeds, TIMEOUT_S) or _killed(spec, mutant, seeds, 5 * TIMEOUT_S)


def _killed(spec: Spec, mutant: Mutant, seeds: tuple[int, ...], timeout: float) -> bool:
    if mutant.obj is None:
        return True
    for seed in seeds:
        try:
            with _time_limit(timeout), contextlib.redirect_stdout(io.StringIO()), without_hints():
                check_function(spec, mutant.obj, seed=seed, device="cpu")
        except MutantTimeout:
            return True  # the grader's time limit would stop it too
        except CheckFailure:
            continue
        except Exception:  # the check itself broke on the mutant's output: also a rejection
            continue
        return False
    return True


@dataclass
class Report:
    spec: Spec
    total: int
    killed: int
    equivalent: list[str]
    survivors: list[str]

    @property
    def rate(self) -> float:
        """Killed share of the mutants that are not known to be equivalent."""
        counted = self.total - len(self.equivalent)
        return self.killed / counted if counted else 1.0


def mutation_report(spec: Spec, seeds: tuple[int, ...] = SEEDS, limit: Optional[int] = None) -> Report:
    total = n_killed = 0
    equivalent, survivors = [], []
    for mutant in mutants(spec.reference):
        if limit is not None and total >= limit:
            break
        total += 1
        if (spec.name, mutant.description) in EQUIVALENT:
            equivalent.append(mutant.description)
        elif killed(spec, mutant, seeds):
            n_killed += 1
        else:
            survivors.append(mutant.description)
    return Report(spec, total, n_killed, equivalent, survivors)
