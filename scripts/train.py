"""Train the CNN on MNIST. Examples:

python scripts/train.py
python scripts/train.py loss=manual trainer.max_epochs=3 data.batch_size=128
python scripts/train.py -m loss=cross_entropy,nll,manual
python scripts/train.py resume=outputs/train/<run>       # continue an interrupted run
python scripts/train.py trainer=ddp trainer.devices=2     # two processes
"""

import logging
import sys

from digits.entry import run

log = logging.getLogger("digits")


def main(cfg, started: float) -> float:
    # Imported here, after the command line and the paths are checked: `--help` and a typo need no torch.
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.utilities import rank_zero_only

    from digits.config import ConfigError, resume_config
    from digits.studies.objective import score
    from digits.train import summary, train

    if cfg.resume is not None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise ConfigError("resume= continues one run; it cannot be part of a -m sweep")
        cfg = resume_config(cfg.resume, list(HydraConfig.get().overrides.task))
        log.info("resuming %s from %s", cfg.paths.output_dir, cfg.ckpt_path)
    metrics, _ = train(cfg, started=started)
    if rank_zero_only.rank == 0:  # under DDP every process gets here; one summary is enough
        log.info("%s\n%s", "stopped" if metrics.stopped_early else "done", summary(metrics, cfg.get("logger")))
    if metrics.stopped_early:
        sys.exit(130)  # the shell's code for "stopped by Ctrl-C"
    # what a sweep optimises: validation accuracy within a CPU-time budget, never the test set
    objective = cfg.get("objective") or {}  # a resumed run's older config.yaml may lack it
    return score(metrics, objective.get("budget_seconds"), objective.get("penalty", 0.0))


if __name__ == "__main__":
    run(main, "train")
