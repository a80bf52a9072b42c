"""Data-parallel training under torchrun: two CPU processes (gloo) equal one process.

``torchrun --nproc_per_node 2 -m solutions.training`` runs the chapter's training script in two
processes. Every process draws the same global batch and trains on its half of the rows;
DistributedDataParallel averages the gradients, so each update equals the single-process update
on the whole batch, up to the order in which float32 sums are added. The test trains a small
model for a few steps both ways and compares the losses and the final weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from solutions import training

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--preset", "tiny", "--steps", "6", "--batch", "8", "--eval-interval", "0", "--eval-batches", "2",
        "--n-chars", "50000", "--threads", "1", "--device", "cpu", "--no-progress", "--sample", "0"]


def run(out: Path, nproc: int) -> tuple[list[float], dict]:
    if nproc == 1:  # the same script in this process (saves starting a Python with torch)
        threads = torch.get_num_threads()
        try:
            assert training.main(ARGS + ["--out", str(out)]) == 0
        finally:
            torch.set_num_threads(threads)
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--standalone", "-m", "solutions.training"]  # standalone: a free port, no other host
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd + ARGS + ["--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    state = torch.load(out / "ckpt.pt", weights_only=True)
    return history["loss"], state["model"]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch has no gloo backend")
def test_two_processes_train_like_one_on_the_same_global_batch(tmp_path):
    losses_1, weights_1 = run(tmp_path / "one", 1)
    losses_2, weights_2 = run(tmp_path / "two", 2)
    assert len(losses_1) == len(losses_2) == 6
    torch.testing.assert_close(torch.tensor(losses_2), torch.tensor(losses_1), rtol=1e-5, atol=1e-6)
    assert weights_1.keys() == weights_2.keys()
    for name in weights_1:
        if name.endswith("attn.b_K"):
            # the key bias adds the same number to every score of a query's row, which softmax
            # ignores: its true gradient is 0 and the computed one is rounding noise, which Adam
            # divides by its own size. It wanders by up to lr per step, differently in each run.
            assert (weights_2[name] - weights_1[name]).abs().max() <= 2 * 6 * 3e-3
            continue
        torch.testing.assert_close(weights_2[name], weights_1[name], rtol=1e-4, atol=1e-6, msg=name)
    # the weights moved: the comparison is not between two untouched initialisations
    assert losses_1[-1] < losses_1[0]
