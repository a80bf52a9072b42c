"""Spot code in a submission that a human should look at before its grade counts.

Nothing here changes a score: the grader runs the code in a sandbox anyway, and a finding only
marks the submission "needs attention" with the reason. The rules aim at what can forge a
verdict or reach outside the notebook: importing the graded chapter's reference or the checker,
IPython hooks, import-system and interpreter tricks, process control, files and the network.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# module -> why it is worth a look (first part of the dotted name)
MODULES = {
    "os": "process control or file access (os)",
    "sys": "interpreter internals (sys)",
    "subprocess": "starts processes (subprocess)",
    "signal": "process control (signal)",
    "ctypes": "raw memory access (ctypes)",
    "gc": "reaches other objects through the garbage collector (gc)",
    "importlib": "import-system tricks (importlib)",
    "builtins": "changes Python's builtins",
    "inspect": "reads frames or source of other code (inspect)",
    "multiprocessing": "starts processes (multiprocessing)",
    "threading": "starts threads that outlive a cell (threading)",
    "socket": "network access (socket)",
    "shutil": "file access (shutil)",
    "pathlib": "file access (pathlib)",
    "pickle": "unpickling runs arbitrary code (pickle)",
    "marshal": "code objects (marshal)",
    "resource": "process limits (resource)",
    "pty": "process control (pty)",
    "IPython": "IPython internals",
    "urllib": "network access (urllib)",
    "requests": "network access (requests)",
}
# attribute or name -> why
NAMES = {
    "get_ipython": "IPython hooks (get_ipython)",
    "__import__": "import-system tricks (__import__)",
    "__builtins__": "changes Python's builtins",
    "__code__": "rewrites function code (__code__)",
    "__globals__": "reaches other modules' globals (__globals__)",
    "__subclasses__": "interpreter internals (__subclasses__)",
    "__dict__": "rewrites objects' attributes (__dict__)",
    "input_transformers_cleanup": "IPython input transformers",
    "input_transformers_post": "IPython input transformers",
    "exec": "runs code built at run time (exec)",
    "eval": "runs code built at run time (eval)",
    "compile": "runs code built at run time (compile)",
    "open": "file access (open)",
    "exit": "process control (exit)",
    "quit": "process control (quit)",
    "setattr": "rewrites attributes at run time (setattr)",
    "globals": "rewrites the notebook's globals",
    "breakpoint": "starts a debugger",
}


@dataclass(frozen=True)
class Finding:
    cell: int  # index of the cell in the submitted notebook
    line: int
    reason: str

    def __str__(self) -> str:
        return f"cell {self.cell + 1}, line {self.line}: {self.reason}"


# cell magics whose body is not Python the grader can read: another program runs it
OTHER_PROGRAMS = {"bash", "sh", "script", "system", "sx", "writefile", "file", "perl", "ruby", "python",
                  "python2", "python3", "pypy", "html", "javascript", "js", "svg", "latex", "markdown"}
MAGIC_DEPTH = 3  # magics inside magics are read this deep


def scan(source: str, cell: int, *, reference_modules: set[str]) -> list[Finding]:
    """Findings in one cell. ``reference_modules``: dotted module names whose import is copying
    the reference or touching the checker (e.g. {"solutions.tokenization", "solutions.checks"}).

    A cell with IPython syntax (``%time ...``, ``%%capture``, ``!ls``) is read as IPython runs it
    (its own transformer turns magics into calls); the code a magic runs is read too."""
    findings: list[Finding] = []
    _scan(source, cell, reference_modules, findings, offset=0, depth=0)
    return findings


def _scan(source: str, cell: int, reference_modules: set[str], findings: list[Finding], *, offset: int,
          depth: int) -> None:
    generated = False
    try:
        tree = ast.parse(source)
    except SyntaxError:
        python = _as_ipython_runs_it(source)
        if python is None:
            return  # it fails when run; nothing it could do
        try:
            tree = ast.parse(python)
        except SyntaxError:
            return
        except (RecursionError, MemoryError, ValueError):
            findings.append(Finding(cell, offset, "code too deeply nested or too large to analyse"))
            return
        generated = "get_ipython" not in source  # the transformer's calls are not the student's
    except (RecursionError, MemoryError, ValueError):
        findings.append(Finding(cell, offset, "code too deeply nested or too large to analyse"))
        return

    def add(node: ast.AST, reason: str) -> None:
        if generated and reason == NAMES["get_ipython"]:
            return
        finding = Finding(cell, offset + getattr(node, "lineno", 0), reason)
        if finding not in findings:
            findings.append(finding)

    def check_module(node: ast.AST, module: str) -> None:
        if module == "solutions" or any(module == m or module.startswith(m + ".") for m in reference_modules):
            add(node, f"imports the course's reference or checker ({module})")
        elif module.split(".")[0] in MODULES:
            add(node, MODULES[module.split(".")[0]])

    def magic(node: ast.AST, kind: str, name: str, code: str, line: int) -> None:
        if kind in ("system", "getoutput") or name in OTHER_PROGRAMS:
            add(node, f"runs a shell command or another program ({'!' if kind != 'run_cell_magic' else '%%'}{name})")
        if re.search(r"\bsolutions\b", code) and depth < MAGIC_DEPTH:
            before = len(findings)
            for candidate in _code_in_magic(code):
                _scan(candidate, cell, reference_modules, findings, offset=line, depth=depth + 1)
                if len(findings) > before:
                    break
            else:
                add(node, f"reaches the course's package through a magic (%{name})")

    try:
        _walk(tree, add, check_module, magic if generated else None)
    except (RecursionError, MemoryError):
        add(tree, "code too deeply nested or too large to analyse")


def _as_ipython_runs_it(source: str) -> str | None:
    """The cell as IPython compiles it (magics and shell escapes become calls), or None."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # whatever IPython makes of strange input: nothing to read
        return None


def _code_in_magic(text: str) -> list[str]:
    """What a magic's argument may run as Python: the whole text, then without leading options
    (``%timeit -n1 -r1 code``)."""
    candidates, words = [text], text.split(" ")
    for i in range(1, min(len(words), 6)):
        candidates.append(" ".join(words[i:]))
    return candidates


def _magic_call(node: ast.AST) -> tuple[str, str, str, int] | None:
    """(kind, magic name, the code it runs, line) for a call the IPython transformer wrote."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython"):
        return None
    args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else "" for a in node.args]
    kind = node.func.attr
    line = getattr(node, "lineno", 1) - 1
    if kind == "run_line_magic" and len(args) >= 2:
        return kind, args[0], args[1], line
    if kind == "run_cell_magic" and len(args) >= 3:
        return kind, args[0], args[1] + "\n" + args[2], line
    if kind in ("system", "getoutput") and args:
        return kind, args[0].split(" ")[0], args[0], line
    return None


def _walk(tree, add, check_module, magic=None) -> None:
    read = set()  # the arguments of magics: read as code by ``magic``, not as strings
    for node in ast.walk(tree):
        if magic is not None and isinstance(node, ast.Call):
            found = _magic_call(node)
            if found is not None:
                kind, name, code, line = found
                magic(node, kind, name, code, line)
                read.update(id(a) for a in node.args)
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_module(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            check_module(node, module)
            if module == "solutions":
                for alias in node.names:
                    check_module(node, f"solutions.{alias.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 300 \
                and id(node) not in read:
            # a module named in a string: sys.modules["solutions.mlp"], importlib, __import__
            for name in re.findall(r"\bsolutions(?:[./][A-Za-z_]\w*)*", node.value):
                name = name.replace("/", ".")
                if name == node.value.strip() or "." in name:
                    check_module(node, name)
        elif isinstance(node, ast.Name) and node.id in NAMES:
            add(node, NAMES[node.id])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in ("check", "solutions"):
            add(node, f"rebinds the course's checker or package ({node.id})")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "vars") \
                and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "sys":
            add(node, SYS_MODULES)
        elif isinstance(node, ast.Attribute):
            if node.attr in NAMES:
                add(node, NAMES[node.attr])
            if node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
                add(node, SYS_MODULES)
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in ("solutions", "check"):
                add(node, f"uses the course's reference or checker ({ast.unparse(node)[:200]})")


SYS_MODULES = "reaches every loaded module, the course's reference or checker among them (sys.modules)"
