"""The frame every script shares (as lightning-hydra-template's ``task_wrapper``): a script is its task
function and one call, ``run(task, "<config name>", "<job name>")``. Hydra's refusals of the command line
and a DigitsError are one line and exit code 2, and a failed start leaves no run folder behind.

The start-up clock starts when this module is imported: each script imports it first, before torch.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # the script's first import: the one start of the start-up clock

log = logging.getLogger("digits")
_started: float | None = STARTED  # taken by the first job; a sweep's later jobs count from their own start


def run(task: Callable[[Any, float], Any], config_name: str, job_name: str, config_dir: Path | None = None) -> Any:
    """Run ``task(cfg, started)`` as a Hydra app named ``job_name`` on ``<config_dir>/<config_name>.yaml``
    (by default the package's configs); ``started``: this job's start (the process start for the first)."""
    import hydra
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from digits.configs import CONFIG_DIR
    from digits.overrides import config_groups, explain
    from digits.resolvers import register_resolvers

    register_resolvers()
    config_dir = config_dir or CONFIG_DIR

    def job(cfg: Any) -> Any:
        return _job(task, cfg)

    job.__module__ = job_name  # Hydra names the job after it: outputs/<job_name>/..., <job_name>.log
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's errors raised (caught below by type), not printed with exit 1
    try:
        return hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)(job)()
    except (ConfigCompositionException, OverrideParseException) as error:
        print(f"ConfigError: {explain(error, config_groups(config_dir))}", file=sys.stderr)
        from digits.run_folder import remove_unused_sweep_folders

        remove_unused_sweep_folders()  # a sweep's folder, made (with Hydra's multirun.yaml) before a job's config
        sys.exit(2)


def _job(task: Callable[[Any, float], Any], cfg: Any) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from digits.console import quiet_console
    from digits.errors import DigitsError
    from digits.run_folder import remove_if_unused
    from digits.threads import set_wait_policy

    global _started
    started, _started = _started or time.perf_counter(), None
    try:
        set_wait_policy(cfg)  # OpenMP reads it once, when torch loads: before quiet_console imports Lightning
        quiet_console()
        return task(cfg, started)
    except DigitsError as error:
        log.error("%s: %s", type(error).__name__, error)
        remove_if_unused(HydraConfig.get().runtime.output_dir, HydraConfig.get().job.name)
        sys.exit(2)
