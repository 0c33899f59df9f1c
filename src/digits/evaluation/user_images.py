"""The user's own pictures of digits: read, brought to MNIST's form by ``digits.handwriting``, classified,
and answered "unsure" where the reader or the network is."""

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


def read_picture(image) -> tuple[Tensor, list[str], str | None]:
    """One picture (a PIL image) -> (raw (1, 28, 28) picture in [0, 1], the reader's notes, why it is unsure
    or None); a picture without a digit is a blank one, unsure."""
    from digits.handwriting import UNSURE, NoInkError, to_mnist

    try:
        picture, steps = to_mnist(image)
    except NoInkError as error:
        picture, steps = torch.zeros(1, 28, 28), [UNSURE + str(error)]
    return picture, steps, next((step.removeprefix(UNSURE) for step in steps if step.startswith(UNSURE)), None)


def load_images(path: Path) -> tuple[list[Path], Tensor, list[str], list[str | None]]:
    """A picture file or a folder of them -> (files, raw (N, 1, 28, 28) pictures in [0, 1] in MNIST's
    form, notes prefixed with the file name, why the reader is unsure of each picture or None); a picture
    without a digit is a blank one, unsure. See ``digits.handwriting``."""
    from digits.handwriting import load_image, printable

    if not path.exists():
        raise EvaluationError(f"predict={path} does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise EvaluationError(f"predict={path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    pictures, notes, unsure = [], [], []
    for file in files:
        picture, steps, why = read_picture(load_image(file))
        pictures.append(picture)
        notes.extend(f"{printable(file.name)}: {step}" for step in steps)
        unsure.append(why)
    return files, torch.stack(pictures), notes, unsure


def predict(
    module: DigitsModule, path: Path, top: int = 3, unsure_below: float = 0.8
) -> tuple[list[dict[str, Any]], list[str], Tensor]:
    """Each picture under ``path``: its top classes and its answer, a digit or None with why it is unsure
    (the reader's reason, or a top probability below ``unsure_below``); the notes; the 28x28 pictures."""
    files, pictures, notes, unsure = load_images(path)
    # a sigmoid model (loss=sigmoid): ten independent probabilities, and "none of the ten" is an answer
    probabilities = class_probabilities(collect_logits(module, standardize(pictures)), module.loss_fn)
    values, classes = probabilities.topk(top, dim=1)
    said = answers(module.loss_fn, probabilities)
    predictions = []
    for i, (file, cs, vs) in enumerate(zip(files, classes, values)):
        why = unsure[i]
        if why is None and float(vs[0]) < unsure_below:
            why = f"low confidence: the top probability {float(vs[0]):.0%} is below unsure_below={unsure_below:g}"
        answer = int(cs[0]) if said is None else said[i]
        if answer is None and why is None:
            why = f"none of the ten: no probability above the sigmoid threshold {module.loss_fn.threshold:g}"
        predictions.append(
            {"file": str(file), "answer": None if why else answer}
            | ({"unsure": why} if why else {})
            | {"top": [{"digit": int(c), "probability": float(v)} for c, v in zip(cs, vs)]}
        )
    return predictions, notes, pictures
