"""The CPU thread policy of a run: how many intra-op threads torch uses and how its OpenMP threads wait.

On a busy machine torch's OpenMP threads spin while they wait for each other at the end of each parallel
region; when another process holds a core, a spinning thread burns the time the late thread needs, and a
run slows many times over (docs/performance.md, "Threads on a busy machine"; digits.studies.contention).
Two keys address it:

* ``threads``: null (torch's default, one per core), an integer, or ``auto`` (the cores this process may
  use, ``os.sched_getaffinity``, less the busy ones, ``os.getloadavg``'s last minute; at least one);
* ``omp_wait``: null (the OpenMP runtime's default, or whatever ``OMP_WAIT_POLICY`` the shell sets),
  ``passive`` (waiting threads sleep) or ``active`` (they spin).

OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it, so ``set_wait_policy`` must run before the
first ``import torch`` of the process: scripts/train.py calls it first thing in its task. In a ``-m`` sweep
the later jobs run in the same process with torch loaded: the first job's policy holds for all of them;
a later job that asks for another one gets a warning, and its metrics.json records the policy in effect.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

from digits.config import ConfigError

log = logging.getLogger("digits")
WAIT_POLICIES = {"passive": "PASSIVE", "active": "ACTIVE"}


def check_thread_policy(cfg: Any) -> None:
    """One line naming the key, its value and what is allowed."""
    threads = cfg.get("threads")
    is_count = isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    if not (threads is None or threads == "auto" or is_count):
        raise ConfigError(f"threads={threads!r} is not allowed: null, auto or an integer >= 1")
    wait = cfg.get("omp_wait")
    if not (wait is None or wait in WAIT_POLICIES):
        raise ConfigError(f"omp_wait={wait!r} is not allowed: null, passive or active")


def set_wait_policy(cfg: Any) -> None:
    """Check both keys and put ``omp_wait`` into the environment, before torch is imported."""
    check_thread_policy(cfg)
    wait = cfg.get("omp_wait")
    if wait is None:
        return
    value = WAIT_POLICIES[wait]
    if "torch" in sys.modules and os.environ.get("OMP_WAIT_POLICY") != value:
        # a -m sweep's later job, or a caller that loaded torch first: OpenMP has read its policy already
        log.warning(
            "omp_wait=%s not applied: torch was loaded earlier in this process with OMP_WAIT_POLICY=%s, and OpenMP "
            "reads it once; run it as its own command",
            wait,
            os.environ.get("OMP_WAIT_POLICY"),
        )
        return
    os.environ["OMP_WAIT_POLICY"] = value


def thread_count(threads: Any) -> int | None:
    """The intra-op thread count ``threads`` asks for; None leaves torch's default."""
    if threads != "auto":
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = math.floor(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(cores, cores - busy))


def apply_threads(cfg: Any) -> int:
    """Set torch's intra-op threads from ``threads`` and return the count in effect."""
    import torch

    count = thread_count(cfg.get("threads"))
    if count:
        torch.set_num_threads(count)
    return torch.get_num_threads()
