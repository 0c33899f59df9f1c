"""Early checks of a composed config: a typo fails in a second, with the key and what is allowed,
not after the data is loaded or an hour into training."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from digits.allowlist import check_run_config
from digits.errors import DigitsError
from digits.writing import WriteError

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
PRECISIONS = ("32-true", "32", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true")


class ConfigError(DigitsError, ValueError):
    """A config value is out of range or of the wrong type."""


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key, its value and the allowed values."""
    _check(_is_int(cfg.seed), "seed", cfg.seed, "an integer")
    threads = cfg.get("threads")
    _check(threads is None or (_is_int(threads) and threads >= 1), "threads", threads, "null or an integer >= 1")
    precision = cfg.get("matmul_precision")
    _check(
        precision in (None, "highest", "high", "medium"), "matmul_precision", precision, "null, highest, high or medium"
    )

    data = cfg.data
    for key in ("batch_size", "eval_batch_size"):
        _check(_is_int(data[key]) and data[key] >= 1, f"data.{key}", data[key], "an integer >= 1")
    _check(
        _is_int(data.val_size) and 1 <= data.val_size < 60_000,
        "data.val_size",
        data.val_size,
        "an integer in [1, 59999] (validation images taken from the 60,000 training images)",
    )

    augment = data.get("augment") or {}
    for key, value in augment.items():
        limits = {"enabled": None, "degrees": 45, "translate": 0.3, "scale": 0.5, "stroke": 1}
        _check(key in limits, f"data.augment.{key}", value, f"one of the keys {', '.join(limits)}")
        if key == "enabled":
            _check(isinstance(value, bool), "data.augment.enabled", value, "true or false")
        else:
            _check(
                _is_number(value) and 0 <= value <= limits[key],
                f"data.augment.{key}",
                value,
                f"a number in [0, {limits[key]}]",
            )

    device = str(data.get("device", "cpu"))
    _check(device == "cpu" or device.startswith("cuda"), "data.device", device, "cpu or cuda")

    model = cfg.model
    if "dropout" in model:
        _check(
            _is_number(model.dropout) and 0 <= model.dropout < 1, "model.dropout", model.dropout, "a number in [0, 1)"
        )
    if "channels" in model:
        channels = list(model.channels)
        _check(
            bool(channels) and all(_is_int(c) and c >= 1 for c in channels),
            "model.channels",
            channels,
            "a non-empty list of integers >= 1, e.g. [16,32,64]",
        )
        _check(len(channels) <= 4, "model.channels", channels, "at most 4 blocks (each halves the 28px image)")

    loss = cfg.loss
    _check(
        loss.get("reduction", "mean") == "mean",
        "loss.reduction",
        loss.get("reduction"),
        "'mean' for training (none/sum are for the loss functions themselves)",
    )
    from digits.losses import LossArgumentError, check_options  # the loss's own rules, kept in losses.py

    try:
        check_options("mean", loss.get("label_smoothing", 0.0), loss.get("backward", "autograd"))
    except LossArgumentError as error:
        raise ConfigError(f"loss: {error}") from error
    weight = loss.get("weight")
    if weight is not None:
        _check(
            len(weight) == cfg.model.get("num_classes", 10) and all(_is_number(w) and w >= 0 for w in weight),
            "loss.weight",
            list(weight),
            "null or one non-negative number per class",
        )

    lr = cfg.optimizer.get("lr")
    _check(_is_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0")

    trainer = cfg.trainer
    _check(
        _is_int(trainer.max_epochs) and trainer.max_epochs >= 1,
        "trainer.max_epochs",
        trainer.max_epochs,
        "an integer >= 1",
    )
    _check(trainer.accelerator in ACCELERATORS, "trainer.accelerator", trainer.accelerator, f"one of {ACCELERATORS}")
    _check(str(trainer.precision) in PRECISIONS, "trainer.precision", trainer.precision, f"one of {PRECISIONS}")
    _check(isinstance(trainer.deterministic, bool), "trainer.deterministic", trainer.deterministic, "true or false")

    wants_cuda = trainer.accelerator in ("gpu", "cuda") or device.startswith("cuda")
    if wants_cuda:
        import torch  # here, not at the top: the command-line checks run before torch is imported

        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={trainer.accelerator!r}, data.device={device!r} "
                "but no CUDA GPU is visible: use trainer=cpu (or auto) and data.device=cpu"
            )

    objective = cfg.get("objective") or {}
    budget = objective.get("budget_seconds")
    _check(
        budget is None or (_is_number(budget) and budget > 0),
        "objective.budget_seconds",
        budget,
        "null or a number of CPU seconds > 0",
    )
    penalty = objective.get("penalty", 0.0)
    _check(_is_number(penalty) and penalty >= 0, "objective.penalty", penalty, "a number >= 0")


_MISSING = object()


def resume_config(run_dir: str | Path, overrides: list[str]) -> DictConfig:
    """The config to continue a run with: the run's own ``config.yaml``, its ``last.ckpt``, and
    the command line's plain ``key=value`` overrides (more epochs, another data_dir). Changing a
    config group (``loss=manual``) would change the model or the loss mid-run and is refused."""
    run_dir = Path(run_dir).resolve()
    saved_path, checkpoint = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    if not saved_path.is_file() or not checkpoint.is_file():
        raise ConfigError(
            f"resume={run_dir} is not a run folder to continue: it needs config.yaml and "
            "checkpoints/last.ckpt (runs are under outputs/train/<run>)"
        )
    cfg = OmegaConf.load(saved_path)
    # train() instantiates this config (data, model, callbacks, trainer, ...): the same list as a checkpoint's
    check_run_config(OmegaConf.to_container(cfg, resolve=False), saved_path)
    for override in overrides:
        key, _, value = override.partition("=")
        if key == "resume":
            continue
        current = _MISSING if key[:1] in "+~" else OmegaConf.select(cfg, key, default=_MISSING)
        if current is _MISSING or isinstance(current, DictConfig):
            raise ConfigError(
                f"{override!r} cannot be applied to a resumed run: only plain key=value overrides "
                "of existing keys are (e.g. trainer.max_epochs=5); a different config group or "
                "key is a new run"
            )
        OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    cfg.resume = str(run_dir)
    cfg.ckpt_path = str(checkpoint)
    cfg.paths.output_dir = str(run_dir)
    return cfg


def check_run_folder(folder: str | Path, resuming: bool) -> None:
    """No run writes into another run's folder: refuse one that holds checkpoints unless resuming it."""
    if (Path(folder) / "checkpoints").is_dir() and not resuming:
        raise ConfigError(
            f"{folder} already holds a run's checkpoints; choose another folder (paths.log_dir "
            f"or hydra.run.dir) or continue it with resume={folder}"
        )


def check_writable(folder: str | Path) -> None:
    """Create ``folder`` and write a probe file into it: a read-only or full disk fails here, clearly."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder) / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise WriteError(
            f"cannot write the run folder {folder}: {error.strerror or error}. Choose a writable "
            "folder with free space: paths.log_dir=<dir>."
        ) from error


class OutputDirCheck(Callback):
    """Hydra callback: the run-folder checks, before Hydra writes anything there, so that a taken
    folder or a read-only or full disk ends in one clear line and exit code 2, not Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = config.hydra.run.dir
        try:
            check_run_folder(folder, resuming=config.get("resume") is not None or config.get("ckpt_path") is not None)
            check_writable(folder)
        except DigitsError as error:
            _exit_2(error)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_writable(config.hydra.sweep.dir)
        except DigitsError as error:
            _exit_2(error)


def _exit_2(error: DigitsError) -> None:
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(2)
