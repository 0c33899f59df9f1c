"""The trained model back from a checkpoint, on a device, and its logits: what every use after
training starts from (evaluation, own digits, export, the demo)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from digits.checkpoints import CheckpointError
from digits.errors import DigitsError
from digits.module import DigitsModule, WeightMismatchError


class EvaluationError(DigitsError, ValueError):
    """A path, checkpoint, image or device that cannot be evaluated; the message says why."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (then its best checkpoint, else its last)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise EvaluationError(f"{path} does not exist: give a .ckpt file or a run folder under outputs/")
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    candidates = sorted(folder.glob("best-*.ckpt")) or sorted(folder.glob("last.ckpt"))
    if not candidates:
        raise EvaluationError(
            f"{path} is a folder without checkpoints (looked for best-*.ckpt and last.ckpt in {folder})"
        )
    return candidates[-1]


def load_module(path: Path, device: torch.device) -> DigitsModule:
    """The trained module through the class's gate (``DigitsModule.from_checkpoint``); its refusals become
    EvaluationError, unsafe configs stay UnsafeConfigError."""
    try:
        module = DigitsModule.from_checkpoint(path, map_location=device)
    except (CheckpointError, WeightMismatchError) as error:
        raise EvaluationError(str(error)) from error
    return module.to(device).eval()


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EvaluationError(f"device={name!r} but no CUDA GPU is visible: use device=cpu or device=auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise EvaluationError(f"device={name!r} is not allowed: cpu, cuda or auto")
    return torch.device(name)


@torch.no_grad()
def collect_logits(module: DigitsModule, images: Tensor, batch_size: int = 1000) -> Tensor:
    device = next(module.parameters()).device
    return torch.cat(
        [module(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    )
