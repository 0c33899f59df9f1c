"""What a checkpoint or a run folder may ask this project to build, checked before anything is instantiated:
Hydra's ``instantiate`` calls whatever ``_target_`` names at any depth and resolves ``${...}`` first, so a
file from elsewhere may name only the classes ``configs/<group>/*.yaml`` offer, in their group's place, with
plain data (no other Hydra key, no interpolation, at most ``MAX_DEPTH`` deep) as their arguments.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from digits.configs import CONFIG_DIR
from digits.errors import DigitsError

# The config groups DigitsModule instantiates, and what else a run's whole config instantiates on resume=.
MODULE_GROUPS = ("model", "loss", "optimizer", "scheduler")
RUN_GROUPS = (*MODULE_GROUPS, "data", "trainer", "callbacks", "logger")
GROUPS_OF_ENTRIES = ("callbacks", "logger")
# Deeper nesting is refused (a crafted file 5,000 lists deep would otherwise end in RecursionError).
MAX_DEPTH = 64


@functools.cache
def offered_targets(config_dir: Path = CONFIG_DIR) -> dict[str, frozenset[str]]:
    """Each group's ``_target_``s as its YAML files name them, plus ``"plugins"`` (``trainer.plugins``' entries).
    A missing group folder is an incomplete install, said as such."""
    offered: dict[str, set[str]] = {group: set() for group in (*RUN_GROUPS, "plugins")}
    for group in RUN_GROUPS:
        if not (config_dir / group).is_dir():
            raise ConfigsNotFoundError(
                f"the config group {group}/ is missing from {config_dir}: digits' configs did not install with "
                f"the package; reinstall it (pip install --force-reinstall digits, or pip install -e . in a checkout)"
            )
        for file in sorted((config_dir / group).glob("*.yaml")):
            config = yaml.safe_load(file.read_text()) or {}
            if not isinstance(config, dict):
                continue
            entries = list(config.values()) if group in GROUPS_OF_ENTRIES else [config]
            if group == "trainer":
                entries_of_plugins = config.get("plugins") or []
                offered["plugins"] |= {e["_target_"] for e in entries_of_plugins if isinstance(e, dict)}
            offered[group] |= {e["_target_"] for e in entries if isinstance(e, dict) and "_target_" in e}
    return {group: frozenset(targets) for group, targets in offered.items()}


class ConfigsNotFoundError(DigitsError, FileNotFoundError):
    """The package's own configs (digits.configs) are not where the install put them."""


class UnsafeConfigError(DigitsError, ValueError):
    """A checkpoint or a run's config.yaml asks for something the config groups do not offer."""


def _is_special(key: str) -> bool:
    """Hydra's keys all look like ``_name_``: refusing the pattern refuses the ones not invented yet."""
    return len(key) > 2 and key.startswith("_") and key.endswith("_")


def _check_plain(
    value: Any, where: str, source: str, target_allowed: frozenset[str] = frozenset(), depth: int = 0
) -> None:
    """Plain data all the way down; a ``_target_`` only here, and only one of ``target_allowed``."""

    def refuse(what: str, path: str = where) -> None:
        raise UnsafeConfigError(
            f"{source}: refusing to instantiate anything from it: {path} {what}. "
            "Only the classes this project's config groups offer, with plain values, "
            "are loaded from a file."
        )

    if depth > MAX_DEPTH:
        refuse(f"is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if "${" in value:
            refuse(f"is an interpolation {value[:80]!r} (resolved by OmegaConf before instantiating)")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]", source, depth=depth + 1)
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
            _check_plain(item, inner, source, depth=depth + 1)


def check_run_config(config: Any, source: str | Path, where: str = "") -> None:
    """A whole run config (``config.yaml``, a checkpoint's ``run_config``): each group's ``_target_`` one of
    its classes, plain values only."""
    prefix = f"{where}." if where else ""
    offered = offered_targets()
    if not isinstance(config, dict):
        _check_plain(config, where or "the config", str(source))
        return
    for key, value in config.items():
        if isinstance(key, str) and key in GROUPS_OF_ENTRIES and isinstance(value, dict):
            for name, entry in value.items():
                if isinstance(name, str) and not _is_special(name):
                    _check_plain(entry, f"{prefix}{key}.{name}", str(source), offered[key])
                else:  # `callbacks: {_target_: ...}`: refused as any special key is
                    _check_plain({name: entry}, f"{prefix}{key}", str(source))
        elif key == "trainer" and isinstance(value, dict) and isinstance(value.get("plugins"), list):
            rest = {name: entry for name, entry in value.items() if name != "plugins"}
            _check_plain(rest, f"{prefix}trainer", str(source), offered["trainer"])
            for index, entry in enumerate(value["plugins"]):
                _check_plain(entry, f"{prefix}trainer.plugins[{index}]", str(source), offered["plugins"])
        elif isinstance(key, str) and key in RUN_GROUPS:
            _check_plain(value, f"{prefix}{key}", str(source), offered[key])
        else:
            _check_plain({key: value}, where, str(source))


def check_hyperparameters(hparams: Any, source: str | Path, keys: tuple[str, ...]) -> None:
    """A checkpoint's ``hyper_parameters``, before anything is built from them; ``keys``: the only ones it may
    have (``DigitsModule.hyperparameter_keys``, passed in so that this module needs nothing of digits.module)."""
    if not isinstance(hparams, dict):
        _check_plain(hparams, "hyper_parameters", str(source))
        raise UnsafeConfigError(f"{source}: hyper_parameters is not a dict of config sections")
    for key, value in hparams.items():
        if key not in keys:
            raise UnsafeConfigError(
                f"{source}: refusing to instantiate anything from it: hyper_parameters has "
                f"an unknown entry {str(key)[:80]!r} (expected {', '.join(keys)})"
            )
        if key in MODULE_GROUPS:
            _check_plain(value, key, str(source), offered_targets()[key])
        elif key == "run_config":
            check_run_config(value, source, "run_config")
        else:
            _check_plain(value, key, str(source))
    data = (hparams.get("run_config") or {}).get("data") if isinstance(hparams.get("run_config"), dict) else None
    if isinstance(data, dict):  # evaluate re-makes the run's split from these
        for key, low, high in (("val_size", 1, 59_999), ("split_seed", 0, 2**63 - 1)):
            value = data.get(key)
            if value is not None and not (
                isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
            ):
                raise UnsafeConfigError(
                    f"{source}: hyper_parameters.run_config.data.{key}={str(value)[:40]!r} is not a whole number "
                    f"in [{low}, {high}]: not a value this project saves"
                )
    for key in ("model", "loss", "optimizer"):
        if not isinstance(hparams.get(key), dict) or "_target_" not in hparams[key]:
            raise UnsafeConfigError(f"{source}: hyper_parameters.{key} must be a config section with a _target_")
