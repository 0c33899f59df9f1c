"""Evaluate a checkpoint on MNIST's test (or validation) split, or classify your own digit images.

python scripts/evaluate.py ckpt_path=outputs/train/<run>            # the run's best checkpoint
python scripts/evaluate.py ckpt_path=outputs/train/<run>/checkpoints/last.ckpt data.split=val
python scripts/evaluate.py ckpt_path=outputs/train/<run> predict=path/to/digits/
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from digits.overrides import check_command_line
from digits.resolvers import register_resolvers

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from digits.console import quiet_console
    from digits.errors import DigitsError
    from digits.evaluation.run import run_evaluation

    quiet_console()

    output_dir = Path(cfg.paths.output_dir)
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        log.error(
            "ckpt_path is missing: give a checkpoint or a run folder, e.g. python scripts/evaluate.py "
            "ckpt_path=outputs/train/<run>"
        )
        sys.exit(2)
    try:
        results = run_evaluation(
            cfg.ckpt_path, output_dir, cfg.data.split, cfg.data.data_dir, cfg.device, cfg.predict, cfg.tensorboard
        )
    except DigitsError as error:
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(2)
    if "predictions" in results:
        for note in results["notes"]:
            log.info("note: %s", note)
        for item in results["predictions"]:
            top = ", ".join(f"{t['digit']}: {t['probability']:.1%}" for t in item["top"])
            log.info("%s -> %s", item["file"], top)
        log.info("predictions %s", output_dir / "predictions.json")
        log.info("what the network saw: %s", results["contact_sheet"])
        return
    losses = results["loss"]
    log.info(
        "checkpoint  %s\naccuracy    %.4f on %d %s images (%d errors)\nloss        cross_entropy %.6f, nll %.6f, "
        "manual %.6f (largest difference %.1e)\nECE         %.4f\nreport      %s",
        results["checkpoint"],
        results["accuracy"],
        results["images"],
        results["split"],
        results["errors"],
        losses["cross_entropy"],
        losses["nll"],
        losses["manual"],
        results["loss_max_difference"],
        results["ece"],
        output_dir / "report.md",
    )


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "eval")
    main()
