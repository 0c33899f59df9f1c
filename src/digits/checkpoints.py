"""Checkpoints that survive crashes: atomic writes, a clean stop on Ctrl-C, a readable resume point.

Lightning's own writer saves to a temporary file in the system's temp directory and moves it into
place; when that directory is on another disk the move is a copy, and a kill during the copy leaves
a truncated ``last.ckpt``. ``AtomicCheckpointIO`` writes beside the target and renames over it, so
the previous checkpoint stays whole until the new one is complete on disk.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from digits.allowlist import check_hyperparameters
from digits.errors import DigitsError
from digits.writing import WriteError


class CheckpointError(DigitsError, RuntimeError):
    """A checkpoint cannot be written or read; the message says what is intact and what to do."""


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # makes the rename itself durable
    finally:
        os.close(descriptor)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``.<name>.<pid>.tmp`` in the target's folder, fsync, then ``os.replace``:
    a reader (or a resume after SIGKILL or power loss) sees the old file or the new one, never half
    of one. A failed write (disk full, read-only folder) removes the temporary file and raises WriteError."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        buffer = io.BytesIO()  # serialise first: torch's zip writer reports a full disk as a RuntimeError
        torch.save(checkpoint, buffer)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as file:
                file.write(buffer.getbuffer())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
            _fsync_directory(path.parent)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            kept = sorted(p.name for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
            raise WriteError(
                f"could not write the checkpoint {path}: {error.strerror or error}. "
                f"Checkpoints already in {path.parent} are untouched ({', '.join(kept) or 'none yet'}). "
                "Free disk space or make the folder writable (or set paths.log_dir to another disk), "
                "then resume with resume=<run folder>."
            ) from error


def check_checkpoint(path: str | Path) -> None:
    """Load a checkpoint the way a resume will, or raise CheckpointError saying what is wrong (or
    UnsafeConfigError when its hyperparameters name something this project does not offer)."""
    path = Path(path)
    if not path.is_file():
        siblings = sorted(str(p) for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
        hint = f" Checkpoints there: {', '.join(siblings)}." if siblings else ""
        raise CheckpointError(f"checkpoint {path} does not exist.{hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a zip/pickle, foreign objects: one answer for all
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {str(error).splitlines()[0]}). "
            "Resume from another one in the same folder (the best-*.ckpt, or an earlier last.ckpt copy)."
        ) from error
    if "state_dict" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(f"{path} is not a training checkpoint of this project (no state_dict/loops).")
    check_hyperparameters(checkpoint.get("hyper_parameters"), path)


class TrainingStopped(Exception):
    """Raised by StopOnCtrlC once its checkpoint is written: ends ``fit`` at once. (Lightning's
    ``should_stop`` would first run a validation pass and let the checkpoint callbacks overwrite
    ``last.ckpt`` with one that marks the interrupted epoch as finished.)"""


class StopOnCtrlC(Callback):
    """Ctrl-C (SIGINT) or SIGTERM during fit: finish the current step, save ``last.ckpt`` there (a
    mid-epoch checkpoint) and stop, instead of dying mid-step. A second Ctrl-C interrupts at once."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.requested = False
        self.path: Path | None = None
        self._previous: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        def request_stop(signum, frame) -> None:
            self.requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the second Ctrl-C is immediate

        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, request_stop)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        requested = self.requested
        if trainer.world_size > 1:  # DDP: all processes stop at the same step if any was signalled
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if requested and self.path is None:
            self.path = self.checkpoint_dir / "last.ckpt"
            trainer.save_checkpoint(self.path, weights_only=False)  # full state; saying so keeps Lightning quiet
            raise TrainingStopped(f"stopped on request at step {trainer.global_step}")

    def _restore_handlers(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_handlers()
