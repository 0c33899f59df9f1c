"""scripts/export.py: a checked ONNX file and its card, and a README snippet that runs it without digits."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from harness import ROOT, run_in_process
from PIL import Image

from digits.data import load_mnist, normalize
from digits.export import ExportError, run_export
from digits.module import DigitsModule


def best_checkpoint(run: Path) -> Path:
    return next((run / "checkpoints").glob("best-*.ckpt"))


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory, data_dir) -> Path:
    """The export script run once on the shared run's folder (harness.trained_run), as a user would call it."""
    folder = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as monkeypatch:
        code = run_in_process(
            "export.py",
            [f"ckpt_path={trained_run}", f"hydra.run.dir={folder}", f"data.data_dir={data_dir}"],
            monkeypatch,
        )
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def test_set(data_dir):
    images, labels = load_mnist(data_dir, train=False, download=False)
    return images, labels


def test_the_card_describes_the_file_and_its_check(exported, trained_run, test_set):
    card = json.loads((exported / "model_card.json").read_text())
    assert sorted(p.name for p in exported.iterdir() if not p.name.startswith(".hydra")) == [
        "export.log",
        "model.onnx",
        "model_card.json",
    ]  # nothing staged is left behind
    # the card names the very file beside it (the two are written as one set, the card last)
    assert card["model_sha256"] == hashlib.sha256((exported / "model.onnx").read_bytes()).hexdigest()
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    (source,), (target,) = session.get_inputs(), session.get_outputs()
    assert (source.name, source.shape, source.type) == ("images", ["batch", 1, 28, 28], "tensor(float)")
    assert (target.name, target.shape, target.type) == ("logits", ["batch", 10], "tensor(float)")
    assert card["input"]["name"] == "images" and card["input"]["shape"] == ["batch", 1, 28, 28]
    assert card["input"]["dtype"] == "float32" and card["output"]["dtype"] == "float32"
    assert card["output"]["name"] == "logits" and card["output"]["shape"] == ["batch", 10]
    # the constants are MNIST's training-set statistics, recomputed here from the raw files
    train_images, _ = load_mnist(card["training_config"]["data"]["data_dir"], train=True, download=False)
    pixels = train_images.double() / 255
    assert card["normalisation"]["mean"] == pytest.approx(pixels.mean().item(), abs=1e-4)
    assert card["normalisation"]["std"] == pytest.approx(pixels.std().item(), abs=1e-4)
    checkpoint = best_checkpoint(trained_run)
    assert card["source_checkpoint"] == {
        "path": str(checkpoint.resolve()),
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
    }
    assert card["training_config"] == torch.load(checkpoint, weights_only=True)["hyper_parameters"]["run_config"]
    # the accuracy, recomputed from the file with onnxruntime alone on the 10,000 test images
    images, labels = test_set
    x = (images.numpy().astype(np.float32) / 255 - card["normalisation"]["mean"]) / card["normalisation"]["std"]
    logits = session.run(["logits"], {"images": x[:, None]})[0]
    accuracy = float((logits.argmax(1) == labels.numpy()).mean())
    check = card["check"]
    assert card["test_accuracy"] == pytest.approx(accuracy, abs=1e-6) and accuracy > 0.85
    assert check["images"] == 10_000 and check["changed_predictions"] == 0 and check["passed"] is True
    assert 0 <= check["max_abs_logit_difference"] <= check["tolerance"] == 1e-3
    assert check["onnx_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert card["export"]["exporter"] == "torch.onnx.export(dynamo=True)" and card["export"]["opset"] >= 18


@pytest.mark.parametrize("n", [1, 3, 257])
def test_any_batch_size_gives_the_modules_logits(exported, trained_run, test_set, n):
    module = DigitsModule.from_checkpoint(best_checkpoint(trained_run)).eval()
    images = normalize(test_set[0][-n:])
    with torch.no_grad():
        expected = module(images).numpy()
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": images.numpy()})[0]
    assert logits.shape == (n, 10)
    np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=0)
    assert (logits.argmax(1) == expected.argmax(1)).all()


def readme_snippet() -> str:
    """docs/evaluation.md's example of another program using model.onnx: the python block that opens it."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "evaluation.md").read_text(), flags=re.S)
    (snippet,) = [b for b in blocks if "onnxruntime" in b]
    return snippet


def test_the_readme_snippet_classifies_a_png_without_digits(exported, test_set, tmp_path):
    # No site processing (-S): the editable install's path hook for `digits` is never read; only the
    # installed libraries' folder is on the path.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    command = [sys.executable, "-S", "-c"]
    blocked = subprocess.run([*command, "import digits"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert blocked.returncode == 1 and "No module named 'digits'" in blocked.stderr
    for name in ("model.onnx", "model_card.json"):
        (tmp_path / name).write_bytes((exported / name).read_bytes())
    images, labels = test_set
    # a user's picture: dark ink on white paper, 28x28 grey PNG (the snippet inverts it)
    Image.fromarray(255 - images[0].numpy(), mode="L").save(tmp_path / "digit.png")
    result = subprocess.run(
        [*command, readme_snippet()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(["logits"], {"images": normalize(images[:1]).numpy()})[0].argmax()
    assert expected == labels[0]  # the file reads this test digit right, so the snippet must say it
    assert result.stdout.strip().splitlines()[-1] == f"digit: {labels[0]}"


def test_bad_inputs_exit_2_and_write_no_model(trained_run, tmp_path, data_dir, monkeypatch):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(best_checkpoint(trained_run).read_bytes()[:5000])
    crafted = tmp_path / "crafted.ckpt"
    checkpoint = torch.load(best_checkpoint(trained_run), weights_only=True)
    canary = tmp_path / "canary.txt"
    canary.write_text("alive")
    checkpoint["hyper_parameters"]["model"]["hidden"] = {"_target_": "builtins.open", "file": str(canary), "mode": "w"}
    torch.save(checkpoint, crafted)
    cases = {
        "missing": [f"ckpt_path={tmp_path / 'nope.ckpt'}"],
        "corrupt": [f"ckpt_path={corrupt}"],
        "crafted": [f"ckpt_path={crafted}"],
        "tolerance": [f"ckpt_path={trained_run}", "check.tolerance=-1"],
    }
    for name, args in cases.items():
        out = tmp_path / name
        assert run_in_process("export.py", [*args, f"hydra.run.dir={out}"], monkeypatch) == 2, name
        assert not (out / "model.onnx").exists() and not (out / "model_card.json").exists(), name
    assert canary.read_text() == "alive"


def test_a_failed_check_is_an_error_and_leaves_no_model(trained_run, tmp_path, data_dir):
    """tolerance 0 demands bitwise-equal logits, which onnxruntime's kernels do not give."""
    with pytest.raises(
        ExportError,
        match=r"0 predictions changed, largest logit difference [0-9.e-]+ "
        r"\(allowed: 0\)\. No model.onnx was written",
    ):
        run_export(trained_run, tmp_path, data_dir, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []
