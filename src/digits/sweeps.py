"""Sweeps: what ``digits-train -m`` returns to a hyperparameter sweeper, and the table of a search.

    score = val/acc_best - penalty * max(0, fit_cpu_seconds / budget_seconds - 1)

Validation accuracy only: the test set must never choose a recipe. The cost is the fit's CPU time, not
its wall time, which moves by 30-50 % with the other tenants' load on a shared machine. The table
(``trials.md``, ``trials.json``) is written at the end of a search, or by ``python -m digits.sweeps <folder>``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from digits.report import markdown_table
from digits.run_metrics import RunMetrics
from digits.writing import write_json


def score(metrics: RunMetrics, budget_seconds: float | None, penalty: float) -> float:
    """The number a sweep maximises, from a run's metrics (what its ``metrics.json`` holds)."""
    accuracy = metrics.val_acc_best
    if budget_seconds is None:
        return accuracy
    overrun = max(0.0, metrics.fit_cpu_seconds / budget_seconds - 1.0)
    return accuracy - penalty * overrun


def trials(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per finished trial (a subfolder with ``metrics.json``), best score first. Only the
    overrides that differ between trials are shown: the sampled values."""
    found = []
    for folder in Path(sweep_dir).iterdir():
        if not (folder / "metrics.json").is_file():
            continue
        metrics = RunMetrics.read(folder)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()))
        objective = config.get("objective") or {}
        numbers = {
            "val_acc": metrics.val_acc_best,
            "fit_cpu_s": metrics.fit_cpu_seconds,
            "fit_wall_s": metrics.fit_seconds,
            "steps": metrics.steps,
            "score": score(metrics, objective.get("budget_seconds"), objective.get("penalty", 0.0)),
        }
        found.append((folder.name, overrides, numbers))
    keys = sorted({key for _, overrides, _ in found for key in overrides})
    varying = [key for key in keys if len({overrides.get(key) for _, overrides, _ in found}) > 1]
    rows = [
        {"trial": name, **{key: _short(overrides.get(key)) for key in varying}, **numbers}
        for name, overrides, numbers in found
    ]
    return sorted(rows, key=lambda row: -row["score"])


def _short(value: str | None) -> Any:
    """Sampled floats with 4 significant digits, for a readable table."""
    try:
        return float(f"{float(value):.4g}") if value is not None and "." in value else value
    except ValueError:
        return value


def write(sweep_dir: str | Path) -> str:
    rows = trials(sweep_dir)
    table = markdown_table(rows)
    (Path(sweep_dir) / "trials.md").write_text(f"# {len(rows)} trials, best score first\n\n{table}")
    write_json(Path(sweep_dir) / "trials.json", rows)
    return table


class TrialsTable(Callback):
    """Hydra callback: the search's table once every trial has run."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write(config.hydra.sweep.dir)


def main(argv: list[str]) -> int:
    """``python -m digits.sweeps <sweep folder>``: print the table (exit 0), or say why not (exit 2)."""
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        given = f"{argv[0]} is not a folder" if argv else "no folder given"
        print(f"{given}: give a sweep folder, e.g. python -m digits.sweeps outputs/multirun/<time>", file=sys.stderr)
        return 2
    print(write(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
