"""Forward+backward time and saved memory of each loss implementation against nn.CrossEntropyLoss."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from digits_lab import results_dir
from digits_lab.compare import IMPLEMENTATIONS as COMPARED

# nn.CrossEntropyLoss first (the baseline of each row group), then compare.py's forms but the naive one.
IMPLEMENTATIONS: dict[str, Callable[..., Tensor]] = {
    "cross_entropy": F.cross_entropy,
    **{name: fn for name, fn in COMPARED.items() if name != "manual_naive"},
}


def saved_bytes(fn: Callable[..., Tensor], logits: Tensor, target: Tensor, **options) -> int:
    """Bytes autograd keeps between forward and backward, not counting the logits themselves."""
    total = 0

    def pack(tensor: Tensor) -> Tensor:
        nonlocal total
        if tensor.data_ptr() != logits.data_ptr():
            total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn(logits, target, **options)
    return total


def time_forward_backward(
    fn: Callable[..., Tensor], logits: Tensor, target: Tensor, warmup: int, repeats: int, **options
) -> list[float]:
    """Seconds per forward+backward, one sample per repeat (synchronised on CUDA)."""
    cuda = logits.device.type == "cuda"
    samples = []
    for i in range(warmup + repeats):
        logits.grad = None
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(logits, target, **options).backward()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            samples.append(time.perf_counter() - start)
    return samples


def peak_cuda_bytes(fn: Callable[..., Tensor], logits: Tensor, target: Tensor, **options) -> int:
    """Peak CUDA memory above what the inputs already hold, over one forward+backward."""
    logits.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(logits, target, **options).backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def benchmark(
    devices: list[str],
    sizes: list[tuple[int, int]],
    dtype: torch.dtype,
    warmup: int,
    repeats: int,
    label_smoothing: float = 0.0,
    rounds: int = 5,
) -> list[dict]:
    """Per size: ``rounds`` rounds, each timing every implementation in turn (``repeats`` samples
    after ``warmup``), so that a machine's drift hits all of them alike. ``time_vs_cross_entropy`` is
    the median over rounds of each round's ratio of medians; ``ratio_low``/``ratio_high`` its range
    over rounds; ``verdict`` says whether that range holds 1 (no measurable difference)."""
    rows = []
    for device in devices:
        for batch, classes in sizes:
            generator = torch.Generator().manual_seed(0)
            logits = torch.randn(batch, classes, generator=generator).to(dtype).to(device).requires_grad_()
            target = torch.randint(0, classes, (batch,), generator=generator).to(device)
            samples: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
            ratios: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
            for _ in range(rounds):
                medians = {}
                for name, fn in IMPLEMENTATIONS.items():
                    taken = time_forward_backward(fn, logits, target, warmup, repeats, label_smoothing=label_smoothing)
                    samples[name] += taken
                    medians[name] = statistics.median(taken)
                for name in IMPLEMENTATIONS:
                    ratios[name].append(medians[name] / medians["cross_entropy"])
            for name, fn in IMPLEMENTATIONS.items():
                low, high = min(ratios[name]), max(ratios[name])
                verdict = (
                    "baseline"
                    if name == "cross_entropy"
                    else "within the spread"
                    if low <= 1 <= high
                    else "slower"
                    if low > 1
                    else "faster"
                )
                row = {
                    "device": device,
                    "batch": batch,
                    "classes": classes,
                    "implementation": name,
                    "median_ms": statistics.median(samples[name]) * 1e3,
                    "time_vs_cross_entropy": statistics.median(ratios[name]),
                    "ratio_low": low,
                    "ratio_high": high,
                    "verdict": verdict,
                    "saved_MiB": saved_bytes(fn, logits, target, label_smoothing=label_smoothing) / 2**20,
                }
                if device == "cuda":
                    row["peak_MiB"] = peak_cuda_bytes(fn, logits, target, label_smoothing=label_smoothing) / 2**20
                rows.append(row)
    return rows


def run_benchmark_losses(cfg) -> str:
    """``benchmark`` as ``cfg`` says (CUDA only where there is a GPU), written as benchmark_losses.json and
    .md into the run folder and into ``paths.results_dir``. Returns the machine line and the table."""
    import platform
    from pathlib import Path

    from omegaconf import OmegaConf

    from digits.report import markdown_table, write_json, write_result
    from digits_lab.compare import DTYPES

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    devices = [d for d in cfg.devices if d == "cpu" or torch.cuda.is_available()]
    sizes = [tuple(s) for s in cfg.sizes]
    rows = benchmark(devices, sizes, DTYPES[cfg.dtype], cfg.warmup, cfg.repeats, cfg.label_smoothing, cfg.rounds)
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}" + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else "")
    )
    table = markdown_table(rows)
    output_dir = Path(cfg.paths.output_dir)
    text = (
        f"{machine}; {cfg.rounds} rounds, each timing every implementation "
        f"in turn, median of {cfg.repeats} after {cfg.warmup} warm-up. `time_vs_cross_entropy`: the median over "
        "rounds of each round's ratio, `ratio_low`-`ratio_high` its range; a range that holds 1 is no measurable "
        "difference.\n"
        f"`saved_MiB`: what autograd keeps between forward and backward besides the logits.\n\n{table}"
    )
    title = f"Loss forward+backward, {cfg.dtype}"
    (output_dir / "benchmark_losses.md").write_text(f"# {title}\n\n{text}")
    data = {"machine": machine, "config": OmegaConf.to_container(cfg, resolve=True), "rows": rows}
    write_json(output_dir / "benchmark_losses.json", data)
    write_result(results_dir(cfg), "benchmark_losses", title, data, text)
    return f"{machine}\n{table}"
