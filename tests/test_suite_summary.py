"""What a test run says at its end: skipped real-data tests in one loud line, GPU cases in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from harness import ROOT

# The slow tier (make test-slow): real processes and outside tools.
pytestmark = pytest.mark.slow

SELECTION = ["tests/test_data.py::test_official_test_set_is_kept", "tests/test_losses.py::test_cuda_matches_cpu"]


def pytest_run(tmp_path, selection: list[str], **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    environment.update({"DIGITS_DATA_DIR": str(tmp_path / "no-mnist-here"), **env})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *selection],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_without_the_data_says_so_loudly_and_ci_fails(tmp_path):
    result = pytest_run(tmp_path, SELECTION)
    assert result.returncode == 0, result.stdout[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert (
        f"1 TESTS THAT NEED REAL MNIST WERE SKIPPED: not found under {tmp_path / 'no-mnist-here'}/MNIST/raw"
        in last_line
    ), result.stdout[-2000:]
    if not torch.cuda.is_available():
        # 48 CUDA cases: one line and the "deselected" count, not a wall of `s`
        assert "48 GPU cases not collected: no CUDA GPU here" in result.stdout
        assert "1 skipped, 48 deselected" in result.stdout
    ci = pytest_run(tmp_path, SELECTION[:1], CI="true")
    assert ci.returncode == 1 and "1 error" in ci.stdout, ci.stdout[-2000:]
