"""The default recipe over seeds and thread counts: how far its accuracy moves on this machine.

    python scripts/spread.py
    python scripts/spread.py "runs=['threads=1','threads=2']"
    python scripts/spread.py reuse=outputs/spread/<run>     # an earlier spread's finished runs, the rest trained

Writes spread.json and spread.md into docs/results/ (paths.results_dir).
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from digits.overrides import check_command_line
from digits.resolvers import register_resolvers

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="spread")
def main(cfg: DictConfig) -> None:
    from digits.console import quiet_console
    from digits.report import write_result
    from digits.studies import spread

    quiet_console()
    result = spread.measure(list(cfg.runs), cfg.data_dir, Path(cfg.paths.output_dir), cfg.reuse)
    text = spread.markdown(result)
    write_result(cfg.paths.results_dir, "spread", "The default recipe over seeds and thread counts", result, text)
    log.info("\n%s", text)


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "spread")
    main()
