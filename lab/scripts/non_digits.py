"""Non-digit pictures shown to a softmax and a sigmoid model: writes non_digits.json and .md into
its run folder; published into lab/results/ with paths.results_dir=lab/results.

    python lab/scripts/non_digits.py softmax_ckpt_path=outputs/train/<run> sigmoid_ckpt_path=outputs/train/<other run>

The two checkpoints (or run folders) should come from the same recipe, e.g. `python scripts/train.py` and
`python scripts/train.py loss=sigmoid`.
"""

import logging

from digits.entry import run
from digits_lab import CONFIG_DIR

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    from digits_lab.non_digits import run_non_digits

    log.info("%s", run_non_digits(cfg))


if __name__ == "__main__":
    run(main, "non_digits", "non_digits", CONFIG_DIR)
