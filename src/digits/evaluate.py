"""Evaluate a saved checkpoint: how good is it, where does it fail, and how sure is it when it does.

Everything is computed from one pass over the split: logits -> probabilities -> metrics, figures and
a report in the evaluation's own run folder. ``predict`` applies the same logits-to-probabilities
step to the user's own pictures of digits, brought to MNIST's form by ``digits.handwriting``.
"""

from __future__ import annotations

import json
import pickle
import zipfile
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

from digits.data import MNIST_MEAN, MNIST_STD, MNISTDataModule, standardize
from digits.errors import DigitsError
from digits.losses import manual_cross_entropy, nll_cross_entropy
from digits.module import DigitsModule, WeightMismatchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CONTACT_SHEET = "seen_by_the_network.png"


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
    """Rebuild the trained module from the checkpoint alone (``weights_only=True``)."""
    try:
        module = DigitsModule.from_checkpoint(path, map_location=device)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as error:  # OSError: a truncated zip
        raise EvaluationError(f"{path} is not a PyTorch checkpoint that loads safely: {error}") from error
    except WeightMismatchError as error:
        raise EvaluationError(str(error)) from error
    except RuntimeError as error:
        raise EvaluationError(f"{path} is not a PyTorch checkpoint that loads safely: {error}") from error
    except KeyError as error:
        raise EvaluationError(f"{path} is a checkpoint, but not one of this project: it lacks {error}") from error
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
                ax.text(
                    predicted,
                    true,
                    value,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if true != predicted else "tab:green",
                )
    ax.set(
        xlabel="predicted",
        ylabel="true",
        xticks=range(10),
        yticks=range(10),
        title=f"Confusion matrix ({results['errors']} errors in {results['images']}; diagonal in green)",
    )
    fig.colorbar(image, ax=ax, label="errors")
    figures["confusion_matrix"] = fig

    fig, ax = plt.subplots(figsize=(6, 6))
    bins = results["reliability"]
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    bars = ax.bar(
        centres,
        [b["accuracy"] for b in bins],
        width=1 / 15,
        edgecolor="black",
        alpha=0.7,
        label="accuracy (number: images in the bin)",
    )
    # A bin of 2 images looks as alarming as one of 9,735 unless it says how many it holds.
    ax.bar_label(bars, labels=[f"{b['count']:,}" for b in bins], fontsize=7, rotation=90, padding=2)
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        "o-",
        color="tab:red",
        label="mean confidence -> accuracy",
    )
    ax.set(
        xlabel="confidence (max softmax probability)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Reliability diagram, ECE = {results['ece']:.4f}",
    )
    ax.legend(loc="upper left")
    figures["reliability_diagram"] = fig

    errors = results["most_confident_errors"]
    columns = 5
    rows = max(1, (len(errors) + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, error in zip(axes.flat, errors):
        ax.imshow(
            (images[error["index"]].reshape(28, 28) * MNIST_STD + MNIST_MEAN).numpy(), cmap="gray", vmin=0, vmax=1
        )
        ax.set_title(f"true {error['label']}, said {error['predicted']}\n{error['confidence']:.1%}", fontsize=9)
    fig.suptitle("Most confidently wrong")
    fig.tight_layout()
    figures["most_confident_errors"] = fig

    for name, fig in figures.items():
        fig.savefig(folder / f"{name}.png", dpi=100)
    return figures


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


def load_images(path: Path) -> tuple[list[Path], Tensor, list[str]]:
    """A picture file or a folder of them -> (files, raw (N, 1, 28, 28) pictures in [0, 1] in
    MNIST's form, notes prefixed with the file name); see ``digits.handwriting``."""
    from digits.handwriting import NoInkError, load_image, to_mnist

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
            raise NoInkError(f"{file}: {error}") from error
        pictures.append(picture)
        notes.extend(f"{file.name}: {step}" for step in steps)
    return files, torch.stack(pictures), notes


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
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def predict(module: DigitsModule, path: Path, top: int = 3) -> tuple[list[dict[str, Any]], list[str], Tensor]:
    """Top classes of each picture under ``path``, the notes, and the 28x28 pictures the network saw."""
    files, pictures, notes = load_images(path)
    probabilities = collect_logits(module, standardize(pictures)).softmax(dim=1)
    values, classes = probabilities.topk(top, dim=1)
    return (
        [
            {"file": str(file), "top": [{"digit": int(c), "probability": float(v)} for c, v in zip(cs, vs)]}
            for file, cs, vs in zip(files, classes, values)
        ],
        notes,
        pictures,
    )


def run_evaluation(
    checkpoint: str | Path,
    output_dir: Path,
    split: str,
    data_dir: str | None,
    device: str = "auto",
    predict_path: str | None = None,
    tensorboard: bool = True,
) -> dict:
    """The whole evaluation; writes metrics.json, report.md, the figures and TensorBoard events."""
    if split not in ("test", "val"):
        raise EvaluationError(f"data.split={split!r} is not allowed: test or val")
    path = resolve_checkpoint(checkpoint)
    module = load_module(path, choose_device(device))
    output_dir.mkdir(parents=True, exist_ok=True)
    if predict_path:
        predictions, notes, pictures = predict(module, Path(predict_path))
        (output_dir / "predictions.json").write_text(
            json.dumps({"checkpoint": str(path), "notes": notes, "predictions": predictions}, indent=2)
        )
        save_contact_sheet(
            pictures,
            [
                f"{Path(p['file']).name}\nsaid {p['top'][0]['digit']} ({p['top'][0]['probability']:.0%})"
                for p in predictions
            ],
            output_dir / CONTACT_SHEET,
        )
        return {
            "checkpoint": str(path),
            "predictions": predictions,
            "notes": notes,
            "contact_sheet": str(output_dir / CONTACT_SHEET),
        }
    data = (module.hparams.run_config or {}).get("data", {})
    datamodule = MNISTDataModule(
        data_dir=data_dir, val_size=data.get("val_size", 5000), split_seed=data.get("split_seed", 12345), download=False
    )
    datamodule.setup("test" if split == "test" else "fit")
    dataset = datamodule.test_set if split == "test" else datamodule.val_set
    logits = collect_logits(module, dataset.images)
    results = evaluate_logits(logits, dataset.labels)
    results.update({"checkpoint": str(path), "split": split})
    figures = save_figures(results, dataset.images, output_dir)
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "report.md").write_text(markdown_report(results, path, split))
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(output_dir)) as writer:
            writer.add_scalar(f"eval/{split}/acc", results["accuracy"], 0)
            writer.add_scalar(f"eval/{split}/loss", results["loss"]["cross_entropy"], 0)
            writer.add_scalar(f"eval/{split}/ece", results["ece"], 0)
            for name, fig in figures.items():
                writer.add_figure(f"eval/{name}", fig, 0)
    return results
