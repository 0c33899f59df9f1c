"""Train twice with the same seed, data.augment off and on, and compare test accuracy, own-digit
accuracy (digits.studies.handwriting_benchmark) and time.

    python scripts/augment_study.py
    python scripts/augment_study.py "overrides=['trainer.max_epochs=1']" digits=500

Writes augment_study.json and augment_study.md into its run folder and prints the table.
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from digits.overrides import check_command_line
from digits.resolvers import register_resolvers

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="augment_study")
def main(cfg: DictConfig) -> None:
    from digits.console import quiet_console

    quiet_console()
    from digits.studies.augment_study import markdown, run_augment_study

    results = run_augment_study(
        Path(cfg.paths.output_dir), cfg.data_dir, list(cfg.overrides), cfg.digits, cfg.seed, tuple(cfg.variants)
    )
    log.info("\n%s", markdown(results))


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "augment_study")
    main()
