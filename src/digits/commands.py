"""The four commands (``digits-train``, ``-evaluate``, ``-export``, ``-demo``), each a task and its console entry
point; scripts/ calls the same. Tasks import torch inside their body: ``--help`` and a typo need none."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from digits.entry import run

log = logging.getLogger("digits")


def train_task(cfg: Any, started: float) -> float:
    """Train (or resume) one run; returns what a sweep optimises (digits.sweeps.score)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.utilities import rank_zero_only

    from digits.config import ConfigError, resume_config
    from digits.sweeps import score
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


def evaluate_task(cfg: Any, started: float) -> None:
    """Test (or validation) accuracy of a checkpoint, or its answers for your own pictures (``predict=``)."""
    from digits.evaluation.run import describe, run_evaluation

    output_dir = Path(cfg.paths.output_dir)
    results = run_evaluation(
        cfg.ckpt_path,
        output_dir,
        cfg.data.split,
        cfg.data.data_dir,
        cfg.device,
        cfg.predict,
        cfg.tensorboard,
        cfg.unsure_below,
    )
    log.info("%s", describe(results, output_dir))


def export_task(cfg: Any, started: float) -> None:
    """model.onnx and model_card.json, checked against PyTorch on the 10,000 test images."""
    from digits.export import describe, run_export

    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # their INFO lines describe the exporter's passes
        logging.getLogger(name).setLevel(logging.WARNING)
    output_dir = Path(cfg.paths.output_dir)
    card = run_export(cfg.ckpt_path, output_dir, cfg.data.data_dir, cfg.check.tolerance, cfg.check.batch_size)
    log.info("%s", describe(card, output_dir))


def demo_task(cfg: Any, started: float) -> None:
    """The drawing page, served until Ctrl-C."""
    import torch

    from digits.demo.app import Demo, open_socket, serve, url_of, validate_demo_config
    from digits.evaluation.loading import choose_device, load_module, resolve_checkpoint

    validate_demo_config(cfg)
    torch.set_num_threads(cfg.threads)
    path = resolve_checkpoint(cfg.ckpt_path)
    module = load_module(path, choose_device(cfg.device))
    demo = Demo(module, path, cfg.max_upload_bytes, Path(cfg.paths.output_dir))
    demo.warm_up()
    sock = open_socket(cfg.host, cfg.port)
    log.info("checkpoint %s; ready in %.1f s", path, time.perf_counter() - started)
    print(f"demo: open {url_of(sock)} (Ctrl-C stops it)", flush=True)
    serve(demo, sock, cfg)


def train() -> Any:
    return run(train_task, "train", "train")


def evaluate() -> Any:
    return run(evaluate_task, "eval", "evaluate")


def export() -> Any:
    return run(export_task, "export", "export")


def demo() -> Any:
    return run(demo_task, "demo", "demo")
