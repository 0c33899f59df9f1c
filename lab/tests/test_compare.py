"""Whole trainings with each loss, and the comparison script's outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from harness import ROOT, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_losses import IMPLEMENTATIONS

from digits.data import MNISTDataModule
from digits_lab.compare import curve_differences, large_logit_errors, training_curves

LOSSES = {
    "cross_entropy": {"_target_": "digits.losses.CrossEntropyLoss"},
    "nll": {"_target_": "digits.losses.LogSoftmaxNLLLoss"},
    "manual": {"_target_": "digits.losses.ManualCrossEntropyLoss"},
    "manual_backward": {"_target_": "digits.losses.ManualCrossEntropyLoss", "backward": "manual"},
    "float64_control": {"_target_": "digits_lab.compare.Float64CrossEntropyLoss"},
}


def test_whole_trainings_agree(data_dir):
    datamodule = MNISTDataModule(str(data_dir), batch_size=128, download=False)
    curves = training_curves(
        datamodule,
        {"_target_": "digits.models.DigitCNN", "channels": [8, 16, 32]},
        LOSSES,
        {"_target_": "torch.optim.AdamW", "lr": 0.01},
        None,
        steps=60,
        seed=0,
    )
    diff = curve_differences(curves)
    reference = curves["cross_entropy"]["losses"]
    assert all(len(run["losses"]) == 60 for run in curves.values())
    assert reference[-1] < 0.5 * reference[0]
    # Same CPU kernels (log_softmax + nll_loss): bitwise identical losses and parameters at every step.
    assert diff["nll"]["bitwise_equal"]
    for name in ("manual", "manual_backward", "float64_control"):
        # The first steps differ by float32 rounding only (a few 1e-8 relative)...
        early = [abs(a - b) / b for a, b in zip(curves[name]["losses"][:10], reference[:10])]
        assert max(early) < 1e-6, early
        # ...then training amplifies any one-ulp difference (chaotic divergence) to ~1e-3, yet the
        # curves stay on top of each other.
        assert diff[name]["max_loss_rel_diff"] < 0.05
    # The control, nn.CrossEntropyLoss computed in float64 and rounded back, is the same function
    # rounded differently: it leaves bitwise equality too. How far it drifts in 60 steps of this small
    # network depends on the random stream (7e-7 here since the data loaders got their own generator,
    # above 1e-5 before); the README's 100-step table of the default network shows it drifting by the
    # same order as the manual form.
    assert not diff["float64_control"]["bitwise_equal"]
    assert diff["float64_control"]["first_step_with_a_difference"] is not None


def test_compare_losses_script_writes_its_report(tmp_path, data_dir):
    result = run_script(
        "compare_losses.py",
        [
            f"hydra.run.dir={tmp_path}",
            "dtypes=[float32,float16]",
            "batch_size=32",
            "training.steps=5",
            "model.channels=[4,8]",
            "naive_logit_std=[1,100]",
            "pytorch_suite=false",
            "large_logit_shifts={float32:[1e8]}",
        ],
        data_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    rows = report["single_calls"]
    assert {r["implementation"] for r in rows} == {"nll", "manual", "manual_backward", "manual_naive"}
    assert {r["dtype"] for r in rows} == {"float32", "float16"}
    for row in rows:
        if row["dtype"] == "float32" and row["implementation"] != "manual_naive":
            assert row["loss_vs_pytorch"] < 1e-6 and row["grad_vs_pytorch"] < 1e-6
    naive = {(r["dtype"], r["logit_std"]): r for r in report["naive"]}
    assert naive[("float32", 100)]["manual_naive"] != naive[("float32", 100)]["manual_naive"]  # NaN
    assert naive[("float32", 100)]["manual"] == pytest.approx(naive[("float32", 100)]["exact"], rel=1e-5)
    assert report["training"]["differences"]["nll"]["bitwise_equal"]
    large = {r["implementation"]: r for r in report["large_logits"]}
    assert set(large) == {"cross_entropy", "nll", "manual", "manual_backward"}
    assert large["manual_backward"]["loss_error"] <= large["cross_entropy"]["loss_error"] + 1.2e-7
    differences = {r["input"]: r for r in report["deliberate_differences"]}
    assert differences["negative label_smoothing"]["manual"] == "raises LossInputError"
    assert differences["uint8 class indices with label smoothing"]["F.cross_entropy"] == "raises RuntimeError"
    assert report["pytorch_suite"] == []
    assert "## Whole trainings" in (tmp_path / "report.md").read_text()
    png = (tmp_path / "training_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    accumulator = EventAccumulator(str(tmp_path / "tensorboard" / "manual"))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train/loss")] == [0, 1, 2, 3, 4]


def test_benchmark_losses_script_writes_its_table(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "lab" / "scripts" / "benchmark_losses.py"),
            f"hydra.run.dir={tmp_path}",
            "sizes=[[64,10],[512,100]]",
            "repeats=3",
            "warmup=1",
            "rounds=3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "benchmark_losses.json").read_text())["results"]["rows"]  # the result file
    assert len(rows) == 2 * 4
    big = {row["implementation"]: row for row in rows if row["classes"] == 100}
    assert big["cross_entropy"]["time_vs_cross_entropy"] == 1.0
    assert all(row["median_ms"] > 0 for row in rows)
    # interleaved rounds: the ratio is the median of the rounds' ratios, with their range and a verdict
    for row in rows:
        assert row["ratio_low"] <= row["time_vs_cross_entropy"] <= row["ratio_high"]
        low, high = row["ratio_low"], row["ratio_high"]
        expected = (
            "baseline"
            if row["implementation"] == "cross_entropy"
            else "within the spread"
            if low <= 1 <= high
            else "slower"
            if low > 1
            else "faster"
        )
        assert row["verdict"] == expected
    # the hand-written backward keeps no (M, C) tensor; autograd through the manual forward does
    assert big["manual_backward"]["saved_MiB"] * 20 < big["manual"]["saved_MiB"]
    assert "| cpu | 512 | 100 | manual_backward |" in (tmp_path / "benchmark_losses.md").read_text()


@pytest.mark.parametrize(
    "dtype, shifts",
    [
        ("float32", [1e3, 1e4, 1e6, 1e8]),
        ("float64", [1e3, 1e8, 1e12, 1e15]),
    ],
)
def test_large_logit_errors_no_worse_than_f_cross_entropy(dtype, shifts):
    """Logits shifted by up to 1e8 (float32) / 1e15 (float64), against an exact log-sum-exp of the rounded
    logits: every form's loss and gradient error is at most F.cross_entropy's plus one ulp of the result."""
    rows = large_logit_errors(dtype, shifts)
    ulp = torch.finfo(getattr(torch, dtype)).eps
    for shift in shifts:
        by_form = {row["implementation"]: row for row in rows if row["shift"] == shift}
        reference = by_form.pop("cross_entropy")
        assert set(by_form) == set(IMPLEMENTATIONS)
        for name, row in by_form.items():
            assert row["loss_error"] <= reference["loss_error"] + ulp, (shift, name, row, reference)
            assert row["grad_error"] <= reference["grad_error"] + ulp, (shift, name, row, reference)
