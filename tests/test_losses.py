"""The proof that the three losses are one function: F.cross_entropy is the reference everywhere.

Tolerances (relative, on the loss and on the input gradient):
  float64  1e-12   different summation orders only
  float32  1e-6    a few ulps (2^-23 = 1.2e-7)
  float16  2e-3    both sides round the result to fp16 (ulp 2^-10 = 1e-3)
  bfloat16 1.6e-2  both sides round to bf16 (ulp 2^-7 = 7.8e-3)
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from harness import CUDA
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from digits.errors import DigitsError
from digits.loss_inputs import make_inputs
from digits.losses import (
    LogSoftmaxNLLLoss,
    LossArgumentError,
    LossInputError,
    LossValueError,
    ManualCrossEntropyFunction,
    ManualCrossEntropyLoss,
    NaiveCrossEntropyLoss,
    cross_entropy_reference,
    manual_cross_entropy,
    nll_cross_entropy,
    softmax_floor,
)

IMPLEMENTATIONS = {
    "nll": nll_cross_entropy,
    "manual": manual_cross_entropy,
    "manual_backward": lambda *args, **kw: manual_cross_entropy(*args, backward="manual", **kw),
}
TOLERANCE = {
    torch.float64: dict(rtol=1e-12, atol=1e-14),
    torch.float32: dict(rtol=1e-6, atol=1e-6),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
SHAPES = [(7,), (6, 7), (4, 7, 3), (3, 7, 2, 3)]  # (C), (N, C), (N, C, d1), (N, C, d1, d2)
TARGETS = ["index", "ignore", "probabilities"]
REDUCTIONS = ["none", "mean", "sum"]
SMOOTHING = [0.0, 0.25, 1.0]


def make_case(shape, target_kind, weighted, dtype, device, seed=0, scale=3.0, ignore_index=-100):
    """digits.loss_inputs.make_inputs (the report's inputs), cast to ``dtype`` and moved to ``device``."""
    logits, target, weight = make_inputs(target_kind, shape, weighted, seed, scale, ignore_index)
    target = target.to(dtype) if target_kind == "probabilities" else target
    return logits.to(dtype).to(device), target.to(device), None if weight is None else weight.to(dtype).to(device)


def forward_backward(fn, logits, target, **options):
    x = logits.detach().clone().requires_grad_()
    loss = fn(x, target, **options)
    # a fixed, non-trivial upstream gradient (also for reduction="none")
    upstream = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype, device=loss.device).reshape(loss.shape)
    loss.backward(upstream)
    return loss.detach(), x.grad


def assert_matches_reference(name, logits, target, weight, dtype, **options):
    expected_loss, expected_grad = forward_backward(F.cross_entropy, logits, target, weight=weight, **options)
    loss, grad = forward_backward(IMPLEMENTATIONS[name], logits, target, weight=weight, **options)
    assert loss.dtype == expected_loss.dtype and loss.shape == expected_loss.shape
    torch.testing.assert_close(loss, expected_loss, equal_nan=True, **TOLERANCE[dtype])
    torch.testing.assert_close(grad, expected_grad, equal_nan=True, **TOLERANCE[dtype])


# --------------------------------------------------------------------------------------------------
# The grid: every combination of input form, target form, weight, reduction and smoothing.


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "shape, target_kind, weighted, reduction, smoothing",
    list(itertools.product(SHAPES, TARGETS, [False, True], REDUCTIONS, SMOOTHING)),
)
def test_grid_matches_f_cross_entropy(name, dtype, device, shape, target_kind, weighted, reduction, smoothing):
    logits, target, weight = make_case(shape, target_kind, weighted, dtype, device)
    assert_matches_reference(name, logits, target, weight, dtype, reduction=reduction, label_smoothing=smoothing)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "target_kind, weighted, reduction, smoothing",
    list(itertools.product(TARGETS, [False, True], REDUCTIONS, [0.0, 0.25])),
)
def test_low_precision_matches_f_cross_entropy(name, dtype, device, target_kind, weighted, reduction, smoothing):
    logits, target, weight = make_case((16, 10), target_kind, weighted, dtype, device)
    assert_matches_reference(name, logits, target, weight, dtype, reduction=reduction, label_smoothing=smoothing)


@settings(max_examples=150, deadline=None)
@given(
    n_extra=st.integers(0, 2),
    batch=st.integers(1, 6),
    n_classes=st.integers(2, 12),
    target_kind=st.sampled_from(TARGETS),
    weighted=st.booleans(),
    reduction=st.sampled_from(REDUCTIONS),
    smoothing=st.floats(0.0, 1.0),
    scale=st.floats(0.01, 50.0),
    ignore_index=st.sampled_from([-100, 0, 1]),
    seed=st.integers(0, 2**31),
    name=st.sampled_from(list(IMPLEMENTATIONS)),
)
def test_random_cases_match_f_cross_entropy(
    n_extra, batch, n_classes, target_kind, weighted, reduction, smoothing, scale, ignore_index, seed, name
):
    shape = (batch, n_classes, *([2] * n_extra))
    if target_kind == "probabilities":
        ignore_index = -100  # PyTorch refuses ignore_index >= 0 with probability targets
    logits, target, weight = make_case(shape, target_kind, weighted, torch.float64, "cpu", seed, scale, ignore_index)
    assert_matches_reference(
        name,
        logits,
        target,
        weight,
        torch.float64,
        reduction=reduction,
        label_smoothing=smoothing,
        ignore_index=ignore_index,
    )


# --------------------------------------------------------------------------------------------------
# The hand-written backward: gradcheck and gradgradcheck in float64.


@pytest.mark.parametrize(
    "target_kind, weighted, reduction, smoothing",
    list(itertools.product(TARGETS, [False, True], REDUCTIONS, [0.0, 0.3])),
)
def test_hand_written_backward_passes_gradcheck(target_kind, weighted, reduction, smoothing):
    logits, target, weight = make_case((5, 4), target_kind, weighted, torch.float64, "cpu")
    logits.requires_grad_()
    probabilities = target_kind == "probabilities"

    def loss(x):
        return ManualCrossEntropyFunction.apply(
            x, target, weight, probabilities, -100, reduction, smoothing, torch.Size([5]), None
        )

    assert torch.autograd.gradcheck(loss, (logits,))
    assert torch.autograd.gradgradcheck(loss, (logits,))


def test_hand_written_backward_keeps_less_memory_than_autograd():
    """Autograd through the manual forward saves (M, C) intermediates; the Function saves only the logits."""
    logits = torch.randn(512, 100, requires_grad=True)
    target = torch.randint(0, 100, (512,))

    def saved_bytes(backward):
        sizes = []

        def pack(tensor):
            if tensor.data_ptr() != logits.data_ptr():  # the caller's logits cost nothing extra
                sizes.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            manual_cross_entropy(logits, target, backward=backward, label_smoothing=0.1)
        return sum(sizes)

    autograd_bytes, manual_bytes = saved_bytes("autograd"), saved_bytes("manual")
    assert autograd_bytes >= 2 * logits.numel() * 4  # at least two (M, C) float32 tensors
    assert manual_bytes < logits.numel() * 4 / 10  # no (M, C) tensor at all: targets and a scalar


# --------------------------------------------------------------------------------------------------
# Edge cases, exactly as PyTorch.


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_all_ignored_mean_is_nan_with_zero_gradient(name, weighted, smoothing):
    logits, _, weight = make_case((4, 5), "index", weighted, torch.float64, "cpu")
    target = torch.full((4,), -100)
    loss, grad = forward_backward(IMPLEMENTATIONS[name], logits, target, weight=weight, label_smoothing=smoothing)
    assert torch.isnan(loss)
    assert torch.equal(grad, torch.zeros_like(grad))
    reference, reference_grad = forward_backward(
        F.cross_entropy, logits, target, weight=weight, label_smoothing=smoothing
    )
    assert torch.isnan(reference) and torch.equal(reference_grad, grad)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_weighted_mean_divides_by_the_target_weights(name):
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([0, 2, -100])
    weight = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    per_position = -F.log_softmax(logits, 1)[[0, 1], [0, 2]] * weight[[0, 2]]
    expected = per_position.sum() / (2.0 + 0.5)  # the ignored third position counts in neither sum
    assert IMPLEMENTATIONS[name](logits, target, weight=weight).item() == pytest.approx(expected.item(), rel=1e-14)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_probability_targets_mean_divides_by_positions_not_weights(name):
    logits, target, weight = make_case((4, 5), "probabilities", True, torch.float64, "cpu")
    total = IMPLEMENTATIONS[name](logits, target, weight=weight, reduction="sum")
    mean = IMPLEMENTATIONS[name](logits, target, weight=weight, reduction="mean")
    assert mean.item() == pytest.approx(total.item() / 4, rel=1e-14)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_one_hot_probabilities_differ_from_indices_with_weights_as_in_pytorch(name):
    logits, target, weight = make_case((6, 5), "index", True, torch.float64, "cpu")
    one_hot = F.one_hot(target, 5).double()
    fn = IMPLEMENTATIONS[name]
    as_index, as_probs = fn(logits, target, weight=weight), fn(logits, one_hot, weight=weight)
    assert as_index.item() == pytest.approx(F.cross_entropy(logits, target, weight=weight).item(), rel=1e-12)
    assert as_probs.item() == pytest.approx(F.cross_entropy(logits, one_hot, weight=weight).item(), rel=1e-12)
    assert abs(as_index.item() - as_probs.item()) > 1e-3  # sum(w_y) vs N in the denominator
    # without weights the two forms agree
    assert fn(logits, target).item() == pytest.approx(fn(logits, one_hot).item(), rel=1e-12)


def _error_case(case):
    logits = torch.randn(4, 3)
    index = torch.tensor([0, 1, 2, 0])
    return {
        "wrong batch": (logits, torch.tensor([0, 1, 2]), {}),
        "class out of range": (logits, torch.tensor([0, 1, 3, 0]), {}),
        "negative class": (logits, torch.tensor([0, -2, 1, 0]), {}),
        "smoothing above 1": (logits, index, {"label_smoothing": 1.5}),
        "weight of wrong size": (logits, index, {"weight": torch.ones(4)}),
        "weight of two dimensions": (logits, index, {"weight": torch.ones(1, 3)}),
        "weight of another dtype": (logits, index, {"weight": torch.ones(3, dtype=torch.float64)}),
        "weight requiring grad, class indices": (logits, index, {"weight": torch.ones(3, requires_grad=True)}),
        "probabilities with ignore_index": (logits, torch.rand(4, 3), {"ignore_index": 1}),
        "integer target of the input's shape": (logits, torch.zeros(4, 3, dtype=torch.long), {}),
        "float target of the index shape": (logits, torch.rand(4), {}),
        "int32 class indices": (logits, index.int(), {}),
        "int8 class indices": (logits, index.to(torch.int8), {}),
        "bool class indices": (logits, index.bool(), {}),
        "spatial size": (torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), {}),
        "scalar input": (torch.tensor(1.0), torch.tensor(0), {}),
        "integer logits": (torch.ones(4, 3, dtype=torch.long), index, {}),
        "bad reduction": (logits, index, {"reduction": "average"}),
    }[case]


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "case",
    [
        "wrong batch",
        "class out of range",
        "negative class",
        "smoothing above 1",
        "weight of wrong size",
        "weight of two dimensions",
        "weight of another dtype",
        "weight requiring grad, class indices",
        "probabilities with ignore_index",
        "integer target of the input's shape",
        "float target of the index shape",
        "int32 class indices",
        "int8 class indices",
        "bool class indices",
        "spatial size",
        "scalar input",
        "integer logits",
        "bad reduction",
    ],
)
def test_invalid_input_raises_pytorchs_exception_type(name, case):
    """Where F.cross_entropy raises, every form raises a LossArgumentError (a DigitsError) that is also an
    instance of the very type PyTorch raised (RuntimeError, ValueError, IndexError, NotImplementedError)."""
    x, target, options = _error_case(case)
    with pytest.raises(Exception) as pytorch:
        F.cross_entropy(x, target, **options)
    with pytest.raises(LossArgumentError) as ours:
        IMPLEMENTATIONS[name](x, target, **options)
    assert isinstance(ours.value, DigitsError)
    assert isinstance(ours.value, type(pytorch.value)), (type(ours.value).__mro__, type(pytorch.value))


# The README's "Deliberate differences": PyTorch gives a value, the project refuses with a clear error.
DELIBERATE_REFUSALS = {
    "negative label_smoothing (PyTorch ignores it)": ({"label_smoothing": -0.1}, LossInputError),
    "non-finite weight (PyTorch returns NaN or ignores it)": (
        {"weight": torch.tensor([1.0, float("nan"), 1.0])},
        LossValueError,
    ),
    "reduction='elementwise_mean' (deprecated alias of 'mean')": ({"reduction": "elementwise_mean"}, LossValueError),
}


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", DELIBERATE_REFUSALS)
def test_deliberate_refusals(name, case):
    options, error = DELIBERATE_REFUSALS[case]
    logits, target = torch.randn(4, 3), torch.tensor([0, 2, 2, 0])  # class 1 unused: PyTorch ignores its NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'elementwise_mean' warns
        assert torch.isfinite(F.cross_entropy(logits, target, **options))
    with pytest.raises(error):
        IMPLEMENTATIONS[name](logits, target, **options)
    module = {"nll": LogSoftmaxNLLLoss, "manual": ManualCrossEntropyLoss}.get(name)
    if module is not None and "weight" not in options:  # the modules refuse it at construction already
        with pytest.raises(error):
            module(**options)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_uint8_targets_with_smoothing_where_pytorch_fails(name):
    """PyTorch 2.14.1 accepts uint8 class indices but its smoothing path gathers with them and raises; every
    form here gives the int64 targets' answer (a deliberate difference, in the README's table)."""
    logits, target, weight = make_case((6, 6), "index", True, torch.float64, "cpu")  # N == C: a mask would fit
    with pytest.raises(RuntimeError, match="gather"):
        F.cross_entropy(logits, target.to(torch.uint8), weight=weight, label_smoothing=0.1)
    expected = F.cross_entropy(logits, target, weight=weight, label_smoothing=0.1)
    value = IMPLEMENTATIONS[name](logits, target.to(torch.uint8), weight=weight, label_smoothing=0.1)
    torch.testing.assert_close(value, expected, **TOLERANCE[torch.float64])


def test_modules_take_nn_cross_entropy_loss_arguments():
    options = dict(weight=torch.tensor([1.0, 2.0, 0.5]), ignore_index=1, reduction="sum", label_smoothing=0.1)
    logits, target = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 2])
    expected = nn.CrossEntropyLoss(**options)(logits, target)
    for module in (
        LogSoftmaxNLLLoss(**options),
        ManualCrossEntropyLoss(**options),
        ManualCrossEntropyLoss(**options, backward="manual"),
    ):
        torch.testing.assert_close(module(logits, target), expected, **TOLERANCE[torch.float32])
    with pytest.raises(ValueError, match="backward must be"):
        ManualCrossEntropyLoss(backward="symbolic")


# --------------------------------------------------------------------------------------------------
# The worked examples (README, "From logits to a loss"): float32, all three equal to F.cross_entropy.

WORKED_EXAMPLES = [
    ([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [3.0, 2.0, 1.0]], [0, 1, 2]),
    ([[1.2, 0.5, -1.0], [0.3, 1.8, -0.5]], [0, 1]),
    ([[1.2, -0.5, 0.8, 2.1]], [2]),
]


@pytest.mark.parametrize("logits, target", WORKED_EXAMPLES)
def test_worked_examples(logits, target):
    # By hand, in Python floats: softmax, log, pick the target, negate, average.
    by_hand = []
    for row, t in zip(logits, target):
        exps = [math.exp(v) for v in row]
        probability = exps[t] / sum(exps)
        by_hand.append(-math.log(probability))
    expected = sum(by_hand) / len(by_hand)
    x, y = torch.tensor(logits), torch.tensor(target)
    reference = F.cross_entropy(x, y)
    assert reference.item() == pytest.approx(expected, rel=1e-6)
    for module in (nn.CrossEntropyLoss(), LogSoftmaxNLLLoss(), ManualCrossEntropyLoss()):
        value = module(x, y)
        assert value.dtype == torch.float32
        assert abs(value.item() - reference.item()) <= 2 * torch.finfo(torch.float32).eps * reference.item()


def test_worked_example_numbers():
    """The numbers the README prints for the three examples."""
    values = [F.cross_entropy(torch.tensor(x), torch.tensor(t)).item() for x, t in WORKED_EXAMPLES]
    assert [round(v, 4) for v in values] == [2.4076, 0.3774, 1.8615]
    assert values[0] == pytest.approx(math.log(1 + math.e + math.e**2), rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Low precision, autocast, and the naive form's failures.


AUTOCAST_DTYPES = {"cpu": [torch.bfloat16], "cuda": [torch.float16, torch.bfloat16]}


@pytest.mark.parametrize("target_kind", ["indices", "probabilities"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_autocast_computes_like_pytorch(name, device, target_kind):
    """On the CPU autocast upcasts the logits before cross_entropy; on CUDA PyTorch rounds the
    log-probabilities to the autocast dtype first (losses.autocast_log_probs_dtype): every form matches both."""
    torch.manual_seed(0)
    for dtype in AUTOCAST_DTYPES[device]:
        layer = nn.Linear(20, 10).to(device)
        x = torch.randn(32, 20, device=device) * 4
        target = torch.randint(0, 10, (32,), device=device)
        if target_kind == "probabilities":
            target = torch.rand(32, 10, device=device).softmax(-1)
        weight = torch.rand(10, device=device) + 0.5
        with torch.autocast(device, dtype=dtype):
            logits = layer(x)
            assert logits.dtype == dtype
            expected = F.cross_entropy(logits, target, weight=weight, label_smoothing=0.1)
            value = IMPLEMENTATIONS[name](logits, target, weight=weight, label_smoothing=0.1)
        in_float32 = F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=0.1)
        assert expected.dtype == value.dtype == torch.float32
        torch.testing.assert_close(value, expected, **TOLERANCE[torch.float32])
        if device == "cuda":  # the rounding is real: leaving it out would miss PyTorch by far more
            assert (in_float32 - expected).abs() > 20 * (value - expected).abs()
        else:
            torch.testing.assert_close(expected, in_float32, **TOLERANCE[torch.float32])


@pytest.mark.parametrize("name", ["manual", "manual_backward"])
def test_manual_form_keeps_float16_mean_finite_over_many_targets(name):
    """A float16 sum of 40,000 losses of ~2.7 is ~1e5 > 65504: the manual form accumulates in float32."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(40_000, 10, generator=generator).half()
    target = torch.randint(0, 10, (40_000,), generator=generator)
    exact = F.cross_entropy(logits.double(), target).item()
    value = IMPLEMENTATIONS[name](logits, target)
    assert value.dtype == torch.float16
    assert value.item() == pytest.approx(exact, rel=1e-3)


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 100.0), (torch.float16, 12.0), (torch.bfloat16, 100.0)])
def test_naive_form_overflows_where_the_stable_forms_do_not(dtype, scale):
    generator = torch.Generator().manual_seed(1)
    logits = (torch.randn(64, 10, generator=generator) * scale).to(dtype)
    target = torch.randint(0, 10, (64,), generator=generator)
    naive = NaiveCrossEntropyLoss()(logits, target)
    assert not torch.isfinite(naive)
    exact = F.cross_entropy(logits.double(), target).item()
    for name in IMPLEMENTATIONS:
        value = IMPLEMENTATIONS[name](logits, target)
        assert torch.isfinite(value)
        assert value.item() == pytest.approx(exact, rel=TOLERANCE[dtype]["rtol"])


def test_naive_form_is_right_for_small_logits():
    logits, target, _ = make_case((16, 10), "index", False, torch.float64, "cpu", scale=1.0)
    expected = F.cross_entropy(logits, target)
    assert NaiveCrossEntropyLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-12)


def test_softmax_before_the_loss_has_a_floor():
    """Probabilities fed as logits: the best case (1 for the target, 0 elsewhere) costs log(1 + 9/e)."""
    perfect = torch.eye(10)
    floor = F.cross_entropy(perfect, torch.arange(10)).item()
    assert floor == pytest.approx(softmax_floor(10), rel=1e-6)
    assert floor == pytest.approx(1.4611, abs=1e-4)


# --------------------------------------------------------------------------------------------------
# GPU against CPU.


@CUDA
@pytest.mark.parametrize("name", ["cross_entropy", *IMPLEMENTATIONS])
@pytest.mark.parametrize(
    "target_kind, weighted, smoothing", list(itertools.product(TARGETS, [False, True], [0.0, 0.25]))
)
def test_cuda_matches_cpu(name, target_kind, weighted, smoothing):
    fn = F.cross_entropy if name == "cross_entropy" else IMPLEMENTATIONS[name]
    logits, target, weight = make_case((64, 10, 3), target_kind, weighted, torch.float32, "cpu")
    options = dict(label_smoothing=smoothing)
    cpu_loss, cpu_grad = forward_backward(fn, logits, target, weight=weight, **options)
    cuda_loss, cuda_grad = forward_backward(
        fn, logits.cuda(), target.cuda(), weight=None if weight is None else weight.cuda(), **options
    )
    torch.testing.assert_close(cuda_loss.cpu(), cpu_loss, **TOLERANCE[torch.float32])
    torch.testing.assert_close(cuda_grad.cpu(), cpu_grad, **TOLERANCE[torch.float32])


# The lesson's five lines (digits.losses.cross_entropy_reference) against PyTorch and the full-contract forms.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])  # 1e4: exp(x) alone would overflow; the max shift keeps it finite
@pytest.mark.parametrize("shape", [(1, 2), (7, 10), (64, 3)])
def test_the_reference_function_is_cross_entropy_forward_and_backward(shape, scale, dtype):
    logits, target, _ = make_inputs("index", shape, False, seed=shape[0], scale=scale)
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-6, "atol": 2e-6}
    results = {}
    for name, fn in {
        "reference": cross_entropy_reference,
        "F.cross_entropy": F.cross_entropy,
        **{name: IMPLEMENTATIONS[name] for name in ("nll", "manual", "manual_backward")},
    }.items():
        x = logits.to(dtype).requires_grad_()
        loss = fn(x, target)
        loss.backward()
        results[name] = (loss.detach(), x.grad)
    loss, grad = results.pop("reference")
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    for name, (other_loss, other_grad) in results.items():
        torch.testing.assert_close(loss, other_loss, **tolerance, msg=lambda m, name=name: f"{name}: {m}")
        torch.testing.assert_close(grad, other_grad, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


def test_the_reference_function_on_the_worked_example():
    """The README's example: each target on its row's smallest logit, so every row costs log(1 + e + e^2)."""
    logits = torch.tensor([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [3.0, 2.0, 1.0]], dtype=torch.float64)
    expected = math.log(1 + math.e + math.e**2)
    assert cross_entropy_reference(logits, torch.tensor([0, 1, 2])).item() == pytest.approx(expected, rel=1e-15)
