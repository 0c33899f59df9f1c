"""Export a trained checkpoint to ONNX (``torch.onnx.export(dynamo=True)``, PyTorch's recommended exporter):
``model.onnx`` takes normalised float32 ``images`` (N, 1, 28, 28), N free, and returns ``logits`` (N, 10).
onnxruntime must give the module's logits (within ``check.tolerance``) and the same predictions on the
10,000 test images, or nothing is written; ``model_card.json`` appears last and describes the file beside it.
"""

from __future__ import annotations

import copy
import hashlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from digits.config import ConfigError
from digits.data import MNIST_MEAN, MNIST_STD, load_mnist, normalize
from digits.errors import DigitsError
from digits.evaluation.loading import collect_logits, load_module, resolve_checkpoint
from digits.writing import output_set, write_json, writing

INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportError(DigitsError, RuntimeError):
    """The export failed, or the exported file does not compute what the checkpoint computes."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_onnx(net: nn.Module, path: Path) -> None:
    """Write ``net`` as ONNX with a free batch dimension; the weights inside the one file."""
    net = copy.deepcopy(net).to(memory_format=torch.contiguous_format).eval()  # channels-last is a CPU speed trick
    example = torch.zeros(2, 1, 28, 28)  # N=2, not 1: torch.export specialises a dimension of size 1
    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    with writing(path):
        program.save(str(path), external_data=False)


def onnx_logits(path: Path, images: Tensor, batch_size: int) -> Tensor:
    """Run the exported file with onnxruntime, as another program would."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.cat(
        [
            torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size].numpy()})[0])
            for i in range(0, len(images), batch_size)
        ]
    )


def compare(reference: Tensor, exported: Tensor, labels: Tensor, tolerance: float) -> dict[str, Any]:
    """The check's numbers: the largest logit difference and how many predictions changed."""
    changed = int((reference.argmax(1) != exported.argmax(1)).sum())
    difference = (reference - exported).abs().max().item()
    return {
        "images": len(labels),
        "max_abs_logit_difference": difference,
        "tolerance": tolerance,
        "changed_predictions": changed,
        "pytorch_accuracy": (reference.argmax(1) == labels).float().mean().item(),
        "onnx_accuracy": (exported.argmax(1) == labels).float().mean().item(),
        "passed": changed == 0 and difference <= tolerance,
    }


def io_spec(path: Path) -> dict[str, Any]:
    """Names, shapes and types of the file's inputs and outputs, read from the file itself."""
    import onnx

    model = onnx.load(str(path))

    def describe(value) -> dict[str, Any]:
        tensor = value.type.tensor_type
        return {
            "name": value.name,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "shape": [d.dim_param or d.dim_value for d in tensor.shape.dim],
        }

    return {
        "inputs": [describe(v) for v in model.graph.input],
        "outputs": [describe(v) for v in model.graph.output],
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "ir_version": model.ir_version,
    }


def run_export(
    checkpoint: str | Path, output_dir: Path, data_dir: str | Path, tolerance: float = 1e-3, batch_size: int = 1000
) -> dict[str, Any]:
    """Export, check on the test set, then write ``model.onnx`` and ``model_card.json``; returns the card."""
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise ConfigError(f"check.tolerance={tolerance!r} is not allowed: a number >= 0")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"check.batch_size={batch_size!r} is not allowed: an integer >= 1")
    path = resolve_checkpoint(checkpoint).resolve()
    module = load_module(path, torch.device("cpu"))
    raw_images, labels = load_mnist(data_dir, train=False, download=False)
    images = normalize(raw_images)

    with output_set(output_dir, last="model_card.json") as staging:
        card = _export_and_check(module, path, staging / "model.onnx", images, labels, tolerance, batch_size)
        write_json(staging / "model_card.json", card)
    return card


def _export_and_check(
    module, path: Path, target: Path, images: Tensor, labels: Tensor, tolerance: float, batch_size: int
) -> dict[str, Any]:
    """Write ``target``, run it against the module on the test images, and return its card."""
    import onnx
    import onnxruntime

    started = time.perf_counter()
    try:
        export_onnx(module.net, target)
    except DigitsError:
        raise
    except Exception as error:  # torch.export / onnxscript: many types, one answer
        raise ExportError(f"torch.onnx.export failed for {path}: {type(error).__name__}: {error}") from error
    export_seconds = time.perf_counter() - started
    started = time.perf_counter()
    check = compare(
        collect_logits(module, images, batch_size), onnx_logits(target, images, batch_size), labels, tolerance
    )
    check["seconds"] = round(time.perf_counter() - started, 2)
    if not check["passed"]:
        raise ExportError(
            f"the exported model does not compute what {path} computes on the {check['images']} test images: "
            f"{check['changed_predictions']} predictions changed, largest logit difference "
            f"{check['max_abs_logit_difference']:.3g} (allowed: {tolerance:g}). No model.onnx was written."
        )
    spec = io_spec(target)
    hparams = module.hparams
    return {
        "model": target.name,
        "model_sha256": sha256(target),
        "input": {
            **spec["inputs"][0],
            "layout": "N x channel x height x width; N is free",
            "preprocessing": "grey scale, 28x28, white digit on black (as MNIST); pixel / 255, then (x - mean) / std",
        },
        "output": {
            **spec["outputs"][0],
            "meaning": "unnormalised scores for the digits 0-9: the argmax is "
            "the prediction, their softmax the probabilities",
        },
        "normalisation": {"mean": MNIST_MEAN, "std": MNIST_STD},
        "source_checkpoint": {"path": str(path), "sha256": sha256(path)},
        "training_config": hparams.get("run_config")
        or {key: hparams.get(key) for key in ("model", "loss", "optimizer", "scheduler")},
        "test_accuracy": check["pytorch_accuracy"],
        "check": check,
        "export": {
            "exporter": "torch.onnx.export(dynamo=True)",
            "seconds": round(export_seconds, 2),
            "opset": spec["opset"],
            "ir_version": spec["ir_version"],
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }


def describe(card: dict[str, Any], output_dir: Path) -> str:
    """What ``scripts/export.py`` prints: where the file came from, its check, where it is."""
    check = card["check"]
    return (
        f"checkpoint  {card['source_checkpoint']['path']}\n"
        f"model       {output_dir / card['model']} ({card['export']['seconds']:.1f} s to export)\n"
        f"check       {check['images']} test images: {check['changed_predictions']} predictions changed, "
        f"largest logit difference {check['max_abs_logit_difference']:.2e}; accuracy {card['test_accuracy']:.4f}\n"
        f"card        {output_dir / 'model_card.json'}"
    )
