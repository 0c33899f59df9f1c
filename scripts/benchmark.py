"""Training speed against the plain-PyTorch MNIST recipe, measured side by side in one run.

    python scripts/benchmark.py
    python scripts/benchmark.py baseline.time_to_accuracy=false runs=[]   # throughput only

Writes benchmark.json and benchmark.md into its run folder and prints the table.
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

import digits.config  # noqa: F401  (registers the resolvers the run folder uses)
from digits.overrides import check_command_line

log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    from digits.benchmark import run_benchmark
    from digits.console import quiet_console

    quiet_console()

    report = run_benchmark(cfg)
    log.info("\n%s", report)


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "benchmark")
    main()
