"""Every number of an evaluation, from one pass of logits: accuracy, the three losses, per-class
precision/recall/F1, the confusion matrix, calibration (ECE and the reliability bins), the worst errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import (
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from digits.losses import manual_cross_entropy, nll_cross_entropy


def evaluate_logits(logits: Tensor, labels: Tensor, n_bins: int = 15, worst: int = 25) -> dict[str, Any]:
    """Every number of the report, from the logits and the labels."""
    n_classes = logits.shape[1]
    probabilities = logits.softmax(dim=1)
    confidence, predictions = probabilities.max(dim=1)
    losses = {
        "cross_entropy": F.cross_entropy(logits, labels).item(),
        "nll": nll_cross_entropy(logits, labels).item(),
        "manual": manual_cross_entropy(logits, labels).item(),
    }
    precision = MulticlassPrecision(n_classes, average=None)(logits, labels)
    recall = MulticlassRecall(n_classes, average=None)(logits, labels)
    f1 = MulticlassF1Score(n_classes, average=None)(logits, labels)
    confusion = MulticlassConfusionMatrix(n_classes)(logits, labels)
    ece = MulticlassCalibrationError(n_classes, n_bins=n_bins, norm="l1")(logits, labels).item()
    # reliability diagram: per confidence bin, mean confidence against accuracy
    edges = torch.linspace(0, 1, n_bins + 1)
    bins = []
    correct = (predictions == labels).float()
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            bins.append(
                {
                    "low": low.item(),
                    "high": high.item(),
                    "count": int(inside.sum()),
                    "confidence": confidence[inside].mean().item(),
                    "accuracy": correct[inside].mean().item(),
                }
            )
    wrong = torch.nonzero(predictions != labels).squeeze(1)
    order = wrong[confidence[wrong].argsort(descending=True)][:worst]
    return {
        "images": len(labels),
        "accuracy": correct.mean().item(),
        "errors": len(wrong),
        "loss": losses,
        "loss_max_difference": max(losses.values()) - min(losses.values()),
        "ece": ece,
        "per_class": [
            {
                "class": c,
                "precision": precision[c].item(),
                "recall": recall[c].item(),
                "f1": f1[c].item(),
                "support": int((labels == c).sum()),
            }
            for c in range(n_classes)
        ],
        "confusion_matrix": confusion.tolist(),
        "reliability": bins,
        "most_confident_errors": [
            {
                "index": int(i),
                "label": int(labels[i]),
                "predicted": int(predictions[i]),
                "confidence": confidence[i].item(),
            }
            for i in order
        ],
    }


def markdown_report(results: dict[str, Any], checkpoint: Path, split: str) -> str:
    from digits.report import markdown_table

    losses = results["loss"]
    return "\n".join(
        [
            f"# Evaluation of `{checkpoint}` on the {split} split",
            "",
            f"- accuracy **{results['accuracy']:.4%}** ({results['errors']} errors in {results['images']} images)",
            f"- loss: cross_entropy {losses['cross_entropy']:.6f}, nll {losses['nll']:.6f}, manual "
            f"{losses['manual']:.6f} (largest difference {results['loss_max_difference']:.2e})",
            f"- expected calibration error (15 bins): {results['ece']:.4f}",
            "",
            "## Per class",
            "",
            markdown_table(results["per_class"]),
            "## Figures",
            "",
            "![confusion matrix](confusion_matrix.png)",
            "",
            "![reliability diagram](reliability_diagram.png)",
            "",
            "![most confident errors](most_confident_errors.png)",
            "",
        ]
    )
