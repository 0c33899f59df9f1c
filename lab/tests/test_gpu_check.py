"""scripts/gpu_check.sh without a GPU: its plan composes, and its CPU mode runs every step into a report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from harness import ROOT

SCRIPT = ROOT / "lab" / "scripts" / "gpu_check.sh"


def gpu_check(args: list[str], data_dir=None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore"}
    if data_dir is not None:
        env["DIGITS_DATA_DIR"] = str(data_dir)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_the_gpu_plan_names_every_step_and_each_command_composes(tmp_path):
    result = gpu_check(["--dry-run", "--out", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    steps = dict(line.split("|", 1) for line in result.stdout.splitlines())
    assert list(steps) == ["train", "train_graphs", "evaluate", "benchmark_losses", "compare_losses", "tests"]
    assert "-m gpu" in steps["tests"]
    only = gpu_check(["--dry-run", "--only", "tests,train", "--out", str(tmp_path)])
    assert [line.split("|")[0] for line in only.stdout.splitlines()] == ["train", "tests"]
    expected = {  # what each command must ask for on the GPU, read back from Hydra's composed config
        "compare_losses": lambda c: c["devices"] == ["cpu", "cuda"],
        "benchmark_losses": lambda c: c["devices"] == ["cpu", "cuda"],
        "train": lambda c: (
            (c["trainer"]["accelerator"], c["data"]["device"], c["trainer"]["precision"])
            == ("gpu", "cuda", "bf16-mixed")
        ),
        "train_graphs": lambda c: c["compile"] == "reduce-overhead" and c["trainer"]["accelerator"] == "gpu",
        "evaluate": lambda c: c["device"] == "cuda" and c["ckpt_path"] == str(tmp_path / "train"),
    }
    for name, check in expected.items():
        _, script, *overrides = steps[name].split()
        composed = subprocess.run(
            [sys.executable, str(ROOT / script), *overrides, "--cfg", "job"], capture_output=True, text=True, cwd=ROOT
        )
        assert composed.returncode == 0, (name, composed.stderr[-2000:])
        assert check(yaml.safe_load(composed.stdout)), (name, composed.stdout[:2000])


@pytest.mark.slow
def test_cpu_mode_runs_every_step_and_writes_one_report(tmp_path, data_dir):
    out = tmp_path / "check"
    result = gpu_check(["--cpu", "--no-install", "--out", str(out)], data_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    steps = ["train", "train_graphs", "evaluate", "benchmark_losses", "compare_losses", "tests"]
    assert [s["step"] for s in report["steps"]] == steps
    assert all(s["exit"] == 0 and s["seconds"] > 0 for s in report["steps"]) and report["problems"] == []
    assert report["machine"]["torch"] and report["machine"]["gpu"] is None
    # on the CPU the CUDA parametrisations are not collected (tests/conftest.py): -m gpu selects none, and
    # gpu_check.sh takes pytest's "no tests collected" as the CPU mode's expected answer
    assert report["tests"]["tests"] == 0 and report["tests"]["failures"] == report["tests"]["errors"] == 0
    assert report["train"]["steps"] == 20 and 0 < report["train"]["test_acc"] <= 1
    assert report["train_graphs"]["steps"] == 20 and 0 < report["train_graphs"]["test_acc"] <= 1  # compile=default
    assert report["train"]["wall_seconds"] > report["train"]["fit_seconds"] > report["train"]["train_seconds"] > 0
    assert 0 < report["evaluate"]["accuracy"] <= 1
    assert {row["device"] for row in report["benchmark_losses"]["rows"]} == {"cpu"}
    markdown = (out / "gpu_check.md").read_text()
    assert "## experiment=fast_gpu" in markdown and "## benchmark_losses.py" in markdown
    # The same outputs judged as a GPU run: CUDA cases missing (or skipped) are a problem, exit code 1.
    judged = subprocess.run(
        [sys.executable, "-m", "digits_lab.gpu_check", str(out), "--device", "cuda"], capture_output=True, text=True
    )
    assert judged.returncode == 1 and "CUDA test cases ran, fewer than 1000" in judged.stderr
