"""What ``scripts/train.py`` returns to a hyperparameter sweep: validation accuracy within a budget.

    score = val/acc_best - penalty * max(0, fit_cpu_seconds / budget_seconds - 1)

Validation accuracy only: the test set must never choose a recipe (a search would overfit it).
The cost is the fit's CPU time (``time.process_time()`` of the process, all its threads), not its
wall-clock time: on a shared machine the wall time of one and the same run moves by 30-50 % with
the other tenants' load, while CPU time counts only the cycles the run itself used. With
``threads: 1`` (as ``hparams_search=fast_cpu`` sets) it is the one-thread fitting time, and the
ranking carries over to two threads as long as the recipes parallelise alike.
``budget_seconds: null`` (the default) returns the validation accuracy alone.
"""

from __future__ import annotations

from digits.run_metrics import RunMetrics


def score(metrics: RunMetrics, budget_seconds: float | None, penalty: float) -> float:
    """The number a sweep maximises, from a run's metrics (what its ``metrics.json`` holds)."""
    accuracy = metrics.val_acc_best
    if budget_seconds is None:
        return accuracy
    overrun = max(0.0, metrics.fit_cpu_seconds / budget_seconds - 1.0)
    return accuracy - penalty * overrun
