"""Early checks of a composed config: a typo fails in a second, with the key and what is allowed,
not after the data is loaded or an hour into training."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from digits.allowlist import check_run_config
from digits.errors import DigitsError
from digits.writing import WriteError

# The `profiler` key's values (debug=profiler): Lightning's profilers, each writing its report into the run folder.
PROFILERS = {
    "simple": "lightning.pytorch.profilers.SimpleProfiler",
    "advanced": "lightning.pytorch.profilers.AdvancedProfiler",
    "pytorch": "lightning.pytorch.profilers.PyTorchProfiler",
}


class ConfigError(DigitsError, ValueError):
    """A config value is out of range or of the wrong type."""


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def check_trainer(trainer: DictConfig) -> None:
    """Lightning's own checks of the accelerator, the precision and the devices, before the data loads.

    It runs the part of ``Trainer.__init__`` that parses these flags (its private accelerator connector:
    the public Trainer would also build loggers and callbacks and print its device lines), one group of
    keys at a time, so that a refusal names the keys that caused it."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector

    flags = OmegaConf.to_container(trainer, resolve=True)
    given: dict[str, Any] = {}
    for keys in (("accelerator",), ("precision",), ("devices", "num_nodes", "strategy")):
        given.update({key: flags[key] for key in keys if key in flags})
        level = logging.root.manager.disable
        logging.disable(logging.INFO)  # its "Using bfloat16 AMP" lines: the Trainer prints them again
        try:
            _AcceleratorConnector(**given, use_distributed_sampler=False)
        except (ValueError, TypeError, ImportError, RuntimeError, MisconfigurationException) as error:
            shown = ", ".join(f"trainer.{key}={flags[key]!r}" for key in keys if key in flags)
            raise ConfigError(f"{shown} is refused by Lightning: {_one_line(error)}") from error
        finally:
            logging.disable(level)


def check_model(model: DictConfig) -> None:
    """Build the network once, before the data loads: its own argument checks (digits.models) and
    Python's for unknown arguments, as one ConfigError."""
    from hydra.utils import get_class

    from digits.models import ModelArgumentError

    arguments = {k: v for k, v in OmegaConf.to_container(model, resolve=True).items() if k != "_target_"}
    try:
        get_class(model._target_)(**arguments)
    except ModelArgumentError as error:
        raise ConfigError(str(error)) from error  # its message names the key
    except (ValueError, TypeError, RuntimeError) as error:
        raise ConfigError(f"model ({model._target_}): {_one_line(error)}") from error


def check_loss(loss: DictConfig) -> None:
    """Build the loss once: a key its class does not take (a recipe's option meant for another loss) is one
    ConfigError before anything is written, not a TypeError once the run folder exists."""
    from hydra.errors import InstantiationException

    from digits.module import build_loss

    try:
        build_loss(OmegaConf.to_container(loss, resolve=True))
    except InstantiationException as error:  # Hydra's wrapper: the class's own error is its cause
        cause = error.__cause__
        if isinstance(cause, DigitsError):  # the loss's own check (digits.sigmoid): its message names the key
            raise ConfigError(str(cause)) from cause
        if isinstance(cause, TypeError):
            raise ConfigError(f"loss ({loss._target_}): {_one_line(cause)}; remove that key (~loss.<key>)") from cause
        raise


# torch.compile's modes (the `compile` key); reduce-overhead records CUDA graphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def check_compile(cfg: DictConfig) -> None:
    """A torch.compile mode, and CUDA graphs only where the run has a GPU (on the CPU torch would skip them
    with a warning, and the run would pay the compile for nothing)."""
    mode = cfg.get("compile")
    _check(mode is None or mode in COMPILE_MODES, "compile", mode, f"null or one of {', '.join(COMPILE_MODES)}")
    if mode == "reduce-overhead":
        import torch

        accelerator = cfg.trainer.get("accelerator")
        if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
            raise ConfigError(
                f"compile=reduce-overhead records CUDA graphs, which need a GPU, and this run trains on the CPU "
                f"(trainer.accelerator={accelerator}): use compile=default there, or trainer=gpu on a GPU machine"
            )


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key, its value and the allowed values.

    Lightning checks the trainer's flags (``check_trainer``), the network its arguments
    (``check_model``), torch the device name; the checks written here are for values those accept
    but that are wrong here, each with its reason."""
    # seed_everything turns 3.5 into 3, and a seed outside numpy's range into 0 with only a warning
    _check(_is_int(cfg.seed) and 0 <= cfg.seed < 2**32, "seed", cfg.seed, "an integer in [0, 2**32)")
    threads = cfg.get("threads")
    # train() skips a falsy value: threads=0 would silently mean all cores
    _check(
        threads in (None, "auto") or (_is_int(threads) and threads >= 1),
        "threads",
        threads,
        "null, auto or an integer >= 1",
    )
    precision = cfg.get("matmul_precision")
    # torch only warns about an unknown value and keeps its setting
    _check(
        precision in (None, "highest", "high", "medium"), "matmul_precision", precision, "null, highest, high or medium"
    )
    profiler = cfg.get("profiler")
    _check(profiler is None or profiler in PROFILERS, "profiler", profiler, f"null or one of {', '.join(PROFILERS)}")
    check_compile(cfg)

    data = cfg.data
    # our own sampler (digits.data.EpochBatchSampler) cuts the batches; torch never sees these sizes
    for key in ("batch_size", "eval_batch_size"):
        _check(_is_int(data[key]) and data[key] >= 1, f"data.{key}", data[key], "an integer >= 1")
    _check(
        _is_int(data.val_size) and 1 <= data.val_size < 60_000,
        "data.val_size",
        data.val_size,
        "an integer in [1, 59999] (validation images taken from the 60,000 training images)",
    )

    # torchvision takes any angle or shift; beyond these a digit stops looking like its label
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

    import torch  # here, not at the top: the command-line checks run before torch is imported

    device = str(data.get("device", "cpu"))
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise ConfigError(f"data.device={device!r} is refused by torch: {_one_line(error)}") from error
    # torch takes the name and fails only at the first copy, after the data has been read
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"data.device={device!r} but no CUDA GPU is visible: use trainer=cpu (or auto) and data.device=cpu"
        )

    check_model(cfg.model)

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
    check_loss(loss)

    lr = cfg.optimizer.get("lr")
    # torch takes lr=0: a run that never learns
    _check(_is_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0")
    from digits.schedule import check_schedule  # a momentum for OneCycleLR to cycle

    check_schedule(OmegaConf.to_container(cfg.optimizer, resolve=True), cfg.get("scheduler"))

    trainer = cfg.trainer
    # Lightning takes -1 (train forever); the schedule is fitted to a finite run
    _check(
        _is_int(trainer.max_epochs) and trainer.max_epochs >= 1,
        "trainer.max_epochs",
        trainer.max_epochs,
        "an integer >= 1",
    )
    # Lightning takes any value and treats it as true or false
    _check(
        isinstance(trainer.deterministic, bool) or trainer.deterministic == "warn",
        "trainer.deterministic",
        trainer.deterministic,
        "true, false or warn",
    )
    check_trainer(trainer)

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


# What fixes the number of optimizer steps, hence the length of a schedule filled in from the run.
_RUN_LENGTH_KEYS = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.limit_train_batches",
    "trainer.accumulate_grad_batches",
    "trainer.devices",
    "trainer.num_nodes",
    "data.batch_size",
    "data.val_size",
)


def _rebase(value: Any, old: str, new: str) -> Any:
    """Every string that is ``old`` or below it, moved below ``new``: a copied or moved run's paths."""
    if isinstance(value, str) and (value == old or value.startswith(old.rstrip("/") + "/")):
        return new + value[len(old.rstrip("/")) :]
    if isinstance(value, dict):
        return {key: _rebase(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_rebase(item, old, new) for item in value]
    return value


def _written_paths(cfg: DictConfig) -> list[tuple[str, Any]]:
    """The config values a training run writes below: checkpoints, logs, Lightning's root folder."""
    paths = [
        ("paths.output_dir", (cfg.get("paths") or {}).get("output_dir")),
        ("trainer.default_root_dir", (cfg.get("trainer") or {}).get("default_root_dir")),
    ]
    for group, key in (("callbacks", "dirpath"), ("logger", "save_dir"), ("logger", "log_dir")):
        for name, entry in (cfg.get(group) or {}).items():
            if isinstance(entry, DictConfig) and entry.get(key) is not None:
                paths.append((f"{group}.{name}.{key}", entry.get(key)))
    return paths


def check_no_symlinks(folder: Path) -> None:
    """Refuse a run folder with a symlink in it: a write to ``metrics.json`` or ``checkpoints/`` would land
    wherever the link points."""
    for parent, folders, files in os.walk(folder):
        for name in (*folders, *files):
            if (Path(parent) / name).is_symlink():
                link = Path(parent) / name
                raise ConfigError(
                    f"{link} is a symlink (to {os.readlink(link)}): a run folder is written only through its own "
                    "files; replace the link with a copy of its target, or remove it"
                )


def resume_config(run_dir: str | Path, overrides: list[str]) -> DictConfig:
    """The config to continue a run with: the run's own ``config.yaml``, its ``last.ckpt``, and
    the command line's plain ``key=value`` overrides (another data_dir). Changing a
    config group (``loss=manual``) would change the model or the loss mid-run and is refused, and so is
    a longer or shorter run while a schedule was filled in from the run's length.

    The run's paths are re-derived from ``run_dir``: a copied or moved run writes into itself, never
    into the folder it was copied from, and every folder it writes into must resolve inside ``run_dir``."""
    run_dir = Path(run_dir).resolve()
    saved_path, checkpoint = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    if not saved_path.is_file() or not checkpoint.is_file():
        raise ConfigError(
            f"resume={run_dir} is not a run folder to continue: it needs config.yaml and "
            "checkpoints/last.ckpt (runs are under outputs/train/<run>)"
        )
    check_no_symlinks(run_dir)
    saved = OmegaConf.to_container(OmegaConf.load(saved_path), resolve=False)
    # train() instantiates this config (data, model, callbacks, trainer, ...): the same list as a checkpoint's
    check_run_config(saved, saved_path)
    old = (saved.get("paths") or {}).get("output_dir")
    cfg = OmegaConf.create(_rebase(saved, old, str(run_dir)) if isinstance(old, str) and old else saved)
    scheduler = cfg.get("scheduler") or {}
    derived_schedule = bool(scheduler.get("_target_")) and all(
        scheduler.get(name) is None for name in ("total_steps", "T_max") if name in scheduler
    )
    for override in overrides:
        key, _, value = override.partition("=")
        if key == "resume":
            continue
        current = _MISSING if key[:1] in "+~" else OmegaConf.select(cfg, key, default=_MISSING)
        if current is _MISSING or isinstance(current, DictConfig):
            raise ConfigError(
                f"{override!r} cannot be applied to a resumed run: only plain key=value overrides "
                "of existing keys are (e.g. data.data_dir=<dir>); a different config group or "
                "key is a new run"
            )
        new = yaml.safe_load(value)
        if key in _RUN_LENGTH_KEYS and derived_schedule and new != current:
            raise ConfigError(
                f"{override!r} cannot be applied to a resumed run: its learning-rate schedule "
                f"({str(scheduler['_target_']).rsplit('.', 1)[-1]}) was fitted to {key}={current!r} when the run "
                f"started, and a resume keeps it. Train longer as a new run ({override} from the start), "
                "or start a run with scheduler=none, which can be resumed for longer"
            )
        OmegaConf.update(cfg, key, new, merge=False)
    for key, value in _written_paths(cfg):
        if not isinstance(value, str) or not Path(value).resolve().is_relative_to(run_dir):
            raise ConfigError(
                f"{saved_path}: {key}={str(value)[:200]!r} is outside the run folder {run_dir}; "
                "a resumed run writes only into its own folder"
            )
    # torch and Lightning: after the checks that need none (a typo fails fast)
    from digits.checkpoints import check_checkpoint
    from digits.module import DigitsModule

    check_checkpoint(checkpoint, DigitsModule.hyperparameter_keys())
    cfg.resume = str(run_dir)
    cfg.ckpt_path = str(checkpoint)
    cfg.paths.output_dir = str(run_dir)
    return cfg


# The files a finished or running training leaves in its folder.
_RUN_FILES = ("checkpoints", "metrics.json", "config.yaml")


def check_run_folder(folder: str | Path, resuming: bool) -> None:
    """No run writes into another run's folder: refuse one that holds a run's checkpoints or metrics
    unless resuming it (``resume=``; a ``ckpt_path=`` alone starts a new run), and one with symlinks."""
    folder = Path(folder)
    if not resuming:
        taken = [name for name in _RUN_FILES if (folder / name).exists() or (folder / name).is_symlink()]
        if taken:
            raise ConfigError(
                f"{folder} already holds a run ({', '.join(taken)}); choose another folder (paths.log_dir "
                f"or hydra.run.dir) or continue it with resume={folder}"
            )
    if folder.is_dir():
        check_no_symlinks(folder)


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
        if os.environ.get("LOCAL_RANK", "0") != "0":  # a DDP process Lightning started: rank 0 checked the folder
            return
        try:
            if config.get("resume") is not None:  # all of resume's checks, before Hydra writes its files there
                resume_config(config.resume, list(config.hydra.overrides.task))
            check_run_folder(folder, resuming=config.get("resume") is not None)
            check_writable(folder)
        except DigitsError as error:
            _exit_2(error)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from digits import entry

        folder = Path(os.path.abspath(str(config.hydra.sweep.dir)))
        while not folder.parent.exists():  # the topmost folder this sweep makes
            folder = folder.parent
        if not folder.exists():  # removed again if a later job's config is refused (digits.entry.run)
            entry.new_folders.add(folder)
        try:
            check_writable(config.hydra.sweep.dir)
        except DigitsError as error:
            _exit_2(error)


def _exit_2(error: DigitsError) -> None:
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(2)
