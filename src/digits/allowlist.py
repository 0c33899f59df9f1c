"""What a checkpoint or a run folder may ask this project to build: the classes its config groups
offer, named exactly, with plain data as their arguments. Checked before anything is instantiated.

A checkpoint's hyperparameters and a run's ``config.yaml`` are handed to Hydra's ``instantiate``,
which calls whatever ``_target_`` names, at any depth (``builtins.open``, ``pathlib.Path`` nested in
an argument), honours ``_partial_``/``_args_``, and resolves ``${...}`` interpolations first
(``${oc.env:...}`` reads the environment). So a file from elsewhere is only
instantiated when every ``_target_`` is one of the exact classes below, in the place its config group
puts it, no other Hydra key appears anywhere, and every value is plain data (None, bool, int, float,
str without ``${``, lists and dicts of them).

``tests/test_checkpoint_safety.py`` checks that these lists are exactly the ``_target_``s of the
files in ``configs/<group>/``: a new config file needs its class added here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from digits.errors import DigitsError

# The sections DigitsModule instantiates, and the classes their config groups offer.
MODULE_TARGETS: dict[str, frozenset[str]] = {
    "model": frozenset({"digits.models.DigitCNN", "digits.models.ExampleNet"}),
    "loss": frozenset(
        {
            "digits.losses.CrossEntropyLoss",
            "digits.losses.LogSoftmaxNLLLoss",
            "digits.losses.ManualCrossEntropyLoss",
            "digits.losses.NaiveCrossEntropyLoss",
            "digits.losses.SoftmaxFirstCrossEntropyLoss",
            "digits.sigmoid.SigmoidLoss",
        }
    ),
    "optimizer": frozenset({"torch.optim.AdamW", "torch.optim.SGD", "torch.optim.Adadelta"}),
    "scheduler": frozenset({"torch.optim.lr_scheduler.OneCycleLR", "torch.optim.lr_scheduler.CosineAnnealingLR"}),
}
# What else a run's whole config (config.yaml, a checkpoint's run_config) instantiates on resume=.
# "callbacks" and "logger" hold one named entry per callback / logger.
RUN_TARGETS: dict[str, frozenset[str]] = {
    **MODULE_TARGETS,
    "data": frozenset({"digits.data.MNISTDataModule"}),
    "trainer": frozenset({"lightning.pytorch.Trainer"}),
    "callbacks": frozenset(
        {
            "lightning.pytorch.callbacks.ModelCheckpoint",
            "lightning.pytorch.callbacks.RichProgressBar",
            "lightning.pytorch.callbacks.RichModelSummary",
            "lightning.pytorch.callbacks.LearningRateMonitor",
            "digits.monitoring.ValidationImages",
            "digits.monitoring.OutputHistograms",
            "digits.monitoring.Throughput",
        }
    ),
    "logger": frozenset({"lightning.pytorch.loggers.TensorBoardLogger"}),
}
GROUPS_OF_ENTRIES = ("callbacks", "logger")
# The list trainer.plugins, instantiated entry by entry by train(): the plugin classes configs/trainer offers.
TRAINER_PLUGIN_TARGETS: frozenset[str] = frozenset({"digits.sync_batchnorm.SyncBatchNorm"})
# The constructor arguments of DigitsModule: the only keys a checkpoint's hyperparameters may have.
HYPERPARAMETER_KEYS = ("model", "loss", "optimizer", "scheduler", "num_classes", "channels_last", "run_config")


class UnsafeConfigError(DigitsError, ValueError):
    """A checkpoint's hyperparameters or a run's config.yaml ask for something this project's config
    groups do not offer (or for anything but plain data)."""


def _is_special(key: str) -> bool:
    """Hydra's keys (``_target_``, ``_partial_``, ``_args_``, ``_recursive_``, ``_convert_``, and any
    it may add) all look like ``_name_``; refusing the pattern refuses the ones not invented yet."""
    return len(key) > 2 and key.startswith("_") and key.endswith("_")


def _check_plain(value: Any, where: str, source: str, target_allowed: frozenset[str] = frozenset()) -> None:
    """Plain data all the way down; a ``_target_`` only here, and only one of ``target_allowed``."""

    def refuse(what: str, path: str = where) -> None:
        raise UnsafeConfigError(
            f"{source}: refusing to instantiate anything from it: {path} {what}. "
            "Only the classes this project's config groups offer, with plain values, "
            "are loaded from a file."
        )

    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if "${" in value:
            refuse(f"is an interpolation {value[:80]!r} (resolved by OmegaConf before instantiating)")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]", source)
        return
    if not isinstance(value, dict):
        refuse(f"is a {type(value).__module__}.{type(value).__qualname__}, not plain data")
    for key, item in value.items():
        if not isinstance(key, str):
            refuse(f"has a key {str(key)[:80]!r} that is not a string")
        inner = f"{where}.{key}" if where else key
        if key == "_target_" and target_allowed:
            if not isinstance(item, str) or item not in target_allowed:
                refuse(f"is {str(item)[:80]!r}, not one of {', '.join(sorted(target_allowed))}", inner)
        elif key == "_target_":
            refuse(f"names {str(item)[:80]!r}: a _target_ is only allowed at the top of a config group", inner)
        elif _is_special(key):
            refuse(f"is a Hydra key (={str(item)[:80]!r}), not allowed in a file from elsewhere", inner)
        else:
            _check_plain(item, inner, source)


def check_run_config(config: Any, source: str | Path, where: str = "") -> None:
    """A whole run config (``config.yaml``, a checkpoint's ``run_config``) as plain Python data:
    each group's ``_target_`` one of its classes, nothing else special, plain values only."""
    prefix = f"{where}." if where else ""
    if not isinstance(config, dict):
        _check_plain(config, where or "the config", str(source))
        return
    for key, value in config.items():
        if isinstance(key, str) and key in GROUPS_OF_ENTRIES and isinstance(value, dict):
            for name, entry in value.items():
                if isinstance(name, str) and not _is_special(name):
                    _check_plain(entry, f"{prefix}{key}.{name}", str(source), RUN_TARGETS[key])
                else:  # `callbacks: {_target_: ...}`: refused as any special key is
                    _check_plain({name: entry}, f"{prefix}{key}", str(source))
        elif key == "trainer" and isinstance(value, dict) and isinstance(value.get("plugins"), list):
            rest = {name: entry for name, entry in value.items() if name != "plugins"}
            _check_plain(rest, f"{prefix}trainer", str(source), RUN_TARGETS["trainer"])
            for index, entry in enumerate(value["plugins"]):
                _check_plain(entry, f"{prefix}trainer.plugins[{index}]", str(source), TRAINER_PLUGIN_TARGETS)
        elif isinstance(key, str) and key in RUN_TARGETS:
            _check_plain(value, f"{prefix}{key}", str(source), RUN_TARGETS[key])
        else:
            _check_plain({key: value}, where, str(source))


def check_hyperparameters(hparams: Any, source: str | Path) -> None:
    """A checkpoint's ``hyper_parameters``, checked before DigitsModule (or anything) is built from them."""
    if not isinstance(hparams, dict):
        _check_plain(hparams, "hyper_parameters", str(source))
        raise UnsafeConfigError(f"{source}: hyper_parameters is not a dict of config sections")
    for key, value in hparams.items():
        if key not in HYPERPARAMETER_KEYS:
            raise UnsafeConfigError(
                f"{source}: refusing to instantiate anything from it: hyper_parameters has "
                f"an unknown entry {str(key)[:80]!r} (expected {', '.join(HYPERPARAMETER_KEYS)})"
            )
        if key in MODULE_TARGETS:
            _check_plain(value, key, str(source), MODULE_TARGETS[key])
        elif key == "run_config":
            check_run_config(value, source, "run_config")
        else:
            _check_plain(value, key, str(source))
    for key in ("model", "loss", "optimizer"):
        if not isinstance(hparams.get(key), dict) or "_target_" not in hparams[key]:
            raise UnsafeConfigError(f"{source}: hyper_parameters.{key} must be a config section with a _target_")
