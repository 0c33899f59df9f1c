"""More than one process: DistributedDataParallel on the CPU (gloo) against one process, and the
cluster launcher config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from conftest import QUIET, ROOT
from digits.data import MNISTDataModule
from digits.module import DigitsModule

ONE_EPOCH = ["trainer.max_epochs=1", "logger=none", "seed=11", *QUIET]


def accuracy(checkpoint: str, loader) -> float:
    module = DigitsModule.from_checkpoint(checkpoint).eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (module(images).argmax(1) == labels).sum().item()
            total += len(labels)
    return correct / total


def test_two_process_ddp_matches_one_process(tmp_path, data_dir):
    env = {**os.environ, "DIGITS_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore"}
    runs = {"single": ["data.batch_size=256"],
            # 2 x 128 per step: the same 256 images per step as one process (each takes every other one)
            "ddp": ["trainer=ddp", "trainer.devices=2", "data.batch_size=128"]}
    metrics = {}
    for name, overrides in runs.items():
        run_dir = tmp_path / name
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *ONE_EPOCH, *overrides,
                                 f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert (result.stdout + result.stderr).count("best val/acc") == 1  # one summary, from rank 0
        metrics[name] = json.loads((run_dir / "metrics.json").read_text())
    single, ddp = metrics["single"], metrics["ddp"]
    assert single["steps"] == ddp["steps"] == 215  # 55,000 images / 256 per step, split over 2 processes
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").is_file()
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir())[-1] == "last.ckpt"
    # Same images per step; BatchNorm statistics per process and the summation order differ.
    assert single["test/acc"] > 0.975 and ddp["test/acc"] > 0.975
    assert abs(single["test/acc"] - ddp["test/acc"]) < 0.005

    # The logged accuracies cover every image, not rank 0's half: torchmetrics synchronised them.
    datamodule = MNISTDataModule(str(data_dir), download=False)
    datamodule.setup()
    best = ddp["best_checkpoint"]
    assert abs(accuracy(best, datamodule.val_dataloader()) - ddp["val/acc_best"]) < 1e-6
    assert abs(accuracy(best, datamodule.test_dataloader()) - ddp["test/acc"]) < 1e-6
