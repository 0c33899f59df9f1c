"""The training task: config in, metrics and a run folder out (``train(cfg)``, plain and testable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from digits import run_folder
from digits.checkpoints import AtomicCheckpointIO, StopOnCtrlC, TrainingStopped, check_checkpoint
from digits.config import PROFILERS, validate_train_config
from digits.loggers import finish, log_hyperparameters, where
from digits.models import count_parameters
from digits.module import DigitsModule, check_optimizer_state, check_weights, network_overrides
from digits.precision import resolved_precision
from digits.run_metrics import RunClock, RunMetrics, tested
from digits.threads import apply_threads, wait_policy_in_effect
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


class LogHyperparameters(Callback):
    """Writes the hyperparameters into each logger when training starts, not before: a run that fails earlier
    leaves no event file, so TensorBoard lists no empty runs."""

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hparams = hparams

    def on_train_start(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            log_hyperparameters(logger, self.hparams)


def train(cfg: DictConfig, started: float | None = None) -> tuple[RunMetrics, dict[str, Any]]:
    """Fit, test the best checkpoint, write ``config.yaml`` and ``metrics.json`` into the run folder.
    ``started``: the process start (``digits.entry.STARTED``); without it, start-up counts from this call."""
    clock = RunClock(started)
    validate_train_config(cfg)
    cfg.trainer.precision = resolved_precision(cfg.trainer)  # auto -> what this machine trains in
    output_dir = Path(cfg.paths.output_dir)
    is_rank_zero = rank_zero_only.rank == 0  # DDP: the other processes write nothing of their own
    # every path the config writes to, inside the run folder (a fresh run's command line as a resumed config)
    run_folder.check_paths_inside(plain(cfg), output_dir)
    if not is_rank_zero:
        return _train(cfg, clock, output_dir, is_rank_zero)
    with run_folder.claimed(output_dir):  # one process per run folder (scripts hold it from Hydra's start)
        return _train(cfg, clock, output_dir, is_rank_zero)


def _train(cfg: DictConfig, clock: RunClock, output_dir: Path, is_rank_zero: bool) -> tuple[RunMetrics, dict[str, Any]]:
    start = check_start(cfg, output_dir, is_rank_zero)
    threads = set_up_torch(cfg)

    datamodule = instantiate(cfg.data)
    datamodule.check_files()  # a damaged MNIST file: refused before config.yaml and TensorBoard's events file
    module = build_module(cfg)
    if cfg.get("compile"):
        module.net.compile(mode=cfg.compile)  # in place: the state_dict and the checkpoints keep their names
    if start is not None:  # a checkpoint of another network: refused before anything is written
        check_weights(module, start["state_dict"], cfg.ckpt_path, network_overrides(start, plain(cfg.model)))
        check_optimizer_state(module, start, cfg.ckpt_path)
    if is_rank_zero:
        write_text(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    callbacks = configured_callbacks(cfg)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if not loggers:  # logger=none: nothing to write the learning rate to (LearningRateMonitor refuses)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    stopper = StopOnCtrlC(output_dir / "checkpoints")
    trainer = build_trainer(cfg, [*callbacks, clock, stopper, LogHyperparameters(hyperparameters(cfg))], loggers)

    # a disk that fills up while TensorBoard or a callback writes: the same WriteError as any other write
    intact = f"The checkpoints already written are intact: continue with resume={output_dir}."
    with clock.fitting(), writing(output_dir, intact):
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        except TrainingStopped:
            pass  # Ctrl-C or SIGTERM: StopOnCtrlC has saved last.ckpt

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = checkpoint.best_model_path if checkpoint else ""
    stopped = {"step": trainer.global_step, "checkpoint": str(stopper.path)} if stopper.path else None
    results = {}
    if stopped is None and cfg.get("test"):
        results = tested(trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False))
    finish(loggers)
    metrics = RunMetrics(
        val_acc_best=float(module.val_acc_best.compute()) if trainer.current_epoch else float("nan"),
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        parameters=count_parameters(module.net),
        loss=cfg.get("loss_choice"),  # as typed: loss=nll
        loss_class=module.loss_name,
        monitoring_seconds=round(sum(getattr(c, "seconds", 0.0) for c in callbacks), 3),
        threads=threads,  # the intra-op threads in effect, and OpenMP's wait policy (digits.threads)
        omp_wait_policy=wait_policy_in_effect(),
        stopped_early=stopped,
        **results,
        best_checkpoint=best_path,
        output_dir=str(output_dir),
        **clock.seconds(),
    )
    if is_rank_zero:
        write_text(output_dir / "metrics.json", json.dumps(metrics.to_json(), indent=2) + "\n")
    return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule}


def check_start(cfg: DictConfig, output_dir: Path, is_rank_zero: bool) -> dict[str, Any] | None:
    """The checkpoint to start from, after its own checks (digits.checkpoints), and the run folder's."""
    start = (
        check_checkpoint(cfg.ckpt_path, DigitsModule.hyperparameter_keys())
        if cfg.get("ckpt_path") is not None
        else None
    )
    if is_rank_zero:  # only resume= continues a folder; a ckpt_path= alone is a new run in a new folder
        run_folder.check_run_folder(output_dir, resuming=cfg.get("resume") is not None)
    return start


def set_up_torch(cfg: DictConfig) -> int:
    """Threads, matmul precision and every seed, before anything random is built; the threads in effect."""
    threads = apply_threads(cfg)  # digits.threads: threads=auto from the load; omp_wait was set before torch
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)
    L.seed_everything(cfg.seed, workers=True)
    return threads


def build_module(cfg: DictConfig) -> DigitsModule:
    return DigitsModule(
        model=plain(cfg.model),
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler) or None,
        num_classes=cfg.model.get("num_classes", 10),
        channels_last=cfg.channels_last,
        run_config=plain(cfg),
    )


def configured_callbacks(cfg: DictConfig) -> list[Callback]:
    """The config's callbacks; ``trainer.enable_progress_bar=false`` turns the bar off, whichever it is."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if cfg.trainer.get("enable_progress_bar") is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Any]) -> L.Trainer:
    output_dir = Path(cfg.paths.output_dir)
    plugins = [AtomicCheckpointIO(), *(instantiate(p) for p in cfg.trainer.get("plugins") or [])]
    # fit-profile.txt and test-profile.txt in the run folder
    profiler = (
        get_class(PROFILERS[cfg.profiler])(dirpath=output_dir, filename="profile") if cfg.get("profiler") else None
    )
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins, profiler=profiler)


def summary(metrics: RunMetrics, loggers: Any = None) -> str:
    """A few lines for the end of a run; ``loggers``: the run's ``logger`` config (where each one wrote)."""
    if metrics.stopped_early is not None:
        stop = metrics.stopped_early
        return (
            f"stopped on request at step {stop['step']}; checkpoint {stop['checkpoint']}\n"
            f"resume with: python scripts/train.py resume={metrics.output_dir}"
        )
    lines = [
        f"best val/acc   {metrics.val_acc_best:.4f}",
        f"test/acc       {metrics.test_acc:.4f}"
        if metrics.test_acc is not None
        else "test/acc       (not run: test=false)",
        f"epochs         {metrics.epochs} ({metrics.steps} steps, {metrics.fit_seconds:.1f} s fitting, "
        f"{metrics.total_seconds:.1f} s in all, {metrics.startup_seconds} s to the first step)",
        f"outputs        {metrics.output_dir}",
    ]
    if metrics.best_checkpoint:
        lines.append(f"best ckpt      {metrics.best_checkpoint}")
    lines += [f"{name:<15}{line}" for name, line in where(loggers, metrics.output_dir)]
    return "\n".join(lines)
