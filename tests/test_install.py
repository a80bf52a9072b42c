"""The package as Colab gets it: built, installed into a fresh environment outside the clone, used.

This proves the data files (GPT-2's BPE files, Tiny Shakespeare) really ship in the wheel and that
the checks work without the repository.
"""

import subprocess
import sys
import sysconfig
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
check.merge(t.merge)
print("installed package works from", here.parent)
"""


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
    # through a .pth file that adds this environment's site-packages *after* the new one's.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
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
