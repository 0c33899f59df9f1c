"""The thread policy (digits.threads) reaches a real training process, and the contention study's busy
processes never outlive it."""

from __future__ import annotations

import json
import os

import pytest
from harness import run_script

from digits.config import ConfigError
from digits.threads import set_wait_policy, thread_count

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false", "trainer.enable_progress_bar=false"]


@pytest.mark.slow
def test_policy_reaches_the_training_process(data_dir, tmp_path, monkeypatch):
    # set before torch loads: had anything imported torch earlier, the policy would not be set (a warning);
    # passive removes a GOMP_SPINCOUNT from the shell, which libgomp would obey over OMP_WAIT_POLICY
    run = tmp_path / "run"
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    result = run_script(
        "train.py", [*TINY, "threads=1", "omp_wait=passive", f"hydra.run.dir={run}"], data_dir, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threads"] == 1
    assert metrics["omp_wait_policy"] == "PASSIVE"
    # threads=auto: between one thread and the cores this process may use; brief: a bounded spin, even when
    # the shell asks for passive waiting
    run = tmp_path / "auto"
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    result = run_script(
        "train.py", [*TINY, "threads=auto", "omp_wait=brief", f"hydra.run.dir={run}"], data_dir, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 1 <= metrics["threads"] <= len(os.sched_getaffinity(0))
    assert metrics["omp_wait_policy"] == "GOMP_SPINCOUNT=10000"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("omp_wait=sleepy", "ConfigError: omp_wait='sleepy' is not allowed: null, passive, brief or active"),
        ("threads=many", "ConfigError: threads='many' is not allowed: null, auto or an integer >= 1"),
        ("threads=0", "ConfigError: threads=0 is not allowed: null, auto or an integer >= 1"),
    ],
)
@pytest.mark.slow
def test_bad_policy_is_one_line_and_exit_2(data_dir, tmp_path, override, message):
    result = run_script("train.py", [*TINY, override, f"hydra.run.dir={tmp_path / 'run'}"], data_dir, cwd=tmp_path)
    assert result.returncode == 2
    output = result.stderr + result.stdout
    errors = [line for line in output.splitlines() if "Error" in line]
    assert len(errors) == 1 and errors[0].endswith(message), output[-2000:]
    assert not (tmp_path / "run").exists()


def test_wait_policy_cannot_change_once_torch_is_loaded(monkeypatch, caplog):
    # a -m sweep's later jobs: torch (and OpenMP) loaded by the first; its policy holds, another one is a warning
    import torch  # noqa: F401

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    set_wait_policy({"threads": None, "omp_wait": "passive"})
    set_wait_policy({"threads": None, "omp_wait": "active"})
    assert "omp_wait=active not applied: torch was loaded earlier" in caplog.text
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # what metrics.json records: the policy in effect
    with pytest.raises(ConfigError, match="omp_wait='spin' is not allowed"):
        set_wait_policy({"threads": None, "omp_wait": "spin"})


def test_thread_count():
    assert thread_count(None) is None
    assert thread_count(3) == 3
    assert 1 <= thread_count("auto") <= len(os.sched_getaffinity(0))
