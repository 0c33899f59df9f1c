"""The disagreements with PyTorch that its own test material exposed (issue #10), one test each, plus the
large-logit stress and the derivatives beyond the first: forward mode (jvp) and double backward.

Reference: F.cross_entropy on the same inputs (its value, dtype, shape, gradients and tangents), or an
exact log-sum-exp in Python's decimal arithmetic for the large-logit stress.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from test_losses import IMPLEMENTATIONS, REDUCTIONS, TARGETS, TOLERANCE, make_case
from torch import nn

from digits.losses import LogSoftmaxNLLLoss, LossInputError, ManualCrossEntropyLoss
from digits.module import build_loss

MODULES = {
    "nll": LogSoftmaxNLLLoss,
    "manual": ManualCrossEntropyLoss,
    "manual_backward": partial(ManualCrossEntropyLoss, backward="manual"),
}
ISSUE_INPUT = torch.tensor([[0.3, -1.2, 2.0], [1.1, 0.4, -0.7]], dtype=torch.float64)
ISSUE_TARGET = torch.tensor([2, 0])


# 1. The weight keeps its dtype (float64 was rounded to float32, 1e39 became inf).
@pytest.mark.parametrize("name", MODULES)
def test_modules_keep_the_weight_dtype(name):
    weight = torch.tensor([0.1, 0.7, 1.3], dtype=torch.float64)
    module = MODULES[name](weight=weight)
    assert module.weight.dtype == torch.float64
    expected = F.cross_entropy(ISSUE_INPUT, ISSUE_TARGET, weight=weight)  # 0.22354844274970473
    assert module(ISSUE_INPUT, ISSUE_TARGET).item() == pytest.approx(expected.item(), rel=1e-15)
    huge = torch.tensor([1e39, 1.0, 1.0], dtype=torch.float64)  # finite in float64, inf in float32
    value = MODULES[name](weight=huge)(ISSUE_INPUT, torch.tensor([0, 1]))
    assert value.item() == pytest.approx(
        F.cross_entropy(ISSUE_INPUT, torch.tensor([0, 1]), weight=huge).item(), rel=1e-14
    )


# 6. A weight of another dtype than the input (class indices): refused like nn.CrossEntropyLoss refuses it.
@pytest.mark.parametrize("name", MODULES)
def test_modules_refuse_a_weight_of_another_dtype_like_pytorch(name):
    weight = torch.tensor([0.1, 0.7, 1.3], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="expected scalar type"):
        nn.CrossEntropyLoss(weight=weight)(ISSUE_INPUT.float(), ISSUE_TARGET)
    with pytest.raises(LossInputError, match="expected scalar type float32 but found float64"):
        MODULES[name](weight=weight)(ISSUE_INPUT.float(), ISSUE_TARGET)
    # ...and, as a buffer, the weight follows the module's dtype (Lightning's precision=64 calls .double()).
    module = MODULES[name](weight=weight.float()).double()
    assert module(ISSUE_INPUT, ISSUE_TARGET).item() == pytest.approx(
        F.cross_entropy(ISSUE_INPUT, ISSUE_TARGET, weight=weight.float().double()).item(), rel=1e-15
    )


@pytest.mark.parametrize("target", ["digits.losses.CrossEntropyLoss", "digits.losses.ManualCrossEntropyLoss"])
def test_build_loss_turns_a_config_list_into_a_default_dtype_weight(target):
    """A YAML list (integers allowed) becomes a float tensor in the default dtype, as torch.tensor makes of
    floats; nothing is cast later."""
    module = build_loss({"_target_": target, "weight": [1, 2, 3]})
    assert module.weight.dtype == torch.get_default_dtype() and module.weight.tolist() == [1.0, 2.0, 3.0]
    logits = ISSUE_INPUT.float()
    expected = F.cross_entropy(logits, ISSUE_TARGET, weight=torch.tensor([1.0, 2.0, 3.0]))
    assert module(logits, ISSUE_TARGET).item() == pytest.approx(expected.item(), rel=1e-6)


# 2. Gradients for a probability target (and its weight), in every form, the hand-written one included.
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "reduction, smoothing, weighted", list(itertools.product(REDUCTIONS, [0.0, 0.3], [False, True]))
)
def test_probability_target_and_weight_gradients(name, reduction, smoothing, weighted):
    logits, target, weight = make_case((4, 5, 2), "probabilities", weighted, torch.float64, "cpu")

    def gradients(fn):
        x, q = logits.clone().requires_grad_(), target.clone().requires_grad_()
        w = weight.clone().requires_grad_() if weighted else None
        loss = fn(x, q, weight=w, reduction=reduction, label_smoothing=smoothing)
        inputs = (x, q, w) if weighted else (x, q)
        return torch.autograd.grad(
            loss, inputs, torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
        )

    for got, expected in zip(gradients(IMPLEMENTATIONS[name]), gradients(F.cross_entropy), strict=True):
        torch.testing.assert_close(got, expected, **TOLERANCE[torch.float64])


# 3. Large logits: exact in every form.
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_equal_logits_give_log_2(name, dtype):
    x = torch.tensor([[1e8, 1e8]], dtype=dtype, requires_grad=True)
    loss = IMPLEMENTATIONS[name](x, torch.tensor([1]))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2), rel=1e-7)
    assert x.grad.tolist() == [[0.5, -0.5]]


# 4. Forward mode (torch.func.jvp and torch.autograd.forward_ad) and double backward, against F.cross_entropy.
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("target_kind, reduction, smoothing", list(itertools.product(TARGETS, REDUCTIONS, [0.0, 0.3])))
def test_forward_mode_and_double_backward_match_f_cross_entropy(name, target_kind, reduction, smoothing):
    logits, target, weight = make_case((4, 5, 3), target_kind, True, torch.float64, "cpu")
    generator = torch.Generator().manual_seed(1)
    x_tangent = torch.randn(logits.shape, generator=generator, dtype=torch.float64)
    probabilities = target_kind == "probabilities"
    t_tangent = torch.randn(target.shape, generator=generator, dtype=torch.float64) if probabilities else None
    options = dict(weight=weight, reduction=reduction, label_smoothing=smoothing)

    def with_tangents(fn):
        if probabilities:  # the target's tangent too: the loss is differentiable in the probabilities
            return torch.func.jvp(lambda x, q: fn(x, q, **options), (logits, target), (x_tangent, t_tangent))
        return torch.func.jvp(lambda x: fn(x, target, **options), (logits,), (x_tangent,))

    for got, expected in zip(with_tangents(IMPLEMENTATIONS[name]), with_tangents(F.cross_entropy), strict=True):
        torch.testing.assert_close(got, expected, equal_nan=True, **TOLERANCE[torch.float64])

    with fwAD.dual_level():
        dual = fwAD.make_dual(logits, x_tangent)
        got = fwAD.unpack_dual(IMPLEMENTATIONS[name](dual, target, **options)).tangent
        expected = fwAD.unpack_dual(F.cross_entropy(dual, target, **options)).tangent
    torch.testing.assert_close(got, expected, **TOLERANCE[torch.float64])

    def hessian_vector(fn):
        x = logits.clone().requires_grad_()
        loss = fn(x, target, **options)
        (grad,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
        return torch.autograd.grad((grad * x_tangent).sum(), x)[0]

    torch.testing.assert_close(
        hessian_vector(IMPLEMENTATIONS[name]), hessian_vector(F.cross_entropy), **TOLERANCE[torch.float64]
    )


# 5. uint8 class indices are accepted and used as indices, never as a boolean mask (N == C).
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_uint8_class_indices_match_pytorch(name, reduction):
    logits, target, weight = make_case((6, 6), "index", True, torch.float64, "cpu")
    expected = F.cross_entropy(logits, target.to(torch.uint8), weight=weight, reduction=reduction)
    value = IMPLEMENTATIONS[name](logits, target.to(torch.uint8), weight=weight, reduction=reduction)
    torch.testing.assert_close(value, expected, **TOLERANCE[torch.float64])


# 7. The result's dtype: promoted with the probability target's and the weight's, as in PyTorch.
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "input_dtype, target_dtype, weight_dtype",
    [
        (torch.float32, torch.float64, None),
        (torch.float64, torch.float32, None),
        (torch.float32, torch.float32, torch.float64),
        (torch.float16, torch.float32, None),
        (torch.bfloat16, torch.float16, torch.float16),
    ],
)
def test_result_dtype_is_promoted_like_pytorch(name, input_dtype, target_dtype, weight_dtype):
    logits, target, weight = make_case((4, 5), "probabilities", True, torch.float64, "cpu")
    x, q = logits.to(input_dtype).requires_grad_(), target.to(target_dtype)
    w = None if weight_dtype is None else weight.to(weight_dtype)
    expected = F.cross_entropy(x, q, weight=w, label_smoothing=0.1)
    value = IMPLEMENTATIONS[name](x, q, weight=w, label_smoothing=0.1)
    assert value.dtype == expected.dtype
    # PyTorch takes log_softmax in the input's dtype, then promotes; the manual forms compute in the promoted
    # dtype: they agree to the least precise of the dtypes involved.
    loosest = max((input_dtype, target_dtype, weight_dtype or input_dtype), key=lambda d: TOLERANCE[d]["rtol"])
    torch.testing.assert_close(value, expected, **TOLERANCE[loosest])
    (grad,) = torch.autograd.grad(value, x)
    assert grad.dtype == input_dtype


# 8. Empty inputs: no positions and/or no classes.
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "shape, target",
    [
        ((0, 0), torch.zeros(0, dtype=torch.long)),
        ((0, 0), torch.zeros(0, 0)),
        ((0, 3), torch.zeros(0, dtype=torch.long)),
        ((0, 3), torch.zeros(0, 3)),
        ((2, 0), torch.zeros(2, 0)),
        ((2, 0), torch.tensor([-100, -100])),
        ((0, 3, 4), torch.zeros(0, 4, dtype=torch.long)),
    ],
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_inputs_like_pytorch(name, shape, target, reduction):
    expected, expected_grad = _value_and_grad(F.cross_entropy, torch.zeros(shape), target, reduction=reduction)
    value, grad = _value_and_grad(IMPLEMENTATIONS[name], torch.zeros(shape), target, reduction=reduction)
    assert value.shape == expected.shape and value.dtype == expected.dtype
    torch.testing.assert_close(value, expected, equal_nan=True)
    assert grad.shape == expected_grad.shape


# 9. Every target on a zero-weight class, "mean": NaN (PyTorch's 0 / 0), with or without smoothing.
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mean_over_zero_weight_targets_is_nan_like_pytorch(name, smoothing):
    weight = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    options = dict(weight=weight, label_smoothing=smoothing)
    expected, expected_grad = _value_and_grad(F.cross_entropy, ISSUE_INPUT, torch.tensor([1, 1]), **options)
    value, grad = _value_and_grad(IMPLEMENTATIONS[name], ISSUE_INPUT, torch.tensor([1, 1]), **options)
    assert torch.isnan(expected) and torch.isnan(value)
    torch.testing.assert_close(grad, expected_grad, equal_nan=True)  # NaN everywhere in PyTorch too


def _value_and_grad(fn, logits, target, **options):
    x = logits.clone().requires_grad_()
    value = fn(x, target, **options)
    value.sum().backward()
    return value.detach(), x.grad
