"""The default recipe over seeds and thread counts: how far its accuracy moves on this machine.

    python lab/scripts/spread.py
    python lab/scripts/spread.py "runs=['threads=1','threads=2']"
    python lab/scripts/spread.py reuse=outputs/spread/<run>     # an earlier spread's finished runs, the rest trained

Writes spread.json and spread.md into its run folder, and into lab/results/
when published (paths.results_dir=lab/results).
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.spread import run_spread

    log.info("\n%s", run_spread(cfg))


if __name__ == "__main__":
    run(main, "spread", "spread", CONFIG_DIR)
