"""Every number in the teaching texts the project started from (``../shared/seeds/``) that follows from
their printed inputs, reproduced to the precision printed there, through all three forms.

Printed tensors are compared as PyTorch prints them (4 decimals, or 4 significant digits in e-notation);
``loss.item()`` values exactly, as the float32 the texts printed. The texts' own random inputs
(``torch.randn``) cannot be reproduced; their printed (rounded) values are used as the inputs instead,
and where that rounding shows in the result (the 3x5 example's log and loss) the test says how far.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from digits.losses import LogSoftmaxNLLLoss, ManualCrossEntropyLoss, stable_log_softmax

FORMS = {
    "cross_entropy": nn.CrossEntropyLoss(),
    "nll": LogSoftmaxNLLLoss(),
    "manual": ManualCrossEntropyLoss(),
    "manual_backward": ManualCrossEntropyLoss(backward="manual"),
}


def printed(tensor: torch.Tensor, style: str = ".4f") -> list:
    """A tensor's values as PyTorch's default print shows them."""
    return [format(v, style) for v in tensor.flatten().tolist()]


def softmax_by_each_form(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The softmax the forms compute on the way: PyTorch's, exp(log_softmax) of the nll form, exp of the
    manual form's stable log-softmax."""
    return {
        "softmax": torch.softmax(logits, dim=1),
        "nll": F.log_softmax(logits, dim=1).exp(),
        "manual": stable_log_softmax(logits).exp(),
    }


def log_softmax_by_each_form(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "log(softmax)": torch.log(torch.softmax(logits, dim=1)),
        "nll": F.log_softmax(logits, dim=1),
        "manual": stable_log_softmax(logits),
    }


# 000: "Cross entropy with logits", and 001: "torch.nn.CrossEntropyLoss": loss.item() as printed.
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "logits, labels, item",
    [
        ([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [3.0, 2.0, 1.0]], [0, 1, 2], 2.4076058864593506),
        ([[1.2, 0.5, -1.0], [0.3, 1.8, -0.5]], [0, 1], 0.3774033188819885),
        ([[1.2, -0.5, 0.8, 2.1]], [2], 1.8615424633026123),
    ],
)
def test_printed_loss_items(form, logits, labels, item):
    assert FORMS[form](torch.tensor(logits), torch.tensor(labels)).item() == item


# 001: "Logits and softmax": the printed logits' softmax.
def test_small_net_softmax():
    logits = torch.tensor([[-0.4022, -0.3693, 0.2588], [-0.5446, -0.5214, 0.1516]])
    for name, softmax in softmax_by_each_form(logits).items():
        assert printed(softmax) == ["0.2519", "0.2603", "0.4878", "0.2482", "0.2540", "0.4978"], name


# 001: "Lets see things in more details": each printed step of the 1x4 example.
def test_one_by_four_example_steps():
    logits, labels = torch.tensor([[1.2, -0.5, 0.8, 2.1]]), torch.tensor([2])
    for name, softmax in softmax_by_each_form(logits).items():
        assert printed(softmax) == ["0.2319", "0.0424", "0.1554", "0.5703"], name
    for name, log_probs in log_softmax_by_each_form(logits).items():
        assert printed(log_probs) == ["-1.4615", "-3.1615", "-1.8615", "-0.5615"], name
        assert printed(log_probs[0, labels]) == ["-1.8615"], name
    log_probs = torch.log(torch.softmax(logits, dim=1))
    assert (-torch.mean(log_probs[0, labels])).item() == 1.8615424633026123  # "Loss (Negative Log-Likelihood)"
    assert nn.NLLLoss()(F.log_softmax(logits, dim=1), labels).item() == 1.8615424633026123  # "Using NLL"


# 002: "Understanding Cross-Entropy Loss": the float64 softmax of [[-9, 5, 10]], PyTorch's and by hand.
def test_float64_softmax_of_minus_9_5_10():
    t = torch.tensor([[-9, 5, 10]], dtype=torch.double)
    by_hand = torch.exp(t) / torch.exp(t).sum()
    for name, softmax in {**softmax_by_each_form(t), "exp / sum": by_hand}.items():
        assert softmax.dtype == torch.float64
        assert printed(softmax, ".4e") == ["5.5653e-09", "6.6929e-03", "9.9331e-01"], name


# 002: the 3x5 example from its printed model output and targets [3, 0, 1].
def test_three_by_five_example():
    model_output = torch.tensor(
        [
            [-0.7514, 1.2616, -0.4232, 1.3868, 1.2298],
            [1.5341, -0.4240, 0.0112, -0.5188, 0.1129],
            [-2.6143, 0.1532, 0.0868, -0.8231, 0.7698],
        ]
    )
    targets = torch.tensor([3, 0, 1])
    for name, sm in softmax_by_each_form(model_output).items():
        assert printed(sm) == [
            "0.0390",
            "0.2923",
            "0.0542",
            "0.3313",
            "0.2832",
            "0.5784",
            "0.0816",
            "0.1261",
            "0.0742",
            "0.1396",
            "0.0149",
            "0.2365",
            "0.2213",
            "0.0891",
            "0.4382",
        ], name
        assert printed(sm.sum(dim=1)) == ["1.0000"] * 3, name
    # The log does not follow to the digit: log p_c = x_c - logsumexp(x) inherits the logits' print
    # rounding (up to 5e-5 each, 1e-4 together), and 4 of the 15 exact values sit on a rounding edge
    # (float64: -3.242975, -2.914775, -0.547538, -2.070438). They reproduce within that 1e-4 plus the
    # print's own 5e-5, and the other 11 to the digit.
    printed_log = [
        "-3.2429",
        "-1.2300",
        "-2.9147",
        "-1.1048",
        "-1.2618",
        "-0.5476",
        "-2.5056",
        "-2.0705",
        "-2.6004",
        "-1.9687",
        "-4.2092",
        "-1.4417",
        "-1.5081",
        "-2.4180",
        "-0.8251",
    ]
    for name, lg in log_softmax_by_each_form(model_output).items():
        torch.testing.assert_close(lg.flatten(), torch.tensor([float(v) for v in printed_log]), rtol=0, atol=1.5e-4)
        assert sum(a == b for a, b in zip(printed(lg), printed_log)) >= 11, (name, printed(lg))
    # 1.0314 follows from the printed log-probabilities (the text's own check sums them), in every form too:
    # the cross-entropy of log-probabilities is their NLL. From the 4-decimal logits every form gives
    # 1.031339 ("1.0313"): the logits' rounding moves the loss by up to 1e-4.
    lg = torch.tensor([[float(v) for v in printed_log[i : i + 5]] for i in (0, 5, 10)])
    assert printed(F.nll_loss(lg, targets)) == ["1.0314"]
    assert printed(-1 * (lg[0][targets[0]] + lg[1][targets[1]] + lg[2][targets[2]]) / 3) == ["1.0314"]
    for name, form in FORMS.items():
        assert printed(form(lg, targets)) == ["1.0314"], name
        from_logits = form(model_output, targets).item()
        assert format(from_logits, ".4f") == "1.0313" and abs(from_logits - 1.0314) < 1e-4, name
