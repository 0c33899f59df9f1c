"""The recipes table: the benchmark's timed ``scripts/train.py`` runs, one row per recipe over its seeds,
against the baseline recipe's seconds to its target accuracy and against the recipe's targets.

Used by benchmark.md's "Recipes" section (``digits_lab.benchmark``) and the README's front table
(``digits_lab.docs``), from the results that benchmark.json holds. No torch here: the docs check reads it.

A row's columns:

- test accuracy: the mean over the seeds' runs, with their min-max;
- train (vs baseline): the mean ``train_seconds`` (first step to the end of fit, what MNIST speed records
  time), and that over the baseline's seconds to its target;
- whole run (vs baseline): the mean seconds from ``scripts/train.py``'s start to its exit, and that ratio.

Each carries the recipe's target from the config's ``targets`` (by run string, "" the default) and whether
the mean meets it. An older result whose runs have no ``seed`` or ``train_seconds`` reads as one run per
row and "-" for train.
"""

from __future__ import annotations

import statistics
from typing import Any

DEFAULT = "(default)"  # the run string "" as the runs tables show it
COLUMNS = ["recipe", "test accuracy", "train (vs baseline)", "whole run (vs baseline)"]
# Accuracies are float32 counts over 10,000 images: 0.993 is stored as 0.99299997; a target compares with this slack.
SLACK = 1e-6


def percent(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}%}".replace("%", " %") if value is not None else "-"


def seconds(value: float | None) -> str:
    """Seconds, with two decimals below ten (a GPU run's train seconds) and one above."""
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per recipe (run string), in the order the runs first appear: the seeds, the accuracy's
    mean, min and max, the mean seconds, their ratios to the baseline's seconds to target, the target and
    whether each part is met (None: no target or nothing to compare)."""
    base = (results.get("baseline_time_to_accuracy") or {}).get("seconds")
    targets = (results.get("config") or {}).get("targets") or {}
    by_recipe: dict[str, list[dict]] = {}
    for run in results.get("runs", []):
        by_recipe.setdefault(run["run"], []).append(run)
    summary = []
    for recipe, runs in by_recipe.items():
        accuracies = [r["test_acc"] for r in runs if r.get("test_acc") is not None]
        train, whole = _mean([r.get("train_seconds") for r in runs]), _mean([r.get("wall_seconds") for r in runs])
        target = targets.get("" if recipe == DEFAULT else recipe)
        row = {
            "recipe": recipe,
            "seeds": [r.get("seed") for r in runs],
            "test_acc": _mean(accuracies),
            "test_acc_min": min(accuracies, default=None),
            "test_acc_max": max(accuracies, default=None),
            "train_seconds": train,
            "wall_seconds": whole,
            "train_vs_baseline": train / base if train is not None and base else None,
            "whole_vs_baseline": whole / base if whole is not None and base else None,
            "target": target,
        }
        row["met"] = {
            "test_acc": _met(row["test_acc"], target and target.get("test_acc"), at_least=True),
            "train": _met(row["train_vs_baseline"], target and target.get("train"), at_least=False),
            "whole": _met(row["whole_vs_baseline"], target and target.get("whole"), at_least=False),
        }
        summary.append(row)
    return summary


def _met(value: float | None, target: float | None, at_least: bool) -> bool | None:
    if value is None or target is None:
        return None
    return value >= target - SLACK if at_least else value <= target + SLACK


def _verdict(target: str, met: bool | None) -> str:
    return f"target {target}: " + {True: "met", False: "not met", None: "not measured"}[met]


def cells(row: dict[str, Any]) -> dict[str, str]:
    """A ``summarise`` record as the table's cells, e.g. "99.31 % (99.26–99.36, 3 seeds; target 99.30 %: met)"
    and "21.6 s (0.0297; target 0.03: met)"."""
    target, met = row["target"] or {}, row["met"]
    count = len(row["seeds"])
    spread = f"{row['test_acc_min'] * 100:.2f}–{row['test_acc_max'] * 100:.2f}, " if count > 1 else ""
    accuracy = f"{spread}{count} seed{'s' if count > 1 else ''}"
    if "test_acc" in target:
        accuracy += "; " + _verdict(percent(target["test_acc"]), met["test_acc"])

    def timed(value: float | None, ratio: float | None, key: str) -> str:
        if value is None:
            return "-"
        inside = [f"{ratio:.3g}"] if ratio is not None else []
        if key in target:
            inside.append(_verdict(f"{target[key]:g}", met[key]))
        return seconds(value) + (f" ({'; '.join(inside)})" if inside else "")

    # within 0.005 points of its bar a mean shows three decimals: at two it could read as the bar and "not met"
    near = "test_acc" in target and row["test_acc"] is not None and abs(row["test_acc"] - target["test_acc"]) < 5e-5
    mean = percent(row["test_acc"], 3 if near else 2)
    return {
        "test accuracy": f"{mean} ({accuracy})" if row["test_acc"] is not None else "-",
        "train (vs baseline)": timed(row["train_seconds"], row["train_vs_baseline"], "train"),
        "whole run (vs baseline)": timed(row["wall_seconds"], row["whole_vs_baseline"], "whole"),
    }


def baseline_cells(results: dict[str, Any]) -> dict[str, str] | None:
    """The baseline recipe's row: its last epoch's accuracy, and its seconds to the target, the ratios' base."""
    baseline = results.get("baseline_time_to_accuracy") or {}
    if not baseline:
        return None
    last = baseline["history"][-1]
    target = (results.get("config") or {}).get("baseline", {}).get("target")
    if baseline.get("seconds"):
        time = f"{seconds(baseline['seconds'])} to {percent(target, 0)} test (1)"
    else:
        time = f"{seconds(last['seconds'])} (did not reach {percent(target, 0)})"
    return {"test accuracy": percent(last["test_acc"]), "train (vs baseline)": time, "whole run (vs baseline)": time}


def table_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Every recipe's row, then the baseline's (recipe: the run string; the baseline's named)."""
    rows = [{"recipe": row["recipe"], **cells(row)} for row in summarise(results)]
    baseline = baseline_cells(results)
    if baseline:
        rows.append({"recipe": "baseline (pytorch/examples)", **baseline})
    return rows
