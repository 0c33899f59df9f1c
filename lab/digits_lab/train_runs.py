"""``scripts/train.py`` run as a user runs it, in a fresh process, timed: the one way the benchmark's recipe
runs, the spread and the contention study start a training, and the row a finished run becomes."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from digits.run_metrics import RunMetrics
from digits_lab import ROOT


def train_run_command(run_dir: Path, overrides: list[str], seed: int | None = None) -> list[str]:
    """The ``scripts/train.py`` command of a timed run: ``overrides``, then ``seed=N`` when a seed is given."""
    script = ROOT / "scripts" / "train.py"
    seeded = [f"seed={seed}"] if seed is not None else []
    command = [sys.executable, str(script), f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"]
    return [*command, *overrides, *seeded]


def run_train_script(
    run_dir: Path, overrides: list[str], env: dict[str, str], seed: int | None = None, timeout: float | None = None
) -> tuple[float, float]:
    """``scripts/train.py`` in a fresh process with the environment ``env``: wall seconds command to exit and
    the CPU seconds of its process tree; a failed run raises with its last output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = train_run_command(run_dir, overrides, seed)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-2000:]  # the run's own error line is logged on stdout
        raise RuntimeError(f"scripts/train.py {' '.join(command[2:])} failed:\n{output}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def timed_train_run(
    name: str, overrides: list[str], data_dir: str | Path, output_dir: Path, seed: int | None = None
) -> dict:
    """``scripts/train.py`` with ``overrides`` (and ``seed=N``) in a fresh process, timed start to exit."""
    run_dir = output_dir / f"run_{name}"
    wall, _ = run_train_script(run_dir, overrides, {**os.environ, "DIGITS_DATA_DIR": str(data_dir)}, seed)
    return run_row(run_dir, " ".join(overrides), wall, seed)


def run_row(run_dir: Path, overrides: str, wall_seconds: float | None, seed: int | None = None) -> dict:
    """A finished ``scripts/train.py`` run as one row of the runs tables (benchmark, spread); ``run`` is the
    recipe's overrides without the seed, so that the recipes table groups a recipe's seeds."""
    metrics = RunMetrics.read(run_dir)
    return {
        "run": overrides or "(default)",
        "seed": seed,
        "wall_seconds": wall_seconds,
        "train_seconds": metrics.train_seconds,
        "test_acc": metrics.test_acc,
        "val_acc": metrics.val_acc_best,
        "epochs": metrics.epochs,
        "steps": metrics.steps,
        "fit_seconds": metrics.fit_seconds,
        "startup_seconds": metrics.startup_seconds,
    }
