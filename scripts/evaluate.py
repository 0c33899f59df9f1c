"""Evaluate a checkpoint on MNIST's test (or validation) split, or classify your own digit images.

python scripts/evaluate.py ckpt_path=outputs/train/<run>            # the run's best checkpoint
python scripts/evaluate.py ckpt_path=outputs/train/<run>/checkpoints/last.ckpt data.split=val
python scripts/evaluate.py ckpt_path=outputs/train/<run> predict=path/to/digits/
"""

from digits.commands import evaluate

if __name__ == "__main__":
    evaluate()
