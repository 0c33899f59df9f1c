"""Own-digit accuracy: MNIST test digits re-rendered as users' pictures (a page, a photo, a
transparent drawing, a chalkboard), read after the old preprocessing and after digits.handwriting.

    python scripts/handwriting_benchmark.py ckpt_path=outputs/train/<run>
    python scripts/handwriting_benchmark.py ckpt_path=outputs/train/<run> digits=10000

Writes handwriting.json and handwriting.md into its run folder and into docs/results/ (paths.results_dir),
and prints the table.
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from digits.overrides import check_command_line
from digits.resolvers import register_resolvers

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="handwriting_benchmark")
def main(cfg: DictConfig) -> None:
    from digits.console import quiet_console

    quiet_console()
    from digits.errors import DigitsError
    from digits.studies.handwriting_benchmark import markdown, run_handwriting_benchmark

    try:
        results = run_handwriting_benchmark(
            cfg.ckpt_path, cfg.data_dir, Path(cfg.paths.output_dir), cfg.digits, cfg.seed
        )
    except DigitsError as error:
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(2)
    from digits.report import write_result

    text = markdown(results, results["checkpoint"])
    body = text.split("\n", 1)[1] if text.startswith("# ") else text  # write_result gives the title
    write_result(
        cfg.paths.results_dir, "handwriting", "Own handwriting: MNIST digits as users' pictures", results, body
    )
    log.info("\n%s", text)


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "handwriting_benchmark")
    main()
