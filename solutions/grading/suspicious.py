"""Spot code in a submission that a human should look at before its grade counts.

Nothing here changes a score: the grader runs the code in a sandbox anyway, and a finding only
marks the submission "needs attention" with the reason. The rules aim at what can forge a
verdict or reach outside the notebook: importing the graded chapter's reference or the checker,
IPython hooks, import-system and interpreter tricks, process control, files and the network.
"""

from __future__ import annotations

import ast
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


def scan(source: str, cell: int, *, reference_modules: set[str]) -> list[Finding]:
    """Findings in one cell. ``reference_modules``: dotted module names whose import is copying
    the reference or touching the checker (e.g. {"solutions.tokenization", "solutions.checks"})."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # it fails when run; nothing it could do
    except (RecursionError, MemoryError, ValueError):
        return [Finding(cell, 0, "code too deeply nested or too large to analyse")]
    findings: list[Finding] = []

    def add(node: ast.AST, reason: str) -> None:
        finding = Finding(cell, getattr(node, "lineno", 0), reason)
        if finding not in findings:
            findings.append(finding)

    def check_module(node: ast.AST, module: str) -> None:
        if module == "solutions" or any(module == m or module.startswith(m + ".") for m in reference_modules):
            add(node, f"imports the course's reference or checker ({module})")
        elif module.split(".")[0] in MODULES:
            add(node, MODULES[module.split(".")[0]])

    try:
        _walk(tree, add, check_module)
    except (RecursionError, MemoryError):
        add(tree, "code too deeply nested or too large to analyse")
    return findings


def _walk(tree, add, check_module) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_module(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            check_module(node, module)
            if module == "solutions":
                for alias in node.names:
                    check_module(node, f"solutions.{alias.name}")
        elif isinstance(node, ast.Name) and node.id in NAMES:
            add(node, NAMES[node.id])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in ("check", "solutions"):
            add(node, f"rebinds the course's checker or package ({node.id})")
        elif isinstance(node, ast.Attribute):
            if node.attr in NAMES:
                add(node, NAMES[node.attr])
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in ("solutions", "check"):
                add(node, f"uses the course's reference or checker ({ast.unparse(node)[:200]})")
