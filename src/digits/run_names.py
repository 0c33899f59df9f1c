"""Run folder names a user can tell apart, such as ``outputs/train/2026-11-22_21-00-45-060287_loss-nll_seed-7``
(the ``${run_name:prefix,overrides}`` resolver of configs/hydra/default.yaml)."""

from __future__ import annotations

import re

# Longest override part of a folder name: names stay well inside any file system's 255-byte limit
# and readable in a listing; the time in front keeps a cut name unique.
MAX_OVERRIDES_LENGTH = 80
_BRACKETS = re.compile(r"[\[\](){}'\"]")
# Hydra's unquoted override values allow these: a run folder must be usable as `ckpt_path=<folder>`.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def run_name(prefix: object, overrides: object = "") -> str:
    """``prefix``, or ``prefix_key-value_key-value`` (``=`` and ``,`` would not parse as a path on the command
    line): brackets and quotes dropped, other unsafe characters ``-``, cut to MAX_OVERRIDES_LENGTH."""
    overrides = _BRACKETS.sub("", str(overrides or "")).replace(",", "_")
    overrides = _UNSAFE.sub("-", overrides).strip("-_")[:MAX_OVERRIDES_LENGTH]
    return f"{prefix}_{overrides}" if overrides else str(prefix)
