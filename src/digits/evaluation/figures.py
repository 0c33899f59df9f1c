"""The pictures of an evaluation (matplotlib, imported only here and only when drawn): confusion
matrix, reliability diagram, most confidently wrong digits, and the contact sheet of own digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from digits.data import to_pixels


def save_figures(results: dict[str, Any], images: Tensor, folder: Path) -> dict[str, Any]:
    """Confusion matrix, reliability diagram and the most confidently wrong digits, as PNGs;
    returns the matplotlib figures for TensorBoard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    confusion = torch.tensor(results["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(7, 6))
    shown = confusion.clone().float()
    shown.fill_diagonal_(float("nan"))  # the errors are the story; the diagonal would drown them
    image = ax.imshow(shown.numpy(), cmap="Reds")  # numpy: matplotlib warns on tensors
    for true in range(confusion.shape[0]):
        for predicted in range(confusion.shape[1]):
            value = int(confusion[true, predicted])
            if value:
                colour = "black" if true != predicted else "tab:green"
                ax.text(predicted, true, value, ha="center", va="center", fontsize=7, color=colour)
    title = f"Confusion matrix ({results['errors']} errors in {results['images']}; diagonal in green)"
    ax.set(xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10), title=title)
    fig.colorbar(image, ax=ax, label="errors")
    figures["confusion_matrix"] = fig

    fig, ax = plt.subplots(figsize=(6, 6))
    bins = results["reliability"]
    centres, accuracies = [(b["low"] + b["high"]) / 2 for b in bins], [b["accuracy"] for b in bins]
    label = "accuracy (number: images in the bin)"
    bars = ax.bar(centres, accuracies, width=1 / 15, edgecolor="black", alpha=0.7, label=label)
    # A bin of 2 images looks as alarming as one of 9,735 unless it says how many it holds.
    ax.bar_label(bars, labels=[f"{b['count']:,}" for b in bins], fontsize=7, rotation=90, padding=2)
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.plot([b["confidence"] for b in bins], accuracies, "o-", color="tab:red", label="mean confidence -> accuracy")
    title = f"Reliability diagram, ECE = {results['ece']:.4f}"
    ax.set(xlabel="confidence (max softmax probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left")
    figures["reliability_diagram"] = fig

    errors = results["most_confident_errors"]
    columns = 5
    rows = max(1, (len(errors) + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, error in zip(axes.flat, errors):
        ax.imshow(to_pixels(images[error["index"]].reshape(28, 28)).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"true {error['label']}, said {error['predicted']}\n{error['confidence']:.1%}", fontsize=9)
    fig.suptitle("Most confidently wrong")
    fig.tight_layout()
    figures["most_confident_errors"] = fig

    for name, fig in figures.items():
        fig.savefig(folder / f"{name}.png", dpi=100)
    return figures


def save_contact_sheet(pictures: Tensor, titles: list[str], path: Path, columns: int = 8) -> None:
    """The 28x28 pictures the network saw, one per image with its title: what it was shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(columns, len(titles))
    rows = (len(titles) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, title in zip(axes.flat, pictures, titles):
        ax.imshow(picture.reshape(28, 28).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=7, parse_math=False)  # a file name may hold '$': text, not mathtext
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
