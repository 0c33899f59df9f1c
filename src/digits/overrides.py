"""The command line's keys and group choices: Hydra's own refusals as one line (``explain``), plus the one case
Hydra lets through: a stray ``+key`` (``+optimiser=sgd`` trains AdamW beside an unused ``optimiser: sgd``),
refused by ``check_added_keys``."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digits.config import ConfigError
from digits.errors import one_line


def _closest(name: str, known: list[str]) -> str | None:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return match[0] if match else None


def _did_you_mean(name: str | None) -> str:
    return f"; did you mean {name!r}?" if name else "."


def config_groups(config_dir: str | Path) -> list[str]:
    """The config groups under ``config_dir``: its folders (``loss``, ``hydra/launcher``, ...)."""
    config_dir = Path(config_dir)
    return sorted(p.relative_to(config_dir).as_posix() for p in config_dir.rglob("*") if p.is_dir())


def explain(error: Exception, groups: list[str]) -> ConfigError:
    """Hydra's refusal of the command line as one ConfigError naming the key and the closest known name, from
    the error's own fields; any other composition error is Hydra's text on one line."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(error, OverrideParseException):
        key, _, value = error.override.partition("=")
        return ConfigError(
            f"Hydra cannot read the override {error.override!r}: a value with spaces, brackets, commas or "
            f"quotes must be quoted for Hydra inside the shell's quotes, e.g. '{key}=\"{value}\"'"
        )
    if isinstance(error, MissingConfigException) and error.options is not None and "/" in error.missing_cfg_file:
        group, value = error.missing_cfg_file.rsplit("/", 1)
        return ConfigError(
            f"{group}={value} is not a choice of {group!r}{_did_you_mean(_closest(value, error.options))} "
            f"The choices: {', '.join(error.options)}"
        )
    cause = error.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(cause.parent_node, DictConfig):
        full_key, parent = str(cause.full_key), cause.parent_node
        known = [str(k) for k in parent.keys() if k != "hydra"]
        if "." not in full_key:  # the config's top level: its keys and the config groups
            known = sorted({*known, *(g.split("/")[0] for g in groups)} - {"hydra"})
            return ConfigError(
                f"there is no key or config group {full_key!r}{_did_you_mean(_closest(full_key, known))} "
                f"Known: {', '.join(known)}"
            )
        parent_key, leaf = full_key.rsplit(".", 1)
        match = _closest(leaf, known)
        return ConfigError(
            f"{parent_key!r} has no key {leaf!r}{_did_you_mean(match and f'{parent_key}.{match}')} "
            f"Its keys: {', '.join(known)}"
        )
    return ConfigError(f"Hydra refuses the command line: {one_line(error)}")


def check_added_keys(cfg: DictConfig, overrides: list[Any], groups: list[str]) -> None:
    """Refuse a key that ``+`` or ``++`` added when it is new at the top level (``+optimiser=sgd``) or close to
    a known name (``+trainer.epochs=3``). A new nested key close to none (``+trainer.benchmark=true``) and
    ``++`` on a nested key are taken as meant."""
    tops = {g.split("/")[0] for g in groups}
    for override in overrides:
        key = override.key_or_group
        top = key.split(".")[0].split("/")[0]
        added = override.is_add() or override.is_force_add()
        if top == "hydra" or override.package is not None or key in groups or override.is_delete() or not added:
            continue
        known_tops = sorted(({str(k) for k in cfg.keys()} | tops) - {"hydra", top})
        match = _closest(top, known_tops)
        # `+top=...` succeeds only for a key that was not there (or, in a sweep, is not in the sweep's config)
        if top not in tops and (match or ("." not in key and override.is_add()) or top not in cfg):
            raise ConfigError(
                f"{override.input_line!r}: there is no key or config group {top!r}{_did_you_mean(match)} "
                f"Known: {', '.join(known_tops)}"
            )
        if "." not in key or not override.is_add():
            continue
        parent_key, leaf = key.rsplit(".", 1)
        parent = OmegaConf.select(cfg, parent_key, default=None)
        if not isinstance(parent, DictConfig):
            continue
        if leaf in parent and _existed_without(cfg, override, overrides):  # Hydra lets `+` set a null key
            raise ConfigError(
                f"{override.input_line!r}: {key} is already a key of the config; '+' adds a new key: "
                f"drop the '+' ({override.input_line.lstrip('+')})"
            )
        known = [str(k) for k in parent.keys() if k != leaf]
        match = _closest(leaf, known)
        if match is not None:
            raise ConfigError(
                f"{override.input_line!r}: {parent_key!r} has no key {leaf!r}"
                f"{_did_you_mean(f'{parent_key}.{match}')} Its keys: {', '.join(known)}"
            )


def _existed_without(cfg: DictConfig, override: Any, overrides: list[Any]) -> bool:
    """Whether the key ``override`` adds is in the config composed without it (Hydra lets ``+`` set a null
    key); composes again, so only on this path."""
    try:
        from hydra import compose

        others = [o.input_line for o in overrides if o is not override]
        base = compose(config_name=str(cfg.hydra.job.config_name), overrides=others)
    except Exception:  # not inside a Hydra app (a test's composed config): take it as new
        return False
    return OmegaConf.select(base, override.key_or_group, default=_ABSENT) is not _ABSENT


_ABSENT = object()


def parse(overrides: list[str]) -> list[Any]:
    """Hydra's parse of the overrides (its public override grammar), or the ConfigError of ``explain``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as error:
        raise explain(error, []) from None


def check_overrides(config_dir: str | Path, config_name: str, overrides: list[str]) -> None:
    """The scripts' checks of a command line without running it (the docs' commands, the tests): one
    composition, or one per value of a sweep (``loss=a,b``)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    config_dir = Path(config_dir).resolve()
    groups = config_groups(config_dir)
    parsed = parse(overrides)
    runs = [[o.input_line for o in parsed if not o.is_sweep_override()]]
    for override in (o for o in parsed if o.is_sweep_override()):
        element = override.get_key_element()
        runs += [[*runs[0], f"{element}={value}"] for value in override.sweep_iterator()]
    for run in runs:
        try:
            with initialize_config_dir(str(config_dir), version_base="1.3"):
                cfg = compose(config_name, overrides=run)
        except ConfigCompositionException as error:
            raise explain(error, groups) from None
        check_added_keys(cfg, parse(run), groups)
