"""Train the CNN on MNIST. Examples:

    python scripts/train.py
    python scripts/train.py loss=manual trainer.max_epochs=3 data.batch_size=128
    python scripts/train.py -m loss=cross_entropy,nll,manual
"""

import time

STARTED = time.perf_counter()  # before the heavy imports, so that start-up time can be reported

import logging  # noqa: E402
import sys  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    # Imported here, after Hydra has parsed the command line: `--help` needs no torch.
    from digits.config import ConfigError
    from digits.data import CorruptDataError, DataNotFoundError
    from digits.module import NonFiniteLossError
    from digits.train import summary, train

    # Lightning logs through a handler of its own and through Hydra's root handlers: keep Hydra's
    # (console and train.log), so each line appears once.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True

    global STARTED
    started, STARTED = STARTED, None  # a sweep's later jobs count from their own start
    try:
        metrics, _ = train(cfg, started=started)
    except (ConfigError, CorruptDataError, DataNotFoundError, NonFiniteLossError) as error:
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(2)
    log.info("done\n%s", summary(metrics))
    if "stopped_early" in metrics:
        sys.exit(130)  # the shell's code for "stopped by Ctrl-C"
    return metrics["val/acc_best"]  # what a sweep optimises: never the test set


if __name__ == "__main__":
    main()
