"""The default training run on a busy machine: each thread option in each situation (quiet, beside one
busy process, beside three), timed as a user runs it, command to exit, side by side in one run.

Why: torch's OpenMP threads spin while they wait for each other; when another process holds a core the
spinning burns the time the late thread needs, and the run slows many times over while its CPU seconds
grow. The options (configs/benchmark.yaml, ``contention.options``) are config overrides of
scripts/train.py (``threads``, ``omp_wait``; digits.threads) and, for what has no key, environment
variables set for the run's process (e.g. ``GOMP_SPINCOUNT``). Every option runs in every round of every
situation, in a rotating order, so a change of the machine's load falls on all of them alike.

The busy processes are ``python -c`` loops with a hard end of their own (``busy_seconds``), started for a
situation and always killed in a ``finally``: nothing outlives the study. CPU seconds are those of the
run's process tree (``resource.getrusage(RUSAGE_CHILDREN)`` around the run; the busy loops are still
running then, so they are not counted).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digits.report import markdown_table, write_result
from digits.run_metrics import RunMetrics

# A busy core: it also ends when the study's process is gone (its parent changes), however that process ended.
BUSY_LOOP = (
    "import os, time\n"
    "parent, end = {parent}, time.monotonic() + {seconds}\n"
    "while time.monotonic() < end and os.getppid() == parent: pass"
)


@contextmanager
def busy_processes(count: int, seconds: float) -> Iterator[list[subprocess.Popen]]:
    """``count`` processes that keep one core each busy for at most ``seconds``; killed on leaving, and ending
    by themselves when this process ends without leaving (killed, SIGTERM)."""
    processes: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            loop = BUSY_LOOP.format(parent=os.getpid(), seconds=seconds)
            processes.append(subprocess.Popen([sys.executable, "-c", loop]))
        yield processes
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def timed_run(overrides: list[str], env: dict[str, str], data_dir: str | Path, run_dir: Path, timeout: float) -> dict:
    """scripts/train.py in a fresh process: wall seconds command to exit, its fit seconds, and the CPU
    seconds of its process tree. The shell's OpenMP wait settings are left out: each option sets its own."""
    from digits_lab.train_runs import run_train_script

    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    environment.update({"DIGITS_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore", **env})
    wall, cpu = run_train_script(run_dir, overrides, environment, timeout=timeout)
    metrics = RunMetrics.read(run_dir)
    return {
        "wall_seconds": wall,
        "fit_seconds": metrics.fit_seconds,
        "cpu_seconds": cpu,
        "threads": metrics.threads,
        "omp_wait_policy": metrics.omp_wait_policy,
        "steps": metrics.steps,
    }


def measure(
    options: dict[str, dict],
    situations: dict[str, int],
    run: list[str],
    rounds: int,
    data_dir: str | Path,
    output_dir: Path,
    busy_seconds: float,
    timeout: float,
    log=print,
) -> list[dict]:
    """Every option in every situation, ``rounds`` times; ``options``: name -> {overrides, env};
    ``situations``: name -> number of busy processes; ``run``: overrides that every run gets."""
    samples: dict[tuple[str, str], list[dict]] = {}
    names = list(options)
    for round_number in range(rounds):
        for situation, busy in situations.items():
            with busy_processes(busy, busy_seconds):
                order = names[round_number % len(names) :] + names[: round_number % len(names)]
                for name in order:
                    option = options[name]
                    run_dir = output_dir / "contention" / f"{situation}_{name}_{round_number}".replace(" ", "_")
                    overrides = [*run, *option.get("overrides", [])]
                    env = {k: str(v) for k, v in (option.get("env") or {}).items()}
                    sample = timed_run(overrides, env, data_dir, run_dir, timeout)
                    sample["load_average_1min"] = round(os.getloadavg()[0], 2)
                    samples.setdefault((name, situation), []).append(sample)
                    log(
                        f"contention round {round_number + 1}/{rounds}, {situation}, {name}: "
                        f"{sample['wall_seconds']:.1f} s wall, {sample['fit_seconds']:.1f} s fit, "
                        f"{sample['cpu_seconds']:.1f} CPU s, {sample['threads']} threads"
                    )
    rows = []
    for (name, situation), values in samples.items():
        quiet = samples.get((name, next(iter(situations))), values)
        wall = statistics.median(v["wall_seconds"] for v in values)
        rows.append(
            {
                "option": name,
                "situation": situation,
                "busy_processes": situations[situation],
                "wall_seconds": wall,
                "fit_seconds": statistics.median(v["fit_seconds"] for v in values),
                "cpu_seconds": statistics.median(v["cpu_seconds"] for v in values),
                "vs_quiet_wall": wall / statistics.median(v["wall_seconds"] for v in quiet),
                "threads": values[0]["threads"],
                "rounds": len(values),
                "samples": values,
            }
        )
    return rows


def contention_section(
    cfg: Any, data_dir: str | Path, output_dir: Path, results_dir: str | Path, log=print
) -> tuple[dict, list[str]]:
    """Measure as ``cfg`` (configs/benchmark.yaml's ``contention`` block) says and write the results as
    ``<results_dir>/contention.json`` and ``.md``; return the results and the Markdown."""
    from omegaconf import OmegaConf

    options = OmegaConf.to_container(cfg.options, resolve=True)
    situations = OmegaConf.to_container(cfg.situations, resolve=True)
    run = list(cfg.run)
    rows = measure(
        options, situations, run, cfg.rounds, data_dir, output_dir, cfg.busy_seconds, cfg.timeout_seconds, log
    )
    results = {"run": run, "options": options, "situations": situations, "rows": rows}
    lines = section_markdown(run, rows)
    write_result(results_dir, cfg.get("result_name", "contention"), title(run), results, "\n".join(lines[1:]))
    return results, lines


def title(run: list[str]) -> str:
    """The result file's heading: which run was measured."""
    return "The default run on a busy machine" if not run else f"`{' '.join(run)}` on a busy machine"


def section_markdown(run: list[str], rows: list[dict]) -> list[str]:
    shortened = any(o.startswith(("trainer.max_epochs=", "trainer.limit_train_batches=", "test=")) for o in run)
    if not run:
        reduced = "The default run (`python scripts/train.py`)."
    elif shortened:
        reduced = (
            f"**A reduced run** (`{' '.join(run)}`), not the default run: the shape of the table, not its numbers."
        )
    else:
        reduced = f"The run `python scripts/train.py {' '.join(run)}`, not the default run."
    table = [{k: v for k, v in row.items() if k != "samples"} for row in rows]
    return [
        "## Threads on a busy machine",
        "",
        f"{reduced} Each option in each situation, command to exit (wall), the fit alone (fit), and the CPU "
        "seconds of the run's process tree; `vs_quiet_wall` is the wall time over the same option's quiet wall "
        "time (target beside three busy processes: at most 2.5). Medians over the rounds; busy processes are "
        "Python busy loops started beside the run.",
        "",
        markdown_table(
            table,
            ["option", "situation", "threads", "wall_seconds", "fit_seconds", "cpu_seconds", "vs_quiet_wall", "rounds"],
        ),
    ]
