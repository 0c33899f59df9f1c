"""The thread policy (digits.threads) reaches a real training process, and the contention study's busy
processes never outlive it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digits_lab.contention import busy_processes

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false", "trainer.enable_progress_bar=false"]


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
            "import time\nfrom digits_lab.contention import busy_processes\n"
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
    from digits_lab.contention import measure, section_markdown

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

    from digits_lab.contention import contention_section

    cfg = OmegaConf.load(Path(__file__).parents[1] / "configs" / "benchmark.yaml").contention
    cfg.rounds, cfg.run, cfg.result_name = 0, ["experiment=fast"], "contention_fast"
    contention_section(cfg, data_dir, tmp_path / "runs", tmp_path / "results", log=lambda message: None)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["contention_fast.json", "contention_fast.md"]
    assert (tmp_path / "results" / "contention_fast.md").read_text().startswith("# `experiment=fast` on a busy machine")
    cfg.run, cfg.result_name = [], "contention"
    contention_section(cfg, data_dir, tmp_path / "runs", tmp_path / "results", log=lambda message: None)
    assert (tmp_path / "results" / "contention.md").read_text().startswith("# The default run on a busy machine")
