"""The training benchmark runs for a few steps and writes its files (numbers come from the script)."""

import json

from conftest import run_script


def test_benchmark_script_writes_its_report(tmp_path, data_dir):
    result = run_script("benchmark.py", [f"hydra.run.dir={tmp_path}", "rounds=1", "warmup=2", "window=3", "windows=2",
                                         "baseline.time_to_accuracy=false", "runs=['debug=limit']"], data_dir)
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
