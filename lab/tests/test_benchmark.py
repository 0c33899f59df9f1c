"""The training benchmark runs for a few steps and writes its files (numbers come from the script)."""

import json
import os
from pathlib import Path

import pytest
from harness import ROOT, run_script

from digits.run_metrics import RunMetrics
from digits_lab import benchmark, recipes, train_runs
from digits_lab.benchmark import SECTIONS, Section, import_seconds_by_package, run_benchmark
from digits_lab.recipes import summarise


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


def _sections_config(tmp_path, **values):
    from omegaconf import OmegaConf

    paths = {"output_dir": str(tmp_path / "run"), "results_dir": str(tmp_path / "published")}
    (tmp_path / "run").mkdir(exist_ok=True)
    return OmegaConf.create({"threads": None, "seed": 0, "on": 1, "off": 0, "paths": paths, **values})


def _recording_sections(seen: list, output_dir: Path) -> list[Section]:
    def section(name, measured):
        def measure(cfg, out):
            written = output_dir / "benchmark.json"
            seen.append((name, sorted(json.loads(written.read_text())) if written.exists() else None))
            (out / benchmark.STAGED).mkdir(exist_ok=True)  # a section's own result file, as contention's
            (out / benchmark.STAGED / f"{name}.md").write_text(f"{name} result\n")
            return measured, [f"{name} line"]

        return measure

    return [
        Section("on", "first", section("first", [1])),
        Section("off", "skipped", section("skipped", [2])),
        Section("on", None, section("merged", {"top": 3})),
    ]


def test_each_switched_on_section_runs_in_order_and_is_written_when_it_ends(tmp_path):
    """run_benchmark's sequence: a section is one entry of SECTIONS; it runs when its switch is set, its
    results go under its key (or the top level), and the run folder's benchmark.json holds them as soon as
    it ends."""
    from omegaconf import OmegaConf

    seen = []
    cfg = _sections_config(tmp_path, publish="always")
    report = run_benchmark(cfg, _recording_sections(seen, tmp_path / "run"))
    assert seen == [("first", None), ("merged", ["config", "first"])]  # written after the first one ended
    assert report == "first line\nmerged line\n" == (tmp_path / "run" / "benchmark.md").read_text()
    results = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    assert results["first"] == [1] and results["top"] == 3 and "skipped" not in results
    assert json.loads((tmp_path / "published" / "benchmark.json").read_text())["results"] == results
    # the real sequence: every switch is a value of configs/benchmark.yaml
    config = OmegaConf.load(ROOT / "lab" / "configs" / "benchmark.yaml")
    assert all(OmegaConf.select(config, s.switch, default="absent") != "absent" for s in SECTIONS)
    assert config.publish == "complete"


def test_a_partial_or_stopped_run_leaves_the_published_report_alone(tmp_path, capsys):
    """docs/results/benchmark.md feeds the README's table: only a run in which every section was switched on
    replaces it (publish: complete), while a section's own result file (as contention.md) is published when
    that section ran; a stopped run publishes nothing, and every run keeps its files in its run folder."""
    published = tmp_path / "published"
    published.mkdir()
    (published / "benchmark.md").write_text("the complete run\n")

    def names() -> list[str]:
        return sorted(path.name for path in published.iterdir())

    run_benchmark(_sections_config(tmp_path), _recording_sections([], tmp_path / "run"))
    assert (published / "benchmark.md").read_text() == "the complete run\n"
    assert names() == ["benchmark.md", "first.md", "merged.md"]  # the sections that ran: their own files
    assert json.loads((tmp_path / "run" / "results" / "benchmark.json").read_text())["results"]["top"] == 3
    said = capsys.readouterr().out
    assert "benchmark.md not published" in said and "switched off: off" in said and "publish=always" in said

    def fails(cfg, out):
        raise RuntimeError("stopped")

    complete = _sections_config(tmp_path, off=1)
    with pytest.raises(RuntimeError, match="stopped"):
        run_benchmark(complete, [*_recording_sections([], tmp_path / "run"), Section("on", "last", fails)])
    assert names() == ["benchmark.md", "first.md", "merged.md"]
    assert json.loads((tmp_path / "run" / "benchmark.json").read_text())["skipped"] == [2]  # the run folder has it

    run_benchmark(_sections_config(tmp_path, off=1, publish="never"), _recording_sections([], tmp_path / "run"))
    assert names() == ["benchmark.md", "first.md", "merged.md"]
    assert (published / "benchmark.md").read_text() == "the complete run\n"
    run_benchmark(complete, _recording_sections([], tmp_path / "run"))  # every section ran: published
    assert json.loads((published / "benchmark.json").read_text())["results"]["skipped"] == [2]
    assert (published / "benchmark.md").read_text().startswith("# Training speed")
    assert (published / "skipped.md").read_text() == "skipped result\n"


def test_an_unknown_publish_value_is_refused_before_anything_runs(tmp_path):
    from digits.config import ConfigError

    seen = []
    with pytest.raises(ConfigError, match="publish='yes' is not allowed: complete .* always .* never"):
        run_benchmark(_sections_config(tmp_path, publish="yes"), _recording_sections(seen, tmp_path / "run"))
    assert seen == [] and not (tmp_path / "run" / "benchmark.json").exists()


def test_a_failed_timed_run_raises_with_its_command_and_its_own_error(tmp_path, data_dir):
    """train_runs.run_train_script, which the recipe runs and the contention study share: a run that fails
    stops the study with the run's overrides and the last of its output, not a missing metrics.json later."""
    env = {**os.environ, "DIGITS_DATA_DIR": str(data_dir)}
    with pytest.raises(RuntimeError, match=r"(?s)scripts/train.py .*optimizer=no_such_optimizer failed:.*no_such"):
        train_runs.run_train_script(tmp_path / "run", ["optimizer=no_such_optimizer"], env)


def test_a_timed_run_carries_its_seed_and_train_seconds(tmp_path):
    """The command gets ``seed=N`` after the run's overrides; the row keeps the recipe's string (so the
    recipes table groups its seeds), the seed, and train_seconds from the run's metrics.json."""
    command = train_runs.train_run_command(tmp_path, ["experiment=fast"], seed=2)
    assert command[-2:] == ["experiment=fast", "seed=2"] and command[1].endswith("scripts/train.py")
    assert not any(word.startswith("seed=") for word in train_runs.train_run_command(tmp_path, [], None))
    metrics = RunMetrics(
        val_acc_best=0.994,
        epochs=4,
        steps=444,
        parameters=1000,
        loss="cross_entropy",
        loss_class="CrossEntropyLoss",
        fit_seconds=30.0,
        fit_cpu_seconds=55.0,
        startup_seconds=9.0,
        train_seconds=28.5,
        monitoring_seconds=0.1,
        test_acc=0.9912,
    )
    (tmp_path / "metrics.json").write_text(json.dumps(metrics.to_json()))
    row = train_runs.run_row(tmp_path, "experiment=fast", 41.0, seed=2)
    assert row["run"] == "experiment=fast" and row["seed"] == 2
    assert row["train_seconds"] == 28.5 and row["wall_seconds"] == 41.0 and row["test_acc"] == 0.9912
    assert train_runs.run_row(tmp_path, "", None)["run"] == "(default)"


def test_runs_are_timed_once_per_seed_interleaved_by_seed(tmp_path, monkeypatch):
    """Every run for the first seed, then every run for the next: load drift reaches each recipe alike."""
    calls = []

    def timed(name, overrides, data_dir, output_dir, seed=None):
        calls.append((name, overrides, seed))
        return {"run": " ".join(overrides) or "(default)", "seed": seed, "wall_seconds": 1.0}

    monkeypatch.setattr(benchmark, "timed_train_run", timed)
    rows, lines = benchmark.runs_section(["", "experiment=fast"], [0, 1, 2], "data", tmp_path)
    assert calls == [
        ("0_seed0", [], 0),
        ("1_seed0", ["experiment=fast"], 0),
        ("0_seed1", [], 1),
        ("1_seed1", ["experiment=fast"], 1),
        ("0_seed2", [], 2),
        ("1_seed2", ["experiment=fast"], 2),
    ]
    assert [r["seed"] for r in rows] == [0, 0, 1, 1, 2, 2] and "| (default) | 0 |" in "\n".join(lines)
    calls.clear()
    benchmark.runs_section(["debug=limit"], [], "data", tmp_path)  # no seeds: once, the config's own seed
    assert calls == [("0", ["debug=limit"], None)]


def crafted_results(runs: list[dict]) -> dict:
    return {
        "config": {
            "baseline": {"target": 0.99},
            "targets": {
                "": {"test_acc": 0.993, "train": 0.03, "whole": 0.05},
                "experiment=fast": {"test_acc": 0.990, "train": 0.015, "whole": 0.03},
            },
        },
        "runs": runs,
        "baseline_time_to_accuracy": {
            "seconds": 800.0,
            # six epochs of 133.3 s, the 6th crossing 99 %: an anchor of 800 s
            "history": [
                {"epoch": e, "test_acc": 0.9917 if e == 6 else 0.984 + e / 1000, "seconds": 800.0 * e / 6}
                for e in range(1, 7)
            ],
        },
    }


def seeded_runs() -> list[dict]:
    """Two recipes and one without a target, three seeds each, as runs_section writes them (interleaved);
    accuracies as float32 stores them (0.993 -> 0.99299997)."""
    runs = []
    for seed, (acc, train, wall) in enumerate([(0.9926, 20.0, 36.0), (0.99299997, 24.0, 40.0), (0.9938, 28.0, 44.0)]):
        runs.append({"run": "(default)", "seed": seed, "test_acc": acc, "train_seconds": train, "wall_seconds": wall})
        runs.append(
            {"run": "experiment=fast", "seed": seed, "test_acc": 0.9899, "train_seconds": 11.0, "wall_seconds": 23.0}
        )
        runs.append({"run": "debug=limit", "seed": seed, "test_acc": 0.5, "train_seconds": 1.0, "wall_seconds": 12.0})
    return runs


def test_the_recipes_table_gives_each_recipe_over_its_seeds_against_the_baseline_and_its_targets():
    results = crafted_results(seeded_runs())
    default, fast, limit = summarise(results)
    assert default["recipe"] == "(default)" and default["seeds"] == [0, 1, 2]
    assert default["test_acc"] == pytest.approx((0.9926 + 0.99299997 + 0.9938) / 3)
    assert (default["test_acc_min"], default["test_acc_max"]) == (0.9926, 0.9938)
    assert default["train_seconds"] == 24.0 and default["wall_seconds"] == 40.0
    assert default["train_vs_baseline"] == 0.03 and default["whole_vs_baseline"] == 0.05
    assert default["met"] == {"test_acc": True, "train": True, "whole": True}  # at the bars: met
    assert fast["train_vs_baseline"] == pytest.approx(11.0 / 800)
    assert fast["whole_vs_baseline"] == pytest.approx(23.0 / 800)
    assert fast["met"] == {"test_acc": False, "train": True, "whole": True}  # 98.99 % < 99.0 %
    assert limit["target"] is None and limit["met"] == {"test_acc": None, "train": None, "whole": None}
    rows = {row["recipe"]: row for row in benchmark.recipes_table(results)}
    assert rows["(default)"] == {
        "recipe": "(default)",
        "test accuracy": "99.31 % (99.26–99.38, 3 seeds; target 99.30 %: met)",
        "train (vs anchor)": "24.0 s (0.03; target 0.03: met)",
        "whole run (vs anchor)": "40.0 s (0.05; target 0.05: met)",
    }
    assert rows["experiment=fast"]["test accuracy"] == "98.99 % (98.99–98.99, 3 seeds; target 99.00 %: not met)"
    assert rows["experiment=fast"]["train (vs anchor)"] == "11.0 s (0.0138; target 0.015: met)"
    assert rows["debug=limit"]["test accuracy"] == "50.00 % (50.00–50.00, 3 seeds)"  # no target: no verdict
    assert rows["debug=limit"]["whole run (vs anchor)"] == "12.0 s (0.015)"
    assert rows["anchor: baseline (pytorch/examples)"]["whole run (vs anchor)"] == (
        "800.0 s = 6 x 133.3 s per epoch (crossed 99 % at epoch 6, 800.0 s)"
    )
    slower = crafted_results([{**r, "train_seconds": r["train_seconds"] * 1.5} for r in seeded_runs()])
    assert benchmark.recipes_table(slower)[0]["train (vs anchor)"] == "36.0 s (0.045; target 0.03: not met)"
    # a mean exactly at the bar, as float32 stores 0.993, meets it; one test image fewer does not
    at_bar = crafted_results([{**r, "test_acc": 0.99299997} for r in seeded_runs()])
    assert summarise(at_bar)[0]["met"]["test_acc"] is True
    below = crafted_results([{**r, "test_acc": 0.99289997} for r in seeded_runs()])
    assert summarise(below)[0]["met"]["test_acc"] is False
    # so near the bar, a third decimal: at two, a mean one image below would read "99.30 % (...: not met)"
    assert benchmark.recipes_table(at_bar)[0]["test accuracy"].startswith("99.300 % (")
    just_below = crafted_results([{**r, "test_acc": 0.9929 if r["seed"] == 0 else 0.99299997} for r in seeded_runs()])
    assert benchmark.recipes_table(just_below)[0]["test accuracy"].startswith("99.297 % (")
    assert summarise(just_below)[0]["met"]["test_acc"] is False
    section = "\n".join(benchmark.recipes_section(results))
    assert section.startswith("## Recipes") and "| (default) | 99.31 % (99.26–99.38, 3 seeds; target" in section


def test_the_anchor_is_six_epochs_at_the_measured_epoch_time_wherever_the_baseline_crosses():
    """A machine whose baseline crosses 99 % at epoch 4 and one where it crosses at epoch 6, at the same
    seconds per epoch: the same anchor and the same ratios (seconds to 99 % would differ by half). A slow
    first epoch (loading) does not move the median; a baseline that never crosses still anchors."""

    def results_with(accuracies: list[float], first_epoch_extra: float = 0.0) -> dict:
        results = crafted_results(seeded_runs())
        ends = [64.0 * e + first_epoch_extra for e in range(1, len(accuracies) + 1)]
        history = [{"epoch": e, "test_acc": a, "seconds": t} for e, (a, t) in enumerate(zip(accuracies, ends), 1)]
        results["baseline_time_to_accuracy"] = {"seconds": None, "history": history}
        return results

    early = results_with([0.985, 0.988, 0.9895, 0.9903], first_epoch_extra=9.0)
    late = results_with([0.984, 0.987, 0.9895, 0.9887, 0.9897, 0.9917])
    never = results_with([0.984, 0.987, 0.9895])
    for results in (early, late, never):
        assert recipes.anchor(results)["seconds"] == pytest.approx(6 * 64.0)
        assert summarise(results)[0]["train_vs_baseline"] == pytest.approx(24.0 / 384.0)
    assert recipes.anchor(early)["crossed_at_epoch"] == 4 and recipes.anchor(late)["crossed_at_epoch"] == 6
    assert recipes.anchor(never)["crossed_at_epoch"] is None
    assert recipes.baseline_cells(early)["train (vs anchor)"] == (
        "384.0 s = 6 x 64.0 s per epoch (crossed 99 % at epoch 4, 265.0 s)"
    )
    assert recipes.baseline_cells(early)["test accuracy"] == "99.03 %"
    assert recipes.baseline_cells(never)["train (vs anchor)"].endswith("(did not reach 99 % in 3 epochs)")
    eight = results_with([0.985, 0.9903])
    eight["config"]["baseline"]["anchor_epochs"] = 8
    assert recipes.anchor(eight)["seconds"] == pytest.approx(8 * 64.0)


def test_the_recipes_table_reads_an_older_result_without_seeds_or_train_seconds():
    """Runs timed once, before the rows carried a seed and train_seconds, and without targets."""
    results = crafted_results([{"run": "(default)", "wall_seconds": 80.0, "test_acc": 0.9934}])
    del results["config"]["targets"]
    (row, baseline) = benchmark.recipes_table(results)
    assert row == {
        "recipe": "(default)",
        "test accuracy": "99.34 % (1 seed)",
        "train (vs anchor)": "-",
        "whole run (vs anchor)": "80.0 s (0.1)",
    }
    assert baseline["test accuracy"] == "99.17 %"


@pytest.mark.slow
def test_benchmark_script_writes_every_section(tmp_path, data_dir):
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
            "run_seeds=[3]",
            "startup.rounds=1",
            "compile.rounds=1",
            "compile.steps=2",
            "contention.rounds=0",  # fifteen whole runs; tests/test_threads.py runs the study small
            "profile.rounds=1",
            "profile.steps=3",
            "publish=always",  # a section is off: published only when asked
            f"paths.results_dir={tmp_path / 'published'}",
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
    assert run["seed"] == 3 and run["train_seconds"] > 0 and report["recipes"][0]["seeds"] == [3]
    assert "| baseline: torchvision Dataset" in (tmp_path / "benchmark.md").read_text()
    # the same results for the docs, with where and when they were measured (paths.results_dir), and the
    # profile section's own result file
    folder = tmp_path / "published"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{n}.{e}" for n in ("benchmark", "profile") for e in ("json", "md")
    ]
    published = json.loads((folder / "benchmark.json").read_text())
    assert published["results"]["runs"] == report["runs"] and published["commit"] and published["machine"]["cores"]
    assert "| debug=limit |" in (folder / "benchmark.md").read_text()
    assert json.loads((folder / "profile.json").read_text())["results"]["steps"] == 3
    compiled = report["compile"]
    assert (
        compiled["compile_seconds"] > 0 and compiled["eager_ms_per_step"] > 0 and compiled["compiled_ms_per_step"] > 0
    )
    assert report["profile"]["steps"] == 3 and report["profile"]["ratio"] > 0
    startup = report["startup"]
    assert [row["what"] for row in startup["rows"]] == ["this tree", "floor: import lightning, hydra"]
    assert all(row["median_s"] > 0 for row in startup["rows"])
    assert {"torch", "lightning", "hydra", "digits"} <= startup["imports_by_package"].keys()
    assert startup["imports_by_package"]["torch"] > startup["imports_by_package"]["digits"]
    assert "digits" in startup["imports_beyond_floor"]


def test_the_benchmark_runs_the_default_model_as_composed():
    """The lab's benchmark composes the product's model group (pkg://digits.configs): the default run's network
    is configs/model/cnn.yaml itself, not a copy."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from digits.configs import CONFIG_DIR
    from digits_lab import CONFIG_DIR as LAB_CONFIGS

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        train = compose("train", overrides=["paths.output_dir=x"])
    with initialize_config_dir(str(LAB_CONFIGS), version_base="1.3"):
        benchmark = compose("benchmark")
    assert OmegaConf.to_container(benchmark.default_run.model) == OmegaConf.to_container(train.model)
