"""More than one process: DistributedDataParallel on the CPU (gloo) against one process, and the
cluster launcher config."""

from __future__ import annotations

import json

import torch

from conftest import QUIET, run_script
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
    runs = {"single": ["data.batch_size=256"],
            # 2 x 128 per step: the same 256 images per step as one process (each takes every other one)
            "ddp": ["trainer=ddp", "trainer.devices=2", "data.batch_size=128"]}
    metrics = {}
    for name, overrides in runs.items():
        run_dir = tmp_path / name
        result = run_script("train.py", [*ONE_EPOCH, *overrides, f"hydra.run.dir={run_dir}"], data_dir, tmp_path)
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


def test_slurm_launcher_config_composes_for_a_ddp_sweep():
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from conftest import CONFIG_DIR

    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp", "trainer.devices=4",
                 "trainer.num_nodes=2"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert get_class(launcher["_target_"]).__name__ == "SlurmLauncher"  # the plugin is installed
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu" and launcher["max_num_timeout"] == 0
    assert cfg.trainer.strategy == "ddp"


def test_a_sweep_runs_through_the_submitit_plugin(tmp_path, data_dir):
    """The SLURM launcher's code path with submitit's local executor: each sweep point is pickled,
    run as its own process by submitit and writes its own run folder. Only sbatch is not exercised."""
    sweep = tmp_path / "sweep"
    result = run_script("train.py", ["-m", "hydra/launcher=submitit_local", "loss=cross_entropy,nll", "debug=limit",
                                     "logger=none", f"hydra.sweep.dir={sweep}", *QUIET], data_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr
    runs = sorted(p for p in sweep.iterdir() if p.name[:2] in ("0_", "1_"))
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert [m["loss"] for m in metrics] == ["CrossEntropyLoss", "LogSoftmaxNLLLoss"]
    assert all(m["steps"] == 20 and m["test/acc"] > 0.5 for m in metrics)
    assert len([p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]) == 2  # submitit's job folders
