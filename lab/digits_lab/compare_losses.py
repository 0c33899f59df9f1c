"""The comparison of the three cross-entropy implementations (and the naive one) with
nn.CrossEntropyLoss that ``scripts/compare_losses.py`` runs: single calls, the naive form, float16 means,
large logits, deliberate differences, PyTorch's own test material and whole trainings, assembled into
one report and the result files the docs show."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from digits.errors import DigitsError
from digits_lab import results_dir
from digits_lab.compare import (
    compare_single_calls,
    curve_differences,
    deliberate_differences,
    float16_long_mean,
    large_logit_errors,
    large_logit_table,
    naive_failures,
    training_curves,
)

log = logging.getLogger("digits")


def plot_curves(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = curves["cross_entropy"]["losses"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for color, (name, run) in zip(colors, curves.items()):
        top.plot(run["losses"], label=name, color=color, linewidth=1.2, alpha=0.8)
        if name != "cross_entropy":
            diff = [abs(a - b) + 1e-12 for a, b in zip(run["losses"], reference)]
            bottom.semilogy(diff, label=f"{name} - cross_entropy", color=color, linewidth=1.0)
    top.set_ylabel("training loss")
    top.set_title("Same seed, same batches, deterministic kernels: one curve per loss implementation")
    top.legend()
    bottom.set_ylabel("|difference| (1e-12 = bitwise equal)")
    bottom.set_xlabel("step")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_compare_losses(cfg) -> None:
    """The whole comparison as ``cfg`` says: report.md, report.json, training_curves.png and TensorBoard
    curves into the run folder; compare_losses, loss_differences and loss_trainings into
    ``paths.results_dir``."""
    import torch

    from digits.report import markdown_table, write_json, write_result

    output_dir = Path(cfg.paths.output_dir)
    out = results_dir(cfg)
    devices = [d for d in cfg.devices if d == "cpu" or torch.cuda.is_available()]
    if len(devices) < len(cfg.devices):
        log.warning("no CUDA GPU here: comparing on %s only", devices)
    suite = []
    if cfg.pytorch_suite:  # first: a missing test extra stops the run before it writes anything
        try:
            from digits_lab.pytorch_suite import run_suite, summary_by_form, table_by_check

            suite = [dict(row, device=device) for device in devices for row in summary_by_form(run_suite(device))]
        except DigitsError as error:
            raise type(error)(f"{error} (or set pytorch_suite=false)") from error
    calls = compare_single_calls(devices, list(cfg.dtypes), cfg.batch_size, cfg.num_classes, cfg.seed)
    naive = naive_failures(devices, list(cfg.dtypes), list(cfg.naive_logit_std), cfg.seed)
    long_mean = [float16_long_mean(device) for device in devices]
    large = [
        row
        for dtype, shifts in cfg.large_logit_shifts.items()
        for row in large_logit_errors(dtype, list(shifts), seed=cfg.seed)
    ]
    differences = deliberate_differences()
    report = [
        "# Cross-entropy implementations against nn.CrossEntropyLoss",
        "",
        f"Batch {cfg.batch_size} x {cfg.num_classes} classes, seed {cfg.seed}, devices {devices}, "
        f"torch {torch.__version__}. Relative differences: max |a - b| / max |b|, of the loss and of the "
        "input gradient, against nn.CrossEntropyLoss in the same dtype; `loss_error` is against float64.",
        "",
        "## Single calls",
        "",
        markdown_table(calls),
        "",
        "## The naive form (log of exp / sum exp) as logits grow",
        "",
        markdown_table(naive),
        "",
        "## float16 mean over 40,000 targets",
        "",
        markdown_table(long_mean),
        "",
        "## Large logits: logits of std 3 shifted by `shift`, relative error (loss / gradient) against an "
        "exact log-sum-exp",
        "",
        markdown_table(large_logit_table(large)),
        "",
        "## Deliberate differences from F.cross_entropy",
        "",
        markdown_table(differences),
        "",
    ]
    if suite:
        report += [
            "## PyTorch's own test material (OpInfo, ModuleInfo, common_nn), every form",
            "",
            "Cases and largest relative difference from PyTorch per check, form and dtype; "
            "`closer_than_pytorch`: low-precision cases beyond the tolerance where the form is closer to "
            "float64 than PyTorch is.",
            "",
            markdown_table(table_by_check(suite)),
            "",
        ]
    summary = {
        "single_calls": calls,
        "naive": naive,
        "float16_long_mean": long_mean,
        "large_logits": large,
        "deliberate_differences": differences,
        "pytorch_suite": suite,
    }

    if cfg.training.enabled:
        lines, summary["training"] = whole_trainings(cfg, output_dir)
        report += lines
    config = OmegaConf.to_container(cfg, resolve=True)
    (output_dir / "report.md").write_text("\n".join(report))
    write_json(output_dir / "report.json", summary)
    largest_differences(calls, cfg, devices)
    # the report without its title (write_result gives one) and without the plot, which stays in the run folder
    body = "\n".join(line for line in report[1:] if not line.startswith("![curves]"))
    write_result(out, "compare_losses", report[0][2:], {"config": config, **summary}, body)
    log.info("report: %s", output_dir / "report.md")


def whole_trainings(cfg, output_dir: Path) -> tuple[list[str], dict]:
    """One short training per loss form, same seed and batches: the report's section and report.json's
    ``training``; writes training_curves.png, TensorBoard curves and loss_trainings (``paths.results_dir``)."""
    from hydra.utils import instantiate
    from torch.utils.tensorboard import SummaryWriter

    from digits.report import markdown_table, write_result

    datamodule = instantiate(cfg.data)
    curves = training_curves(
        datamodule,
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(cfg.training.losses, resolve=True),
        OmegaConf.to_container(cfg.optimizer, resolve=True),
        None,
        cfg.training.steps,
        cfg.seed,
        cfg.training.accelerator,
    )
    differences = curve_differences(curves)
    plot_curves(curves, output_dir / "training_curves.png")
    for name, run in curves.items():
        with SummaryWriter(str(output_dir / "tensorboard" / name)) as writer:
            for step, value in enumerate(run["losses"]):
                writer.add_scalar("train/loss", value, step)
    rows = [{"loss": name, **diff} for name, diff in differences.items()]
    lines = [
        f"## Whole trainings: {cfg.training.steps} steps, seed {cfg.seed}, deterministic",
        "",
        markdown_table(rows),
        "",
        "![curves](training_curves.png)",
        "",
    ]
    training = {
        "differences": differences,
        "losses": {name: run["losses"] for name, run in curves.items()},
    }
    log.info("whole trainings:\n%s", markdown_table(rows))
    trainings = {"steps": cfg.training.steps, "seed": cfg.seed, "rows": rows}
    title = f"Whole trainings, one per loss form: {cfg.training.steps} steps, seed {cfg.seed}, deterministic"
    note = (
        "Per-step training losses of each form against `cross_entropy` (same seed, same batches, "
        "deterministic kernels): `bitwise_equal` when every step's loss is the same float."
    )
    write_result(results_dir(cfg), "loss_trainings", title, trainings, f"{note}\n\n{markdown_table(rows)}")
    return lines, training


def largest_differences(calls: list[dict], cfg, devices: list[str]) -> None:
    """The single calls' largest relative difference per dtype and form: logged, and written as
    loss_differences (``paths.results_dir``)."""
    from digits.report import markdown_table, write_result

    worst = {}
    for row in calls:
        if row["implementation"] != "manual_naive":
            key = (row["dtype"], row["implementation"])
            worst[key] = max(worst.get(key, 0.0), row["loss_vs_pytorch"], row["grad_vs_pytorch"])
    log.info(
        "largest relative difference from nn.CrossEntropyLoss over all option sets:\n%s",
        markdown_table([{"dtype": d, "implementation": i, "max_rel_diff": v} for (d, i), v in worst.items()]),
    )
    by_dtype = {}  # the README's shape: one row per dtype, one column per implementation
    for (dtype, implementation), value in worst.items():
        by_dtype.setdefault(dtype, {"dtype": dtype})[implementation] = value
    note = (
        f"Largest relative difference from nn.CrossEntropyLoss over every option set of the single calls "
        f"(batch {cfg.batch_size} x {cfg.num_classes} classes, seed {cfg.seed}, devices {devices}), "
        "one row per dtype, one column per form."
    )
    largest = list(by_dtype.values())
    write_result(
        results_dir(cfg),
        "loss_differences",
        "Largest difference of each loss form from nn.CrossEntropyLoss",
        {"rows": largest},
        f"{note}\n\n{markdown_table(largest)}",
    )
