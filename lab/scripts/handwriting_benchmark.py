"""Own-digit accuracy: MNIST test digits re-rendered as users' pictures (a page, a photo, a
transparent drawing, a chalkboard), read after the old preprocessing and after digits.handwriting.

    python lab/scripts/handwriting_benchmark.py ckpt_path=outputs/train/<run>
    python lab/scripts/handwriting_benchmark.py ckpt_path=outputs/train/<run> digits=10000

Writes handwriting.json and handwriting.md into its run folder, and into docs/results/
when published (paths.results_dir=docs/results: docs/evaluation.md shows it),
and prints the table.
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.handwriting_benchmark import run_handwriting_benchmark

    log.info("\n%s", run_handwriting_benchmark(cfg))


if __name__ == "__main__":
    run(main, "handwriting_benchmark", "handwriting_benchmark", CONFIG_DIR)
