"""Training speed: the plain-PyTorch MNIST recipe people copy, against this project's path.

Everything here measures the same thing the same way: images per second over timed windows of
training steps after a warm-up, medians reported. ``ThroughputMeter`` is shared by the plain loops
(called by hand) and the Lightning runs (as a callback).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from digits.data import MNIST_MEAN, MNIST_STD, MNISTDataModule
from digits.models import ExampleNet
from digits.run_metrics import RunMetrics
from digits_lab import ROOT
from digits_lab.train_runs import timed_train_run


class ThroughputMeter:
    """Times windows of ``window`` steps after ``warmup`` steps; call ``step(batch_size)`` after each.
    ``rates`` holds images/s per window."""

    def __init__(self, warmup: int, window: int, windows: int) -> None:
        self.warmup, self.window, self.windows = warmup, window, windows
        self.steps = 0
        self.images = 0
        self.start = 0.0
        self.rates: list[float] = []

    @property
    def done(self) -> bool:
        return len(self.rates) >= self.windows

    def step(self, batch_size: int) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self.start, self.images = time.perf_counter(), 0
        elif self.steps > self.warmup and not self.done:
            self.images += batch_size
            if (self.steps - self.warmup) % self.window == 0:
                now = time.perf_counter()
                self.rates.append(self.images / (now - self.start))
                self.start, self.images = now, 0


class ThroughputCallback(Callback):
    """The meter as a Lightning callback; stops training once enough windows are timed."""

    def __init__(self, meter: ThroughputMeter) -> None:
        self.meter = meter

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.meter.step(len(batch[1]))
        if self.meter.done:
            trainer.should_stop = True


def torchvision_loaders(data_dir: str | Path, batch_size: int) -> tuple[DataLoader, DataLoader]:
    """pytorch/examples' data path: torchvision's MNIST Dataset with PIL transforms, per sample."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    train = datasets.MNIST(str(data_dir), train=True, download=False, transform=transform)
    test = datasets.MNIST(str(data_dir), train=False, download=False, transform=transform)
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(test, batch_size=1000)


def forever(loader: Iterable) -> Iterator:
    while True:
        yield from loader


def plain_loop_throughput(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    meter: ThroughputMeter,
    channels_last: bool = False,
) -> None:
    """pytorch/examples' hand-written training loop, timed into ``meter``."""
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, labels in forever(loader):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images.contiguous(memory_format=memory_format)), labels)
        loss.backward()
        optimizer.step()
        meter.step(len(labels))
        if meter.done:
            return


def evaluate_accuracy(model: nn.Module, loader: Iterable) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (model(images).argmax(1) == labels).sum().item()
            total += len(labels)
    model.train()
    return correct / total


def baseline_time_to_accuracy(data_dir: str | Path, target: float, max_epochs: int, seed: int) -> dict:
    """The baseline recipe end to end (Adadelta lr 1.0, StepLR 0.7, batch 64), testing after each
    epoch as pytorch/examples does, until the test accuracy reaches ``target``."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    train_loader, test_loader = torchvision_loaders(data_dir, 64)
    model = ExampleNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    history = []
    for epoch in range(1, max_epochs + 1):
        for images, labels in train_loader:
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
        scheduler.step()
        accuracy = evaluate_accuracy(model, test_loader)
        history.append({"epoch": epoch, "test_acc": accuracy, "seconds": time.perf_counter() - start})
        if accuracy >= target:
            break
    reached = history[-1]["test_acc"] >= target
    return {"reached": reached, "seconds": history[-1]["seconds"] if reached else None, "history": history}


def lightning_throughput(
    model: dict,
    optimizer: dict,
    data_dir: str | Path,
    batch_size: int,
    meter: ThroughputMeter,
    channels_last: bool,
    precision: str = "32-true",
) -> None:
    """The project's path: MNISTDataModule + DigitsModule + Lightning Trainer, as train.py builds them,
    timed into ``meter``."""
    from digits.module import DigitsModule

    datamodule = MNISTDataModule(str(data_dir), batch_size=batch_size, download=False)
    module = DigitsModule(
        model=model,
        loss={"_target_": "digits.losses.CrossEntropyLoss"},
        optimizer=optimizer,
        channels_last=channels_last,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=100,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=precision,
        callbacks=[ThroughputCallback(meter)],
    )
    trainer.fit(module, datamodule=datamodule)


def training_flops_per_image(model: nn.Module, batch_size: int = 64) -> float:
    """FLOPs of one forward + backward per image, counted by torch's FlopCounterMode."""
    images = torch.randn(batch_size, 1, 28, 28)
    labels = torch.randint(0, 10, (batch_size,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images), labels).backward()
    model.zero_grad()
    return counter.get_total_flops() / batch_size


def matmul_peak_gflops(size: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """The CPU's dense float32 matmul rate on the current threads: the practical peak."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def conv_peak_gflops(repeats: int = 10) -> float:
    """The float32 rate of a large 3x3 convolution in channels-last (oneDNN's direct kernels): the
    other candidate for the practical peak, next to MKL's matmul."""
    images = torch.randn(32, 128, 28, 28).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(128, 128, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(images)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            conv(images)
            times.append(time.perf_counter() - start)
    return 2 * 32 * 128 * 128 * 9 * 28 * 28 / statistics.median(times) / 1e9


STARTUP_RUN = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "test=false",
    "trainer.enable_progress_bar=false",
]


def _train_command(tree: Path, run_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(tree / "scripts" / "train.py"), f"hydra.run.dir={run_dir}", *STARTUP_RUN, *extra]


def _tree_env(tree: Path, data_dir: str | Path) -> dict[str, str]:
    # PYTHONPATH comes before the editable install's path: the tree's own ``digits`` is imported
    return {**os.environ, "DIGITS_DATA_DIR": str(data_dir), "PYTHONPATH": str(tree / "src"), "PYTHONWARNINGS": "ignore"}


def import_seconds_by_package(importtime_log: str, leave_out: str = "") -> dict[str, float]:
    """``python -X importtime`` output -> seconds per top-level package (self times summed), largest
    first; modules that ``leave_out`` (another such log) imports too are not counted."""
    left_out = set(re.findall(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", leave_out))
    totals: dict[str, float] = {}
    for line in importtime_log.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match and match[2] not in left_out:
            package = match[2].split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(match[1]) / 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def startup(data_dir: str | Path, output_dir: Path, rounds: int, baseline_tree: str | None) -> dict:
    """Start-up, command to the first training step, side by side in ``rounds`` rounds: this tree's
    ``scripts/train.py`` (and ``baseline_tree``'s, an older checkout, when given) on a 2-step run, and
    the floor, a bare ``python -c "import lightning, hydra"``. Plus one ``-X importtime`` breakdown."""
    here = ROOT
    trees = {"this tree": here} | ({"baseline tree": Path(baseline_tree).resolve()} if baseline_tree else {})
    seconds: dict[str, list[float]] = {name: [] for name in [*trees, "floor: import lightning, hydra"]}
    for round_number in range(rounds):
        for name, tree in trees.items():
            run_dir = output_dir / "startup" / f"{name.split()[0]}_{round_number}"
            result = subprocess.run(
                _train_command(tree, run_dir, []), env=_tree_env(tree, data_dir), capture_output=True, text=True
            )
            if result.returncode != 0:
                raise RuntimeError(f"the start-up run of {tree} failed:\n{result.stderr[-2000:]}")
            seconds[name].append(RunMetrics.read(run_dir).startup_seconds)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import lightning, hydra"], check=True, env=_tree_env(here, data_dir))
        seconds["floor: import lightning, hydra"].append(time.perf_counter() - start)
        log(
            f"start-up round {round_number + 1}/{rounds}: "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items())
        )
    rows = [
        {
            "what": name,
            "median_s": statistics.median(values),
            "min_s": min(values),
            "max_s": max(values),
            "rounds": len(values),
        }
        for name, values in seconds.items()
    ]
    run_dir = output_dir / "startup" / "importtime"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *_train_command(here, run_dir, [])[1:]],
        env=_tree_env(here, data_dir),
        capture_output=True,
        text=True,
    )
    floor = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import lightning, hydra"],
        env=_tree_env(here, data_dir),
        capture_output=True,
        text=True,
    )
    packages = import_seconds_by_package(result.stderr)
    beyond_floor = import_seconds_by_package(result.stderr, leave_out=floor.stderr)
    return {
        "rows": rows,
        "imports_by_package": packages,
        "import_seconds": sum(packages.values()),
        "imports_beyond_floor": beyond_floor,
        "import_seconds_beyond_floor": sum(beyond_floor.values()),
    }


def compile_tradeoff(model_cfg: dict, data_dir: str | Path, batch_size: int, steps: int, rounds: int) -> dict:
    """``torch.compile`` against eager for the default model's training step (plain loop, AdamW,
    channels-last): the compile time (first compiled step less a warm eager step) and ms per step,
    eager and compiled in alternating windows of ``steps``; ``break_even_steps``: how many steps a
    run needs before the compile time is paid back."""
    from hydra.utils import instantiate

    datamodule = MNISTDataModule(str(data_dir), batch_size=batch_size, download=False)
    datamodule.setup("fit")
    batches = forever(datamodule.train_dataloader())
    torch.manual_seed(0)
    eager = instantiate(model_cfg).to(memory_format=torch.channels_last)
    compiled_net = instantiate(model_cfg).to(memory_format=torch.channels_last)
    compiled_net.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_net)
    optimizers = {"eager": torch.optim.AdamW(eager.parameters()), "compiled": torch.optim.AdamW(compiled.parameters())}
    nets = {"eager": eager, "compiled": compiled}

    def step(name: str) -> float:
        images, labels = next(batches)
        start = time.perf_counter()
        optimizers[name].zero_grad()
        F.cross_entropy(nets[name](images.contiguous(memory_format=torch.channels_last)), labels).backward()
        optimizers[name].step()
        return time.perf_counter() - start

    for _ in range(3):
        eager_step = step("eager")
    compile_seconds = step("compiled") - eager_step
    step("compiled")
    per_step: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(rounds):
        for name in per_step:
            per_step[name].append(statistics.median(step(name) for _ in range(steps)))
    eager_ms = 1000 * statistics.median(per_step["eager"])
    compiled_ms = 1000 * statistics.median(per_step["compiled"])
    saved = eager_ms - compiled_ms
    return {
        "compile_seconds": compile_seconds,
        "eager_ms_per_step": eager_ms,
        "compiled_ms_per_step": compiled_ms,
        "break_even_steps": 1000 * compile_seconds / saved if saved > 0 else None,
        "batch_size": batch_size,
    }


EXAMPLE_NET = {"_target_": "digits.models.ExampleNet"}
ADADELTA = {"_target_": "torch.optim.Adadelta", "lr": 1.0}  # the baseline recipe's optimizer


@dataclass(frozen=True)
class ThroughputPath:
    """One way of training, timed into a ``ThroughputMeter`` by ``measure``."""

    name: str
    network: str  # "example" or "default": whose FLOPs per image apply
    batch: int
    measure: Callable[[ThroughputMeter], None]


def plain_throughput(
    model: dict, optimizer: dict, loader: Iterable, meter: ThroughputMeter, channels_last: bool = False
) -> None:
    """A fresh network and optimizer from their configs, trained by the plain loop."""
    from hydra.utils import instantiate

    network = instantiate(model)
    network = network.to(memory_format=torch.channels_last) if channels_last else network
    plain_loop_throughput(network, instantiate(optimizer, params=network.parameters()), loader, meter, channels_last)


def throughput_paths(cfg) -> list[ThroughputPath]:
    """The six paths of the throughput table, from the baseline recipe's data pipeline to the project's
    default run, each a ``functools.partial`` of the measuring functions above."""
    from omegaconf import OmegaConf

    batch, default_batch = cfg.baseline.batch_size, cfg.default_run.batch_size
    default_model = OmegaConf.to_container(cfg.default_run.model, resolve=True)
    baseline_loader, _ = torchvision_loaders(cfg.data_dir, batch)
    preloaded = MNISTDataModule(str(cfg.data_dir), batch_size=batch, download=False)
    preloaded.setup("fit")
    default_preloaded = MNISTDataModule(str(cfg.data_dir), batch_size=default_batch, download=False)
    default_preloaded.setup("fit")
    adamw = {"_target_": "torch.optim.AdamW"}
    return [
        ThroughputPath(
            "baseline: torchvision Dataset + DataLoader, plain loop",
            "example",
            batch,
            partial(plain_throughput, EXAMPLE_NET, ADADELTA, baseline_loader),
        ),
        ThroughputPath(
            "preloaded tensors, plain loop",
            "example",
            batch,
            partial(plain_throughput, EXAMPLE_NET, ADADELTA, preloaded.train_dataloader()),
        ),
        ThroughputPath(
            "project: Lightning",
            "example",
            batch,
            partial(lightning_throughput, EXAMPLE_NET, ADADELTA, cfg.data_dir, batch, channels_last=False),
        ),
        ThroughputPath(
            "project: Lightning, channels_last",
            "example",
            batch,
            partial(lightning_throughput, EXAMPLE_NET, ADADELTA, cfg.data_dir, batch, channels_last=True),
        ),
        ThroughputPath(
            "default model, preloaded tensors, plain loop",
            "default",
            default_batch,
            partial(plain_throughput, default_model, adamw, default_preloaded.train_dataloader(), channels_last=True),
        ),
        ThroughputPath(
            "project default: Lightning",
            "default",
            default_batch,
            partial(
                lightning_throughput,
                default_model,
                {**adamw, "lr": 0.01},
                cfg.data_dir,
                default_batch,
                channels_last=cfg.default_run.channels_last,
                precision=cfg.default_run.precision,
            ),
        ),
    ]


def measure_throughput(paths: list[ThroughputPath], rounds: int, warmup: int, window: int, windows: int) -> list[dict]:
    """Rounds that visit every path in turn: the machine's speed drifts over minutes, and interleaving
    spreads the drift over all paths instead of favouring the ones measured first. One row per path,
    against the first (the baseline)."""
    rates: dict[str, list[float]] = {path.name: [] for path in paths}
    for round_number in range(rounds):
        for path in paths:
            meter = ThroughputMeter(warmup, window, windows)
            path.measure(meter)
            rates[path.name] += meter.rates
            log(f"round {round_number + 1}/{rounds}, {path.name}: {statistics.median(meter.rates):.0f} images/s")
    rows = []
    for path in paths:
        median = statistics.median(rates[path.name])
        rows.append(
            {
                "path": path.name,
                "network": path.network,
                "batch": path.batch,
                "images_per_s": median,
                "windows": len(rates[path.name]),
                "spread": (max(rates[path.name]) - min(rates[path.name])) / median,
            }
        )
    base = rows[0]["images_per_s"]
    for row in rows:
        row["vs_baseline"] = row["images_per_s"] / base
        row["ms_per_step"] = 1000 * row["batch"] / row["images_per_s"]
        row["epoch_s (55k images)"] = 55_000 / row["images_per_s"]
    return rows


def throughput_section(rows: list[dict], models: dict[str, dict], threads: int) -> tuple[dict, list[str]]:
    """The throughput rows against the machine's float32 peak, and Lightning's overhead per step
    (the last two rows: the default model in the plain loop and through Lightning)."""
    import platform

    from hydra.utils import instantiate

    from digits.report import markdown_table

    matmul_peak, conv_peak = matmul_peak_gflops(), conv_peak_gflops()
    peak = max(matmul_peak, conv_peak)
    flops = {name: training_flops_per_image(instantiate(model)) for name, model in models.items()}
    for row in rows:
        row["GFLOP/s"] = flops[row["network"]] * row["images_per_s"] / 1e9
        row["of_peak"] = row["GFLOP/s"] / peak
    plain, lightning = rows[-2]["ms_per_step"], rows[-1]["ms_per_step"]
    results = {
        "machine": f"{platform.machine()}, {threads} threads, torch {torch.__version__}",
        "throughput": rows,
        "matmul_peak_gflops": matmul_peak,
        "conv_peak_gflops": conv_peak,
        "peak_gflops": peak,
        "training_flops_per_image": flops,
        "lightning_overhead_ms_per_step": lightning - plain,
    }
    lines = [
        f"## Throughput ({results['machine']})",
        "",
        markdown_table(rows),
        "",
        f"Lightning's overhead on the default model: {lightning - plain:.1f} ms per step "
        f"({plain:.1f} ms plain loop, {lightning:.1f} ms Lightning).",
        f"float32 peak on {threads} threads (the higher of MKL's 2048x2048 matmul, {matmul_peak:.0f} GFLOP/s, "
        f"and oneDNN's 128-channel 3x3 convolution, {conv_peak:.0f} GFLOP/s): {peak:.0f} GFLOP/s; "
        "training FLOPs per image: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in flops.items()),
        "",
    ]
    return results, lines


def recipes_table(results: dict) -> list[dict]:
    """The headline rows: each recipe of the timed ``scripts/train.py`` runs over its seeds, and the baseline
    recipe (digits_lab.recipes)."""
    from digits_lab.recipes import table_rows

    return table_rows(results)


def recipes_section(results: dict) -> list[str]:
    from digits.report import markdown_table

    rows = recipes_table(results)
    if not rows:
        return []
    return [
        "## Recipes",
        "",
        "One row per recipe over its seeds (`run_seeds`), the runs timed side by side with the baseline. "
        "`test accuracy`: the seeds' mean on the 10,000 official test images, with their min-max; "
        "`train`: the mean `train_seconds` of `scripts/train.py` (first step to the end of fit); "
        "`whole run`: the mean seconds from start to exit; in brackets, each over the anchor (the baseline "
        "recipe's median seconds per epoch times `baseline.anchor_epochs`, with the epoch that crossed its target "
        "beside it), and the recipe's target (`targets`) with whether the mean meets it.",
        "",
        markdown_table(rows),
        "",
    ]


def baseline_section(data_dir: str | Path, target: float, max_epochs: int, seed: int) -> tuple[dict, list[str]]:
    from digits.report import markdown_table

    log("training the baseline recipe to the target accuracy (minutes)")
    result = baseline_time_to_accuracy(data_dir, target, max_epochs, seed)
    return result, [
        f"Baseline recipe to {target:.1%} test accuracy (the anchor: the median epoch's seconds times "
        "`baseline.anchor_epochs`, in the recipes table):",
        "",
        markdown_table(result["history"]),
        "",
    ]


# the per-seed runs table's columns, the recipes table's sources first
RUN_COLUMNS = [
    "run",
    "seed",
    "test_acc",
    "train_seconds",
    "wall_seconds",
    "val_acc",
    "epochs",
    "steps",
    "fit_seconds",
    "startup_seconds",
]


def runs_section(
    runs: list[str], seeds: list[int], data_dir: str | Path, output_dir: Path
) -> tuple[list[dict], list[str]]:
    """Each run once per seed, interleaved by seed (every run for the first seed, then the next), so that a
    change of the machine's load reaches each recipe alike; no seeds: each run once with its config's seed."""
    from digits.report import markdown_table

    timed = []
    for seed in seeds or [None]:
        for number, overrides in enumerate(runs):
            seeded = f" seed={seed}" if seed is not None else ""
            log(f"timing scripts/train.py {overrides}{seeded}")
            name = f"{number}_seed{seed}" if seed is not None else str(number)
            timed.append(timed_train_run(name, overrides.split(), data_dir, output_dir, seed))
    return timed, [
        "`scripts/train.py` runs, one per recipe and seed in the order they ran (`wall_seconds`: start to exit; "
        "the recipes table above gives their means and ratios to the baseline):",
        "",
        markdown_table(timed, RUN_COLUMNS),
        "",
    ]


def startup_section(
    data_dir: str | Path, output_dir: Path, rounds: int, baseline_tree: str | None
) -> tuple[dict, list[str]]:
    from digits.report import markdown_table

    log("timing start-up (command to first step) and the import floor")
    result = startup(data_dir, output_dir, rounds, baseline_tree)
    top = [{"package": k, "seconds": v} for k, v in list(result["imports_by_package"].items())[:12]]
    beyond = ", ".join(f"{k} {v:.3f} s" for k, v in list(result["imports_beyond_floor"].items())[:8])
    return result, [
        f"Start-up, command to the first training step ({rounds} rounds side by side):",
        "",
        markdown_table(result["rows"]),
        "",
        "Imports of one run, by package (`python -X importtime`, self times; "
        f"{result['import_seconds']:.2f} s in all):",
        "",
        markdown_table(top),
        "",
        f"Of these, modules that `import lightning, hydra` does not import: "
        f"{result['import_seconds_beyond_floor']:.2f} s ({beyond}).",
        "",
    ]


def compile_section(
    model: dict, data_dir: str | Path, batch_size: int, steps: int, rounds: int
) -> tuple[dict, list[str]]:
    from digits.report import markdown_table

    log("timing torch.compile against eager for the default model's step")
    result = compile_tradeoff(model, data_dir, batch_size, steps, rounds)
    return result, [
        "torch.compile against eager, the default model's training step (plain loop, AdamW; compile time "
        "= first compiled step less an eager step):",
        "",
        markdown_table([result]),
        "",
    ]


def log(message: str) -> None:
    print(f"[benchmark] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# The run: scripts/benchmark.py calls run_benchmark(cfg).


def _throughput(cfg, output_dir: Path) -> tuple[dict, list[str]]:
    from omegaconf import OmegaConf

    rows = measure_throughput(throughput_paths(cfg), cfg.rounds, cfg.warmup, cfg.window, cfg.windows)
    models = {"example": EXAMPLE_NET, "default": OmegaConf.to_container(cfg.default_run.model, resolve=True)}
    return throughput_section(rows, models, torch.get_num_threads())


def _compile(cfg, output_dir: Path) -> tuple[dict, list[str]]:
    from omegaconf import OmegaConf

    model = OmegaConf.to_container(cfg.default_run.model, resolve=True)
    return compile_section(model, cfg.data_dir, cfg.default_run.batch_size, cfg.compile.steps, cfg.compile.rounds)


def _contention(cfg, output_dir: Path) -> tuple[dict, list[str]]:
    from digits_lab.contention import contention_section

    return contention_section(cfg.contention, cfg.data_dir, output_dir, output_dir / STAGED, log)


def _profile(cfg, output_dir: Path) -> tuple[dict, list[str]]:
    from digits_lab import profile

    return profile.section(cfg, output_dir, output_dir / STAGED)


@dataclass(frozen=True)
class Section:
    """One part of benchmark.md: it runs when the config value ``switch`` is true (non-zero, non-empty);
    ``measure(cfg, output_dir)`` returns its results and its lines; ``key``: where its results go in
    benchmark.json (None: merged into the top level)."""

    switch: str
    key: str | None
    measure: Callable[..., tuple[Any, list[str]]]


# The run folder's subfolder of result files (benchmark, contention, profile): what publishing copies into
# paths.results_dir.
STAGED = "results"

# The sections in the order they run; a new one is one entry (and its config block in configs/benchmark.yaml).
SECTIONS = [
    Section("rounds", None, _throughput),
    # before the baseline, the longest section
    Section("runs", "runs", lambda cfg, out: runs_section(list(cfg.runs), list(cfg.run_seeds), cfg.data_dir, out)),
    Section(
        "baseline.time_to_accuracy",
        "baseline_time_to_accuracy",
        lambda cfg, out: baseline_section(cfg.data_dir, cfg.baseline.target, cfg.baseline.max_epochs, cfg.seed),
    ),
    Section(
        "startup.rounds",
        "startup",
        lambda cfg, out: startup_section(cfg.data_dir, out, cfg.startup.rounds, cfg.startup.baseline_tree),
    ),
    Section("compile.rounds", "compile", _compile),
    # the default run quiet, beside one and three busy processes, per thread option (digits_lab.contention;
    # it also writes contention.md)
    Section("contention.rounds", "contention", _contention),
    # the default fit through Lightning against a plain loop, and its breakdown (digits_lab.profile; it also
    # writes profile.md)
    Section("profile.rounds", "profile", _profile),
]


# publish: which of the run's result files go into paths.results_dir (docs/results/) at its end. benchmark.md
# holds every section and feeds the README's table; contention.md and profile.md are studies of their own.
PUBLISH = {
    "complete": "benchmark.md only when every section was switched on, a section's own file when it ran",
    "always": "every file, benchmark.md also from a run with sections switched off",
    "never": "the run folder only",
}


def run_benchmark(cfg, sections: list[Section] = SECTIONS) -> str:
    """Each switched-on section in turn. The results so far go into the run folder (benchmark.json and .md)
    after each section, so a run stopped in a long section keeps what the earlier ones measured. The result
    files (benchmark, and contention's and profile's own) are written into the run folder's ``results/`` and
    copied into ``paths.results_dir`` once, at the end of a run that ended (``publish``): a stopped run
    publishes nothing, and a partial one never replaces the published benchmark.md. Returns its text."""
    from omegaconf import OmegaConf

    from digits.config import ConfigError
    from digits.report import write_json, write_result
    from digits_lab.recipes import ANCHOR_EPOCHS, summarise

    publish = cfg.get("publish", "complete")
    if publish not in PUBLISH:
        allowed = "; ".join(f"{name} ({meaning})" for name, meaning in PUBLISH.items())
        raise ConfigError(f"publish={publish!r} is not allowed: {allowed}")
    epochs = OmegaConf.select(cfg, "baseline.anchor_epochs", default=ANCHOR_EPOCHS)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"baseline.anchor_epochs={epochs!r}: give a whole number of epochs, at least 1 (default 6)")
    output_dir = Path(cfg.paths.output_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    results, lines = {"config": OmegaConf.to_container(cfg, resolve=True)}, []

    def write() -> str:
        if results.get("runs"):
            results["recipes"] = summarise(results)  # the recipes table's numbers (means, ratios, targets met)
        report = "\n".join(recipes_section(results) + lines) + "\n"
        (output_dir / "benchmark.md").write_text(report)
        write_json(output_dir / "benchmark.json", results)
        return report

    switched_off = [section.switch for section in sections if not OmegaConf.select(cfg, section.switch)]
    report = None
    for section in sections:
        if section.switch not in switched_off:
            measured, part = section.measure(cfg, output_dir)
            results.update(measured if section.key is None else {section.key: measured})
            lines += part
            report = write()
    report = report or write()
    staged = output_dir / STAGED
    write_result(staged, "benchmark", "Training speed against the plain-PyTorch recipe", results, report)
    files = [] if publish == "never" else sorted(staged.iterdir())
    if publish == "complete" and switched_off:
        files = [path for path in files if path.stem != "benchmark"]
        log(
            f"benchmark.md not published (switched off: {', '.join(switched_off)}): it is in {staged}; "
            "publish=always publishes a partial one"
        )
    if cfg.paths.results_dir is None:
        files = []
        log(f"not published (paths.results_dir=null): the result files are in {staged}")
    for path in files:
        results_dir = Path(cfg.paths.results_dir)
        results_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, results_dir / path.name)
        log(f"published: {results_dir / path.name}")
    if publish == "never":
        log(f"nothing published (publish=never): the result files are in {staged}")
    return report
