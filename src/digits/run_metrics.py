"""What a training run measured: one typed record (``RunMetrics``, written as ``metrics.json`` under
TensorBoard's names) and the one clock (``RunClock``) for its times, from the script's first import
(``digits.entry.STARTED``) or the call of ``train()``."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

# The fields metrics.json names differently (TensorBoard's names); each other field is its own key.
_KEYS = {"val_acc_best": "val/acc_best", "test_loss": "test/loss", "test_acc": "test/acc"}
# Written only when set: a stopped run has no test results, a finished one no stop.
_ONLY_WHEN_SET = ("stopped_early", "test_loss", "test_acc")


@dataclass(frozen=True)
class RunMetrics:
    """One run's results and times; ``metrics.json`` holds the same values under ``json_keys()``."""

    val_acc_best: float  # nan when no epoch finished
    epochs: int
    steps: int
    parameters: int
    loss: str | None  # the loss as typed (loss=nll); None for a config composed without Hydra's choices
    loss_class: str
    fit_seconds: float
    # all threads' CPU time of the fit: what a search budgets (digits.sweeps)
    fit_cpu_seconds: float
    startup_seconds: float | None  # process start to the first training step; None when no step ran
    # first step to the end of fit, validation included (not the data set-up): what MNIST speed records time
    train_seconds: float | None
    # time spent inside the monitoring callbacks (digits.monitoring), measured by themselves
    monitoring_seconds: float
    threads: int | None = None  # torch's intra-op threads in effect (threads=auto chooses them at start)
    omp_wait_policy: str | None = None  # OMP_WAIT_POLICY when torch loaded (digits.threads)
    stopped_early: dict[str, Any] | None = None  # {"step", "checkpoint"} after Ctrl-C or SIGTERM
    test_loss: float | None = None  # None: test=false, or the run was stopped
    test_acc: float | None = None
    best_checkpoint: str = ""
    output_dir: str = ""
    total_seconds: float = 0.0

    @staticmethod
    def json_keys() -> list[str]:
        """metrics.json's keys, in the file's order (those in ``_ONLY_WHEN_SET`` appear only when set)."""
        return [_KEYS.get(f.name, f.name) for f in dataclasses.fields(RunMetrics)]

    def to_json(self) -> dict[str, Any]:
        return {
            _KEYS.get(name, name): value
            for name, value in dataclasses.asdict(self).items()
            if not (name in _ONLY_WHEN_SET and value is None)
        }

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> RunMetrics:
        """An older run's file may lack a field added since (its default) or hold a key since removed."""
        names = {key: name for name, key in _KEYS.items()}
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{names.get(k, k): v for k, v in values.items() if names.get(k, k) in fields})

    @classmethod
    def read(cls, run_dir: str | Path) -> RunMetrics:
        """A run folder's ``metrics.json``."""
        return cls.from_json(json.loads((Path(run_dir) / "metrics.json").read_text()))


class RunClock(Callback):
    """Every time in a run's metrics: start-up ends at the first training step, the fit is what ``fitting()``
    encloses, the total ends when ``seconds()`` is asked."""

    def __init__(self, started: float | None = None) -> None:
        self.started = started or time.perf_counter()
        self.first_step: float | None = None
        self.fit_end: float | None = None
        self.fit_seconds = self.fit_cpu_seconds = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step is None:
            self.first_step = time.perf_counter()

    @contextmanager
    def fitting(self) -> Iterator[None]:
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.fit_end = time.perf_counter()
            self.fit_seconds = self.fit_end - start
            self.fit_cpu_seconds = time.process_time() - cpu_start

    def seconds(self) -> dict[str, float | None]:
        """The times of ``RunMetrics``, rounded as metrics.json shows them."""
        ran = self.first_step is not None and self.fit_end is not None
        return {
            "fit_seconds": round(self.fit_seconds, 2),
            "fit_cpu_seconds": round(self.fit_cpu_seconds, 2),
            "startup_seconds": round(self.first_step - self.started, 2) if ran else None,
            "train_seconds": round(self.fit_end - self.first_step, 2) if ran else None,
            "total_seconds": round(time.perf_counter() - self.started, 2),
        }


def tested(results: list[dict[str, float]]) -> dict[str, float]:
    """``trainer.test``'s logged values as ``RunMetrics`` fields (``test/acc`` -> ``test_acc``)."""
    names = {key: name for name, key in _KEYS.items()}
    return {names[key]: float(value) for key, value in results[0].items()}
