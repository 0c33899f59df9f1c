"""The README's lesson applied to one image: logits -> softmax -> log -> pick the target -> negate,
the three loss implementations side by side, the gradient training would apply to the logits, and
what the softmax-before-the-loss mistake costs. The demo page only displays these numbers."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from digits.errors import DigitsError
from digits.losses import LogSoftmaxNLLLoss, ManualCrossEntropyLoss, SoftmaxFirstCrossEntropyLoss, softmax_floor
from digits.sigmoid import NONE, decide, per_class_bce

# name shown on the page -> the project's implementation (src/digits/losses.py)
LOSSES: dict[str, nn.Module] = {
    "nn.CrossEntropyLoss": nn.CrossEntropyLoss(),
    "LogSoftmaxNLLLoss": LogSoftmaxNLLLoss(),
    "ManualCrossEntropyLoss": ManualCrossEntropyLoss(),
}
TEMPERATURE_RANGE = (0.05, 20.0)
KERAS_EPSILON = 1e-7  # keras.config.epsilon()'s default


def keras_default_loss(logits: Tensor, target: Tensor, epsilon: float = KERAS_EPSILON) -> Tensor:
    """What Keras's ``CategoricalCrossentropy()`` (``from_logits=False``) computes when handed logits: each
    row divided by its sum, clipped to [epsilon, 1 - epsilon], -log of the target's entry (keras/src/backend/
    tensorflow/nn.py). (N, C) logits, (N) targets -> (N)."""
    p = (logits / logits.sum(dim=-1, keepdim=True)).clamp(epsilon, 1.0 - epsilon)
    return -p.gather(-1, target.unsqueeze(-1)).squeeze(-1).log()


class LessonError(DigitsError, ValueError):
    """A target or temperature the lesson cannot use; the message names the allowed values."""


def check_target(target: int | None, n_classes: int) -> None:
    if target is not None and not 0 <= target < n_classes:
        raise LessonError(f"target={target} is not a class: pick a digit from 0 to {n_classes - 1}")


def check_temperature(temperature: float) -> None:
    low, high = TEMPERATURE_RANGE
    if not low <= temperature <= high:  # also refuses NaN
        raise LessonError(f"temperature={temperature} is outside [{low}, {high}]")


def explain(
    logits: Tensor, target: int | None = None, temperature: float = 1.0, sigmoid_threshold: float | None = None
) -> dict[str, Any]:
    """Every number the page shows for one image's ``(C,)`` logits: the loss of ``logits / temperature`` against
    ``target`` (default: the prediction) and its gradient there; with ``sigmoid_threshold`` (a ``loss=sigmoid``
    checkpoint) also the ten sigmoid probabilities and per-class binary cross-entropies."""
    logits = logits.detach().float().reshape(-1)
    n_classes = logits.numel()
    check_temperature(temperature)
    prediction = int(logits.argmax())
    target = prediction if target is None else target
    check_target(target, n_classes)

    scaled = (logits / temperature).requires_grad_(True)
    target_tensor = torch.tensor([target])
    losses = {name: loss_fn(scaled.unsqueeze(0), target_tensor) for name, loss_fn in LOSSES.items()}
    (gradient,) = torch.autograd.grad(losses["nn.CrossEntropyLoss"], scaled)
    scaled = scaled.detach()
    probabilities = F.softmax(scaled, dim=0)
    log_probabilities = F.log_softmax(scaled, dim=0)

    # The mistake: the probabilities go into the loss as if they were logits.
    twice = F.softmax(probabilities, dim=0)
    mistaken = SoftmaxFirstCrossEntropyLoss()(scaled.unsqueeze(0), target_tensor)
    sigmoid = None
    if sigmoid_threshold is not None:  # independent yes/no probabilities: they need not sum to 1
        probabilities_each = scaled.sigmoid()
        answer = int(decide(probabilities_each[None], sigmoid_threshold)[0])
        sigmoid = {
            "probabilities": probabilities_each.tolist(),
            "sum": probabilities_each.sum().item(),
            "bce": per_class_bce(scaled, target).tolist(),
            "loss": per_class_bce(scaled, target).mean().item(),
            "threshold": sigmoid_threshold,
            "answer": None if answer == NONE else answer,
        }
    return {
        "sigmoid": sigmoid,
        "prediction": prediction,
        "target": target,
        "temperature": temperature,
        "logits": logits.tolist(),
        "scaled_logits": scaled.tolist(),
        "softmax": probabilities.tolist(),
        "log_softmax": log_probabilities.tolist(),
        "picked": log_probabilities[target].item(),
        "losses": {name: value.item() for name, value in losses.items()},
        "gradient": gradient.tolist(),
        "softmax_first": {
            "inputs": probabilities.tolist(),
            "softmax": twice.tolist(),
            "log_softmax": torch.log(twice).tolist(),
            "loss": mistaken.item(),
            "floor": softmax_floor(n_classes),
            "keras_default": keras_default_loss(scaled.unsqueeze(0), target_tensor).item(),
        },
    }
