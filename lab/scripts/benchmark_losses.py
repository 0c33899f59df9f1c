"""Time forward+backward of each cross-entropy implementation, relative to nn.CrossEntropyLoss.

    python lab/scripts/benchmark_losses.py
    python lab/scripts/benchmark_losses.py devices=[cpu,cuda] repeats=100

Writes benchmark_losses.json and benchmark_losses.md into its run folder, and into lab/results/ when published
(paths.results_dir), where the docs take the table from.
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.benchmark_losses import run_benchmark_losses

    log.info("%s\nwritten to %s", run_benchmark_losses(cfg), cfg.paths.output_dir)


if __name__ == "__main__":
    run(main, "benchmark_losses", "benchmark_losses", CONFIG_DIR)
