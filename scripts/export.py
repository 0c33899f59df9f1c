"""Export a checkpoint to ONNX, checked against PyTorch on the 10,000 test images.

    python scripts/export.py ckpt_path=outputs/train/<run>        # the run's best checkpoint
    python scripts/export.py ckpt_path=outputs/train/<run>/checkpoints/last.ckpt check.tolerance=1e-5

Writes model.onnx and model_card.json into outputs/export/<time>.
"""

import logging
from pathlib import Path

from digits.entry import run

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits.export import describe, run_export

    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # their INFO lines describe the exporter's passes
        logging.getLogger(name).setLevel(logging.WARNING)
    output_dir = Path(cfg.paths.output_dir)
    card = run_export(cfg.ckpt_path, output_dir, cfg.data.data_dir, cfg.check.tolerance, cfg.check.batch_size)
    log.info("%s", describe(card, output_dir))


if __name__ == "__main__":
    run(main, "export")
