"""Early checks of a composed config: a typo fails in a second, with the key and what is allowed,
not after the data is loaded or an hour into training."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from digits import run_folder
from digits.allowlist import check_run_config
from digits.errors import ConfigError, DigitsError, one_line

# The `profiler` key's values (debug=profiler): Lightning's profilers, each writing its report into the run folder.
PROFILERS = {
    "simple": "lightning.pytorch.profilers.SimpleProfiler",
    "advanced": "lightning.pytorch.profilers.AdvancedProfiler",
    "pytorch": "lightning.pytorch.profilers.PyTorchProfiler",
}


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_threads(threads: Any) -> None:
    ok = threads in (None, "auto") or (is_int(threads) and threads >= 1)  # 0 would silently mean all cores
    check(ok, "threads", threads, "null, auto or an integer >= 1")


def check_trainer(trainer: DictConfig) -> None:
    """Lightning's own checks of the accelerator, precision and devices, before the data loads: its private
    accelerator connector (the Trainer would also build loggers and print), one group of keys at a time,
    so that a refusal names the keys that caused it."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector

    from digits.precision import resolved_precision

    flags = OmegaConf.to_container(trainer, resolve=True)
    flags["precision"] = resolved_precision(flags)
    given: dict[str, Any] = {}
    for keys in (("accelerator",), ("precision",), ("devices", "num_nodes", "strategy")):
        given.update({key: flags[key] for key in keys if key in flags})
        level = logging.root.manager.disable
        logging.disable(logging.INFO)  # its "Using bfloat16 AMP" lines: the Trainer prints them again
        try:
            _AcceleratorConnector(**given, use_distributed_sampler=False)
        except (ValueError, TypeError, ImportError, RuntimeError, MisconfigurationException) as error:
            shown = ", ".join(f"trainer.{key}={flags[key]!r}" for key in keys if key in flags)
            raise ConfigError(f"{shown} is refused by Lightning: {one_line(error)}") from error
        finally:
            logging.disable(level)


def check_model(model: DictConfig) -> None:
    """Build the network once, before the data loads: its argument checks and Python's as one ConfigError."""
    from hydra.utils import get_class

    from digits.models import ModelArgumentError

    arguments = {k: v for k, v in OmegaConf.to_container(model, resolve=True).items() if k != "_target_"}
    try:
        get_class(model._target_)(**arguments)
    except ModelArgumentError as error:
        raise ConfigError(str(error)) from error  # its message names the key
    except (ValueError, TypeError, RuntimeError) as error:
        raise ConfigError(f"model ({model._target_}): {one_line(error)}") from error


def check_loss(loss: DictConfig) -> None:
    """Build the loss once: a key its class does not take is a ConfigError before anything is written."""
    from hydra.errors import InstantiationException

    from digits.module import build_loss

    try:
        build_loss(OmegaConf.to_container(loss, resolve=True))
    except InstantiationException as error:  # Hydra's wrapper: the class's own error is its cause
        cause = error.__cause__
        if isinstance(cause, DigitsError):  # the loss's own check (digits.sigmoid): its message names the key
            raise ConfigError(str(cause)) from cause
        if isinstance(cause, TypeError):
            raise ConfigError(f"loss ({loss._target_}): {one_line(cause)}; remove that key (~loss.<key>)") from cause
        raise


# torch.compile's modes (the `compile` key); reduce-overhead records CUDA graphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def check_compile(cfg: DictConfig) -> None:
    """A torch.compile mode, and CUDA graphs only with a GPU (on the CPU torch skips them with a warning)."""
    mode = cfg.get("compile")
    check(mode is None or mode in COMPILE_MODES, "compile", mode, f"null or one of {', '.join(COMPILE_MODES)}")
    if mode == "reduce-overhead":
        import torch

        accelerator = cfg.trainer.get("accelerator")
        if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
            raise ConfigError(
                f"compile=reduce-overhead records CUDA graphs, which need a GPU, and this run trains on the CPU "
                f"(trainer.accelerator={accelerator}): use compile=default there, or trainer=gpu on a GPU machine"
            )


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key, its value and the allowed values. Lightning, the network
    and torch check their own arguments; the checks here are for values they accept but are wrong here."""
    # seed_everything turns 3.5 into 3, and a seed outside numpy's range into 0 with only a warning
    check(is_int(cfg.seed) and 0 <= cfg.seed < 2**32, "seed", cfg.seed, "an integer in [0, 2**32)")
    check_threads(cfg.get("threads"))
    precision = cfg.get("matmul_precision")  # torch only warns about an unknown value and keeps its setting
    check(
        precision in (None, "highest", "high", "medium"), "matmul_precision", precision, "null, highest, high or medium"
    )
    profiler = cfg.get("profiler")
    check(profiler is None or profiler in PROFILERS, "profiler", profiler, f"null or one of {', '.join(PROFILERS)}")
    check_compile(cfg)

    data = cfg.data
    # our own sampler (digits.data.EpochBatchSampler) cuts the batches; torch never sees these sizes
    for key in ("batch_size", "eval_batch_size"):
        check(is_int(data[key]) and data[key] >= 1, f"data.{key}", data[key], "an integer >= 1")
    allowed = "an integer in [1, 59999] (validation images taken from the 60,000 training images)"
    check(is_int(data.val_size) and 1 <= data.val_size < 60_000, "data.val_size", data.val_size, allowed)

    # torchvision takes any angle or shift; beyond these a digit stops looking like its label
    augment = data.get("augment") or {}
    limits = {"enabled": None, "degrees": 45, "translate": 0.3, "scale": 0.5, "stroke": 1, "shear": 30, "blur": 1}
    for key, value in augment.items():
        check(key in limits, f"data.augment.{key}", value, f"one of the keys {', '.join(limits)}")
        if key == "enabled":
            check(isinstance(value, bool), "data.augment.enabled", value, "true or false")
        else:
            high = limits[key]
            check(is_number(value) and 0 <= value <= high, f"data.augment.{key}", value, f"a number in [0, {high}]")

    import torch  # here, not at the top: the command-line checks run before torch is imported

    device = str(data.get("device", "cpu"))
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise ConfigError(f"data.device={device!r} is refused by torch: {one_line(error)}") from error
    # torch takes the name and fails only at the first copy, after the data has been read
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"data.device={device!r} but no CUDA GPU is visible: use trainer=cpu (or auto) and data.device=cpu"
        )

    check_model(cfg.model)

    loss = cfg.loss
    allowed = "'mean' for training (none/sum are for the loss functions themselves)"
    check(loss.get("reduction", "mean") == "mean", "loss.reduction", loss.get("reduction"), allowed)
    from digits.losses import LossArgumentError, check_options  # the loss's own rules, kept in losses.py

    try:
        check_options("mean", loss.get("label_smoothing", 0.0), loss.get("backward", "autograd"))
    except LossArgumentError as error:
        raise ConfigError(f"loss: {error}") from error
    weight = loss.get("weight")
    if weight is not None:
        ok = len(weight) == cfg.model.get("num_classes", 10) and all(is_number(w) and w >= 0 for w in weight)
        check(ok, "loss.weight", list(weight), "null or one non-negative number per class")
    check_loss(loss)

    lr = cfg.optimizer.get("lr")
    # torch takes lr=0: a run that never learns
    check(is_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0")
    from digits.schedule import check_schedule  # a momentum for OneCycleLR to cycle

    check_schedule(OmegaConf.to_container(cfg.optimizer, resolve=True), cfg.get("scheduler"))

    trainer = cfg.trainer
    # Lightning takes -1 (train forever); the schedule is fitted to a finite run
    epochs = trainer.max_epochs
    check(is_int(epochs) and epochs >= 1, "trainer.max_epochs", epochs, "an integer >= 1")
    deterministic = trainer.deterministic  # Lightning takes any value and treats it as true or false
    ok = isinstance(deterministic, bool) or deterministic == "warn"
    check(ok, "trainer.deterministic", deterministic, "true, false or warn")
    check_trainer(trainer)

    objective = cfg.get("objective") or {}
    budget = objective.get("budget_seconds")
    ok = budget is None or (is_number(budget) and budget > 0)
    check(ok, "objective.budget_seconds", budget, "null or a number of CPU seconds > 0")
    penalty = objective.get("penalty", 0.0)
    check(is_number(penalty) and penalty >= 0, "objective.penalty", penalty, "a number >= 0")


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


# config.yaml is written by train() (a few KB); a larger one is not a run's config.
MAX_CONFIG_BYTES = 1 * 2**20


class _RunConfigLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors, aliases or repeated keys: train() never writes them, and nested
    aliases of a few hundred bytes expand to millions of nodes ("billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigError(
                f"{self.name}: line {event.start_mark.line + 1} has a YAML anchor or alias (&/*), which a run's "
                "config.yaml never holds: write each value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise ConfigError(
                        f"{self.name}: line {key_node.start_mark.line + 1} repeats the key {str(key)[:80]!r}: "
                        "keep one of them"
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def read_run_config(path: Path) -> dict[str, Any]:
    """A run's ``config.yaml`` as plain data, or ConfigError saying what is wrong with the file."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} has {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} of a run's config.yaml")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    loader = _RunConfigLoader(text)
    loader.name = str(path)
    try:
        config = loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {one_line(error)[:300]}") from error
    finally:
        loader.dispose()
    if not isinstance(config, dict):
        raise ConfigError(f"{path} holds a {type(config).__name__}, not the mapping of sections train() writes")
    for key in ("data", "model", "loss", "optimizer", "trainer", "paths"):
        if not isinstance(config.get(key), dict):
            raise ConfigError(f"{path}: {key} is {str(config.get(key))[:80]!r}, not a section (a mapping of keys)")
    return config


def check_not_finished(run_dir: Path, cfg: DictConfig) -> None:
    """A finished run is continued only for more epochs or steps: a resume with nothing to do would rewrite
    metrics.json with nothing measured."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return  # killed or crashed: nothing was written at the end
    try:
        metrics = json.loads(path.read_text())
        stopped, epochs, steps = metrics.get("stopped_early"), int(metrics["epochs"]), int(metrics["steps"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(
            f"resume={run_dir}: its metrics.json cannot be read ({type(error).__name__}), so whether the run "
            "finished is unknown; nothing was changed. Start a new run, or restore metrics.json"
        ) from error
    if stopped:
        return  # stopped by Ctrl-C or SIGTERM: the run continues where it stopped
    max_epochs, max_steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps")
    more_epochs = is_int(max_epochs) and max_epochs > epochs
    more_steps = is_int(max_steps) and max_steps > steps
    if not more_epochs and not more_steps:
        raise ConfigError(
            f"resume={run_dir}: this run finished ({epochs} epochs, {steps} steps; trainer.max_epochs={max_epochs}) "
            "and there is nothing to continue; nothing was changed. Train it longer with "
            f"trainer.max_epochs=<more than {epochs}> (a run with scheduler=none), or start a new run"
        )


def resume_config(run_dir: str | Path, overrides: list[str]) -> DictConfig:
    """The config to continue a run with: its ``config.yaml`` and ``last.ckpt`` and the command line's plain
    ``key=value`` overrides. A config group change, a new length for a schedule fitted to the run, and a
    finished run are refused. Paths are re-derived from ``run_dir``, so a copied run writes into itself."""
    run_dir = Path(run_dir).resolve()
    saved_path, checkpoint = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    if not saved_path.is_file() or not checkpoint.is_file():
        raise ConfigError(
            f"resume={run_dir} is not a run folder to continue: it needs config.yaml and "
            "checkpoints/last.ckpt (runs are under outputs/train/<run>)"
        )
    run_folder.check_no_symlinks(run_dir)
    saved = read_run_config(saved_path)
    # train() instantiates this config (data, model, callbacks, trainer, ...): the same list as a checkpoint's
    check_run_config(saved, saved_path)
    old = (saved.get("paths") or {}).get("output_dir")
    cfg = OmegaConf.create(_rebase(saved, old, str(run_dir)) if isinstance(old, str) and old else saved)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{saved_path}: {missing[0]} is missing (???): a run's config.yaml has every value")
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
    cfg.paths.output_dir = str(run_dir)
    try:
        validate_train_config(cfg)
    except (DigitsError, ImportError):
        raise
    except Exception as error:  # a key missing or of the wrong kind in a hand-edited file
        raise ConfigError(
            f"{saved_path} is not a config this project can resume: {type(error).__name__}: {one_line(error)[:300]}"
        ) from error
    run_folder.check_paths_inside(OmegaConf.to_container(cfg, resolve=True), run_dir)
    # torch and Lightning: after the checks that need none (a typo fails fast)
    from digits.checkpoints import check_checkpoint
    from digits.module import DigitsModule

    check_checkpoint(checkpoint, DigitsModule.hyperparameter_keys())
    check_not_finished(run_dir, cfg)
    cfg.resume = str(run_dir)
    cfg.ckpt_path = str(checkpoint)
    return cfg


class OutputDirCheck(Callback):
    """Hydra callback: claim the run folder and check it (digits.run_folder) before Hydra writes there. Any
    error is one line and exit code 2: Hydra would only warn and go on writing into the folder."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get("LOCAL_RANK", "0") != "0":  # a DDP process Lightning started: rank 0 holds the folder
            return
        try:
            folder = os.path.abspath(str(config.hydra.run.dir))
            resuming = config.get("resume") is not None
            if resuming:  # all of resume's checks, before Hydra writes its files there
                resume_config(config.resume, list(config.hydra.overrides.task))
            run_folder.claim(folder)
            try:
                if (config.hydra.callbacks.get("early_checks") or {}).get("fresh_folder", False):
                    run_folder.check_fresh_folder(folder)
                run_folder.check_run_folder(folder, resuming=resuming)
                run_folder.check_writable(folder)
            except DigitsError:
                run_folder.remove_if_unused(folder, str(config.hydra.job.name))
                raise
        except BaseException as error:
            exit_2(error)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            run_folder.remember_sweep_folder(os.path.abspath(str(config.hydra.sweep.dir)))
            run_folder.check_writable(config.hydra.sweep.dir)
        except BaseException as error:
            exit_2(error)


def exit_2(error: BaseException) -> None:
    """One line on stderr and exit code 2, from a Hydra callback (where an exception is only a warning)."""
    if isinstance(error, (SystemExit, KeyboardInterrupt)):
        raise error
    print(f"{type(error).__name__}: {one_line(error)}", file=sys.stderr)
    sys.exit(2)
