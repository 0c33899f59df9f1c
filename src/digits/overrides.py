"""The command line's keys and group choices, checked against the configs before Hydra runs.

Hydra adds any key given with ``+`` (``+optimiser=sgd`` trains AdamW with a stray ``optimiser: sgd``)
and answers a misspelt one with a hint to add it (``trainer.epochs=3`` -> ``+trainer.epochs=3``).
Here an unknown key or group is refused with the closest known name instead, exit code 2.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from digits.config import ConfigError

_MISSING = object()


def _closest(name: str, known: list[str]) -> str | None:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return match[0] if match else None


def _did_you_mean(name: str | None) -> str:
    return f"; did you mean {name!r}?" if name else "."


def _parse(parser, overrides: list[str]) -> list:
    """Hydra's parse of each override, or ConfigError naming the one it cannot read and how to quote it."""
    from hydra.errors import OverrideParseException

    try:
        return parser.parse_overrides(overrides)
    except OverrideParseException as error:
        key, _, value = error.override.partition("=")
        raise ConfigError(
            f"Hydra cannot read the override {error.override!r}: a value with spaces, brackets, commas or "
            f"quotes must be quoted for Hydra inside the shell's quotes, e.g. '{key}=\"{value}\"'"
        ) from None


def check_overrides(config_dir: str | Path, config_name: str, overrides: list[str]) -> None:
    """Raise ConfigError for a group choice that does not exist, a top-level key or group that does
    not exist (with or without ``+``), or a nested key that the composed config lacks; each with
    the closest known name. ``hydra.*`` overrides are left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not overrides:
        return
    config_dir = Path(config_dir).resolve()
    groups = {
        p.relative_to(config_dir).as_posix(): sorted(f.stem for f in p.glob("*.yaml"))
        for p in config_dir.rglob("*")
        if p.is_dir()
    }
    parsed = [
        o
        for o in _parse(OverridesParser.create(), overrides)
        if o.key_or_group.split(".")[0].split("/")[0] != "hydra" and o.package is None
    ]

    choices, swept_groups = [], set()
    for override in parsed:
        if override.key_or_group not in groups or override.is_delete():
            continue
        options = groups[override.key_or_group]
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value is not None and str(value) not in options:
                raise ConfigError(
                    f"{override.key_or_group}={value} is not a choice of {override.key_or_group!r}"
                    f"{_did_you_mean(_closest(str(value), options))} The choices: {', '.join(options)}"
                )
        if override.is_sweep_override():
            swept_groups.add(override.key_or_group)
        else:
            choices.append(override.input_line)

    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=choices)
    except (HydraException, OmegaConfBaseException):
        return  # a composition Hydra itself refuses: its own message says why
    top_level = sorted({*cfg.keys(), *(g.split("/")[0] for g in groups)} - {"hydra"})
    for override in parsed:
        key = override.key_or_group
        if key in groups:
            continue
        top = key.split(".")[0]
        if top not in top_level:
            raise ConfigError(
                f"{override.input_line!r}: there is no key or config group {top!r}"
                f"{_did_you_mean(_closest(top, top_level))} Known: {', '.join(top_level)}"
            )
        if "." not in key or top in swept_groups or override.is_delete():
            continue
        parent_key, leaf = key.rsplit(".", 1)
        parent = OmegaConf.select(cfg, parent_key, default=_MISSING)
        if not isinstance(parent, DictConfig) or leaf in parent:
            continue
        known = [str(k) for k in parent.keys()]
        match = _closest(leaf, known)
        if (override.is_add() or override.is_force_add()) and match is None:
            continue  # a deliberate new key (e.g. +trainer.<a Lightning argument>): Lightning checks it
        raise ConfigError(
            f"{override.input_line!r}: {parent_key!r} has no key {leaf!r}"
            f"{_did_you_mean(match and f'{parent_key}.{match}')} Its keys: {', '.join(known)}"
        )


def check_command_line(config_dir: str | Path, config_name: str, argv: list[str] | None = None) -> None:
    """For a script's ``if __name__ == "__main__"``: check the overrides on the command line (none: no
    cost), print the ConfigError and exit with code 2 on a bad one."""
    from hydra._internal.utils import get_args_parser  # Hydra's own command-line parser: the same split

    args, _ = get_args_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.overrides or args.help or args.hydra_help or args.shell_completion:
        return
    try:
        check_overrides(config_dir, config_name, args.overrides)
    except ConfigError as error:
        print(f"ConfigError: {error}", file=sys.stderr)
        sys.exit(2)
