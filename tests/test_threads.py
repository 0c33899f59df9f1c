"""The thread policy (digits.threads) reaches a real training process, and the contention study's busy
processes never outlive it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_script

from digits.config import ConfigError
from digits.studies.contention import busy_processes
from digits.threads import set_wait_policy, thread_count

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false", "trainer.enable_progress_bar=false"]


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


def test_busy_processes_are_killed_on_leaving():
    started = time.monotonic()
    with pytest.raises(RuntimeError), busy_processes(2, seconds=600) as processes:
        assert all(p.poll() is None for p in processes)
        raise RuntimeError("a failed run inside the situation")
    assert all(p.poll() is not None for p in processes)
    assert time.monotonic() - started < 30


def test_busy_processes_end_when_the_study_is_killed(tmp_path):
    # SIGKILL (or a SIGTERM without handler) skips the study's cleanup: the loops notice their parent is gone
    study = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom digits.studies.contention import busy_processes\n"
            "with busy_processes(2, seconds=600) as processes:\n"
            "    print(*[p.pid for p in processes], flush=True)\n"
            "    time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    loops = [int(pid) for pid in study.stdout.readline().split()]
    try:
        assert len(loops) == 2 and all(Path(f"/proc/{pid}").exists() for pid in loops)
        study.kill()
        study.wait()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in loops) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(pid) for pid in loops)
    finally:  # a failed check must not leave the loops burning the machine's cores
        study.kill()
        for pid in loops:
            if _running(pid):
                os.kill(pid, 9)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphaned loop is reaped by init once it exits)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_contention_study_measures_each_option_in_each_situation(data_dir, tmp_path):
    from digits.studies.contention import measure, section_markdown

    options = {"one_thread": {"overrides": ["threads=1"]}, "passive": {"overrides": ["omp_wait=passive"]}}
    rows = measure(options, {"quiet": 0, "one_busy": 1}, TINY, 1, data_dir, tmp_path, busy_seconds=300, timeout=600)
    assert {(r["option"], r["situation"]) for r in rows} == {(o, s) for o in options for s in ("quiet", "one_busy")}
    for row in rows:
        assert row["wall_seconds"] > row["fit_seconds"] > 0 and row["cpu_seconds"] > 0
        assert row["threads"] == (1 if row["option"] == "one_thread" else len(os.sched_getaffinity(0)))
        if row["situation"] == "quiet":
            assert row["vs_quiet_wall"] == 1.0
        if row["option"] == "passive":
            assert row["samples"][0]["omp_wait_policy"] == "PASSIVE"
    assert "**A reduced run**" in "\n".join(section_markdown(TINY, rows))
    fast = "\n".join(section_markdown(["experiment=fast"], rows))  # a whole recipe, not a shortened run
    assert "The run `python scripts/train.py experiment=fast`, not the default run." in fast and "reduced" not in fast


def test_contention_results_are_named_and_titled_by_the_run(tmp_path, data_dir):
    """Another run's contention study writes its own files (contention.result_name), headed by the run."""
    from omegaconf import OmegaConf

    from digits.studies.contention import contention_section

    cfg = OmegaConf.load(Path(__file__).parents[1] / "configs" / "benchmark.yaml").contention
    cfg.rounds, cfg.run, cfg.result_name = 0, ["experiment=fast"], "contention_fast"
    contention_section(cfg, data_dir, tmp_path / "runs", tmp_path / "results", log=lambda message: None)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["contention_fast.json", "contention_fast.md"]
    assert (tmp_path / "results" / "contention_fast.md").read_text().startswith("# `experiment=fast` on a busy machine")
    cfg.run, cfg.result_name = [], "contention"
    contention_section(cfg, data_dir, tmp_path / "runs", tmp_path / "results", log=lambda message: None)
    assert (tmp_path / "results" / "contention.md").read_text().startswith("# The default run on a busy machine")
