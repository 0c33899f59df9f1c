"""Three implementations of one function: cross-entropy on logits.

    loss_i = -sum_c a_ic * log_softmax(x_i)_c

where ``a_i`` is what the target says about position ``i``:

* class index ``y_i``, no smoothing:      a_ic = w_{y_i} * [c == y_i]
* class index with label smoothing eps:   a_ic = (1 - eps) * w_{y_i} * [c == y_i] + eps / C * w_c
* class probabilities ``q_i``:            a_ic = ((1 - eps) * q_ic + eps / C) * w_c
* ``ignore_index`` positions:             a_ic = 0

and ``reduction="mean"`` divides the sum by ``D``: the sum of ``w_{y_i}`` over non-ignored
positions for class indices (their count without weights; NaN when all are ignored), the number of
positions for probabilities. That is exactly ``F.cross_entropy``'s definition (aten LossNLL.cpp).

``CrossEntropyLoss``         PyTorch's fused kernel (re-exported for the config group).
``LogSoftmaxNLLLoss``        ``F.log_softmax`` + ``nn.NLLLoss``; smoothing and probability targets built
                             on top of the log-probabilities the way PyTorch defines them.
``ManualCrossEntropyLoss``   tensor primitives only (max, exp, sum, log, gather, arithmetic), with the
                             gradient from autograd or from the hand-written backward in
                             ``ManualCrossEntropyFunction`` (grad = softmax * sum(a) - a).
``NaiveCrossEntropyLoss``    log(exp(x) / sum(exp(x))): the textbook formula that overflows. For teaching.

Shapes: input (C), (N, C) or (N, C, d1, ..., dk); target () / (N) / (N, d1, ..., dk) class indices, or
class probabilities of the input's shape. ``reduction="none"`` returns the target's index shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS = ("none", "mean", "sum")
LOW_PRECISION = (torch.float16, torch.bfloat16)

CrossEntropyLoss = nn.CrossEntropyLoss


# --------------------------------------------------------------------------------------------------
# Argument checks shared by the hand-built forms (PyTorch's own messages, where it has them).


def check_arguments(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> bool:
    """Validate like ``F.cross_entropy``; return True when ``target`` holds class probabilities."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if input.dim() == 0:
        raise ValueError("input must have a class dimension: shape (C), (N, C) or (N, C, d1, ..., dk), got a scalar")
    if not input.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor of logits, got {input.dtype}")
    n_classes = input.shape[0 if input.dim() == 1 else 1]
    if weight is not None:
        if weight.dim() != 1 or weight.numel() != n_classes:
            raise ValueError(
                f"weight must be a 1D tensor with one value per class ({n_classes}), got shape {tuple(weight.shape)}"
            )
        if not torch.isfinite(weight).all():
            raise ValueError(f"weight must be finite, got {weight.tolist()}")
    if input.shape == target.shape and input.dim() > 0 and target.is_floating_point():
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        return True
    if target.is_floating_point():
        raise ValueError(
            f"target of class probabilities must have the input's shape {tuple(input.shape)}, got {tuple(target.shape)};"
            " class-index targets must be integers"
        )
    expected = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size([])
    if target.shape != expected:
        raise ValueError(
            f"Expected target of shape {tuple(expected)} (class indices) or {tuple(input.shape)} (probabilities)"
            f" for input of shape {tuple(input.shape)}, got {tuple(target.shape)}"
        )
    valid = target[target != ignore_index]
    if valid.numel() and (valid.min() < 0 or valid.max() >= n_classes):
        bad = valid[(valid < 0) | (valid >= n_classes)][0].item()
        raise IndexError(f"Target {bad} is out of bounds: class indices must lie in [0, {n_classes - 1}]")
    return False


def _flatten(input: Tensor, target: Tensor, probabilities: bool) -> tuple[Tensor, Tensor]:
    """Move the class dimension last and flatten the rest: (M, C) logits, (M) or (M, C) targets."""
    n_classes = input.shape[0 if input.dim() == 1 else 1]
    x = input.unsqueeze(0) if input.dim() == 1 else input.movedim(1, -1)
    x = x.reshape(-1, n_classes)
    if probabilities:
        t = target.unsqueeze(0) if target.dim() == 1 else target.movedim(1, -1)
        return x, t.reshape(-1, n_classes)
    return x, target.reshape(-1)


def _index_shape(input: Tensor) -> torch.Size:
    """The shape of ``reduction="none"``'s result: the input without its class dimension."""
    return torch.Size([]) if input.dim() == 1 else input.shape[:1] + input.shape[2:]


def _reduce(per_position: Tensor, denominator: Tensor, reduction: str, shape: torch.Size) -> Tensor:
    if reduction == "none":
        return per_position.reshape(shape)
    total = per_position.sum()
    return total if reduction == "sum" else total / denominator


def _from_log_probs(
    log_probs: Tensor,
    target: Tensor,
    probabilities: bool,
    weight: Tensor | None,
    ignore_index: int,
    label_smoothing: float,
) -> tuple[Tensor, Tensor]:
    """Per-position loss -sum_c a_ic * log_probs_ic of flat (M, C) log-probabilities, and ``D``."""
    n_positions, n_classes = log_probs.shape
    if probabilities:
        a = target * (1.0 - label_smoothing) + label_smoothing / n_classes if label_smoothing > 0 else target
        if weight is not None:
            a = a * weight
        return -(a * log_probs).sum(-1), log_probs.new_tensor(float(n_positions))
    ignored = target == ignore_index
    safe_target = target.masked_fill(ignored, 0)
    target_weight = weight[safe_target] if weight is not None else torch.ones_like(log_probs[:, 0])
    target_weight = target_weight.masked_fill(ignored, 0.0)
    picked = log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    loss = -target_weight * picked
    if label_smoothing > 0:
        smooth = -(log_probs * weight).sum(-1) if weight is not None else -log_probs.sum(-1)
        loss = (1.0 - label_smoothing) * loss + (label_smoothing / n_classes) * smooth
    # where(), not a product: ignored positions must get a zero gradient even when D = 0 makes
    # the upstream gradient infinite (an all-ignored batch: NaN loss, zero gradient, as in PyTorch).
    return loss.masked_fill(ignored, 0.0), target_weight.sum()


# --------------------------------------------------------------------------------------------------
# log-softmax from primitives: the stable and the naive way.


def stable_log_softmax(x: Tensor) -> Tensor:
    """log_softmax over the last dim as x - max - log(sum(exp(x - max))): exp never sees a positive number."""
    shifted = x - x.amax(dim=-1, keepdim=True).detach()
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def naive_log_softmax(x: Tensor) -> Tensor:
    """log(exp(x) / sum(exp(x))): exp overflows to inf (float32 past ~88, float16 past ~11) and small
    probabilities underflow to 0, so the log gives NaN or -inf. Kept only to show why the stable form exists."""
    e = x.exp()
    return (e / e.sum(dim=-1, keepdim=True)).log()


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float16/bfloat16 are computed in float32, like PyTorch's own kernels accumulate."""
    return torch.float32 if x.dtype in LOW_PRECISION else x.dtype


def _result_dtype(x: Tensor) -> torch.dtype:
    """Under autocast, cross-entropy is a float32 op (autocast's fp32 list); otherwise the input's dtype."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.float32
    return x.dtype


# --------------------------------------------------------------------------------------------------
# The hand-written backward.


class ManualCrossEntropyFunction(torch.autograd.Function):
    """Cross-entropy on flat (M, C) logits with the gradient written out:

        d loss_i / d x_ic = s_i * (softmax(x_i)_c * sum_k a_ik - a_ic)

    where ``s_i`` is the upstream gradient for position i (divided by D for "mean"). Between forward
    and backward it keeps the logits (which the caller holds anyway) and one log-sum-exp per
    position, not the (M, C) intermediates autograd would keep. The backward works in place on a
    single (M, C) buffer; when a second derivative is asked for (create_graph, gradgradcheck) it
    recomputes the same formula out of place from differentiable ops instead.
    """

    @staticmethod
    def forward(ctx, x, target, weight, probabilities, ignore_index, reduction, label_smoothing, shape):
        m = x.amax(dim=-1, keepdim=True)
        lse = m + (x - m).exp_().sum(dim=-1, keepdim=True).log_()
        loss, denominator = _from_log_probs(x - lse, target, probabilities, weight, ignore_index, label_smoothing)
        ctx.save_for_backward(x, target, weight, denominator, lse)
        ctx.options = (probabilities, ignore_index, reduction, label_smoothing)
        return _reduce(loss, denominator, reduction, shape)

    @staticmethod
    def backward(ctx, grad_output):
        x, target, weight, denominator, lse = ctx.saved_tensors
        probabilities, ignore_index, reduction, label_smoothing = ctx.options
        n_positions, n_classes = x.shape
        if reduction == "none":
            scale = grad_output.reshape(-1)
        elif reduction == "sum":
            scale = grad_output.expand(n_positions)
        else:
            scale = (grad_output / denominator).expand(n_positions)
        # Only a double backward runs with grad enabled: then nothing may be modified in place.
        differentiable = torch.is_grad_enabled()
        if differentiable:
            m = x.amax(dim=-1, keepdim=True).detach()
            softmax = (x - (m + (x - m).exp().sum(dim=-1, keepdim=True).log())).exp()
        else:
            softmax = (x - lse).exp_()
        smooth = label_smoothing / n_classes
        if probabilities:
            a = target * (1.0 - label_smoothing) + smooth if label_smoothing > 0 else target
            a = a * weight if weight is not None else a
            row_sum = a.sum(-1)
        else:
            # Class indices: a = (1 - eps) * w_y * onehot(y) + eps / C * w, never built densely.
            ignored = target == ignore_index
            safe_target = target.masked_fill(ignored, 0)
            # all-ignored "mean": D = 0 makes scale infinite; ignored rows must get 0, not inf * 0.
            scale = scale.masked_fill(ignored, 0.0)
            target_weight = weight[safe_target] if weight is not None else torch.ones_like(scale)
            row_sum = (1.0 - label_smoothing) * target_weight
            if label_smoothing > 0:
                row_sum = row_sum + smooth * (weight.sum() if weight is not None else n_classes)
        factor = (scale * row_sum).unsqueeze(1)
        grad = softmax * factor if differentiable else softmax.mul_(factor)
        if probabilities:
            subtrahend = a * scale.unsqueeze(1)
            return (grad - subtrahend if differentiable else grad.sub_(subtrahend)), *([None] * 7)
        if label_smoothing > 0:
            column = weight if weight is not None else torch.ones(n_classes, dtype=x.dtype, device=x.device)
            if differentiable:
                grad = grad - (scale * smooth).unsqueeze(1) * column
            else:
                grad.addr_(scale * smooth, column, alpha=-1.0)
        picked = (-(1.0 - label_smoothing) * target_weight * scale).unsqueeze(1)
        index = safe_target.unsqueeze(1)
        grad = grad.scatter_add(1, index, picked) if differentiable else grad.scatter_add_(1, index, picked)
        return grad, *([None] * 7)


# --------------------------------------------------------------------------------------------------
# Functional forms.


def nll_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """``F.log_softmax`` then ``F.nll_loss``, plus smoothing/probability terms from the log-probabilities."""
    probabilities = check_arguments(input, target, weight, ignore_index, reduction, label_smoothing)
    if torch.is_autocast_enabled(input.device.type):
        input = input.float()  # cross_entropy is on autocast's float32 list; log_softmax is not (on the CPU)
    class_dim = 0 if input.dim() == 1 else 1
    log_probs = F.log_softmax(input, dim=class_dim)
    if probabilities:
        x, t = _flatten(log_probs, target, probabilities=True)
        loss, denominator = _from_log_probs(x, t, True, weight, ignore_index, label_smoothing)
        return _reduce(loss, denominator, reduction, _index_shape(input))
    nll = F.nll_loss(log_probs, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0:
        return nll
    # The smoothing term: the mean over classes of -log p (weighted), reduced like the NLL term.
    shape = [1] * log_probs.dim()
    shape[class_dim] = -1
    smooth = -(log_probs * weight.view(shape)).sum(class_dim) if weight is not None else -log_probs.sum(class_dim)
    ignored = target == ignore_index
    smooth = smooth.masked_fill(ignored, 0.0)
    if reduction == "none":
        reduced = smooth
    elif reduction == "sum":
        reduced = smooth.sum()
    elif weight is not None:
        reduced = smooth.sum() / weight[target[~ignored]].sum()
    else:
        reduced = smooth.sum() / (~ignored).sum()
    n_classes = input.shape[class_dim]
    return (1.0 - label_smoothing) * nll + reduced * (label_smoothing / n_classes)


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
    """Cross-entropy from tensor primitives; ``backward="manual"`` uses the hand-written gradient."""
    if backward not in ("autograd", "manual"):
        raise ValueError(f"backward must be 'autograd' or 'manual', got {backward!r}")
    probabilities = check_arguments(input, target, weight, ignore_index, reduction, label_smoothing)
    # The naive form gets no float32 safety net either: it shows what the input's own dtype does.
    compute_dtype = input.dtype if naive else _compute_dtype(input)
    result_dtype = _result_dtype(input)
    x, t = _flatten(input, target, probabilities)
    with torch.autocast(input.device.type, enabled=False):
        x = x.to(compute_dtype)
        t = t.to(compute_dtype) if probabilities else t
        w = weight.to(compute_dtype) if weight is not None else None
        shape = _index_shape(input)
        if backward == "manual" and not naive:
            out = ManualCrossEntropyFunction.apply(
                x, t, w, probabilities, ignore_index, reduction, label_smoothing, shape
            )
        else:
            log_probs = naive_log_softmax(x) if naive else stable_log_softmax(x)
            loss, denominator = _from_log_probs(log_probs, t, probabilities, w, ignore_index, label_smoothing)
            out = _reduce(loss, denominator, reduction, shape)
    return out.to(result_dtype)


# --------------------------------------------------------------------------------------------------
# Modules with nn.CrossEntropyLoss's constructor, for the `loss` config group.


class _CrossEntropyBase(nn.Module):
    def __init__(
        self,
        weight: Tensor | list[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"

    def _options(self, input: Tensor) -> dict:
        weight = None if self.weight is None else self.weight.to(input.dtype)
        return dict(weight=weight, ignore_index=self.ignore_index, reduction=self.reduction,
                    label_smoothing=self.label_smoothing)


class LogSoftmaxNLLLoss(_CrossEntropyBase):
    """``nn.CrossEntropyLoss`` rebuilt as ``F.log_softmax`` + ``nn.NLLLoss``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return nll_cross_entropy(input, target, **self._options(input))


class ManualCrossEntropyLoss(_CrossEntropyBase):
    """``nn.CrossEntropyLoss`` from tensor primitives; ``backward`` is "autograd" or "manual"."""

    def __init__(self, *args, backward: str = "autograd", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if backward not in ("autograd", "manual"):
            raise ValueError(f"backward must be 'autograd' or 'manual', got {backward!r}")
        self.backward = backward

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backward={self.backward!r}"

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return manual_cross_entropy(input, target, backward=self.backward, **self._options(input))


class NaiveCrossEntropyLoss(_CrossEntropyBase):
    """The overflow-prone textbook formula: never train with it on purpose."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return manual_cross_entropy(input, target, naive=True, **self._options(input))


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
