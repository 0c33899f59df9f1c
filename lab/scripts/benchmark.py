"""Training speed against the plain-PyTorch MNIST recipe, measured side by side in one run.

    python lab/scripts/benchmark.py
    python lab/scripts/benchmark.py baseline.time_to_accuracy=false runs=[]   # throughput only

Writes benchmark.json and benchmark.md into its run folder after each section. When it ends it publishes into
docs/results/ when given paths.results_dir=docs/results: benchmark.*, where the README's results table comes from
(python -m digits_lab.docs), when every section was switched on, and the contention and profile sections'
own files when they ran (publish=complete; the second command above publishes nothing). The sections and their order:
digits_lab.benchmark.SECTIONS.
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.benchmark import run_benchmark

    log.info("\n%s", run_benchmark(cfg))


if __name__ == "__main__":
    run(main, "benchmark", "benchmark", CONFIG_DIR)
