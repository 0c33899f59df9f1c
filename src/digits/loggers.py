"""What Lightning's loggers leave to the caller: a missing package refused before the run folder exists, the
hyperparameters in the form each takes, a W&B run finished with its training (else a sweep's next run would
write into it), and where each logger wrote."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from digits.errors import DigitsError

# The loggers whose package is optional: the module Lightning imports, and the extra that installs it.
OPTIONAL = {
    "lightning.pytorch.loggers.MLFlowLogger": ("mlflow", "mlflow"),
    "lightning.pytorch.loggers.WandbLogger": ("wandb", "wandb"),
}


class LoggerPackageError(DigitsError, ModuleNotFoundError):
    """A chosen logger's package is not installed."""


def check_logger_packages(loggers: Any) -> None:
    """Every chosen logger's package can be imported (checked without importing it: no torch yet)."""
    for name, entry in (loggers or {}).items():
        target = entry.get("_target_") if entry is not None else None
        if target in OPTIONAL and importlib.util.find_spec(OPTIONAL[target][0]) is None:
            module, extra = OPTIONAL[target]
            raise LoggerPackageError(
                f"logger.{name} ({target.rsplit('.', 1)[-1]}) needs the {module} package, which is not installed: "
                f"pip install -e '.[{extra}]', or choose another logger (logger=tensorboard, csv or many)"
            )


def log_hyperparameters(logger: Any, hparams: dict[str, Any]) -> None:
    """The run's hyperparameters into one logger; TensorBoard's hparams view also takes placeholders of the
    metrics that fill its columns."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if isinstance(logger, TensorBoardLogger):
        logger.log_hyperparams(hparams, metrics={"val/acc_best": 0.0, "test/acc": 0.0})
    else:
        logger.log_hyperparams(hparams)


def finish(loggers: list[Any]) -> None:
    """End the W&B run that this training started (Lightning leaves it open until the process exits)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def where(loggers: dict[str, Any], output_dir: str | Path) -> list[tuple[str, str]]:
    """(logger, where it wrote or how to open it) for the closing summary, from the run's logger config."""
    lines = []
    for entry in (loggers or {}).values():
        target = str((entry or {}).get("_target_", "")).rsplit(".", 1)[-1]
        if target == "TensorBoardLogger":
            lines.append(("tensorboard", f"tensorboard --logdir {Path(output_dir).parent}"))
        elif target == "CSVLogger":
            folder = Path(entry["save_dir"], entry.get("name") or "", str(entry.get("version") or ""))
            lines.append(("csv", str(folder / "metrics.csv")))
        elif target == "MLFlowLogger":
            lines.append(("mlflow", f"mlflow ui --backend-store-uri {entry.get('tracking_uri')}"))
        elif target == "WandbLogger":
            offline = f"wandb sync {Path(entry['save_dir'], 'wandb')}/offline-run-*  (uploads the offline run)"
            lines.append(("wandb", offline if entry.get("offline") else "the run's page on wandb.ai"))
    return lines
