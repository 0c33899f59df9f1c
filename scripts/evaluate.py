"""Evaluate a checkpoint on MNIST's test (or validation) split, or classify your own digit images.

python scripts/evaluate.py ckpt_path=outputs/train/<run>            # the run's best checkpoint
python scripts/evaluate.py ckpt_path=outputs/train/<run>/checkpoints/last.ckpt data.split=val
python scripts/evaluate.py ckpt_path=outputs/train/<run> predict=path/to/digits/
"""

import logging
from pathlib import Path

from digits.entry import run

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits.evaluation.run import describe, run_evaluation

    output_dir = Path(cfg.paths.output_dir)
    results = run_evaluation(
        cfg.ckpt_path, output_dir, cfg.data.split, cfg.data.data_dir, cfg.device, cfg.predict, cfg.tensorboard
    )
    log.info("%s", describe(results, output_dir))


if __name__ == "__main__":
    run(main, "eval")
