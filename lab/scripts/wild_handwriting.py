"""Handwriting in the wild: scikit-learn's UCI digits (not MNIST) rendered as a scan, squared paper, pencil in a
form's box, a whiteboard with glare, a ruled notebook and a small digit in a photo; read by digits.handwriting.

    python lab/scripts/wild_handwriting.py ckpt_path=outputs/train/<run>
    python lab/scripts/wild_handwriting.py ckpt_path=outputs/train/<run> paths.results_dir=docs/results

Writes wild_handwriting.json and .md into its run folder (and docs/results when published), and prints the table.
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.wild_handwriting import run_wild_handwriting

    log.info("\n%s", run_wild_handwriting(cfg))


if __name__ == "__main__":
    run(main, "wild_handwriting", "wild_handwriting", CONFIG_DIR)
