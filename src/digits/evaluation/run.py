"""One evaluation, as ``scripts/evaluate.py`` runs it: the checkpoint's logits on a split -> metrics.json,
report.md, the figures and TensorBoard; or, with ``predict_path``, the user's own pictures."""

from __future__ import annotations

import json
from pathlib import Path

from digits.data import MNISTDataModule
from digits.evaluation.figures import save_contact_sheet, save_figures
from digits.evaluation.loading import EvaluationError, choose_device, collect_logits, load_module, resolve_checkpoint
from digits.evaluation.metrics import evaluate_logits, markdown_report
from digits.evaluation.user_images import predict
from digits.sigmoid import declines, is_sigmoid

CONTACT_SHEET = "seen_by_the_network.png"


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
    if is_sigmoid(module.loss_fn):  # independent probabilities: how many digits it answers "none of the ten"
        results["sigmoid"] = declines(logits, dataset.labels, module.loss_fn.threshold)
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
