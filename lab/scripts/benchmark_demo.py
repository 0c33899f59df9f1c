"""How quick the drawing demo is: start-up to a usable page, and server time per drawing.

    python lab/scripts/benchmark_demo.py ckpt_path=outputs/train/<run>

Writes benchmark_demo.json and benchmark_demo.md into its run folder, and into lab/results/
when published (paths.results_dir=lab/results).
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.benchmark_demo import run_benchmark_demo

    log.info("%s\nwritten to %s", run_benchmark_demo(cfg), cfg.paths.output_dir)


if __name__ == "__main__":
    run(main, "benchmark_demo", "benchmark_demo", CONFIG_DIR)
