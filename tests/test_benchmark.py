"""The training benchmark runs for a few steps and writes its files (numbers come from the script)."""

import json

import pytest
from conftest import ROOT, run_script

from digits.studies.benchmark import SECTIONS, Section, import_seconds_by_package, run_benchmark


def test_import_breakdown_sums_self_times_by_package():
    # the format of CPython's -X importtime (microseconds: self | cumulative | indented name)
    log = """import time: self [us] | cumulative | imported package
import time:       100 |        100 |     torch._C
import time:      2000 |       2100 |   torch
import time:        50 |         50 |   digits.data
import time:        30 |       2180 | digits"""
    assert import_seconds_by_package(log) == pytest.approx({"torch": 0.0021, "digits": 0.00008})
    assert list(import_seconds_by_package(log)) == ["torch", "digits"]
    floor = "import time:       999 |        999 |   torch"
    assert import_seconds_by_package(log, leave_out=floor) == pytest.approx({"torch": 0.0001, "digits": 0.00008})


def test_each_switched_on_section_runs_in_order_and_is_written_when_it_ends(tmp_path):
    """run_benchmark's sequence: a section is one entry of SECTIONS; it runs when its switch is set, its
    results go under its key (or the top level), and benchmark.json holds them as soon as it ends."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "threads": None,
            "seed": 0,
            "on": 1,
            "off": 0,
            "paths": {"output_dir": str(tmp_path), "results_dir": str(tmp_path / "r")},
        }
    )
    seen = []

    def section(name, measured):
        def measure(cfg, output_dir):
            seen.append((name, sorted(json.loads((output_dir / "benchmark.json").read_text())) if seen else None))
            return measured, [f"{name} line"]

        return measure

    sections = [
        Section("on", "first", section("first", [1])),
        Section("off", "skipped", section("skipped", [2])),
        Section("on", None, section("merged", {"top": 3})),
    ]
    report = run_benchmark(cfg, sections)
    assert seen == [("first", None), ("merged", ["config", "first"])]  # written after the first one ended
    assert report == "first line\nmerged line\n" == (tmp_path / "benchmark.md").read_text()
    results = json.loads((tmp_path / "benchmark.json").read_text())
    assert results["first"] == [1] and results["top"] == 3 and "skipped" not in results
    assert json.loads((tmp_path / "r" / "benchmark.json").read_text())["results"] == results
    # the real sequence: every switch is a value of configs/benchmark.yaml
    config = OmegaConf.load(ROOT / "configs" / "benchmark.yaml")
    assert all(OmegaConf.select(config, s.switch, default="absent") != "absent" for s in SECTIONS)


@pytest.mark.slow
def test_benchmark_script_writes_every_section(tmp_path, data_dir, results_dir):
    """One run of scripts/benchmark.py with every section on, each as small as it goes."""
    result = run_script(
        "benchmark.py",
        [
            f"hydra.run.dir={tmp_path}",
            "rounds=1",
            "warmup=2",
            "window=3",
            "windows=2",
            "baseline.time_to_accuracy=false",
            "runs=['debug=limit']",
            "startup.rounds=1",
            "threads_under_load.rounds=1",
            "threads_under_load.steps=3",
            "compile.rounds=1",
            "compile.steps=2",
            "contention.rounds=0",  # fifteen whole runs; tests/test_threads.py runs the study small
        ],
        data_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    rows = report["throughput"]
    assert len(rows) == 6
    assert rows[0]["path"].startswith("baseline") and rows[0]["vs_baseline"] == 1.0
    for row in rows:
        assert row["images_per_s"] > 0 and row["windows"] == 2
        assert 0 < row["of_peak"] < 1.5
    assert report["training_flops_per_image"]["example"] > 5 * report["training_flops_per_image"]["default"]
    (run,) = report["runs"]
    assert run["run"] == "debug=limit" and run["epochs"] == 1 and run["startup_seconds"] > 0
    assert "| baseline: torchvision Dataset" in (tmp_path / "benchmark.md").read_text()
    # the same results for the docs, with where and when they were measured (paths.results_dir)
    published = json.loads((results_dir / "benchmark.json").read_text())
    assert published["results"]["runs"] == report["runs"] and published["commit"] and published["machine"]["cores"]
    assert "| debug=limit |" in (results_dir / "benchmark.md").read_text()
    rows = report["threads_under_load"]
    assert [(r["situation"], r["threads"]) for r in rows] == [
        ("no extra process", 1),
        ("no extra process", 2),
        ("one core busy", 1),
        ("one core busy", 2),
    ]
    assert all(r["fit_seconds_median"] > 0 and r["rounds"] == 1 for r in rows)
    assert rows[0]["vs_threads_1"] == 1.0
    compiled = report["compile"]
    assert (
        compiled["compile_seconds"] > 0 and compiled["eager_ms_per_step"] > 0 and compiled["compiled_ms_per_step"] > 0
    )
    startup = report["startup"]
    assert [row["what"] for row in startup["rows"]] == ["this tree", "floor: import lightning, hydra"]
    assert all(row["median_s"] > 0 for row in startup["rows"])
    assert {"torch", "lightning", "hydra", "digits"} <= startup["imports_by_package"].keys()
    assert startup["imports_by_package"]["torch"] > startup["imports_by_package"]["digits"]
    assert "digits" in startup["imports_beyond_floor"]
