"""Does mild augmentation (``data.augment``) make the model read users' pictures better, and at what
cost? Two trainings with the same seed and config, augmentation off and on, run one after the other
in the same process tree, then both models scored on the same test digits and re-rendered pictures
(``digits_lab.handwriting_benchmark``). Beside the whole-run times (noisy on a shared machine) the
augmentation's own cost is timed per batch, interleaved with the un-augmented batch fetch."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from digits.augment import Augmentation, augment, batch_generator
from digits.data import load_mnist, normalize
from digits.evaluation.loading import load_module
from digits.report import markdown_table
from digits_lab import ROOT
from digits_lab.handwriting_benchmark import prepare, score

ARMS = {"off": "data.augment.enabled=false", "on": "data.augment.enabled=true"}
TRAIN = ROOT / "scripts" / "train.py"


def train_arm(folder: Path, overrides: list[str]) -> dict[str, Any]:
    """scripts/train.py as a user runs it; its metrics.json."""
    command = [
        sys.executable,
        str(TRAIN),
        f"hydra.run.dir={folder}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def batch_cost(data_dir: str, batch_size: int, rounds: int = 30) -> dict[str, float]:
    """Median milliseconds of one training batch's fetch, without and with augmentation, interleaved."""
    images = normalize(load_mnist(data_dir, train=True, download=False)[0])
    settings, plain, augmented = Augmentation(), [], []
    for step in range(rounds):
        indices = torch.randperm(len(images), generator=torch.Generator().manual_seed(step))[:batch_size].tolist()
        started = time.perf_counter()
        batch = images[torch.as_tensor(indices)]
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        augment(images[torch.as_tensor(indices)], settings, batch_generator(0, indices))
        augmented.append(time.perf_counter() - started)
    return {
        "plain_ms": 1000 * statistics.median(plain),
        "augmented_ms": 1000 * statistics.median(augmented),
        "batch_size": batch_size,
        "rounds": rounds,
        "shape": list(batch.shape),
    }


def run_augment_study(cfg) -> str:
    """Both arms as ``cfg`` says; writes augment_study.json and .md into the run folder. Returns the table."""
    output_dir, data_dir, overrides = Path(cfg.paths.output_dir), cfg.data_dir, list(cfg.overrides)
    digits, seed, variants = cfg.digits, cfg.seed, tuple(cfg.variants)
    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"overrides": overrides, "arms": {}}
    for arm, switch in ARMS.items():
        results["arms"][arm] = {"train": train_arm(output_dir / arm, [*overrides, switch])}
    prepared = prepare(data_dir, digits, seed, variants)
    for row in results["arms"].values():
        module = load_module(Path(row["train"]["best_checkpoint"]), torch.device("cpu"))
        row["handwriting"] = score(module.net, prepared, seed)
    results["batch_cost"] = batch_cost(data_dir, 256)
    (output_dir / "augment_study.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "augment_study.md").write_text(markdown(results) + "\n")
    return markdown(results)


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for arm, row in results["arms"].items():
        train, handwriting = row["train"], row["handwriting"]
        rows.append(
            {
                "data.augment.enabled": arm == "on",
                "test/acc": f"{train['test/acc']:.2%}",
                **{f"{v} (after)": f"{r['after']:.2%}" for v, r in handwriting["variants"].items()},
                "fit s": train["fit_seconds"],
                "epochs": train["epochs"],
            }
        )
    cost = results["batch_cost"]
    return "\n".join(
        [
            f"# Augmentation study (overrides: {' '.join(results['overrides']) or 'none'})",
            "",
            markdown_table(rows),
            f"Handwriting columns: {results['arms']['off']['handwriting']['digits']} re-rendered test digits each, "
            "after `digits.handwriting.to_mnist`.",
            "",
            f"One batch of {cost['batch_size']}: fetch {cost['plain_ms']:.2f} ms, fetch + augment "
            f"{cost['augmented_ms']:.2f} ms (medians of {cost['rounds']} interleaved rounds).",
        ]
    )
