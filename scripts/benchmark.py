"""Training speed against the plain-PyTorch MNIST recipe, measured side by side in one run.

    python scripts/benchmark.py
    python scripts/benchmark.py baseline.time_to_accuracy=false runs=[]   # throughput only

Writes benchmark.json and benchmark.md into its run folder after each section, and at the end into
docs/results/ (paths.results_dir), where the README's results table comes from (python -m digits.studies.docs),
when every section ran (publish=complete; the second command above publishes nothing). The sections and their order:
digits.studies.benchmark.SECTIONS.
"""

import logging

from digits.entry import run

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits.studies.benchmark import run_benchmark

    log.info("\n%s", run_benchmark(cfg))


if __name__ == "__main__":
    run(main, "benchmark")
