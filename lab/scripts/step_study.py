"""The default training step's variants on this CPU, and whole runs with and without a change, side by side.

    python lab/scripts/step_study.py
    python lab/scripts/step_study.py runs=[] step.rounds=3      # the step part alone
    python lab/scripts/step_study.py paths.results_dir=lab/results

Writes step_study.json and step_study.md into its run folder, or into lab/results/ when published.
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits.threads import set_wait_policy

    set_wait_policy(cfg)  # the product's omp_wait (passive), before torch loads: the step as a run takes it
    from digits_lab.step_study import run_step_study

    log.info("\n%s", run_step_study(cfg))


if __name__ == "__main__":
    run(main, "step_study", "step_study", CONFIG_DIR)
