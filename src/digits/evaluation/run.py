"""One evaluation, as ``scripts/evaluate.py`` runs it: the checkpoint's logits on a split -> metrics.json,
report.md, the figures and TensorBoard, or the user's own pictures; the files are one ``output_set``."""

from __future__ import annotations

from pathlib import Path

from digits.data import MNISTDataModule
from digits.evaluation.figures import save_contact_sheet, save_figures
from digits.evaluation.loading import EvaluationError, choose_device, collect_logits, load_module, resolve_checkpoint
from digits.evaluation.metrics import evaluate_logits, markdown_report
from digits.evaluation.user_images import predict
from digits.handwriting import printable
from digits.sigmoid import declines, is_sigmoid
from digits.writing import output_set, write_json, write_text

CONTACT_SHEET = "seen_by_the_network.png"


def run_evaluation(
    checkpoint: str | Path,
    output_dir: Path,
    split: str,
    data_dir: str | None,
    device: str = "auto",
    predict_path: str | None = None,
    tensorboard: bool = True,
    unsure_below: float = 0.8,
) -> dict:
    """The whole evaluation; writes metrics.json, report.md, the figures and TensorBoard events."""
    if split not in ("test", "val"):
        raise EvaluationError(f"data.split={split!r} is not allowed: test or val")
    path = resolve_checkpoint(checkpoint)
    module = load_module(path, choose_device(device))
    if predict_path:
        predictions, notes, pictures = predict(module, Path(predict_path), unsure_below=unsure_below)
        with output_set(output_dir, last="predictions.json") as staging:
            titles = [
                f"{printable(Path(p['file']).name)}\n"
                + ("unsure, " if p["answer"] is None else "said ")
                + f"{p['top'][0]['digit']} ({p['top'][0]['probability']:.0%})"
                for p in predictions
            ]
            save_contact_sheet(pictures, titles, staging / CONTACT_SHEET)
            saved = {"checkpoint": str(path), "notes": notes, "predictions": predictions}
            write_json(staging / "predictions.json", saved)
        return {
            "checkpoint": str(path),
            "predictions": predictions,
            "notes": notes,
            "contact_sheet": str(output_dir / CONTACT_SHEET),
            "predictions_file": str(output_dir / "predictions.json"),
        }
    data = (module.hparams.run_config or {}).get("data", {})
    # the checkpoint's own split; one without a stored data config gets configs/data/mnist.yaml's (None)
    datamodule = MNISTDataModule(
        data_dir=data_dir, val_size=data.get("val_size"), split_seed=data.get("split_seed"), download=False
    )
    datamodule.setup("test" if split == "test" else "fit")
    dataset = datamodule.test_set if split == "test" else datamodule.val_set
    logits = collect_logits(module, dataset.images)
    results = evaluate_logits(logits, dataset.labels)
    if is_sigmoid(module.loss_fn):  # independent probabilities: how many digits it answers "none of the ten"
        results["sigmoid"] = declines(logits, dataset.labels, module.loss_fn.threshold)
    results.update({"checkpoint": str(path), "split": split})
    with output_set(output_dir, last="metrics.json") as staging:
        figures = save_figures(results, dataset.images, staging)
        write_text(staging / "report.md", markdown_report(results, path, split))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(str(staging)) as writer:
                writer.add_scalar(f"eval/{split}/acc", results["accuracy"], 0)
                writer.add_scalar(f"eval/{split}/loss", results["loss"]["cross_entropy"], 0)
                writer.add_scalar(f"eval/{split}/ece", results["ece"], 0)
                for name, fig in figures.items():
                    writer.add_figure(f"eval/{name}", fig, 0)
        write_json(staging / "metrics.json", results)
    return results


def describe(results: dict, output_dir: Path) -> str:
    """What ``scripts/evaluate.py`` prints: each picture's top classes, or the split's numbers."""
    if "predictions" in results:
        lines = [f"note: {note}" for note in results["notes"]]
        for item in results["predictions"]:
            said = "unsure" if item["answer"] is None else str(item["answer"])
            lines.append(
                f"{printable(item['file'])} -> {said} ("
                + ", ".join(f"{t['digit']}: {t['probability']:.1%}" for t in item["top"])
                + ")"
                + (f": {item['unsure']}" if "unsure" in item else "")
            )
        lines += [f"predictions {results['predictions_file']}", f"what the network saw: {results['contact_sheet']}"]
        return "\n".join(lines)
    losses = results["loss"]
    return (
        f"checkpoint  {results['checkpoint']}\n"
        f"accuracy    {results['accuracy']:.4f} on {results['images']} {results['split']} images "
        f"({results['errors']} errors)\n"
        f"loss        cross_entropy {losses['cross_entropy']:.6f}, nll {losses['nll']:.6f}, manual "
        f"{losses['manual']:.6f} (largest difference {results['loss_max_difference']:.1e})\n"
        f"ECE         {results['ece']:.4f}\n"
        f"report      {output_dir / 'report.md'}"
    )
