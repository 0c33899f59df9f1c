"""The OmegaConf resolvers the configs use, registered by one explicit call at the start of each script
(and of the tests), not as a side effect of an import:

* ``${run_name:prefix,overrides}``: a run folder's name (``digits.run_names.run_name``);
* ``${if_set:value,then,otherwise}``: the run folder and Hydra's snapshot folder depend on ``resume``;
* ``${choice:group}``: the file a config group was composed from (``loss=nll`` -> ``nll``);
* ``${default_data_dir:}``: where MNIST is by default (``digits.mnist_files.default_data_dir``, the one rule);
* ``${basename:path}``: a path's last part (a run folder's name, for the MLflow and W&B run names).
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
    """The running Hydra app's record of the group's choice; None for a config composed without one
    (``compose`` in tests)."""
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
