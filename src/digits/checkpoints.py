"""Checkpoints that survive crashes (atomic writes, a clean stop on Ctrl-C) and that are read without
trusting them: ``read_checkpoint`` is the one way this project opens a checkpoint file, and
``rebase_callback_state`` the rule for the paths a checkpoint's callbacks carry."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from digits.allowlist import MAX_DEPTH, check_hyperparameters
from digits.errors import DigitsError
from digits.writing import WriteError, fsync_directory


class CheckpointError(DigitsError, RuntimeError):
    """A checkpoint cannot be written or read; the message says what is intact and what to do."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``.<name>.<pid>.tmp`` beside the target, fsync, then ``os.replace``: a reader sees the
    old file or the new one, never half of one. Lightning's writer moves a file from the system's temp
    directory, which is a copy (and a truncated ``last.ckpt`` after a kill) when that is on another disk."""

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
            fsync_directory(path.parent)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            kept = sorted(p.name for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
            raise WriteError(
                f"could not write the checkpoint {path}: {error.strerror or error}. "
                f"Checkpoints already in {path.parent} are untouched ({', '.join(kept) or 'none yet'}). "
                "Free disk space or make the folder writable (or set paths.log_dir to another disk), "
                "then resume with resume=<run folder>."
            ) from error


# A checkpoint of this project holds a few thousand objects. A pickle's memo lets one object be referenced
# many times: 9 levels of 10 shared lists are 10**9 leaves to any code that walks them, from a file of 300 KB.
MAX_OBJECTS = 1_000_000


def check_expanded_size(value: Any, source: Any) -> None:
    """Refuse a structure of more than MAX_OBJECTS objects when walked as a tree, or holding a cycle. Each
    distinct container is visited once, so the work is bounded by what the file holds."""
    sizes: dict[int, int] = {}
    open_now: set[int] = set()

    def size(item: Any, depth: int) -> int:
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = list(item)
        else:
            return 1
        key = id(item)
        if key in sizes:
            return sizes[key]
        if key in open_now:
            raise CheckpointError(f"{source} holds a structure that contains itself: not a checkpoint of this project")
        if depth > MAX_DEPTH:  # not counted further: the allow-list and _check_inside refuse it, naming where
            return 1
        open_now.add(key)
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_OBJECTS:
                raise CheckpointError(
                    f"{source} expands to more than {MAX_OBJECTS:,} objects (shared references repeated at "
                    "every level, a 'billion laughs'): not a checkpoint of this project"
                )
        open_now.discard(key)
        sizes[key] = total
        return total

    size(value, 0)


# torch.save writes its zip archive uncompressed: its members' sizes add up to about the file's size.
# A member that inflates (1 GB of zeros in 1.3 MB) would cost its whole size in torch.load before any check.
ARCHIVE_SLACK_BYTES = 1 * 2**20


def check_archive_sizes(path: str | Path, advice: str = "") -> None:
    """Refuse a zip checkpoint whose members declare more bytes than the file holds (plus
    ``ARCHIVE_SLACK_BYTES``), before torch.load inflates anything."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return  # not an archive: torch.load refuses it, or it is a legacy pickle
        with zipfile.ZipFile(path) as archive:
            declared = sum(member.file_size for member in archive.infolist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # torch.load gives its own answer, as one line
    size = os.path.getsize(path)
    if declared > size + ARCHIVE_SLACK_BYTES:
        raise CheckpointError(
            f"{path} is not a readable checkpoint: its archive declares {declared:,} bytes unpacked from a file of "
            f"{size:,} bytes (compressed members; torch.save writes them uncompressed).{advice}"
        )


def read_checkpoint(path: str | Path, map_location: Any = "cpu", advice: str = "") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` as a dict, or one line of CheckpointError for whatever is wrong
    (truncated, foreign, nested too deep, too large to walk, an inflating archive)."""
    check_archive_sizes(path, advice)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated, not a zip/pickle, foreign objects, RecursionError: one answer
        first_line = (str(error).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path} is not a readable checkpoint: not a PyTorch checkpoint that loads safely "
            f"({type(error).__name__}: {first_line}).{advice}"
        ) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{path} is a checkpoint, but not one of this project: it holds a {type(checkpoint).__name__}"
        )
    check_expanded_size(checkpoint, path)
    return checkpoint


# The paths a ModelCheckpoint keeps in its state (Lightning 2.x), besides its dirpath and best_k_models.
_CHECKPOINT_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def _refuse(source: Any, what: str) -> None:
    raise CheckpointError(
        f"{source}: refusing its callback state: {what}. Paths in a checkpoint must name files in the "
        "folder the checkpoint is in."
    )


def _check_inside(value: Any, run: Path, where: str, source: Any, depth: int = 0) -> None:
    """Every string that reads as a path resolves, symlinks included, inside ``run``; no deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        _refuse(source, f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if ("/" in value or "\\" in value or value == "..") and not (run / value).resolve().is_relative_to(run):
            _refuse(source, f"{where} names {value[:120]!r}, outside the run folder {run}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_inside(key, run, f"{where} key", source, depth + 1)
            _check_inside(item, run, f"{where}.{key}", source, depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_inside(item, run, f"{where}[{index}]", source, depth + 1)


def _rebased(path: Any, dirpath: Any, folder: Path, where: str, source: Any) -> Any:
    """``<dirpath>/<name>`` as ``<folder>/<name>``; anything else refused."""
    if path in (None, ""):
        return path
    if not isinstance(path, str) or not isinstance(dirpath, str):
        _refuse(source, f"{where} is {str(path)[:120]!r}, not a path in its dirpath")
    base = os.path.basename(path)
    if os.path.dirname(path) != dirpath.rstrip("/") or base in ("", ".", ".."):
        _refuse(source, f"{where} is {path[:120]!r}, not a file directly in {dirpath[:120]!r}")
    rebased = folder / base
    if rebased.is_symlink() or rebased.is_dir():
        _refuse(source, f"{where} names {rebased}, a symlink or a folder")
    return str(rebased)


def rebase_callback_state(checkpoint: dict[str, Any], folder: Path, source: Any) -> None:
    """Re-derive every ModelCheckpoint state's paths (``<dirpath>/<name>``) as ``<folder>/<name>``, ``folder``
    being where the checkpoint was read from; other states may name paths only inside the run folder.

    Lightning deletes ``best_k_models`` entries and the previous ``last_model_path`` after comparing them
    with its ``dirpath`` as text: ``<dirpath>/../..`` would delete a tree elsewhere, and a copied run's
    absolute paths point into the original."""
    folder = folder.resolve()
    run = folder.parent if folder.name == "checkpoints" else folder
    callbacks = checkpoint.get("callbacks") or {}
    if not isinstance(callbacks, dict):
        _refuse(source, f"callbacks is a {type(callbacks).__name__}, not a dict of states")
    for key, state in callbacks.items():
        where = f"callbacks[{str(key)[:80]!r}]"
        if not isinstance(state, dict):
            _refuse(source, f"{where} is a {type(state).__name__}, not a dict")
        if not (isinstance(key, str) and key.startswith("ModelCheckpoint")):
            _check_inside(state, run, where, source)
            continue
        dirpath = state.get("dirpath")
        for name in _CHECKPOINT_PATH_KEYS:
            if name in state:
                state[name] = _rebased(state[name], dirpath, folder, f"{where}.{name}", source)
        kept = state.get("best_k_models", {})
        if not isinstance(kept, dict):
            _refuse(source, f"{where}.best_k_models is a {type(kept).__name__}, not a dict")
        state["best_k_models"] = {
            _rebased(path, dirpath, folder, f"{where}.best_k_models", source): score for path, score in kept.items()
        }
        rest = {
            k: v for k, v in state.items() if k not in (*_CHECKPOINT_PATH_KEYS, "best_k_models", "dirpath", "monitor")
        }
        _check_inside(rest, run, where, source)
        state["dirpath"] = str(folder)
    _check_inside(checkpoint.get("loops"), run, "loops", source)


def check_checkpoint(path: str | Path, hyperparameter_keys: tuple[str, ...]) -> dict[str, Any]:
    """Load a checkpoint the way a resume will and return it, or raise CheckpointError (UnsafeConfigError for
    hyperparameters outside ``hyperparameter_keys`` or the allow-list)."""
    path = Path(path)
    if not path.is_file():
        siblings = sorted(str(p) for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
        hint = f" Checkpoints there: {', '.join(siblings)}." if siblings else ""
        raise CheckpointError(f"checkpoint {path} does not exist.{hint}")
    checkpoint = read_checkpoint(
        path, advice=" Resume from another one in the same folder (the best-*.ckpt, or an earlier last.ckpt copy)."
    )
    if "state_dict" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(f"{path} is not a training checkpoint of this project (no state_dict/loops).")
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f"{path}: its state_dict is a {type(state_dict).__name__}, not a dict of tensors")
    check_hyperparameters(checkpoint.get("hyper_parameters"), path, hyperparameter_keys)
    rebase_callback_state(checkpoint, path.resolve().parent, path)
    check_sampler_state(checkpoint, path)
    return checkpoint


# MNIST has 60,000 training images: no epoch has more batches; no run has this many epochs.
_MAX_BATCHES, _MAX_EPOCHS = 60_000, 1_000_000


def check_sampler_state(checkpoint: dict[str, Any], source: Any) -> None:
    """The data module's saved position in the epoch: whole numbers in range (10**12 batches done would
    silently skip the rest of the epoch)."""
    for key, value in checkpoint.items():
        if not (isinstance(value, dict) and "train_sampler" in value):
            continue
        state = value["train_sampler"]
        limits = {"epoch": _MAX_EPOCHS, "batches_done": _MAX_BATCHES}
        if not isinstance(state, dict) or set(state) != set(limits):
            raise CheckpointError(f"{source}: {key}.train_sampler is not the sampler state this project saves")
        for name, limit in limits.items():
            number = state[name]
            if not (isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= limit):
                raise CheckpointError(
                    f"{source}: {key}.train_sampler.{name}={str(number)[:40]!r} is not a whole number in "
                    f"[0, {limit:,}]: not a position this project saves; resume from another checkpoint"
                )


class TrainingStopped(Exception):
    """Raised by StopOnCtrlC once its checkpoint is written: ends ``fit`` at once (Lightning's ``should_stop``
    would validate first and overwrite ``last.ckpt`` with one marking the epoch finished)."""


class StopOnCtrlC(Callback):
    """Ctrl-C or SIGTERM during fit: finish the step, save a mid-epoch ``last.ckpt`` and stop. A second
    Ctrl-C interrupts at once."""

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
