"""The CPU thread policy of a run: ``threads`` (torch's intra-op threads; ``auto``: the free cores) and
``omp_wait`` (how OpenMP's threads wait). On a busy machine spinning threads burn the time a late thread
needs and a run slows many times over (docs/performance.md, "Threads on a busy machine").

OpenMP reads its wait policy once, when torch loads, so ``set_wait_policy`` runs before the first
``import torch``; in a ``-m`` sweep the first job's policy holds for all of them (a later one gets a warning).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

from digits.config import check, check_threads

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


def set_wait_policy(cfg: Any) -> None:
    """Check both keys and put ``omp_wait`` into the environment, before torch is imported."""
    check_threads(cfg.get("threads"))
    wait = cfg.get("omp_wait")
    check(wait is None or wait in WAIT_POLICIES, "omp_wait", wait, "null, passive, brief or active")
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
