"""Train twice with the same seed, data.augment off and on, and compare test accuracy, own-digit
accuracy (digits_lab.handwriting_benchmark) and time.

    python lab/scripts/augment_study.py
    python lab/scripts/augment_study.py "overrides=['trainer.max_epochs=1']" digits=500

Writes augment_study.json and augment_study.md into its run folder and prints the table.
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.augment_study import run_augment_study

    log.info("\n%s", run_augment_study(cfg))


if __name__ == "__main__":
    run(main, "augment_study", "augment_study", CONFIG_DIR)
