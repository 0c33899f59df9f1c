"""Time forward+backward of each cross-entropy implementation, relative to nn.CrossEntropyLoss.

    python scripts/benchmark_losses.py
    python scripts/benchmark_losses.py devices=[cpu,cuda] repeats=100

Writes benchmark_losses.json and benchmark_losses.md into its run folder and into docs/results/
(paths.results_dir), where the docs take the table from.
"""

import logging
import platform
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from digits.overrides import check_command_line
from digits.resolvers import register_resolvers

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="benchmark_losses")
def main(cfg: DictConfig) -> None:
    import torch

    from digits.console import quiet_console
    from digits.report import markdown_table, write_json, write_result
    from digits.studies.benchmark_losses import benchmark
    from digits.studies.compare import DTYPES

    quiet_console()

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    devices = [d for d in cfg.devices if d == "cpu" or torch.cuda.is_available()]
    rows = benchmark(
        devices,
        [tuple(s) for s in cfg.sizes],
        DTYPES[cfg.dtype],
        cfg.warmup,
        cfg.repeats,
        cfg.label_smoothing,
        cfg.rounds,
    )
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
    config = OmegaConf.to_container(cfg, resolve=True)
    data = {"machine": machine, "config": config, "rows": rows}
    write_json(output_dir / "benchmark_losses.json", data)
    write_result(cfg.paths.results_dir, "benchmark_losses", title, data, text)
    log.info("%s\n%s\nwritten to %s", machine, table, output_dir)


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "benchmark_losses")
    main()
