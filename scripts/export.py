"""Export a checkpoint to ONNX, checked against PyTorch on the 10,000 test images.

    python scripts/export.py ckpt_path=outputs/train/<run>        # the run's best checkpoint
    python scripts/export.py ckpt_path=outputs/train/<run>/checkpoints/last.ckpt check.tolerance=1e-5

Writes model.onnx and model_card.json into outputs/export/<time>.
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


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    from digits.console import quiet_console

    quiet_console()
    from digits.errors import DigitsError
    from digits.export import run_export

    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # their INFO lines describe the exporter's passes
        logging.getLogger(name).setLevel(logging.WARNING)
    output_dir = Path(cfg.paths.output_dir)
    try:
        card = run_export(cfg.ckpt_path, output_dir, cfg.data.data_dir, cfg.check.tolerance, cfg.check.batch_size)
    except DigitsError as error:
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(2)
    check = card["check"]
    log.info(
        "checkpoint  %s\nmodel       %s (%.1f s to export)\ncheck       %d test images: %d predictions "
        "changed, largest logit difference %.2e; accuracy %.4f\ncard        %s",
        card["source_checkpoint"]["path"],
        output_dir / card["model"],
        card["export"]["seconds"],
        check["images"],
        check["changed_predictions"],
        check["max_abs_logit_difference"],
        card["test_accuracy"],
        output_dir / "model_card.json",
    )


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "export")
    main()
