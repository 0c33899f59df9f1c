"""How far the default recipe's accuracy moves with the seed and the thread count: ``scripts/spread.py``.

A seeded run is exact on one machine with one thread count, and moves with another (a different float
summation order), another seed or another CPU. The runs here measure that spread on the machine they run
on; the docs quote it next to every accuracy that is one machine's.
"""

from __future__ import annotations

from pathlib import Path

from digits.report import markdown_table
from digits_lab import results_dir
from digits_lab.train_runs import run_row, timed_train_run


def finished_run(folder: Path, overrides: str) -> dict:
    """A run of an earlier spread that finished (its ``metrics.json``); its wall time was not kept."""
    return {**run_row(folder, overrides, None), "reused_from": str(folder)}


def measure(runs: list[str], data_dir: str | Path, output_dir: Path, reuse: str | None = None) -> dict:
    """Each run timed start to exit (or, with ``reuse``, read from an earlier spread's ``run_<n>`` folder
    when that run finished), then the range of its test and validation accuracies."""
    rows = []
    for number, overrides in enumerate(runs):
        earlier = Path(reuse) / f"run_{number}" if reuse else None
        if earlier and (earlier / "metrics.json").is_file():
            rows.append(finished_run(earlier, overrides))
        else:
            rows.append(timed_train_run(str(number), overrides.split(), data_dir, output_dir))
    summary = {}
    for key in ("test_acc", "val_acc") if len(rows) > 1 else ():
        values = [row[key] for row in rows]
        summary[key] = {"min": min(values), "max": max(values), "spread": max(values) - min(values)}
    return {"runs": rows, "summary": summary}


def markdown(result: dict) -> str:
    summary = [{"metric": key, **values} for key, values in result["summary"].items()]
    if not summary:
        note = "One run: it gives this machine's value, and the spread over seeds and thread counts is not measured."
        return (
            markdown_table(result["runs"], ["run", "test_acc", "val_acc", "epochs", "steps", "fit_seconds"])
            + f"\n{note}\n"
        )
    return (
        "The default recipe (`python scripts/train.py` with the overrides in `run`), one run each, on one machine. "
        "`spread`: max - min over the runs.\n\n"
        + markdown_table(result["runs"], ["run", "test_acc", "val_acc", "epochs", "steps", "fit_seconds"])
        + "\n"
        + markdown_table(summary)
    )


def run_spread(cfg) -> str:
    """``measure`` as ``cfg`` says, written as spread.json and .md into ``paths.results_dir``. Returns the
    Markdown."""
    from digits.report import write_result

    result = measure(list(cfg.runs), cfg.data_dir, Path(cfg.paths.output_dir), cfg.reuse)
    text = markdown(result)
    write_result(results_dir(cfg), "spread", "The default recipe over seeds and thread counts", result, text)
    return text
