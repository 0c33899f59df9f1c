"""The recipes table: the benchmark's timed ``scripts/train.py`` runs, one row per recipe over its seeds,
against the anchor and against the recipe's targets.

The anchor is ``baseline.anchor_epochs`` (6) epochs of the baseline recipe at its median seconds per epoch,
measured in the same run. Not its seconds to 99 %: which epoch crosses 99 % moves with the CPU's arithmetic
(the 4th on one machine, the 6th on most recorded ones), so that time jumps by half between machines and
the ratios with it; the time per epoch does not. The crossing is reported beside it.

Used by benchmark.md's "Recipes" section (``digits_lab.benchmark``) and the README's front table
(``digits_lab.docs``), from the results that benchmark.json holds. No torch here: the docs check reads it.

A row's columns:

- test accuracy: the mean over the seeds' runs, with their min-max;
- train (vs anchor): the mean ``train_seconds`` (first step to the end of fit, what MNIST speed records
  time), and that over the anchor's seconds;
- whole run (vs anchor): the mean seconds from ``scripts/train.py``'s start to its exit, and that ratio.

Each carries the recipe's target from the config's ``targets`` (by run string, "" the default) and whether
the mean meets it. An older result whose runs have no ``seed`` or ``train_seconds`` reads as one run per
row and "-" for train.
"""

from __future__ import annotations

import statistics
from typing import Any

DEFAULT = "(default)"  # the run string "" as the runs tables show it
COLUMNS = ["recipe", "test accuracy", "train (vs anchor)", "whole run (vs anchor)"]
ANCHOR_EPOCHS = 6  # an older result's config has no baseline.anchor_epochs
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


def anchor(results: dict[str, Any]) -> dict[str, Any] | None:
    """The ratios' base from the baseline's epochs (None: the baseline did not run): ``anchor_epochs`` times
    the median of its epochs' seconds (training and the test after it, as pytorch/examples runs them), and
    the first epoch whose test accuracy reached the target (None: none did)."""
    history = (results.get("baseline_time_to_accuracy") or {}).get("history") or []
    if not history:
        return None
    config = ((results.get("config") or {}).get("baseline")) or {}
    epochs, target = config.get("anchor_epochs", ANCHOR_EPOCHS), config.get("target")
    ends = [epoch["seconds"] for epoch in history]
    per_epoch = statistics.median(end - start for start, end in zip([0.0, *ends], ends))
    crossing = next((e for e in history if target is not None and e["test_acc"] >= target - SLACK), None)
    return {
        "epochs": epochs,
        "seconds_per_epoch": per_epoch,
        "seconds": epochs * per_epoch,
        "epochs_measured": len(history),
        "target": target,
        "crossed_at_epoch": crossing and crossing["epoch"],
        "crossed_at_seconds": crossing and crossing["seconds"],
        "crossed_test_acc": crossing and crossing["test_acc"],
    }


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per recipe (run string), in the order the runs first appear: the seeds, the accuracy's
    mean, min and max, the mean seconds, their ratios to the anchor's seconds, the target and whether each
    part is met (None: no target or nothing to compare)."""
    base = (anchor(results) or {}).get("seconds")
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
        "train (vs anchor)": timed(row["train_seconds"], row["train_vs_baseline"], "train"),
        "whole run (vs anchor)": timed(row["wall_seconds"], row["whole_vs_baseline"], "whole"),
    }


def baseline_cells(results: dict[str, Any]) -> dict[str, str] | None:
    """The anchor's row: the baseline's accuracy where it crossed its target (else its last epoch's), and
    the anchor's seconds, e.g. "385.5 s = 6 x 64.3 s per epoch (crossed 99 % at epoch 4, 257.0 s)"."""
    base = anchor(results)
    if base is None:
        return None
    last = results["baseline_time_to_accuracy"]["history"][-1]
    goal = percent(base["target"], 0)
    if base["crossed_at_epoch"]:
        crossed = f"crossed {goal} at epoch {base['crossed_at_epoch']}, {seconds(base['crossed_at_seconds'])}"
    else:
        crossed = f"did not reach {goal} in {base['epochs_measured']} epochs"
    time = f"{seconds(base['seconds'])} = {base['epochs']} x {seconds(base['seconds_per_epoch'])} per epoch ({crossed})"
    accuracy = percent(base["crossed_test_acc"] if base["crossed_at_epoch"] else last["test_acc"])
    return {"test accuracy": accuracy, "train (vs anchor)": time, "whole run (vs anchor)": time}


def table_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Every recipe's row, then the baseline's (recipe: the run string; the baseline's named)."""
    rows = [{"recipe": row["recipe"], **cells(row)} for row in summarise(results)]
    baseline = baseline_cells(results)
    if baseline:
        rows.append({"recipe": "anchor: baseline (pytorch/examples)", **baseline})
    return rows
