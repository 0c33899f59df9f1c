"""Train the CNN on MNIST. Examples:

    python scripts/train.py
    python scripts/train.py loss=manual trainer.max_epochs=3 data.batch_size=128
    python scripts/train.py -m loss=cross_entropy,nll,manual
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from digits.config import ConfigError
from digits.data import DataNotFoundError
from digits.module import NonFiniteLossError

log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    from digits.train import summary, train  # after Hydra has parsed the command line: `--help` stays fast

    try:
        metrics, _ = train(cfg)
    except (ConfigError, DataNotFoundError, NonFiniteLossError) as error:
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(2)
    log.info("done\n%s", summary(metrics))
    return metrics["val/acc_best"]  # what a sweep optimises: never the test set


if __name__ == "__main__":
    main()
