"""The same cross-entropy in TensorFlow, Keras and JAX: run every case, write interop.json and .md into
its run folder; published into lab/results/ with paths.results_dir=lab/results.

    python lab/scripts/interop.py ckpt_path=outputs/train/<run>
    python lab/scripts/interop.py ckpt_path=outputs/train/<run>/checkpoints/last.ckpt paths.results_dir=elsewhere

ckpt_path: a trained run's checkpoint or run folder (its logits for the 10,000 test images are one of the
inputs). Needs the interop extra: make setup-lab (the lab extra).
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.interop import run_interop

    log.info("%s", run_interop(cfg))


if __name__ == "__main__":
    run(main, "interop", "interop", CONFIG_DIR)
