"""Where the default step's time goes and what makes it cheaper on this CPU: ``lab/scripts/step_study.py``.

Two parts, each side by side in one run:

- **the step**: the default network's training step (batch, AdamW) in variants of memory format, precision
  (bf16 autocast, which pays only on a CPU with bf16 units: AVX-512 BF16 or AMX) and optimizer kernel, in
  rounds that visit every variant in turn; per variant the median milliseconds of forward with the loss,
  backward and the optimizer step;
- **the runs**: ``scripts/train.py`` as a user runs it, each recipe with and without a change (e.g.
  ``trainer.precision=bf16-mixed``), once per seed, interleaved by seed: whether the step's gain survives a
  whole run and whether the accuracy holds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from digits.precision import cpu_bf16_units
from digits.report import markdown_table
from digits_lab import results_dir
from digits_lab.benchmark import runs_section


def step_phases(
    network: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, bf16: bool
) -> tuple[float, float, float]:
    """One training step, timed in its three phases (seconds): forward with the loss, backward, optimizer."""
    start = time.perf_counter()
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(network(images), labels)
    forward = time.perf_counter()
    loss.backward()
    backward = time.perf_counter()
    optimizer.step()
    end = time.perf_counter()
    return forward - start, backward - forward, end - backward


def variant_step(model: Callable[[], nn.Module], variant: dict, batch_size: int) -> Callable[[], tuple]:
    """A fresh network and AdamW for one variant (``channels_last``, ``bf16``, ``fused``), on a fixed
    batch of MNIST-shaped images; returns the timed step."""
    torch.manual_seed(0)
    network = model()
    memory = torch.channels_last if variant.get("channels_last") else torch.contiguous_format
    network = network.to(memory_format=memory).train()
    fused = {"fused": True} if variant.get("fused") else {}
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, **fused)
    images = torch.randn(batch_size, 1, 28, 28).contiguous(memory_format=memory)
    labels = torch.randint(0, 10, (batch_size,))
    return lambda: step_phases(network, optimizer, images, labels, bool(variant.get("bf16")))


def measure_steps(
    model: Callable[[], nn.Module], variants: dict[str, dict], batch_size: int, rounds: int, steps: int, warmup: int
) -> list[dict]:
    """Each variant's step in ``rounds`` rounds of ``steps`` steps, the variants in turn within a round (the
    machine's drift reaches them alike); medians over all timed steps, the first variant the reference."""
    steps_of = {name: variant_step(model, variant, batch_size) for name, variant in variants.items()}
    for step in steps_of.values():
        for _ in range(warmup):
            step()
    timed: dict[str, list[tuple]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, step in steps_of.items():
            timed[name] += [step() for _ in range(steps)]
    rows = []
    for name, phases in timed.items():
        forward, backward, optimizer = (1000 * statistics.median(p[i] for p in phases) for i in range(3))
        total = 1000 * statistics.median(sum(p) for p in phases)
        rows.append(
            {
                "variant": name,
                "ms_per_step": total,
                "forward_ms": forward,
                "backward_ms": backward,
                "optimizer_ms": optimizer,
                "backward_share": backward / (forward + backward + optimizer),
                "steps": len(phases),
            }
        )
    for row in rows:
        row["vs_first"] = row["ms_per_step"] / rows[0]["ms_per_step"]
    return rows


def summarise_runs(rows: list[dict]) -> list[dict]:
    """One row per run string: the seeds' mean test accuracy (min, max) and mean seconds."""
    by_run: dict[str, list[dict]] = {}
    for row in rows:
        by_run.setdefault(row["run"], []).append(row)
    return [
        {
            "run": run,
            "seeds": len(group),
            "test_acc_mean": statistics.fmean(r["test_acc"] for r in group),
            "test_acc_min": min(r["test_acc"] for r in group),
            "test_acc_max": max(r["test_acc"] for r in group),
            "train_seconds": statistics.fmean(r["train_seconds"] for r in group),
            "wall_seconds": statistics.fmean(r["wall_seconds"] for r in group),
            "startup_seconds": statistics.fmean(r["startup_seconds"] for r in group),
        }
        for run, group in by_run.items()
    ]


def markdown(result: dict) -> str:
    parts = [
        f"CPU bf16 units (AVX-512 BF16 or AMX): {'yes' if result['cpu_bf16_units'] else 'no'}; "
        f"{result['threads']} torch threads; OMP_WAIT_POLICY={result['omp_wait_policy']}.",
        "",
    ]
    if result["steps"]:
        parts += [
            f"### The step (default network, batch {result['batch_size']}, AdamW; medians over "
            f"{result['steps'][0]['steps']} steps each, the variants in turn)",
            "",
            markdown_table(result["steps"]),
            "",
        ]
    if result["runs"]:
        parts += [
            "### Whole runs (`scripts/train.py`, interleaved by seed; seconds are means over the seeds)",
            "",
            markdown_table(summarise_runs(result["runs"])),
            "",
            markdown_table(
                result["runs"], ["run", "seed", "test_acc", "train_seconds", "wall_seconds", "startup_seconds"]
            ),
            "",
        ]
    return "\n".join(parts)


def run_step_study(cfg) -> str:
    """Both parts as ``cfg`` says, written as ``<result_name>.json`` and ``.md`` into ``paths.results_dir``
    (the run folder when null). Returns the Markdown."""
    import os

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from digits.report import write_result

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    variants = OmegaConf.to_container(cfg.step.variants, resolve=True)
    steps = []
    if cfg.step.rounds:
        steps = measure_steps(
            lambda: instantiate(model_cfg), variants, cfg.step.batch_size, cfg.step.rounds, cfg.step.steps, 3
        )
    runs, _ = runs_section(list(cfg.runs), list(cfg.run_seeds), cfg.data_dir, Path(cfg.paths.output_dir))
    result = {
        "cpu_bf16_units": cpu_bf16_units(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (spinning)"),
        "batch_size": cfg.step.batch_size,
        "steps": steps,
        "runs": runs,
        "run_summary": summarise_runs(runs) if runs else [],
    }
    text = markdown(result)
    write_result(results_dir(cfg), cfg.result_name, "The training step's variants on this CPU", result, text)
    return text
