"""The sigmoid alternative: one independent yes/no probability per class instead of one softmax over ten.

    loss = mean_{i, c} BCEWithLogits(x_ic, q_ic),   q_ic = [c == y_i] (1 - eps) + eps / C

Smoothing as cross-entropy's (and timm's BinaryCrossEntropy), so every recipe that smooths trains with it.
The ten probabilities need not sum to 1, so all ten may say no: the answer is the most probable digit if it
passes ``loss.threshold``, else "none of the ten" (``NONE``), which a softmax model cannot answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from digits.errors import DigitsError
from digits.loss_checks import check_options

NONE = -1  # the answer "none of the ten"


class SigmoidOptionError(DigitsError, ValueError):
    """A threshold or reduction the sigmoid loss cannot use."""


class SigmoidLoss(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss`` on smoothed one-hot targets from (N) class indices; ``threshold`` is stored here
    so that a checkpoint carries it in its loss config."""

    def __init__(self, reduction: str = "mean", threshold: float = 0.5, label_smoothing: float = 0.0) -> None:
        if reduction not in ("none", "mean", "sum"):
            raise SigmoidOptionError(f"loss.reduction={reduction!r}: use 'mean', 'sum' or 'none'")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise SigmoidOptionError(f"loss.threshold={threshold!r}: a probability strictly between 0 and 1, e.g. 0.5")
        check_options(reduction, label_smoothing)  # cross-entropy's rule for the smoothing, in one place
        super().__init__(reduction=reduction)
        self.threshold = float(threshold)
        self.label_smoothing = float(label_smoothing)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, threshold={self.threshold}, label_smoothing={self.label_smoothing}"

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return super().forward(input, smoothed_targets(target, input.shape[1], self.label_smoothing, input.dtype))


def smoothed_targets(target: Tensor, classes: int, label_smoothing: float, dtype: torch.dtype) -> Tensor:
    """(N, C) targets ``q = one_hot(y) (1 - eps) + eps / C`` from (N) class indices; eps = 0: one-hot."""
    one_hot = F.one_hot(target, classes).to(dtype)
    if label_smoothing == 0:
        return one_hot
    return one_hot * (1.0 - label_smoothing) + label_smoothing / classes


def is_sigmoid(loss_fn: nn.Module) -> bool:
    return isinstance(loss_fn, SigmoidLoss)


def sigmoid_threshold(loss_fn: nn.Module) -> float | None:
    """The decision threshold of a sigmoid model; None for a softmax model."""
    return loss_fn.threshold if is_sigmoid(loss_fn) else None


def class_probabilities(logits: Tensor, loss_fn: nn.Module) -> Tensor:
    """What the model says about each class: independent sigmoids for the sigmoid loss, a softmax otherwise."""
    return logits.sigmoid() if is_sigmoid(loss_fn) else logits.softmax(dim=1)


def decide(probabilities: Tensor, threshold: float) -> Tensor:
    """(N) answers: the most probable class, or ``NONE`` where its probability does not pass ``threshold``."""
    confidence, digit = probabilities.max(dim=1)
    return torch.where(confidence > threshold, digit, torch.full_like(digit, NONE))


def per_class_bce(logits: Tensor, target: int) -> Tensor:
    """The (C) binary cross-entropies of one image's logits against the one-hot target: the loss's ten terms."""
    one_hot = F.one_hot(torch.tensor(target), logits.shape[-1]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none")


def declines(logits: Tensor, labels: Tensor, threshold: float) -> dict[str, float]:
    """On labelled digits: accuracy by argmax, the share answered "none of the ten", accuracy of the answers given."""
    answers = decide(logits.sigmoid(), threshold)
    given = answers != NONE
    return {
        "threshold": threshold,
        "accuracy": (logits.argmax(dim=1) == labels).float().mean().item(),
        "declined": (~given).float().mean().item(),
        "accuracy_of_answers_given": (answers[given] == labels[given]).float().mean().item() if given.any() else 0.0,
    }


def answers(loss_fn: nn.Module, probabilities: Tensor) -> list[int | None] | None:
    """A sigmoid model's answer per picture (a digit, or None for "none of the ten"); None for a softmax model."""
    if not is_sigmoid(loss_fn):
        return None
    return [None if a == NONE else a for a in decide(probabilities, loss_fn.threshold).tolist()]
