"""Train the CNN on MNIST. Examples:

python scripts/train.py
python scripts/train.py loss=manual trainer.max_epochs=3 data.batch_size=128
python scripts/train.py -m loss=cross_entropy,nll,manual
python scripts/train.py resume=outputs/train/<run>       # continue an interrupted run
python scripts/train.py trainer=ddp trainer.devices=2     # two processes
"""

import time

STARTED = time.perf_counter()  # before the heavy imports, so that start-up time can be reported

import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from digits.overrides import check_command_line  # noqa: E402
from digits.resolvers import register_resolvers  # noqa: E402

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    # Imported here, after Hydra has parsed the command line: `--help` needs no torch.
    from lightning.pytorch.utilities import rank_zero_only

    from digits.config import ConfigError, resume_config
    from digits.console import quiet_console
    from digits.errors import DigitsError
    from digits.studies.objective import score
    from digits.train import summary, train

    quiet_console()

    global STARTED
    started, STARTED = STARTED, None  # a sweep's later jobs count from their own start
    try:
        if cfg.resume is not None:
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                raise ConfigError("resume= continues one run; it cannot be part of a -m sweep")
            cfg = resume_config(cfg.resume, list(HydraConfig.get().overrides.task))
            log.info("resuming %s from %s", cfg.paths.output_dir, cfg.ckpt_path)
        metrics, _ = train(cfg, started=started)
    except DigitsError as error:
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(2)
    except OSError as error:  # e.g. the disk filled up while TensorBoard wrote its events
        log.error(
            "%s: %s. Checkpoints already written are intact; free space or choose a writable "
            "paths.log_dir, then resume=%s",
            type(error).__name__,
            error,
            cfg.paths.output_dir,
        )
        sys.exit(2)
    if rank_zero_only.rank == 0:  # under DDP every process gets here; one summary is enough
        log.info("%s\n%s", "stopped" if "stopped_early" in metrics else "done", summary(metrics))
    if "stopped_early" in metrics:
        sys.exit(130)  # the shell's code for "stopped by Ctrl-C"
    # what a sweep optimises: validation accuracy within a CPU-time budget, never the test set
    objective = cfg.get("objective") or {}  # a resumed run's older config.yaml may lack it
    return score(metrics, objective.get("budget_seconds"), objective.get("penalty", 0.0))


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "train")
    main()
