"""The CPU thread policy of a run: how many intra-op threads torch uses and how its OpenMP threads wait.

On a busy machine torch's OpenMP threads spin while they wait for each other at the end of each parallel
region; when another process holds a core, a spinning thread burns the time the late thread needs, and a
run slows many times over (docs/performance.md, "Threads on a busy machine"; digits_lab.contention).
Two keys address it:

* ``threads``: null (torch's default, one per core), an integer, or ``auto`` (the cores this process may
  use, ``os.sched_getaffinity``, less the busy ones, ``os.getloadavg``'s last minute; at least one);
* ``omp_wait``: null (the OpenMP runtime's default, or whatever ``OMP_WAIT_POLICY`` the shell sets),
  ``passive`` (waiting threads sleep at once), ``brief`` (they spin ``BRIEF_SPINS`` turns, about 0.1 ms, then sleep:
  GNU OpenMP's ``GOMP_SPINCOUNT``, the runtime of PyTorch's Linux wheels) or ``active`` (they spin).

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
# About 0.1 ms of spinning (libgomp counts about 100,000 spins per ms, more or less with the CPU): long enough
# for the next operator of the same step (a step is many small ones, each a parallel region).
BRIEF_SPINS = 10_000
# What each omp_wait puts into the environment (None: removed). In libgomp a set GOMP_SPINCOUNT decides the
# spin count whatever OMP_WAIT_POLICY says, so passive and active remove it.
WAIT_POLICIES = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None},
    "brief": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": str(BRIEF_SPINS)},
    "active": {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None},
}


def check_thread_policy(cfg: Any) -> None:
    """One line naming the key, its value and what is allowed."""
    threads = cfg.get("threads")
    is_count = isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    if not (threads is None or threads == "auto" or is_count):
        raise ConfigError(f"threads={threads!r} is not allowed: null, auto or an integer >= 1")
    wait = cfg.get("omp_wait")
    if not (wait is None or wait in WAIT_POLICIES):
        raise ConfigError(f"omp_wait={wait!r} is not allowed: null, passive, brief or active")


def set_wait_policy(cfg: Any) -> None:
    """Check both keys and put ``omp_wait`` into the environment, before torch is imported."""
    check_thread_policy(cfg)
    wait = cfg.get("omp_wait")
    if wait is None:
        return
    values = WAIT_POLICIES[wait]
    if "torch" in sys.modules and any(os.environ.get(name) != value for name, value in values.items()):
        # a -m sweep's later job, or a caller that loaded torch first: OpenMP has read its policy already
        log.warning(
            "omp_wait=%s not applied: torch was loaded earlier in this process with %s, and OpenMP "
            "reads it once; run it as its own command",
            wait,
            wait_policy_in_effect() or "the runtime's default",
        )
        return
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def wait_policy_in_effect() -> str | None:
    """The OpenMP wait settings of this process's environment, as metrics.json records them
    (``PASSIVE``, ``GOMP_SPINCOUNT=10000``, ...); None: the runtime's default."""
    policy, spins = os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT")
    parts = [policy] if policy else []
    parts += [f"GOMP_SPINCOUNT={spins}"] if spins else []
    return " ".join(parts) or None


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
