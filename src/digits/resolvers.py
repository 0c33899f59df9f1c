"""The OmegaConf resolvers the configs use (``run_name``, ``if_set``, ``choice``, ``default_data_dir``,
``basename``), registered by one explicit call at the start of each script, not as a side effect of an import.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from digits.mnist_files import default_data_dir
from digits.run_names import run_name


def _if_set(value: object, then: object, otherwise: object) -> object:
    return otherwise if value is None else then


def _choice(group: str) -> str | None:
    """The group's choice (``loss=nll`` -> ``nll``); None for a config composed without Hydra's app."""
    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def register_resolvers() -> None:
    """Register each resolver once (calling it again is harmless)."""
    for name, function in (
        ("run_name", run_name),
        ("if_set", _if_set),
        ("choice", _choice),
        ("default_data_dir", default_data_dir),
        ("basename", lambda path: Path(str(path)).name),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
