"""The recipe search: hparams_search=fast_cpu through hydra-optuna-sweeper, end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from harness import compose_train, run_script

from digits.config import ConfigError
from digits.run_metrics import RunMetrics
from digits.sweeps import score
from digits.train import train


def test_score_is_validation_accuracy_less_the_budget_overrun():
    metrics = RunMetrics(
        val_acc_best=0.99,
        epochs=1,
        steps=100,
        parameters=1000,
        loss="cross_entropy",
        loss_class="CrossEntropyLoss",
        fit_seconds=40.0,
        fit_cpu_seconds=30.0,
        startup_seconds=2.0,
        train_seconds=35.0,
        monitoring_seconds=0.1,
        test_acc=0.5,
    )
    assert score(metrics, None, 0.02) == 0.99  # no budget: the validation accuracy alone
    assert score(metrics, 40.0, 0.02) == 0.99  # within the budget
    assert score(metrics, 20.0, 0.02) == pytest.approx(0.99 - 0.02 * 0.5)  # 50 % over
    assert score(replace(metrics, test_acc=1.0), 20.0, 0.02) == score(metrics, 20.0, 0.02)  # never the test set


def test_a_bad_budget_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="objective.budget_seconds=0 is not allowed"):
        train(compose_train(["objective.budget_seconds=0"], tmp_path, tmp_path / "no-data"))


@pytest.mark.slow
def test_two_trial_search_through_the_optuna_sweeper(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    # debug=limit, with the two knobs the search space also holds fixed on the command line (the
    # sweeper then leaves them out of the space); a budget so small that the penalty decides.
    result = run_script(
        "train.py",
        [
            "-m",
            "hparams_search=fast_cpu",
            "debug=limit",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=5",
            "hydra.sweeper.n_trials=2",
            "objective.budget_seconds=0.5",
            f"hydra.sweep.dir={sweep}",
        ],
        data_dir,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    assert [p.name for p in trials] == ["0", "1"]
    scores, recipes = [], []
    for trial in trials:
        metrics = json.loads((trial / "metrics.json").read_text())
        config = yaml.safe_load((trial / "config.yaml").read_text())
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((trial / ".hydra" / "overrides.yaml").read_text()))
        # the sampled recipe is the one that trained, on one thread, and the test set was never used
        assert config["model"]["channels"] == yaml.safe_load(overrides["model.channels"])
        assert config["optimizer"]["lr"] == float(overrides["optimizer.lr"])
        assert config["threads"] == 1 and config["test"] is False
        assert not any(key.startswith("test/") for key in metrics)
        assert metrics["steps"] == 5 and 0 < metrics["val/acc_best"] <= 1 and metrics["fit_cpu_seconds"] > 0
        # the objective as digits.sweeps documents it: val accuracy - 0.02 * (cpu / 0.5 s - 1)
        scores.append(metrics["val/acc_best"] - 0.02 * max(0.0, metrics["fit_cpu_seconds"] / 0.5 - 1))
        recipes.append({k: v for k, v in overrides.items() if k.split(".")[0] in ("model", "optimizer", "data")})
    assert recipes[0] != recipes[1]  # the sampler proposed two recipes
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(scores), abs=1e-6)
    table = json.loads((sweep / "trials.json").read_text())  # digits.sweeps.TrialsTable, best first
    assert [row["score"] for row in table] == pytest.approx(sorted(scores, reverse=True), abs=1e-6)
    assert {"model.channels", "optimizer.lr", "val_acc", "fit_cpu_s"} <= table[0].keys()
    assert "trials, best score first" in (sweep / "trials.md").read_text()
    assert set(best["best_params"]) == {
        "model.channels",
        "model.downsample",
        "model.dropout",
        "data.batch_size",
        "optimizer.lr",
        "optimizer.weight_decay",
        "scheduler.pct_start",
        "loss.label_smoothing",
    }
