"""trainer.precision=auto, and training in bf16-mixed: the losses still compare exactly and the accuracies a
run reports are the float32 ones evaluate.py gives."""

from __future__ import annotations

import pytest
import torch
import yaml
from harness import QUIET, compose_train

from digits import precision
from digits.config import ConfigError, validate_train_config
from digits.data import MNISTDataModule
from digits.evaluation.loading import load_module
from digits.train import train


@pytest.mark.parametrize(
    "trainer, units, expected",
    [
        ({"precision": "auto", "accelerator": "cpu"}, True, "bf16-mixed"),
        ({"precision": "auto", "accelerator": "cpu"}, False, "32-true"),  # emulated bf16 is slower: float32
        ({"precision": "auto", "accelerator": "gpu"}, True, "32-true"),  # a GPU keeps float32 unless asked
        ({"precision": "32-true", "accelerator": "cpu"}, True, "32-true"),  # a value given is kept
        ({"precision": "bf16-mixed", "accelerator": "cpu"}, False, "bf16-mixed"),
    ],
)
def test_auto_is_bf16_mixed_only_on_a_cpu_with_bf16_units(trainer, units, expected, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: units)
    assert precision.resolved_precision(trainer) == expected


def test_auto_with_accelerator_auto_follows_where_the_run_trains(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.resolved_precision({"precision": "auto", "accelerator": "auto"}) == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert precision.resolved_precision({"precision": "auto", "accelerator": "auto"}) == "32-true"


def test_this_machine_reads_its_cpu_as_torch_does():
    """The private checks exist in this torch (a rename would silently read every CPU as without units)."""
    assert hasattr(torch.cpu, "_is_avx512_bf16_supported") and hasattr(torch.cpu, "_is_amx_tile_supported")
    assert precision.cpu_bf16_units() == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def test_a_precision_lightning_refuses_is_still_refused(tmp_path, data_dir):
    cfg = compose_train(["trainer.precision=17"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match="trainer.precision=17 is refused by Lightning"):
        validate_train_config(cfg)


SHORT = [
    "logger=none",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.deterministic=true",
    *QUIET,
]


def test_bf16_mixed_keeps_the_losses_alike_and_reports_float32_accuracies(tmp_path, data_dir):
    """Two trainings under bf16 autocast, cross_entropy and nll: the loss is float32 outside autocast, so the
    two forms train the same network bitwise, as they do in float32. The run's test numbers are the float32
    ones: the checkpoint evaluated without autocast gives the same loss to the last bit."""
    runs = {}
    for loss in ("cross_entropy", "nll"):
        cfg = compose_train([*SHORT, "trainer.precision=bf16-mixed", f"loss={loss}"], tmp_path / loss, data_dir)
        metrics, _ = train(cfg)
        runs[loss] = metrics
    assert runs["cross_entropy"].test_loss == runs["nll"].test_loss
    assert runs["cross_entropy"].test_acc == runs["nll"].test_acc > 0.8
    a = torch.load(tmp_path / "cross_entropy/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "nll/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert all(value.dtype != torch.bfloat16 for value in a.values())  # mixed: the weights stay float32

    # the test set's first two batches, read in float32 as evaluate.py reads them
    module = load_module(runs["nll"].best_checkpoint, torch.device("cpu"))
    datamodule = MNISTDataModule(str(data_dir), batch_size=1000, download=False)
    datamodule.setup("test")
    losses, correct, total = [], 0, 0
    with torch.no_grad():
        for _, (images, labels) in zip(range(2), datamodule.test_dataloader()):
            logits = module(images)
            losses.append(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += (logits.argmax(1) == labels).sum().item()
            total += len(labels)
    assert correct / total == pytest.approx(runs["nll"].test_acc, abs=1e-6)
    assert (sum(losses) / total).item() == pytest.approx(runs["nll"].test_loss, rel=1e-6)


def test_the_run_records_the_precision_it_trained_in(tmp_path, data_dir, monkeypatch):
    """config.yaml holds the resolved value: a resume, or the run copied to another machine, trains on as it
    started, not as that machine's auto would choose."""
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: False)
    cfg = compose_train([*SHORT, "trainer.limit_train_batches=2"], tmp_path, data_dir)
    assert cfg.trainer.precision == "auto"
    train(cfg)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == "32-true"


def test_a_float64_run_keeps_its_loss_in_float64(tmp_path, data_dir):
    """trainer.precision=64-true: the loss is not rounded to float32 on its way (at_least_float32)."""
    from digits.precision import at_least_float32

    assert at_least_float32(torch.ones(2, dtype=torch.float64)).dtype == torch.float64
    assert at_least_float32(torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32
    # the model summary (kept: it ran a float32 example through the float64 network and crashed) and the loss
    overrides = ["trainer.limit_train_batches=2", "trainer.precision=64-true", "callbacks.model_summary.max_depth=1"]
    cfg = compose_train([*[o for o in SHORT if o != "~callbacks.model_summary"], *overrides], tmp_path, data_dir)
    metrics, _ = train(cfg)
    weights = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float64 for v in weights.values() if v.is_floating_point())
    assert metrics.test_loss is not None
    module = load_module(metrics.best_checkpoint, torch.device("cpu")).double()
    logits = module(torch.zeros(4, 1, 28, 28, dtype=torch.float64))
    assert module._loss(logits, torch.arange(4)).dtype == torch.float64
    assert module._loss(logits.bfloat16(), torch.arange(4)).dtype == torch.float32
