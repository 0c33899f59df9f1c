"""The training task: config in, metrics and a run folder out.

``train(cfg)`` is plain and testable; ``scripts/train.py`` only wraps it with ``@hydra.main``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from digits.checkpoints import AtomicCheckpointIO, StopOnCtrlC, TrainingStopped, check_checkpoint
from digits.config import PROFILERS, check_run_folder, validate_train_config
from digits.models import count_parameters
from digits.module import DigitsModule, check_weights
from digits.threads import apply_threads
from digits.writing import write_text, writing


def plain(cfg: DictConfig | None) -> Any:
    """A resolved config section as plain dicts and lists: safe to store in a checkpoint."""
    return None if cfg is None else OmegaConf.to_container(cfg, resolve=True)


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The run's knobs for TensorBoard's hparams view, nested; the logger flattens them to ``group/key``."""
    keys = ("data", "model", "loss", "optimizer", "scheduler", "seed", "threads")
    config = {key: plain(cfg[key]) if isinstance(cfg[key], DictConfig) else cfg[key] for key in keys}
    config["trainer"] = {k: cfg.trainer[k] for k in ("max_epochs", "precision", "deterministic", "accelerator")}
    config["data"].pop("data_dir", None)
    return config


class FirstStepClock(Callback):
    """Notes when the first training step starts: the end of start-up."""

    def __init__(self) -> None:
        self.at: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.at is None:
            self.at = time.perf_counter()


class LogHyperparameters(Callback):
    """Writes TensorBoard's hparams view when training starts, not before: a run that fails earlier
    (no data, a bad checkpoint) leaves no event file, so TensorBoard lists no empty runs."""

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hparams = hparams

    def on_train_start(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            # The metrics named here fill the hparams view's columns once they are logged.
            logger.log_hyperparams(self.hparams, metrics={"val/acc_best": 0.0, "test/acc": 0.0})


def train(cfg: DictConfig, started: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, test the best checkpoint, write ``config.yaml`` and ``metrics.json`` into the run folder.

    ``started``: ``time.perf_counter()`` at process start, to report start-up time (imports included).
    """
    started = started or time.perf_counter()
    validate_train_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    is_rank_zero = rank_zero_only.rank == 0  # DDP: the other processes write nothing of their own
    # the checkpoint's own checks (digits.checkpoints); its weights are checked against the module below
    start = check_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") is not None else None
    if is_rank_zero:  # only resume= continues a folder; a ckpt_path= alone is a new run in a new folder
        check_run_folder(output_dir, resuming=cfg.get("resume") is not None)

    threads = apply_threads(cfg)  # digits.threads: threads=auto from the load; omp_wait was set before torch
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    module = DigitsModule(
        model=plain(cfg.model),
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler) or None,
        num_classes=cfg.model.get("num_classes", 10),
        channels_last=cfg.channels_last,
        run_config=plain(cfg),
    )
    if start is not None:  # a checkpoint of another network: refused before anything is written
        check_weights(module, start["state_dict"], cfg.ckpt_path)
    if is_rank_zero:
        write_text(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if cfg.trainer.get("enable_progress_bar") is False:  # one switch turns the bar off, whichever it is
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if not loggers:  # logger=none: nothing to write the learning rate to (LearningRateMonitor refuses)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    clock = FirstStepClock()
    stopper = StopOnCtrlC(output_dir / "checkpoints")
    plugins = [AtomicCheckpointIO(), *(instantiate(p) for p in cfg.trainer.get("plugins") or [])]
    # fit-profile.txt and test-profile.txt in the run folder
    profiler = (
        get_class(PROFILERS[cfg.profiler])(dirpath=output_dir, filename="profile") if cfg.get("profiler") else None
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, clock, stopper, LogHyperparameters(hyperparameters(cfg))],
        logger=loggers or False,
        plugins=plugins,
        profiler=profiler,
    )

    fit_start, fit_cpu_start = time.perf_counter(), time.process_time()
    # a disk that fills up while TensorBoard or a callback writes: the same WriteError as any other write
    intact = f"The checkpoints already written are intact: continue with resume={output_dir}."
    try:
        with writing(output_dir, intact):
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except TrainingStopped:
        pass  # Ctrl-C or SIGTERM: StopOnCtrlC has saved last.ckpt
    fit_end = time.perf_counter()
    fit_seconds = fit_end - fit_start
    fit_cpu_seconds = (
        time.process_time() - fit_cpu_start
    )  # all threads: what a search budgets (digits.studies.objective)

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = checkpoint.best_model_path if checkpoint else ""
    metrics: dict[str, Any] = {
        "val/acc_best": float(module.val_acc_best.compute()) if trainer.current_epoch else float("nan"),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "parameters": count_parameters(module.net),
        "loss": cfg.get("loss_choice"),  # as typed: loss=nll
        "loss_class": cfg.loss._target_.rsplit(".", 1)[-1],
        "fit_seconds": round(fit_seconds, 2),
        "fit_cpu_seconds": round(fit_cpu_seconds, 2),
        "threads": threads,  # the intra-op threads in effect, and OpenMP's wait policy (digits.threads)
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "startup_seconds": round(clock.at - started, 2) if clock.at else None,
        # first step to the end of fit, validation included (not the data set-up): what MNIST speed records time
        "train_seconds": round(fit_end - clock.at, 2) if clock.at else None,
        # time spent inside the monitoring callbacks (digits.monitoring), measured by themselves
        "monitoring_seconds": round(sum(getattr(c, "seconds", 0.0) for c in callbacks), 3),
    }
    if stopper.path is not None:
        metrics["stopped_early"] = {"step": trainer.global_step, "checkpoint": str(stopper.path)}
    elif cfg.get("test"):
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)
        metrics.update({key: float(value) for key, value in results[0].items()})
    metrics["best_checkpoint"] = best_path
    metrics["output_dir"] = str(output_dir)
    metrics["total_seconds"] = round(time.perf_counter() - started, 2)
    if is_rank_zero:
        write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule}


def summary(metrics: dict[str, Any]) -> str:
    """A few lines for the end of a run."""
    if "stopped_early" in metrics:
        stop = metrics["stopped_early"]
        return (
            f"stopped on request at step {stop['step']}; checkpoint {stop['checkpoint']}\n"
            f"resume with: python scripts/train.py resume={metrics['output_dir']}"
        )
    lines = [
        f"best val/acc   {metrics['val/acc_best']:.4f}",
        f"test/acc       {metrics['test/acc']:.4f}"
        if "test/acc" in metrics
        else "test/acc       (not run: test=false)",
        f"epochs         {metrics['epochs']} ({metrics['steps']} steps, {metrics['fit_seconds']:.1f} s fitting, "
        f"{metrics['total_seconds']:.1f} s in all, {metrics['startup_seconds']} s to the first step)",
        f"outputs        {metrics['output_dir']}",
    ]
    if metrics["best_checkpoint"]:
        lines.append(f"best ckpt      {metrics['best_checkpoint']}")
    lines.append(f"tensorboard    tensorboard --logdir {Path(metrics['output_dir']).parent}")
    return "\n".join(lines)
