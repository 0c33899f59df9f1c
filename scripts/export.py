"""Export a checkpoint to ONNX, checked against PyTorch on the 10,000 test images.

    python scripts/export.py ckpt_path=outputs/train/<run>        # the run's best checkpoint
    python scripts/export.py ckpt_path=outputs/train/<run>/checkpoints/last.ckpt check.tolerance=1e-5

Writes model.onnx and model_card.json into outputs/export/<time>.
"""

from digits.commands import export

if __name__ == "__main__":
    export()
