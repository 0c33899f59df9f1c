"""Run folder names a user can tell apart: ``outputs/<script>/<time>_<the overrides that differ>``.

Registers the ``${run_name:prefix,overrides}`` resolver the Hydra run and sweep folders use
(``configs/hydra/default.yaml``); importing this module is enough.
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf

# Longest override part of a folder name: names stay well inside any file system's 255-byte limit
# and readable in a listing; the time in front keeps a cut name unique.
MAX_OVERRIDES_LENGTH = 80
_BRACKETS = re.compile(r"[\[\](){}'\"]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+~-]+")


def run_name(prefix: object, overrides: object = "") -> str:
    """``prefix`` alone, or ``prefix_overrides`` with brackets and quotes dropped, other characters a
    file name should not hold (``/``, spaces, ``*``) replaced by ``-``, cut to MAX_OVERRIDES_LENGTH."""
    overrides = _UNSAFE.sub("-", _BRACKETS.sub("", str(overrides or ""))).strip("-")[:MAX_OVERRIDES_LENGTH]
    return f"{prefix}_{overrides}" if overrides else str(prefix)


if not OmegaConf.has_resolver("run_name"):
    OmegaConf.register_new_resolver("run_name", run_name)
