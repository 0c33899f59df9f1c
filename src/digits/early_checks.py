"""Checks of the paths a config names, before Hydra creates the run folder and before torch is imported: a
typo costs a second and leaves nothing behind. ``EarlyChecks`` runs them as a Hydra callback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from digits.config import ConfigError, check, exit_2, is_number
from digits.loggers import check_logger_packages
from digits.mnist_files import check_mnist
from digits.run_folder import check_fresh_folder


def check_paths(cfg: Any) -> None:
    """Without torch: no value left missing (``???``), ``*ckpt_path`` and ``predict`` exist, and MNIST is there
    when the run would not download it. (``resume=`` is checked by ``digits.config.OutputDirCheck``.)"""
    missing = [key for key in cfg if key != "hydra" and OmegaConf.is_missing(cfg, key)]
    if "ckpt_path" in missing:
        raise ConfigError(
            f"ckpt_path is missing: give a checkpoint or a run folder, e.g. python scripts/{cfg.hydra.job.name}.py "
            "ckpt_path=outputs/train/<run>"
        )
    if missing:
        raise ConfigError(f"{missing[0]} is missing (???): give it on the command line, {missing[0]}=<value>")
    for key in [key for key in cfg if key == "predict" or str(key).endswith("ckpt_path")]:  # non_digits: two
        if cfg.get(key) is not None:
            path = Path(str(cfg[key])).expanduser()
            if not path.exists():
                raise ConfigError(
                    f"{key}={cfg[key]}: {os.path.abspath(path)} does not exist"
                    + (": give a .ckpt file or a run folder (outputs/train/<run>)" if key != "predict" else "")
                )
    if "unsure_below" in cfg:
        value = cfg.unsure_below
        check(is_number(value) and 0 <= value <= 1, "unsure_below", value, "a probability in [0, 1], e.g. 0.8")
    data = cfg.get("data")
    if data is not None and "data_dir" in data and not data.get("download", False) and not cfg.get("predict"):
        check_mnist(data.data_dir)


class EarlyChecks(Callback):
    """Hydra callback, listed before ``OutputDirCheck`` (which claims the folder): a stray ``+key``,
    ``check_paths``, the loggers' packages and, with ``fresh_folder``, a new or empty run folder."""

    def __init__(self, fresh_folder: bool = True) -> None:
        self.fresh_folder = fresh_folder

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        try:
            _check_added_keys(config)
            check_paths(config)
            check_logger_packages(config.get("logger"))
            if self.fresh_folder:
                check_fresh_folder(os.path.abspath(str(config.hydra.run.dir)))
        except BaseException as error:
            exit_2(error)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        try:
            _check_added_keys(config)
        except BaseException as error:
            exit_2(error)


def _check_added_keys(config: Any) -> None:
    """A stray ``+key`` on the command line (digits.overrides.check_added_keys)."""
    from digits.overrides import check_added_keys, parse

    check_added_keys(config, parse(list(config.hydra.overrides.task)), list(config.hydra.runtime.choices))
