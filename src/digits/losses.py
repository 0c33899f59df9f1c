"""Cross-entropy on logits, three ways, and first the lesson: ``cross_entropy_reference``, five lines.

For (N, C) logits ``x`` and class indices ``y``:

    log_softmax(x_i)_c = (x_ic - m_i) - log(sum_k exp(x_ik - m_i)),   m_i = max_k x_ik
    loss = mean_i( -log_softmax(x_i)_{y_i} )

Subtracting the row's maximum changes nothing mathematically and keeps ``exp`` from overflowing. That
function is ``F.cross_entropy(x, y)`` with its defaults; the forms below add every option it has.

The full contract, which every form below meets:

    loss_i = -sum_c a_ic * log_softmax(x_i)_c

where ``a_i`` is what the target says about position ``i``:

* class index ``y_i``, no smoothing:      a_ic = w_{y_i} * [c == y_i]
* class index with label smoothing eps:   a_ic = (1 - eps) * w_{y_i} * [c == y_i] + eps / C * w_c
* class probabilities ``q_i``:            a_ic = ((1 - eps) * q_ic + eps / C) * w_c
* ``ignore_index`` positions:             a_ic = 0

and ``reduction="mean"`` divides the sum by ``D``: the sum of ``w_{y_i}`` over non-ignored
positions for class indices (their count without weights; NaN when D = 0: all ignored, or all on
zero-weight classes), the number of positions for probabilities (NaN for an empty input). That is exactly
``F.cross_entropy``'s definition (aten LossNLL.cpp: nll_loss and cross_entropy_loss_prob_target).
The forms (docs/losses.md compares them): ``CrossEntropyLoss`` (PyTorch's), ``LogSoftmaxNLLLoss``,
``ManualCrossEntropyLoss`` (primitives only, autograd or hand-written derivatives) and ``NaiveCrossEntropyLoss``.

Shapes: input (C), (N, C) or (N, C, d1, ..., dk); target () / (N) / (N, d1, ..., dk) class indices, or
class probabilities of the input's shape. ``reduction="none"`` returns the target's index shape.
Dtypes as in PyTorch: class indices int64 or uint8; with class indices the weight has the input's dtype;
with probabilities the result is promoted with the target's and the weight's dtype. Refused input raises a
``LossArgumentError`` that is also of the built-in type ``F.cross_entropy`` raises for it.

``a`` and ``D`` are built in ``digits.loss_weights``, the derivatives in ``digits.loss_backward``, the checks
and dtype rules in ``digits.loss_checks`` (every public name is importable from here too).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from digits.loss_backward import ManualCrossEntropyFunction, manual_function, row_max
from digits.loss_checks import (
    LOW_PRECISION,
    LossArgumentError,
    LossInputError,
    LossValueError,
    TargetOutOfBoundsError,
    UnsupportedInputDtypeError,
    autocast_log_probs_dtype,
    check_arguments,
    check_options,
    result_dtype,
)
from digits.loss_weights import TargetWeights, reduce


def cross_entropy_reference(logits: Tensor, target: Tensor) -> Tensor:
    """The lesson: the mean cross-entropy of (N, C) ``logits`` and N class indices ``target``, from max, exp,
    sum, log and gather. Equal to ``F.cross_entropy(logits, target)`` (tests/test_losses.py)."""
    shifted = logits - logits.max(dim=1, keepdim=True).values  # exp never sees a positive number
    log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()  # log-softmax
    nll = -log_probs.gather(1, target[:, None])  # minus the log-probability of the true class
    return nll.mean()


__all__ = [
    "cross_entropy_reference",
    "CrossEntropyLoss",
    "LogSoftmaxNLLLoss",
    "LossArgumentError",
    "LossInputError",
    "LossValueError",
    "ManualCrossEntropyFunction",
    "ManualCrossEntropyLoss",
    "NaiveCrossEntropyLoss",
    "SoftmaxFirstCrossEntropyLoss",
    "TargetOutOfBoundsError",
    "UnsupportedInputDtypeError",
    "check_arguments",
    "check_options",
    "manual_cross_entropy",
    "naive_log_softmax",
    "nll_cross_entropy",
    "softmax_floor",
    "stable_log_softmax",
]

CrossEntropyLoss = nn.CrossEntropyLoss


def _flatten(input: Tensor, target: Tensor, probabilities: bool) -> tuple[Tensor, Tensor]:
    """Move the class dimension last and flatten the rest: (M, C) logits, (M) or (M, C) targets."""
    n_classes = input.shape[0 if input.dim() == 1 else 1]
    n_positions = _index_shape(input).numel()  # explicit: reshape(-1, 0) cannot infer M when C = 0
    x = input.unsqueeze(0) if input.dim() == 1 else input.movedim(1, -1)
    x = x.reshape(n_positions, n_classes)
    if probabilities:
        t = target.unsqueeze(0) if target.dim() == 1 else target.movedim(1, -1)
        return x, t.reshape(n_positions, n_classes)
    return x, target.reshape(n_positions)


def _index_shape(input: Tensor) -> torch.Size:
    """The shape of ``reduction="none"``'s result: the input without its class dimension."""
    return torch.Size([]) if input.dim() == 1 else input.shape[:1] + input.shape[2:]


def stable_log_softmax(x: Tensor) -> Tensor:
    """log_softmax over the last dim as (x - max) - log(sum(exp(x - max))): exp never sees a positive
    number, and the log-sum (>= 0, small) is subtracted from the shifted logits, not added to the max
    first, which would round it away for large logits."""
    shifted = x - row_max(x)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def naive_log_softmax(x: Tensor) -> Tensor:
    """log(exp(x) / sum(exp(x))): exp overflows to inf (float32 past ~88, float16 past ~11) and small
    probabilities underflow to 0, so the log gives NaN or -inf. Kept only to show why the stable form exists."""
    e = x.exp()
    return (e / e.sum(dim=-1, keepdim=True)).log()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16/bfloat16 are computed in float32, like PyTorch's own kernels accumulate."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def nll_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """``F.log_softmax`` then ``F.nll_loss``; the smoothing term and class probabilities as
    -sum(a * log_softmax) with the target weights of ``digits.loss_weights``."""
    probabilities, target = check_arguments(input, target, weight, ignore_index, reduction, label_smoothing)
    class_dim = 0 if input.dim() == 1 else 1
    round_to = autocast_log_probs_dtype(input)
    if round_to is not None:
        # as aten's cross_entropy on CUDA: log_softmax in the input's dtype, the rest in float32
        log_probs = F.log_softmax(input, dim=class_dim, dtype=round_to).float()
    elif torch.is_autocast_enabled(input.device.type):
        # on the CPU cross_entropy is on autocast's float32 list (log_softmax is not): the input in float32
        log_probs = F.log_softmax(input.float(), dim=class_dim)
    else:
        log_probs = F.log_softmax(input, dim=class_dim)
    if torch.is_autocast_enabled(input.device.type):  # the other arguments in float32
        target = target.float() if probabilities else target
        weight = None if weight is None else weight.float()
    if probabilities:  # a = q' * w, in aten's order: every product summed at once (bfloat16 shows the order)
        weights = TargetWeights(log_probs, target, True, weight, ignore_index, label_smoothing, class_dim)
        products = weights.products(log_probs)
        if reduction == "none":
            return -products.sum(class_dim)
        total = -products.sum()
        if reduction == "sum":
            return total
        positions = weights.denominator_as_aten()
        return total / positions if positions else total * torch.nan  # an empty mean is NaN, as in PyTorch
    nll = F.nll_loss(log_probs, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0:
        return nll
    # a = (1 - eps) * w_y [c == y] + eps / C * w: NLLLoss is the first term, the smoothing term the second,
    # reduced like the first (over the same D, summed as aten sums it).
    weights = TargetWeights(log_probs, target, False, weight, ignore_index, label_smoothing, class_dim)
    smooth = weights.smoothing_loss(log_probs)
    if reduction == "sum":
        smooth = smooth.sum()
    elif reduction == "mean":
        smooth = smooth.sum() / weights.denominator_as_aten()
    return (1.0 - label_smoothing) * nll + smooth * (label_smoothing / weights.n_classes)


def manual_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    backward: str = "autograd",
    naive: bool = False,
) -> Tensor:
    """Cross-entropy from tensor primitives; ``backward="manual"`` uses the hand-written derivatives."""
    probabilities, target = check_arguments(input, target, weight, ignore_index, reduction, label_smoothing, backward)
    dtype = result_dtype(input, target, weight, probabilities)
    # The naive form gets no float32 safety net either: it shows what the input's own dtype does.
    compute_dtype = dtype if naive else _compute_dtype(dtype)
    round_to = None if naive else autocast_log_probs_dtype(input)
    x, t = _flatten(input, target, probabilities)
    with torch.autocast(input.device.type, enabled=False):
        x = x.to(compute_dtype)
        t = t.to(compute_dtype) if probabilities else t
        w = weight.to(compute_dtype) if weight is not None else None
        shape = _index_shape(input)
        if backward == "manual" and not naive:
            out = manual_function(x, t, w, probabilities, ignore_index, reduction, label_smoothing, shape, round_to)
        else:
            log_probs = naive_log_softmax(x) if naive else stable_log_softmax(x)
            if round_to is not None:  # CUDA autocast's rounding (autocast_log_probs_dtype)
                log_probs = log_probs.to(round_to).to(compute_dtype)
            weights = TargetWeights(log_probs, t, probabilities, w, ignore_index, label_smoothing)
            out = reduce(weights.loss(log_probs), weights.denominator, reduction, shape)
    return out.to(dtype)


class _CrossEntropyBase(nn.Module):
    """nn.CrossEntropyLoss's constructor, for the `loss` config group's modules."""

    def __init__(
        self,
        weight: Tensor | list[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        check_options(reduction, label_smoothing)
        # The weight keeps its dtype, as in nn.CrossEntropyLoss (a list becomes the default float dtype);
        # the forward checks it against the input's like F.cross_entropy does, it never casts it.
        if weight is not None and not isinstance(weight, Tensor):
            weight = torch.tensor(weight, dtype=torch.get_default_dtype())
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"

    def _options(self) -> dict:
        return {name: getattr(self, name) for name in ("weight", "ignore_index", "reduction", "label_smoothing")}


class LogSoftmaxNLLLoss(_CrossEntropyBase):
    """``nn.CrossEntropyLoss`` rebuilt as ``F.log_softmax`` + ``nn.NLLLoss``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return nll_cross_entropy(input, target, **self._options())


class ManualCrossEntropyLoss(_CrossEntropyBase):
    """``nn.CrossEntropyLoss`` from tensor primitives; ``backward`` is "autograd" or "manual"."""

    def __init__(self, *args, backward: str = "autograd", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        check_options(self.reduction, self.label_smoothing, backward)
        self.backward = backward

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backward={self.backward!r}"

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return manual_cross_entropy(input, target, backward=self.backward, **self._options())


class NaiveCrossEntropyLoss(_CrossEntropyBase):
    """The overflow-prone textbook formula: never train with it on purpose."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return manual_cross_entropy(input, target, naive=True, **self._options())


class SoftmaxFirstCrossEntropyLoss(nn.CrossEntropyLoss):
    """The classic mistake, kept to show its cost: softmax on the logits, then nn.CrossEntropyLoss,
    which applies log_softmax again. The loss cannot fall below ``softmax_floor(C)`` and its
    gradients shrink as the probabilities saturate."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        class_dim = 0 if input.dim() == 1 else 1
        shifted = input - input.amax(dim=class_dim, keepdim=True)
        probabilities = shifted.exp() / shifted.exp().sum(dim=class_dim, keepdim=True)
        return super().forward(probabilities, target)


# The smallest loss a model can reach if softmax is applied before nn.CrossEntropyLoss:
# the "logits" are then probabilities in [0, 1], so the best case is 1 for the target, 0 elsewhere.
def softmax_floor(n_classes: int) -> float:
    """-log(e / (e + C - 1)) = log(1 + (C - 1) / e): about 1.461 for 10 classes."""
    return math.log(1.0 + (n_classes - 1) / math.e)
