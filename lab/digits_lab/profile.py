"""Where the fit's time goes: the default recipe's Lightning fit against a plain PyTorch loop, in one run.

Both paths train the same network from the same initial weights (one seed), with the same recipe (the
``optimizer``, ``scheduler``, ``loss``, ``channels_last`` and precision of the train config), on the same
batches in the same order (the datamodule's preloaded tensors and its seeded sampler), for ``steps`` steps
in one epoch, validating once at its end as the default recipe does after each epoch. They alternate over
``rounds`` rounds (which goes first alternates too), so a change in the machine's load falls on both.

- **Lightning**: ``digits.train.train`` on the composed train config, as ``scripts/train.py`` runs it: the
  DigitsModule, every callback of ``configs/callbacks/default.yaml`` (the progress bar, the step checkpoint
  with its fsync, the monitoring callbacks), the TensorBoard logger, validation and metrics.
- **plain**: forward, loss, ``zero_grad``, backward, ``optimizer.step``, ``scheduler.step``; validation's
  loss and accuracy summed by hand. Nothing else: the floor the Lightning path is held against.

Seconds per step: from the first step's start to the end of the fit (validation included), over ``steps``.
The breakdown is Lightning's ``SimpleProfiler`` on one more fit (not one of the timed ones), its actions
grouped into pieces by this module (``PIECES``); what no action covers (Lightning's loop itself and its
logger connector) is the rest. The TensorBoard writes are timed as an action of their own (``StepLosses``
wraps the logger's ``log_metrics`` in the profiler).
"""

from __future__ import annotations

import re
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from digits.config import ConfigError
from digits.configs import CONFIG_DIR

CONFIGS = CONFIG_DIR  # the product's configs
TARGET_RATIO = 1.1  # issue 22: the Lightning path at most 1.1x the plain loop

# Hooks that run before the first training step: start-up, outside the per-step time.
BEFORE_FIRST_STEP = re.compile(
    r"\.(setup|prepare_data|on_fit_start|configure_optimizers|configure_callbacks|configure_model|on_train_start|"
    r"train_dataloader|val_dataloader)$"
)
# Hooks the optimizer step runs inside its closure: counted in their own pieces, not in the optimizer's.
IN_CLOSURE = re.compile(
    r"\.(on_before_backward|on_after_backward|on_before_optimizer_step|on_before_zero_grad|configure_gradient_clipping)$"
)


class StepLosses(Callback):
    """The training loss of every step, kept on its device (a ``.item()`` per step would make a GPU wait); and
    the logger's ``log_metrics`` timed as a profiler action of its own when the trainer has a profiler."""

    def __init__(self) -> None:
        self.losses: list[Tensor] = []
        self.started: tuple[float, float] | None = None  # (wall, CPU) seconds at the first step's start

    def setup(self, trainer, pl_module, stage: str) -> None:
        for logger in trainer.loggers:
            logger.log_metrics = _profiled(logger.log_metrics, trainer.profiler, f"[Logger]{type(logger).__name__}")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.started is None:
            self.started = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach())


def _profiled(write, profiler, name: str):
    def log_metrics(*args, **kwargs):
        with profiler.profile(f"{name}.log_metrics"):
            return write(*args, **kwargs)

    return log_metrics


def compose_train(overrides: list[str]) -> DictConfig:
    """The train config with ``overrides``, inside a running Hydra app (scripts/benchmark.py) or outside."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    running = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()  # inside the lab's app: its config loader knows the lab's configs, not train's
    try:
        with initialize_config_dir(str(CONFIGS), version_base="1.3"):
            return compose("train", overrides=overrides)
    finally:
        if running is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(running)


def fit_config(overrides: list[str], steps: int, data_dir: str | Path, run_dir: Path, profiler: bool) -> DictConfig:
    """The default recipe's fit cut to ``steps`` steps of one epoch, validated at its end, no test."""
    return compose_train(
        [
            *overrides,
            f"paths.output_dir={run_dir}",
            f"data.data_dir={data_dir}",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={steps}",
            "test=false",
            f"profiler={'simple' if profiler else 'null'}",
            "+callbacks.step_losses._target_=digits_lab.profile.StepLosses",
        ]
    )


def lightning_fit(cfg: DictConfig) -> dict[str, Any]:
    """``digits.train.train``: wall and CPU seconds (first step to the end of fit), the losses, the trainer."""
    from digits.train import train

    metrics, objects = train(cfg)
    end, cpu_end = time.perf_counter(), time.process_time()
    trainer = objects["trainer"]
    record = next(c for c in trainer.callbacks if isinstance(c, StepLosses))
    return {
        "seconds": end - record.started[0],
        "cpu_seconds": cpu_end - record.started[1],
        "steps": metrics.steps,
        "losses": torch.stack(record.losses).float().cpu(),
        "val_acc": metrics.val_acc_best,
        "trainer": trainer,
    }


def autocast(precision: str, device: torch.device):
    """The Trainer's ``precision`` as the plain loop applies it."""
    if precision in ("32-true", "32"):
        return torch.autocast(device.type, enabled=False)
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ConfigError(
        f"trainer.precision={precision}: the profile's plain loop knows 32-true and bf16-mixed; use one of those"
    )


def plain_fit(cfg: DictConfig, datamodule, steps: int) -> dict[str, Any]:
    """The same recipe as a hand-written loop, on ``datamodule``'s tensors from the start of its first epoch."""
    from digits.module import build_loss
    from digits.precision import at_least_float32, resolved_precision

    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # as L.seed_everything in train(): the network is the first to draw
    device = datamodule.device
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    net = instantiate(cfg.model).to(device=device, memory_format=memory_format)
    loss_fn = build_loss(OmegaConf.to_container(cfg.loss, resolve=True)).to(device)
    optimizer = instantiate(cfg.optimizer, params=net.parameters())
    schedule = OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.scheduler else None
    scheduler = None
    if schedule:
        schedule.pop("interval", None)
        if "total_steps" in schedule and schedule["total_steps"] is None:
            schedule["total_steps"] = steps
        scheduler = instantiate(schedule, optimizer=optimizer)
    cast = autocast(str(resolved_precision(cfg.trainer)), device)
    full = torch.autocast(device.type, enabled=False)  # the loss and validation, as DigitsModule runs them
    datamodule.train_sampler.load_state_dict({"epoch": 0, "batches_done": 0})  # the first epoch, from its start
    losses = []
    net.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    for step, (images, labels) in enumerate(datamodule.train_dataloader()):
        if step == steps:
            break
        with cast:
            logits = at_least_float32(net(images.contiguous(memory_format=memory_format)))
        with full:
            loss = loss_fn(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.detach())
    net.eval()
    correct = seen = 0
    total_loss = torch.zeros((), device=device)
    with torch.inference_mode(), full:
        for images, labels in datamodule.val_dataloader():
            logits = at_least_float32(net(images.contiguous(memory_format=memory_format)))
            total_loss += loss_fn(logits, labels).float() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
    val_acc = float(correct / seen)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "steps": len(losses),
        "losses": torch.stack(losses).float().cpu(),
        "val_acc": val_acc,
    }


# (piece, what it covers, a pattern on SimpleProfiler's action names); the first pattern that matches wins.
PIECES = [
    ("training step", "forward, loss, train/acc update, self.log", r"\[Strategy\]\w+\.training_step$"),
    ("backward", "loss.backward()", r"\[Strategy\]\w+\.backward$"),
    ("zero_grad", "optimizer.zero_grad()", r"optimizer_zero_grad$"),
    ("schedule", "the learning-rate scheduler's step", r"lr_scheduler_step$"),
    ("data", "next batch, batch to device", r"train_dataloader_next$|\[Strategy\]\w+\.batch_to_device$"),
    ("validation", "validation steps and their metrics", r"validation_step$|val_next$|\[LightningModule\].*validation"),
    ("logging", "TensorBoard's log_metrics", r"^\[Logger\]"),
    ("step checkpoint", "last.ckpt every N steps, fsync included", r"'every_n_train_steps': [1-9]"),
    ("best/last checkpoint", "after validation, fsync included", r"^\[Callback\]ModelCheckpoint"),
    ("progress bar", "RichProgressBar's hooks", r"ProgressBar"),
    ("model summary", "RichModelSummary's hooks", r"ModelSummary"),
    ("validation images", "digits.monitoring.ValidationImages", r"ValidationImages"),
    ("output histograms", "digits.monitoring.OutputHistograms", r"OutputHistograms"),
    ("throughput", "digits.monitoring.Throughput", r"\]Throughput\."),
    ("learning-rate monitor", "LearningRateMonitor", r"LearningRateMonitor"),
    ("other callbacks", "Ctrl-C stop, first-step clock, hparams, this study's loss record", r"^\[Callback\]"),
    ("other module hooks", "the module's remaining hooks", r"^\[LightningModule\]"),
]
# Actions that contain others (counted through what they contain) and actions inside others (counted there).
CONTAINERS = re.compile(
    r"^(run_training_epoch|run_training_batch|save_checkpoint)$|"
    r"\.(on_save_checkpoint|state_dict|transfer_batch_to_device|on_before_batch_transfer|on_after_batch_transfer)$"
)


def breakdown(durations: dict[str, list[float]], train_seconds: float, steps: int) -> dict[str, Any]:
    """SimpleProfiler's ``recorded_durations`` as disjoint pieces of the fit's per-step time.

    The optimizer's own work is ``optimizer_step`` less what runs inside its closure (the training step,
    zero_grad, backward and the hooks between them); the rest is ``train_seconds`` less every piece."""
    totals = {name: sum(values) for name, values in durations.items()}
    pieces: dict[str, float] = defaultdict(float)
    startup = 0.0
    closure = 0.0
    for name, seconds in totals.items():
        if CONTAINERS.match(name) or name.endswith("optimizer_step") and name.startswith("[LightningModule]"):
            continue
        if BEFORE_FIRST_STEP.search(name):
            startup += seconds
            continue
        piece = next((p for p, _, pattern in PIECES if re.search(pattern, name)), None)
        if piece is None:
            piece = "other"
        pieces[piece] += seconds
        if piece in ("training step", "backward", "zero_grad") or IN_CLOSURE.search(name):
            closure += seconds
    optimizer = sum(v for k, v in totals.items() if k.startswith("[LightningModule]") and k.endswith("optimizer_step"))
    pieces["optimizer step"] = max(optimizer - closure, 0.0)
    covered = sum(pieces.values())
    what = {p: w for p, w, _ in PIECES} | {"optimizer step": "optimizer.step() (AdamW's update)"}
    rows = [
        {
            "piece": piece,
            "covers": what.get(piece, ""),
            "seconds": seconds,
            "ms_per_step": 1000 * seconds / steps,
            "share": seconds / train_seconds,
        }
        for piece, seconds in sorted(pieces.items(), key=lambda item: -item[1])
    ]
    rest = train_seconds - covered
    rows.append(
        {
            "piece": "the rest",
            "covers": "Lightning's loop and logger connector, between the hooks",
            "seconds": rest,
            "ms_per_step": 1000 * rest / steps,
            "share": rest / train_seconds,
        }
    )
    checkpoints = durations.get("save_checkpoint", [])
    return {
        "rows": rows,
        "train_seconds": train_seconds,
        "startup_seconds": startup,
        "checkpoint_writes": len(checkpoints),
        "checkpoint_write_ms": 1000 * statistics.mean(checkpoints) if checkpoints else None,
    }


def profile(overrides: list[str], data_dir: str | Path, output_dir: Path, rounds: int, steps: int) -> dict[str, Any]:
    """``rounds`` interleaved pairs of timed fits, then one profiled Lightning fit; see the module docstring."""
    base = fit_config(overrides, steps, data_dir, output_dir / "profile" / "plain", profiler=False)
    datamodule = instantiate(base.data)
    datamodule.setup("fit")
    # untimed: the first fit in a process pays for the kernels' first calls, which would fall on round 1's first path
    plain_fit(base, datamodule, min(steps, 5))
    per_round = []
    first = {}
    for number in range(rounds):
        order = ("lightning", "plain") if number % 2 == 0 else ("plain", "lightning")
        row: dict[str, Any] = {"round": number + 1, "first": order[0]}
        for path in order:
            if path == "lightning":
                run_dir = output_dir / "profile" / f"lightning_{number + 1}"
                result = lightning_fit(fit_config(overrides, steps, data_dir, run_dir, profiler=False))
            else:
                result = plain_fit(base, datamodule, steps)
            if result["steps"] != steps:
                raise RuntimeError(f"the {path} fit took {result['steps']} steps, not {steps}")
            row[f"{path}_s_per_step"] = result["seconds"] / steps
            row[f"{path}_cpu_s_per_step"] = result["cpu_seconds"] / steps
            row[f"{path}_val_acc"] = result["val_acc"]
            first.setdefault(path, result["losses"])
            log(f"round {number + 1}/{rounds}, {path}: {1000 * result['seconds'] / steps:.1f} ms per step")
        row["ratio"] = row["lightning_s_per_step"] / row["plain_s_per_step"]
        row["cpu_ratio"] = row["lightning_cpu_s_per_step"] / row["plain_cpu_s_per_step"]
        per_round.append(row)
    profiled = lightning_fit(fit_config(overrides, steps, data_dir, output_dir / "profile" / "profiled", profiler=True))
    durations = dict(profiled["trainer"].profiler.recorded_durations)
    lightning = statistics.median(row["lightning_s_per_step"] for row in per_round)
    plain = statistics.median(row["plain_s_per_step"] for row in per_round)
    cpu = {p: statistics.median(row[f"{p}_cpu_s_per_step"] for row in per_round) for p in ("lightning", "plain")}
    difference = (first["lightning"] - first["plain"]).abs()
    return {
        "overrides": overrides,
        "steps": steps,
        "rounds": per_round,
        "lightning_ms_per_step": 1000 * lightning,
        "plain_ms_per_step": 1000 * plain,
        "ratio": lightning / plain,
        "lightning_cpu_ms_per_step": 1000 * cpu["lightning"],
        "plain_cpu_ms_per_step": 1000 * cpu["plain"],
        "cpu_ratio": cpu["lightning"] / cpu["plain"],
        "ratio_min": min(row["ratio"] for row in per_round),
        "ratio_max": max(row["ratio"] for row in per_round),
        # judged per round: a ratio of medians can pass while most rounds miss the target
        "ratio_median": statistics.median(row["ratio"] for row in per_round),
        "target_ratio": TARGET_RATIO,
        "meets_target": statistics.median(row["ratio"] for row in per_round) <= TARGET_RATIO,
        "same_batches": {
            "first_step_loss_lightning": float(first["lightning"][0]),
            "first_step_loss_plain": float(first["plain"][0]),
            "max_loss_difference": float(difference.max()),
        },
        "breakdown": breakdown(durations, profiled["seconds"], steps),
        "profiled_ms_per_step": 1000 * profiled["seconds"] / steps,
    }


def report(result: dict[str, Any]) -> str:
    from digits.report import markdown_table

    same = result["same_batches"]
    where = result["breakdown"]
    writes = (
        f" The profiled fit wrote {where['checkpoint_writes']} checkpoints, {where['checkpoint_write_ms']:.1f} ms each "
        "(serialise, write, fsync, rename)."
        if where["checkpoint_writes"]
        else ""
    )
    overrides = " ".join(result["overrides"]) or "(none)"
    return "\n".join(
        [
            f"The default recipe's fit, {result['steps']} steps and one validation, through Lightning "
            f"(`digits.train.train`, overrides: {overrides}) and as a plain PyTorch loop, same network, recipe and "
            f"batches, {len(result['rounds'])} rounds side by side. Seconds per step: first step to the end of the "
            "fit, validation included; medians over the rounds; CPU seconds (all threads) move less with the "
            "machine's load than wall seconds.",
            "",
            markdown_table(
                [
                    {
                        "path": "Lightning",
                        "ms_per_step": result["lightning_ms_per_step"],
                        "vs_plain": result["ratio"],
                        "cpu_ms_per_step": result["lightning_cpu_ms_per_step"],
                        "cpu_vs_plain": result["cpu_ratio"],
                    },
                    {
                        "path": "plain loop",
                        "ms_per_step": result["plain_ms_per_step"],
                        "vs_plain": 1.0,
                        "cpu_ms_per_step": result["plain_cpu_ms_per_step"],
                        "cpu_vs_plain": 1.0,
                    },
                ]
            ),
            f"Ratio per round: {result['ratio_min']:.3f} to {result['ratio_max']:.3f}, median "
            f"{result['ratio_median']:.3f}; target at most {result['target_ratio']} on the rounds' median: "
            f"{'met' if result['meets_target'] else 'not met'}. Same batches: first-step "
            f"loss {same['first_step_loss_lightning']:.6f} (Lightning) and {same['first_step_loss_plain']:.6f} "
            f"(plain), largest difference over the first round's steps {same['max_loss_difference']:.2g}.",
            "",
            markdown_table(result["rounds"]),
            "",
            f"Where the Lightning fit's time goes (Lightning's SimpleProfiler on one more fit, "
            f"{result['profiled_ms_per_step']:.1f} ms per step with the profiler on; its actions grouped into "
            f"pieces by `digits_lab.profile.PIECES`; `share` of the fit from the first step).{writes} "
            f"Hooks before the first step (start-up, not in the table): {where['startup_seconds']:.2f} s.",
            "",
            markdown_table(where["rows"], ["piece", "covers", "ms_per_step", "share"]),
        ]
    )


def section(cfg: DictConfig, output_dir: Path, results_dir: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The benchmark's ``profile`` section: measures, writes profile.json and profile.md into ``results_dir``,
    and returns the results and two lines for benchmark.md."""
    from digits.report import write_result

    log(f"profiling the default fit against a plain loop ({cfg.profile.rounds} rounds of {cfg.profile.steps} steps)")
    result = profile(
        list(cfg.profile.get("overrides") or []), cfg.data_dir, output_dir, cfg.profile.rounds, cfg.profile.steps
    )
    write_result(results_dir, "profile", "Where the fit's time goes", result, report(result))
    keys = ("steps", "lightning_ms_per_step", "plain_ms_per_step", "ratio", "ratio_median", "meets_target")
    return {k: result[k] for k in keys}, [summary_line(result), ""]


def summary_line(result: dict[str, Any]) -> str:
    """benchmark.md's line: the ratio the target is judged on (the rounds' median), not the ratio of medians."""
    met = "met" if result["meets_target"] else "not met"
    return (
        f"The default fit through Lightning against a plain loop ({result['steps']} steps, "
        f"{len(result['rounds'])} rounds): {result['ratio_median']:.3f}x, the median of the rounds' ratios "
        f"(target at most {result['target_ratio']}: {met}); the breakdown is in profile.md."
    )


def log(message: str) -> None:
    print(f"[profile] {message}", flush=True)
