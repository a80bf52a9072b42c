"""The package as Colab gets it: built, installed into a fresh environment outside the clone, used.

This proves the data files (GPT-2's BPE files, Tiny Shakespeare) really ship in the wheel and that
the checks work without the repository.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

USE_IT = r"""
import pathlib, sys, solutions
from solutions import checks as check
from solutions import tokenization as t
here = pathlib.Path(solutions.__file__).resolve()
assert "site-packages" in str(here) and pathlib.Path(sys.argv[1]) not in here.parents, here
ids = t.gpt2_tokenizer().encode("Hello world <|endoftext|>", allowed_special="all")
assert ids == [15496, 995, 220, 50256], ids
assert t.tiktoken_gpt2().encode("Hello world") == [15496, 995]
assert len(t.load_tiny_shakespeare()) == 1115394
from solutions.checks.core import check_function
check_function(check.SPECS["merge"], t.merge)
from solutions import embeddings as e
check_function(check.SPECS["Embed"], e.Embed)  # a module check: tensors through the wire (numpy), the module driver
check_function(check.SPECS["apply_rope"], e.apply_rope)
print("installed package works from", here.parent)
"""


def _declared_closure() -> list:
    """The installed distributions the package declares, and their own requirements, transitively."""
    import tomllib
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = default_environment() | {"extra": ""}
    todo, seen, found = [Requirement(r) for r in declared], set(), []
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen or (req.marker is not None and not req.marker.evaluate(env)):
            continue
        seen.add(name)
        dist = metadata.distribution(req.name)
        found.append(dist)
        todo += [Requirement(r) for r in dist.requires or []]
    return found


def _top_level_paths(dist) -> set:
    """The folders and modules a distribution installed at the top of site-packages."""
    base = Path(dist.locate_file(""))
    tops = set()
    for file in dist.files or []:
        first = Path(file).parts[0]
        if first.endswith(".dist-info") or first in ("..", "__pycache__") or first.endswith(".pth"):
            if first.endswith(".dist-info"):
                tops.add(base / first)
            continue
        tops.add(base / first)
    return {t for t in tops if t.exists()}


def test_wheel_installs_and_works_outside_the_clone(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("transformer_course-*.whl")

    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    # --no-deps: the environment borrows torch & co. from this one (as Colab has its own torch),
    # but only the distributions the package declares and what they need in turn: an import of
    # something undeclared (numpy, say) fails here as it would in a bare environment.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    borrowed = tmp_path / "borrowed"
    borrowed.mkdir()
    for dist in _declared_closure():
        for top in _top_level_paths(dist):
            if not (borrowed / top.name).exists():
                (borrowed / top.name).symlink_to(top)
    Path(site, "borrowed.pth").write_text(str(borrowed) + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    use = subprocess.run(
        [str(python), "-c", USE_IT, str(ROOT)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert use.returncode == 0, use.stdout + use.stderr
    assert "installed package works" in use.stdout
