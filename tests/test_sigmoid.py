"""The sigmoid alternative (loss=sigmoid, digits.sigmoid): the loss is nn.BCEWithLogitsLoss on one-hot
targets, "none of the ten" is an answer, it trains, evaluates and predicts end to end on real MNIST, and
the non-digit pictures of its study are what they claim to be."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from harness import QUIET, compose_train
from PIL import Image
from torch import nn

from digits.data import load_mnist
from digits.errors import DigitsError
from digits.sigmoid import NONE, SigmoidLoss, SigmoidOptionError, answers, decide, per_class_bce


def test_the_loss_is_bce_with_logits_on_one_hot_targets():
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(8, 10, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.randint(0, 10, (8,), generator=generator)
    loss = SigmoidLoss()(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)
    x = logits.detach().clone().requires_grad_()
    expected = nn.BCEWithLogitsLoss()(x, F.one_hot(labels, 10).double())
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, x.grad, rtol=1e-12, atol=0)
    # the mean is over all N * C terms: the ten per-class terms of each image, averaged
    terms = torch.stack([per_class_bce(logits[i].detach(), int(labels[i])) for i in range(8)])
    assert terms.shape == (8, 10) and terms.mean().item() == pytest.approx(loss.item(), rel=1e-12)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 2, "0.5", True])
def test_a_threshold_outside_0_1_is_refused(threshold):
    with pytest.raises(SigmoidOptionError, match="loss.threshold") as info:
        SigmoidLoss(threshold=threshold)
    assert isinstance(info.value, DigitsError)


def test_none_of_the_ten_when_no_probability_passes_the_threshold():
    probabilities = torch.tensor([[0.1, 0.7, 0.2], [0.3, 0.2, 0.4], [0.5, 0.5, 0.1]])
    assert decide(probabilities, 0.5).tolist() == [1, NONE, NONE]  # 0.5 does not pass 0.5
    assert decide(probabilities, 0.35).tolist() == [1, 2, 0]
    # the sigmoid probabilities need not sum to 1: the second row sums to 0.9, the third to 1.1
    assert answers(SigmoidLoss(threshold=0.5), probabilities) == [1, None, None]
    assert answers(nn.CrossEntropyLoss(), probabilities.softmax(1)) is None  # a softmax model always answers


@pytest.mark.slow
def test_loss_sigmoid_trains_evaluates_and_predicts(tmp_path, data_dir):
    from digits.evaluation.run import run_evaluation
    from digits.train import train

    cfg = compose_train(
        ["loss=sigmoid", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=40",
         "trainer.limit_val_batches=2", "callbacks=minimal", *QUIET],
        tmp_path / "run",
        data_dir,
    )  # fmt: skip
    assert cfg.loss.threshold == 0.5
    metrics, _ = train(cfg)
    assert metrics.test_acc > 0.8  # accuracy is the argmax of the logits, as for cross-entropy
    checkpoint = next((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))

    results = run_evaluation(checkpoint, tmp_path / "eval", "test", str(data_dir), device="cpu", tensorboard=False)
    sigmoid = results["sigmoid"]
    assert sigmoid["threshold"] == 0.5 and 0.0 <= sigmoid["declined"] < 0.5
    assert sigmoid["accuracy"] == pytest.approx(results["accuracy"])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["sigmoid"] == sigmoid

    images, labels = load_mnist(data_dir, train=False, download=False)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(images[i].numpy(), mode="L").save(folder / f"{i}_label{labels[i]}.png")
    Image.fromarray((torch.rand(28, 28, generator=torch.Generator().manual_seed(0)) * 255).byte().numpy()).save(
        folder / "noise.png"
    )
    predicted = run_evaluation(
        checkpoint, tmp_path / "p", "test", str(data_dir), device="cpu", predict_path=folder, unsure_below=0.0
    )
    for p in predicted["predictions"]:
        top = [t["probability"] for t in p["top"]]
        assert "answer" in p and all(0 <= v <= 1 for v in top)
        assert p["answer"] == (p["top"][0]["digit"] if top[0] > 0.5 else None)


def test_the_logit_lab_shows_a_sigmoid_checkpoints_ten_probabilities_and_terms():
    from digits.demo.lesson import explain

    logits = torch.tensor([-4.0, 1.0, -3.0, -2.0, -5.0, -1.0, -3.5, 0.5, -2.5, -6.0])
    shown = explain(logits, target=1, sigmoid_threshold=0.5)["sigmoid"]
    assert shown["probabilities"] == pytest.approx(logits.sigmoid().tolist())
    assert shown["sum"] != pytest.approx(1.0, abs=0.05)  # independent yes/no answers: no reason to sum to 1
    assert shown["loss"] == pytest.approx(SigmoidLoss()(logits[None], torch.tensor([1])).item(), rel=1e-6)
    assert shown["bce"][1] == pytest.approx(-torch.log(logits.sigmoid()[1]).item(), rel=1e-6)
    assert shown["answer"] == 1
    assert explain(logits - 3, target=1, sigmoid_threshold=0.5)["sigmoid"]["answer"] is None  # none of the ten
    assert explain(logits, target=1)["sigmoid"] is None  # a softmax checkpoint: no sigmoid panel
