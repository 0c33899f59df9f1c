"""The training step's non-finite check: the first NaN or infinite loss stops the run with its step and
value, without making every step wait for the GPU, and before any checkpoint holds the weights after it."""

from __future__ import annotations

import re

import pytest
import torch
from harness import CUDA, QUIET, compose_train
from lightning.pytorch.callbacks import Callback
from omegaconf import open_dict

from digits.module import NonFiniteLossError
from digits.train import train

NAN_RUN = ["debug=limit", "logger=none", "loss=manual_naive", "optimizer.lr=1e6", "scheduler=none", *QUIET]


def test_no_checkpoint_is_written_after_a_non_finite_loss(tmp_path, data_dir):
    """lr 1e6 makes the naive loss NaN within the first steps. The flag is read before the step checkpoint
    (every 5 steps) is written, long before the next regular check (every 50 steps): the stop names the
    first non-finite step and no checkpoint exists."""
    cfg = compose_train(
        [*NAN_RUN, "trainer.log_every_n_steps=50", "callbacks.step_checkpoint.every_n_train_steps=5"],
        tmp_path,
        data_dir,
    )
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step \d+ \(epoch 0\)") as stop:
        train(cfg)
    assert int(re.search(r"at step (\d+)", str(stop.value)).group(1)) < 5
    assert "none written yet" in str(stop.value)
    assert not list(tmp_path.rglob("*.ckpt"))


class SyncDebugWindow(Callback):
    """torch.cuda.set_sync_debug_mode("error") around each training step (the forward, the loss, the
    non-finite flag, the metrics and the logging: from on_train_batch_start to on_before_backward), except on
    the steps where the module reads its flag on purpose (every trainer.log_every_n_steps steps)."""

    def __init__(self) -> None:
        self.guarded_steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.global_step + 1) % trainer.log_every_n_steps:
            torch.cuda.set_sync_debug_mode("error")
            self.guarded_steps += 1

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_exception(self, trainer, pl_module, exception) -> None:
        torch.cuda.set_sync_debug_mode("default")


@CUDA
def test_training_steps_do_not_wait_for_the_gpu(tmp_path, data_dir):
    overrides = ["experiment=fast_gpu", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=40"]
    cfg = compose_train([*overrides, *QUIET], tmp_path, data_dir)
    with open_dict(cfg):
        cfg.callbacks["sync_debug_window"] = {"_target_": f"{__name__}.SyncDebugWindow"}
    try:
        _, objects = train(cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    window = next(c for c in objects["trainer"].callbacks if isinstance(c, SyncDebugWindow))
    assert window.guarded_steps >= 38  # 40 steps, the flag read on 2 of them (log_every_n_steps 20)
