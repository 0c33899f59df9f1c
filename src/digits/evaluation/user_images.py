"""The user's own pictures of digits: read, brought to MNIST's form by ``digits.handwriting``, classified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from digits.data import standardize
from digits.evaluation.loading import EvaluationError, collect_logits
from digits.module import DigitsModule
from digits.sigmoid import answers, class_probabilities

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def load_images(path: Path) -> tuple[list[Path], Tensor, list[str]]:
    """A picture file or a folder of them -> (files, raw (N, 1, 28, 28) pictures in [0, 1] in
    MNIST's form, notes prefixed with the file name); see ``digits.handwriting``."""
    from digits.handwriting import NoInkError, load_image, printable, to_mnist

    if not path.exists():
        raise EvaluationError(f"predict={path} does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise EvaluationError(f"predict={path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    pictures, notes = [], []
    for file in files:
        try:
            picture, steps = to_mnist(load_image(file))
        except NoInkError as error:
            raise NoInkError(f"{printable(str(file))}: {error}") from error
        pictures.append(picture)
        notes.extend(f"{printable(file.name)}: {step}" for step in steps)
    return files, torch.stack(pictures), notes


def predict(module: DigitsModule, path: Path, top: int = 3) -> tuple[list[dict[str, Any]], list[str], Tensor]:
    """Top classes of each picture under ``path``, the notes, and the 28x28 pictures the network saw."""
    files, pictures, notes = load_images(path)
    # a sigmoid model (loss=sigmoid): ten independent probabilities, and "none of the ten" is an answer
    probabilities = class_probabilities(collect_logits(module, standardize(pictures)), module.loss_fn)
    values, classes = probabilities.topk(top, dim=1)
    said = answers(module.loss_fn, probabilities)
    return (
        [
            {"file": str(file), "top": [{"digit": int(c), "probability": float(v)} for c, v in zip(cs, vs)]}
            | ({} if said is None else {"answer": said[i]})
            for i, (file, cs, vs) in enumerate(zip(files, classes, values))
        ],
        notes,
        pictures,
    )
