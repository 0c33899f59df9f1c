"""Crashes cost steps, not runs: atomic checkpoints, SIGKILL and resume, clear errors on bad disks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import QUIET, ROOT

# 2 epochs of 60 steps, a checkpoint every 10 steps, the whole test set at the end.
RUN = ["trainer.max_epochs=2", "trainer.limit_train_batches=60", "trainer.limit_val_batches=3",
       "callbacks.step_checkpoint.every_n_train_steps=10", "data.batch_size=128", "seed=3", *QUIET]


def script(args: list[str], data_dir: Path, cwd: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "DIGITS_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    return output


def saved_step(path: Path) -> int:
    """The global step of a checkpoint, or -1 while there is none (never a half-written one)."""
    return torch.load(path, weights_only=True)["global_step"] if path.exists() else -1


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    steps = set()
    for events in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            steps |= {event.step for event in accumulator.Scalars(tag)}
    return sorted(steps)


def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path, data_dir):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = script([*RUN, f"hydra.run.dir={whole}"], data_dir, tmp_path)
    output = finish(reference)
    assert reference.returncode == 0, output[-3000:]

    process = script([*RUN, f"hydra.run.dir={killed}"], data_dir, tmp_path)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while saved_step(last) < 70:  # step 70: ten steps into the second epoch
        assert process.poll() is None and time.monotonic() < deadline, finish(process)[-3000:]
        time.sleep(0.02)
    process.kill()  # SIGKILL: no handler runs, nothing is flushed
    finish(process)
    assert process.returncode == -signal.SIGKILL
    killed_at = saved_step(last)
    assert 70 <= killed_at < 120 and not (killed / "metrics.json").exists()

    resumed = script([f"resume={killed}"], data_dir, tmp_path)
    output = finish(resumed)
    assert resumed.returncode == 0, output[-3000:]
    assert f"resuming {killed}" in output

    expected = json.loads((whole / "metrics.json").read_text())
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["steps"] == expected["steps"] == 120 and metrics["epochs"] == 2
    # The bar is 0.1 percentage point; resuming restores the weights, optimizer, schedule,
    # the position in the epoch's batch order and the random streams, so on the CPU it is exact.
    assert abs(metrics["test/acc"] - expected["test/acc"]) <= 0.001
    assert metrics["test/acc"] == expected["test/acc"] and metrics["test/loss"] == expected["test/loss"]
    assert metrics["val/acc_best"] == expected["val/acc_best"]
    final, reference_final = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
                              for run in (killed, whole))
    assert all(torch.equal(final[key], reference_final[key]) for key in reference_final)

    # One run folder: the original Hydra snapshot kept, the resume's beside it, and TensorBoard's
    # curves continue to the last step.
    assert (killed / ".hydra" / "overrides.yaml").read_text() == (whole / ".hydra" / "overrides.yaml").read_text()
    assert len(list((killed / ".hydra").glob("resumed-*/overrides.yaml"))) == 1
    steps = scalar_steps(killed, "train/loss")
    assert steps[0] < killed_at and steps[-1] >= 100
