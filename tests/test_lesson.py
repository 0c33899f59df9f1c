"""The demo's numbers (digits.demo.lesson.explain) against PyTorch's own functions, on logits the
project did not choose: PyTorch's F.cross_entropy, softmax, and the analytic gradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from digits.demo.lesson import LessonError, explain


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(10, generator=torch.Generator().manual_seed(3)) * 4


@pytest.mark.parametrize("temperature", [1.0, 0.25, 7.5])
@pytest.mark.parametrize("target", [None, 0, 9])
def test_every_number_matches_pytorch(logits, target, temperature):
    result = explain(logits, target, temperature)
    y = int(logits.argmax()) if target is None else target
    scaled = logits / temperature
    assert result["prediction"] == int(logits.argmax()) and result["target"] == y
    assert result["softmax"] == pytest.approx(F.softmax(scaled, 0).tolist(), abs=1e-7)
    assert result["log_softmax"] == pytest.approx(F.log_softmax(scaled, 0).tolist(), abs=1e-6)
    expected = F.cross_entropy(scaled.unsqueeze(0), torch.tensor([y])).item()
    assert set(result["losses"]) == {"nn.CrossEntropyLoss", "LogSoftmaxNLLLoss", "ManualCrossEntropyLoss"}
    for value in result["losses"].values():
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert -result["picked"] == pytest.approx(expected, rel=1e-6, abs=1e-7)
    # d loss / d logits = softmax - one-hot (the gradient with respect to the loss's input x / T)
    one_hot = F.one_hot(torch.tensor(y), 10).float()
    assert result["gradient"] == pytest.approx((F.softmax(scaled, 0) - one_hot).tolist(), abs=1e-6)


def test_softmax_first_has_the_floor(logits):
    result = explain(logits * 100, target=int(logits.argmax()))  # saturated: p is one-hot
    mistake = result["softmax_first"]
    assert mistake["floor"] == pytest.approx(math.log(1 + 9 / math.e))
    assert mistake["loss"] == pytest.approx(mistake["floor"], abs=1e-5)  # float32
    assert result["losses"]["nn.CrossEntropyLoss"] < 1e-4  # the right loss goes to 0
    # the mistake's loss is the cross-entropy of the probabilities taken as logits
    probabilities = F.softmax(logits, 0).unsqueeze(0)
    assert explain(logits, 3)["softmax_first"]["loss"] == pytest.approx(
        F.cross_entropy(probabilities, torch.tensor([3])).item(), rel=1e-6
    )


@pytest.mark.parametrize("target, temperature", [(10, 1.0), (-1, 1.0), (0, 0.0), (0, float("nan")), (0, 1e6)])
def test_bad_settings_are_refused_with_the_allowed_values(logits, target, temperature):
    with pytest.raises(LessonError, match="target|temperature"):
        explain(logits, target, temperature)
