"""Each default is written once: the code and the other configs take it from there, so changing that one
place changes every use (the split, the data folder, the benchmark's model, the checkpoint's keys, the
run's metrics)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
from pathlib import Path

import torch
import yaml
from harness import CONFIG_DIR, mnist_dir
from hydra import compose, initialize_config_dir

import digits.data
from digits.data import MNISTDataModule, default_data_dir
from digits.evaluation.run import run_evaluation
from digits.module import DigitsModule
from digits.run_metrics import RunMetrics


def configs_with_val_size(tmp_path: Path, val_size: int) -> Path:
    """A copy of configs/ whose data/mnist.yaml asks for another validation size."""
    copy = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, copy)
    mnist = copy / "data" / "mnist.yaml"
    mnist.write_text(mnist.read_text().replace("val_size: 5000", f"val_size: {val_size}"))
    assert yaml.safe_load(mnist.read_text())["val_size"] == val_size
    return copy


def test_the_split_comes_from_the_data_config(tmp_path, data_dir, monkeypatch):
    written = yaml.safe_load((CONFIG_DIR / "data" / "mnist.yaml").read_text())
    datamodule = MNISTDataModule(str(data_dir), download=False)
    assert (datamodule.val_size, datamodule.split_seed) == (written["val_size"], written["split_seed"])
    monkeypatch.setattr(digits.data, "CONFIG_DIR", configs_with_val_size(tmp_path, 1234))
    datamodule = MNISTDataModule(str(data_dir), download=False)
    datamodule.setup("fit")
    assert len(datamodule.val_set.labels) == 1234 and len(datamodule.train_set.labels) == 60_000 - 1234


def test_evaluate_takes_the_split_from_the_checkpoint_else_from_the_data_config(
    trained_run, data_dir, tmp_path, monkeypatch
):
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["run_config"]["data"]["val_size"] = 2000
    torch.save(checkpoint, tmp_path / "stored.ckpt")
    del checkpoint["hyper_parameters"]["run_config"]["data"]
    torch.save(checkpoint, tmp_path / "unstored.ckpt")
    monkeypatch.setattr(digits.data, "CONFIG_DIR", configs_with_val_size(tmp_path, 1234))
    for name, images in (("stored", 2000), ("unstored", 1234)):
        results = run_evaluation(
            tmp_path / f"{name}.ckpt", tmp_path / name, "val", str(data_dir), device="cpu", tensorboard=False
        )
        assert results["images"] == images, name


def test_the_data_folder_rule_is_one_function(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path / "mnist"))
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for name in ("train", "eval", "export"):
            cfg = compose(name, overrides=["paths.output_dir=x"])
            assert cfg.paths.data_dir == default_data_dir() == str(tmp_path / "mnist")
    assert mnist_dir() == Path(default_data_dir()).resolve()  # the tests' folder: the same rule
    monkeypatch.delenv("DIGITS_DATA_DIR")
    assert mnist_dir() == Path("data").resolve() and default_data_dir() == "data"


def test_a_checkpoints_keys_are_the_modules_arguments():
    arguments = [name for name in inspect.signature(DigitsModule.__init__).parameters if name != "self"]
    assert list(DigitsModule.hyperparameter_keys()) == arguments
    assert {"model", "loss", "optimizer", "run_config"} <= set(arguments)


def test_the_metrics_record_is_metrics_json():
    record = RunMetrics(
        val_acc_best=0.98,
        epochs=1,
        steps=20,
        parameters=100,
        loss="nll",
        loss_class="LogSoftmaxNLLLoss",
        fit_seconds=1.0,
        fit_cpu_seconds=1.5,
        startup_seconds=None,
        train_seconds=None,
        monitoring_seconds=0.0,
        test_loss=0.1,
        test_acc=0.97,
        best_checkpoint="b.ckpt",
        output_dir="run",
        total_seconds=3.0,
    )
    saved = record.to_json()
    assert list(saved) == [key for key in RunMetrics.json_keys() if key != "stopped_early"]
    assert {"val/acc_best", "test/acc", "test/loss", "fit_cpu_seconds", "startup_seconds"} <= saved.keys()
    assert RunMetrics.from_json(json.loads(json.dumps(saved))) == record
    stopped = dataclasses.replace(record, test_loss=None, test_acc=None, stopped_early={"step": 3, "checkpoint": "l"})
    assert "test/acc" not in stopped.to_json() and RunMetrics.from_json(stopped.to_json()) == stopped
