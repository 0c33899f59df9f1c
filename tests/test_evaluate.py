"""The evaluation script on a checkpoint from a short real training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import run_script
from hydra.utils import instantiate
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from digits.data import load_mnist, normalize
from digits.errors import DigitsError
from digits.evaluation.figures import save_figures
from digits.evaluation.loading import EvaluationError
from digits.evaluation.run import describe, run_evaluation
from digits.handwriting import ImageError
from digits.module import DigitsModule, WeightMismatchError


def test_evaluation_of_a_run_folder(trained_run, data_dir, tmp_path):
    results = run_evaluation(trained_run, tmp_path, "test", str(data_dir), device="cpu")
    assert results["checkpoint"].startswith(str(trained_run / "checkpoints" / "best-"))
    # An independent computation: the network rebuilt by hand from the checkpoint's plain contents.
    checkpoint = torch.load(results["checkpoint"], weights_only=True)
    net = instantiate(checkpoint["hyper_parameters"]["model"]).eval()
    net.load_state_dict(
        {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    )
    images, labels = load_mnist(data_dir, train=False, download=False)
    with torch.no_grad():
        predictions = net(normalize(images)).argmax(1)
    expected = (predictions == labels).float().mean().item()
    assert results["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert results["errors"] == int((predictions != labels).sum())
    assert results["accuracy"] > 0.9
    # the three losses agree
    assert results["loss_max_difference"] < 1e-6
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["accuracy"] == results["accuracy"] and len(saved["per_class"]) == 10
    assert sum(sum(row) for row in saved["confusion_matrix"]) == 10_000
    assert [c["support"] for c in saved["per_class"]] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert 0 <= saved["ece"] < 0.1
    confidences = [e["confidence"] for e in saved["most_confident_errors"]]
    assert confidences == sorted(confidences, reverse=True) and len(confidences) == 25
    for name in ("confusion_matrix", "reliability_diagram", "most_confident_errors"):
        png = tmp_path / f"{name}.png"
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) >= 500
        assert png.stat().st_size > 15_000
    report = (tmp_path / "report.md").read_text()
    assert f"{results['accuracy']:.4%}" in report and "![reliability diagram]" in report
    # the reliability diagram says how many images each bar holds, and they add up to the split
    (tmp_path / "again").mkdir()
    figure = save_figures(saved, normalize(images), tmp_path / "again")["reliability_diagram"]
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert labels == [f"{b['count']:,}" for b in saved["reliability"]]
    assert sum(b["count"] for b in saved["reliability"]) == 10_000
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert {"eval/confusion_matrix", "eval/reliability_diagram", "eval/most_confident_errors"} <= set(
        accumulator.Tags()["images"]
    )
    assert accumulator.Scalars("eval/test/acc")[0].value == pytest.approx(results["accuracy"])


def test_validation_split(trained_run, data_dir, tmp_path):
    results = run_evaluation(
        trained_run / "checkpoints" / "last.ckpt", tmp_path, "val", str(data_dir), device="cpu", tensorboard=False
    )
    assert results["images"] == 5_000


def test_predict_on_png_digits(trained_run, data_dir, tmp_path):
    images, labels = load_mnist(data_dir, train=False, download=False)
    folder = tmp_path / "digits"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(images[i].numpy(), mode="L").save(folder / f"{i:02d}_label{labels[i]}.png")
    # a user's photo-like digit: RGB, dark ink on white paper, small and off-centre on a wide page
    page = Image.new("L", (300, 120), 240)
    page.paste(Image.fromarray(255 - images[0].numpy(), mode="L").resize((56, 56)), (200, 10))
    page.convert("RGB").save(folder / "zz_rgb_label7.jpg", quality=80)
    results = run_evaluation(
        trained_run, tmp_path / "out", "test", str(data_dir), device="cpu", predict_path=str(folder)
    )
    predictions = results["predictions"]
    assert len(predictions) == 21
    correct = sum(p["top"][0]["digit"] == int(p["file"].split("label")[1][0]) for p in predictions)
    assert correct >= 18
    assert predictions[-1]["top"][0]["digit"] == 7
    for p in predictions:
        probabilities = [t["probability"] for t in p["top"]]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-6
    page_notes = [n for n in results["notes"] if n.startswith("zz_rgb_label7.jpg: ")]
    assert any("converted from RGB" in n for n in page_notes) and any("inverted" in n for n in page_notes)
    assert any("cropped to the ink" in n for n in page_notes)
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert set(saved) == {"checkpoint", "notes", "predictions"} and saved["predictions"] == predictions
    # the contact sheet: one 28x28 picture per image, at least 8 across, readable
    with Image.open(results["contact_sheet"]) as sheet:
        assert sheet.format == "PNG" and sheet.size[0] >= 8 * 150 and sheet.size[1] >= 3 * 180


def test_predict_answers_unsure_for_a_blank_page_two_marks_and_a_low_confidence(trained_run, data_dir, tmp_path):
    """The reader's doubts (nothing found, two competing marks) and the network's (top probability below
    unsure_below) each give answer null with the reason, in predictions.json and in the printout."""
    images, labels = load_mnist(data_dir, train=False, download=False)
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.new("RGB", (640, 480), (250, 250, 245)).save(folder / "blank.png")
    two = np.full((200, 400), 245, dtype=np.uint8)
    for left, index in ((20, 0), (220, 1)):  # a 7 and a 2, each 160 px, far apart
        digit = Image.fromarray(255 - images[index].numpy()).resize((160, 160), Image.Resampling.BICUBIC)
        two[20:180, left : left + 160] = np.minimum(two[20:180, left : left + 160], np.asarray(digit))
    Image.fromarray(two).save(folder / "two_marks.png")
    Image.fromarray(images[0].numpy()).save(folder / "clear.png")
    results = run_evaluation(
        trained_run, tmp_path / "out", "test", str(data_dir), device="cpu", predict_path=str(folder)
    )
    said = {Path(p["file"]).name: p for p in results["predictions"]}
    assert said["blank.png"]["answer"] is None and "no digit found" in said["blank.png"]["unsure"]
    assert said["two_marks.png"]["answer"] is None and "two marks compete" in said["two_marks.png"]["unsure"]
    assert said["clear.png"]["answer"] == int(labels[0]) and "unsure" not in said["clear.png"]
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved["predictions"] == results["predictions"]
    printed = describe(results, tmp_path / "out")
    assert "blank.png -> unsure (" in printed and "two marks compete" in printed
    # the network's own doubt: with unsure_below above every probability, the clear digit is unsure too
    strict = run_evaluation(
        trained_run,
        tmp_path / "strict",
        "test",
        str(data_dir),
        device="cpu",
        predict_path=str(folder / "clear.png"),
        unsure_below=1.0,
    )
    (only,) = strict["predictions"]
    assert only["answer"] is None and only["unsure"].startswith("low confidence: the top probability")


def test_bad_inputs_get_specific_errors(trained_run, data_dir, tmp_path):
    def evaluate(path, **kw):
        return run_evaluation(path, tmp_path / "out", kw.pop("split", "test"), str(data_dir), **kw)

    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate(tmp_path / "missing.ckpt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="folder without checkpoints"):
        evaluate(tmp_path / "empty")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(EvaluationError, match="not a PyTorch checkpoint"):
        evaluate(tmp_path / "notes.ckpt")
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["model"]["channels"] = [8, 16, 32]
    torch.save(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(EvaluationError, match="do not fit the network"):
        evaluate(tmp_path / "other.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(EvaluationError, match="not one of this project"):
        evaluate(tmp_path / "foreign.ckpt")
    with pytest.raises(EvaluationError, match="test or val"):
        evaluate(trained_run, split="train")
    if not torch.cuda.is_available():
        with pytest.raises(EvaluationError, match="no CUDA GPU is visible"):
            evaluate(trained_run, device="cuda")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ImageError, match="bad.png is not an image that can be read"):
        evaluate(trained_run, device="cpu", predict_path=str(tmp_path / "bad.png"))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["hyper_parameters"]["model"].update(channels=[8, 16, 32]),
            r"net.features.0.weight is \[16, 1, 3, 3\], the network has \[8, 1, 3, 3\]",
        ),
        (lambda c: c["state_dict"].pop("net.classifier.2.bias"), "missing net.classifier.2.bias"),
        (lambda c: c["state_dict"].update({"net.extra.weight": torch.zeros(3)}), "unexpected net.extra.weight"),
    ],
    ids=["resized", "missing", "unexpected"],
)
def test_weights_of_another_network_are_recognised_by_name_and_shape(trained_run, tmp_path, change, message):
    """A typed check before load_state_dict, not a match on PyTorch's wording of its error."""
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(WeightMismatchError, match=f"do not fit the network its config describes.*{message}"):
        DigitsModule.from_checkpoint(tmp_path / "other.ckpt")
    assert issubclass(WeightMismatchError, DigitsError) and issubclass(WeightMismatchError, ValueError)


@pytest.mark.slow
def test_evaluate_script_exit_codes(trained_run, data_dir, tmp_path):
    ok = run_script(
        "evaluate.py",
        [f"ckpt_path={trained_run}", f"hydra.run.dir={tmp_path / 'a'}", "device=cpu"],
        data_dir,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "accuracy" in ok.stderr + ok.stdout and (tmp_path / "a" / "report.md").is_file()
    bad = run_script(
        "evaluate.py", [f"ckpt_path={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'b'}"], data_dir, timeout=300
    )
    assert bad.returncode == 2
    assert f"ConfigError: ckpt_path={tmp_path / 'nope'}: {tmp_path / 'nope'} does not exist" in bad.stderr
    assert not (tmp_path / "b").exists()  # refused before the run folder is made
    missing = run_script("evaluate.py", [f"hydra.run.dir={tmp_path / 'c'}"], data_dir, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "ckpt_path is missing: give a checkpoint or a run folder" in missing.stderr + missing.stdout
