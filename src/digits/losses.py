"""Three implementations of one function: cross-entropy on logits.

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

``CrossEntropyLoss``         PyTorch's fused kernel (re-exported for the config group).
``LogSoftmaxNLLLoss``        ``F.log_softmax`` + ``nn.NLLLoss``; smoothing and probability targets built
                             on top of the log-probabilities the way PyTorch defines them.
``ManualCrossEntropyLoss``   tensor primitives only (max, exp, sum, log, gather, arithmetic), with the
                             gradient from autograd or from the hand-written derivatives in
                             ``ManualCrossEntropyFunction`` (grad = softmax * sum(a) - a; target and
                             weight gradients for probabilities; jvp for forward mode).
``NaiveCrossEntropyLoss``    log(exp(x) / sum(exp(x))): the textbook formula that overflows. For teaching.

Shapes: input (C), (N, C) or (N, C, d1, ..., dk); target () / (N) / (N, d1, ..., dk) class indices, or
class probabilities of the input's shape. ``reduction="none"`` returns the target's index shape.
Dtypes as in PyTorch: class indices int64 or uint8; with class indices the weight has the input's dtype;
with probabilities the result is promoted with the target's and the weight's dtype. Refused input raises a
``LossArgumentError`` that is also of the built-in type ``F.cross_entropy`` raises for it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from digits.errors import DigitsError

REDUCTIONS = ("none", "mean", "sum")
LOW_PRECISION = (torch.float16, torch.bfloat16)

CrossEntropyLoss = nn.CrossEntropyLoss


# --------------------------------------------------------------------------------------------------
# Errors: each derives from the built-in type F.cross_entropy raises for the same input, so code that
# catches PyTorch's errors catches ours.


class LossArgumentError(DigitsError):
    """An input or option the loss refuses."""


class LossInputError(LossArgumentError, RuntimeError):
    """Where F.cross_entropy raises RuntimeError: shapes, target dtype, weight dtype or size, smoothing."""


class LossValueError(LossArgumentError, ValueError):
    """Where F.cross_entropy raises ValueError (reduction, batch size), and the deliberate refusals."""


class UnsupportedInputDtypeError(LossArgumentError, NotImplementedError):
    """Integer logits: PyTorch has no log_softmax kernel for them (NotImplementedError)."""


class TargetOutOfBoundsError(LossArgumentError, IndexError):
    """A class index outside [0, C) that is not ignore_index."""


# --------------------------------------------------------------------------------------------------
# Argument checks shared by the hand-built forms (PyTorch's own messages, where it has them).

# F.cross_entropy's class-index targets: "expected target dtype to be Long or Byte" (aten nll_loss).
INDEX_DTYPES = (torch.int64, torch.uint8)


BACKWARDS = ("autograd", "manual")


def check_options(reduction: str, label_smoothing: float, backward: str = "autograd") -> None:
    """The options a module takes at construction; checked there once and again per functional call,
    and by the training config's early check (digits.config): the one place these rules live.
    Stricter than PyTorch on purpose (README, "Deliberate differences"): 'elementwise_mean' (a deprecated
    alias) and a negative smoothing (silently treated as 0 by PyTorch) are refused."""
    if reduction not in REDUCTIONS:
        raise LossValueError(f"{reduction} is not a valid value for reduction: use one of {REDUCTIONS}")
    is_number = isinstance(label_smoothing, (int, float)) and not isinstance(label_smoothing, bool)
    if not (is_number and 0.0 <= label_smoothing <= 1.0):
        raise LossInputError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if backward not in BACKWARDS:
        raise LossValueError(f"backward must be 'autograd' or 'manual', got {backward!r}")


def check_arguments(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    backward: str = "autograd",
) -> tuple[bool, Tensor]:
    """Validate like ``F.cross_entropy`` (and the manual form's ``backward``); return whether ``target``
    holds class probabilities, and the target to compute with (class indices as int64, so that uint8
    indices never act as a mask)."""
    check_options(reduction, label_smoothing, backward)
    if input.dim() == 0:
        raise LossInputError(
            "input must have a class dimension: shape (C), (N, C) or (N, C, d1, ..., dk), got a scalar"
        )
    if not input.is_floating_point():
        raise UnsupportedInputDtypeError(f"input must be a floating-point tensor of logits, got {input.dtype}")
    n_classes = input.shape[0 if input.dim() == 1 else 1]
    if weight is not None:
        if weight.dim() != 1 or weight.numel() != n_classes:
            raise LossInputError(
                f"weight tensor should be defined either for all {n_classes} classes or no classes"
                f" but got weight tensor of shape: {list(weight.shape)}"
            )
        if not torch.isfinite(weight).all():
            raise LossValueError(f"weight must be finite, got {weight.tolist()}")
    if target.shape == input.shape:
        if not target.is_floating_point():
            raise LossInputError(
                f"Expected floating point type for target with class probabilities, got {target.dtype}"
            )
        if ignore_index >= 0:
            raise LossInputError("ignore_index is not supported for floating point target")
        return True, target
    expected = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size([])
    target_batch = target.shape[0] if target.dim() else 0
    if input.dim() > 1 and target_batch != input.shape[0]:
        raise LossValueError(
            f"Expected input batch_size ({input.shape[0]}) to match target batch_size ({target_batch})."
        )
    if target.dtype not in INDEX_DTYPES:
        raise LossInputError(
            f"expected target dtype to be Long or Byte, but got {_name(target.dtype)}: class indices must be int64 or"
            " uint8 (as in PyTorch), class probabilities floating point and of the input's shape"
        )
    if target.shape != expected:
        raise LossInputError(
            f"Expected target size {list(expected)}, got {list(target.shape)} for input of shape {list(input.shape)}"
        )
    if weight is not None:
        if weight.dtype != input.dtype and not torch.is_autocast_enabled(input.device.type):
            raise LossInputError(
                f"expected scalar type {_name(input.dtype)} but found {_name(weight.dtype)}: the weight"
                " must have the input's dtype (as in F.cross_entropy with class indices)"
            )
        if weight.requires_grad and torch.is_grad_enabled():
            raise LossInputError(
                "cross-entropy with class indices is not differentiable with respect to weight"
                " (as in PyTorch): pass weight.detach()"
            )
    target = target.long()
    valid = target[target != ignore_index]
    if valid.numel() and (valid.min() < 0 or valid.max() >= n_classes):
        bad = valid[(valid < 0) | (valid >= n_classes)][0].item()
        raise TargetOutOfBoundsError(f"Target {bad} is out of bounds: class indices must lie in [0, {n_classes - 1}]")
    return False, target


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _autocast_dtype(input: Tensor, dtype: torch.dtype) -> torch.dtype:
    """Under autocast, cross-entropy is a float32 op (autocast's fp32 list): every floating argument
    becomes float32. Otherwise ``dtype`` itself."""
    return torch.float32 if torch.is_autocast_enabled(input.device.type) else dtype


def autocast_log_probs_dtype(input: Tensor) -> torch.dtype | None:
    """The dtype that F.cross_entropy rounds the log-probabilities to under autocast, or None.

    On the CPU, cross_entropy is on autocast's float32 list: the logits are upcast first. On CUDA it is not:
    aten's cross_entropy calls log_softmax with the input's own dtype (an explicit dtype, which autocast
    leaves alone), and only nll_loss and the sums upcast. So float16/bfloat16 logits give log-probabilities
    rounded to their dtype. Measured on an H100 (torch 2.11): with this rounding F.cross_entropy is
    reproduced exactly; computed in float32 throughout, it differs by up to 3.8e-4 (float16) and 3.0e-3
    (bfloat16)."""
    if input.device.type == "cuda" and input.dtype in LOW_PRECISION and torch.is_autocast_enabled("cuda"):
        return input.dtype
    return None


def result_dtype(input: Tensor, target: Tensor, weight: Tensor | None, probabilities: bool) -> torch.dtype:
    """The dtype of F.cross_entropy's result: the input's, promoted with the target's and the weight's for
    class probabilities (PyTorch multiplies them: float32 logits with float64 probabilities give float64)."""
    dtype = input.dtype
    if probabilities:
        dtype = torch.promote_types(dtype, target.dtype)
        dtype = dtype if weight is None else torch.promote_types(dtype, weight.dtype)
    return _autocast_dtype(input, dtype)


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


def _reduce(per_position: Tensor, denominator: Tensor, reduction: str, shape: torch.Size) -> Tensor:
    if reduction == "none":
        return per_position.reshape(shape)
    total = per_position.sum()
    if reduction == "sum":
        return total
    # D = 0 (every position ignored or on a zero-weight class): PyTorch's NLL term is 0 / 0 = NaN, and
    # so is the whole mean, smoothing term included (total / 0 would give inf there).
    return torch.where(denominator != 0, total / denominator, torch.nan)


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
        a = _probability_coefficients(target, weight, label_smoothing)
        # D = the number of positions; 0 for an empty input, whose mean PyTorch defines as NaN.
        return -(a * log_probs).sum(-1), log_probs.new_tensor(float(n_positions) if log_probs.numel() else 0.0)
    if n_classes == 0:  # no class to pick: check_arguments lets only ignored positions (or none) get here
        return -log_probs.sum(-1), log_probs.new_zeros(())  # empty sums: 0, on the autograd graph
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


def _probability_coefficients(target: Tensor, weight: Tensor | None, label_smoothing: float) -> Tensor:
    """a_ic = ((1 - eps) * q_ic + eps / C) * w_c for (M, C) class probabilities."""
    n_classes = target.shape[-1]
    a = target * (1.0 - label_smoothing) + label_smoothing / n_classes if label_smoothing > 0 else target
    return a * weight if weight is not None else a


# --------------------------------------------------------------------------------------------------
# log-softmax from primitives: the stable and the naive way.


def _row_max(x: Tensor) -> Tensor:
    """The (M, 1) maximum of each row, detached; 0 for rows without classes (C = 0), which have none."""
    if x.shape[-1] == 0:
        return x.new_zeros(*x.shape[:-1], 1)
    return x.detach().amax(dim=-1, keepdim=True)


def stable_log_softmax(x: Tensor) -> Tensor:
    """log_softmax over the last dim as (x - max) - log(sum(exp(x - max))): exp never sees a positive
    number, and the log-sum (>= 0, small) is subtracted from the shifted logits, not added to the max
    first, which would round it away for large logits."""
    shifted = x - _row_max(x)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def naive_log_softmax(x: Tensor) -> Tensor:
    """log(exp(x) / sum(exp(x))): exp overflows to inf (float32 past ~88, float16 past ~11) and small
    probabilities underflow to 0, so the log gives NaN or -inf. Kept only to show why the stable form exists."""
    e = x.exp()
    return (e / e.sum(dim=-1, keepdim=True)).log()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16/bfloat16 are computed in float32, like PyTorch's own kernels accumulate."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


# --------------------------------------------------------------------------------------------------
# The hand-written derivatives.


class ManualCrossEntropyFunction(torch.autograd.Function):
    """Cross-entropy on flat (M, C) logits with its derivatives written out:

        d loss_i / d x_ic = softmax(x_i)_c * sum_k a_ik - a_ic
        d loss_i / d q_ic = -(1 - eps) * w_c * log_softmax(x_i)_c        (class probabilities q)
        d loss_i / d w_c  = -a_ic / w_c * log_softmax(x_i)_c               (class probabilities only)

    reduced like the loss (times the upstream gradient, divided by D for "mean"). ``backward`` applies
    them to an upstream gradient, ``jvp`` (forward mode: torch.func.jvp, forward_ad) to tangents.
    Between forward and backward it keeps the logits (which the caller holds anyway), the targets and
    two (M, 1) columns, the row maximum and the log-sum, never an (M, C) intermediate. softmax and
    log_softmax are rebuilt as exp/((x - max) - logsum): exact for large logits, where x - (max + logsum)
    would round logsum away. The backward works in place on one (M, C) buffer; when a second derivative
    is asked for (create_graph) it recomputes the same formula out of place from differentiable ops.

    ``forward`` returns the loss and, as non-differentiable outputs, the intermediates (row max, log-sum,
    D) that ``setup_context`` saves: the form torch.func needs. Call it through ``manual_function``.
    """

    @staticmethod
    def forward(x, target, weight, probabilities, ignore_index, reduction, label_smoothing, shape, round_to):
        m = _row_max(x)
        shifted = x - m
        log_sum = shifted.exp().sum(dim=-1, keepdim=True).log_()
        log_probs = shifted.sub_(log_sum)
        if round_to is not None:  # CUDA autocast's rounding (autocast_log_probs_dtype); the backward is unchanged
            log_probs = log_probs.to(round_to).to(x.dtype)
        loss, denominator = _from_log_probs(log_probs, target, probabilities, weight, ignore_index, label_smoothing)
        return _reduce(loss, denominator, reduction, shape), m, log_sum, denominator

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, target, weight, probabilities, ignore_index, reduction, label_smoothing, shape, _ = inputs
        _, m, log_sum, denominator = output
        ctx.mark_non_differentiable(m, log_sum, denominator)
        ctx.save_for_backward(x, target, weight, m, log_sum, denominator)
        ctx.save_for_forward(x, target, weight, m, log_sum, denominator)
        ctx.options = (probabilities, ignore_index, reduction, label_smoothing)
        ctx.shape = shape

    @staticmethod
    def backward(ctx, grad_output, *_):
        x, target, weight, m, log_sum, denominator = ctx.saved_tensors
        probabilities, ignore_index, reduction, label_smoothing = ctx.options
        scale = _position_scale(grad_output, denominator, reduction, x.shape[0])
        if not probabilities:
            scale = scale.masked_fill(target == ignore_index, 0.0)  # and 0 * NaN must stay 0 there
        # Only a double backward runs with grad enabled: then nothing may be modified in place.
        differentiable = torch.is_grad_enabled()
        if differentiable:
            shifted = x - m
            log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()
        else:
            log_probs = (x - m).sub_(log_sum)
        grad_target = grad_weight = None
        if probabilities and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            scaled_log_probs = log_probs * scale.unsqueeze(1)
            if ctx.needs_input_grad[1]:
                grad_target = -(1.0 - label_smoothing) * scaled_log_probs
                grad_target = grad_target * weight if weight is not None else grad_target
            if ctx.needs_input_grad[2]:
                grad_weight = -(_probability_coefficients(target, None, label_smoothing) * scaled_log_probs).sum(0)
        grad_x = _logits_gradient(
            log_probs, target, weight, probabilities, ignore_index, label_smoothing, scale, in_place=not differentiable
        )
        return grad_x, grad_target, grad_weight, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_tangent, target_tangent, weight_tangent, *_):
        x, target, weight, m, log_sum, denominator = ctx.saved_tensors
        probabilities, ignore_index, reduction, label_smoothing = ctx.options
        log_probs = (x - m).sub_(log_sum)
        per_position = x.new_zeros(x.shape[0])
        if x_tangent is not None:
            ones = x.new_ones(x.shape[0])
            if not probabilities:
                ones = ones.masked_fill(target == ignore_index, 0.0)
            rows = _logits_gradient(
                log_probs.clone(), target, weight, probabilities, ignore_index, label_smoothing, ones, in_place=True
            )
            per_position = per_position + (rows * x_tangent).sum(-1)
        if probabilities and target_tangent is not None:
            tangent = target_tangent * weight if weight is not None else target_tangent
            per_position = per_position - (1.0 - label_smoothing) * (tangent * log_probs).sum(-1)
        if probabilities and weight_tangent is not None:
            a = _probability_coefficients(target, weight_tangent, label_smoothing)
            per_position = per_position - (a * log_probs).sum(-1)
        return _reduce(per_position, denominator, reduction, ctx.shape), None, None, None


def _position_scale(grad_output: Tensor, denominator: Tensor, reduction: str, n_positions: int) -> Tensor:
    """The upstream gradient of each position's loss: itself ("none"), the total's ("sum"), that over D
    ("mean"; NaN where D = 0, as PyTorch's 0 / 0)."""
    if reduction == "none":
        return grad_output.reshape(-1)
    if reduction == "sum":
        return grad_output.expand(n_positions)
    return torch.where(denominator != 0, grad_output / denominator, torch.nan).expand(n_positions)


def _logits_gradient(
    log_probs: Tensor,
    target: Tensor,
    weight: Tensor | None,
    probabilities: bool,
    ignore_index: int,
    label_smoothing: float,
    scale: Tensor,
    in_place: bool,
) -> Tensor:
    """scale_i * (softmax(x_i) * sum_k a_ik - a_i) from (M, C) log-probabilities; ``in_place`` reuses
    their buffer. For class indices ``a`` is never built densely: a = (1 - eps) w_y onehot(y) + eps/C w."""
    n_positions, n_classes = log_probs.shape
    if n_classes == 0:  # an (M, 0) gradient: nothing to fill
        return log_probs
    softmax = log_probs.exp_() if in_place else log_probs.exp()
    smooth = label_smoothing / n_classes
    if probabilities:
        a = _probability_coefficients(target, weight, label_smoothing)
        factor = (scale * a.sum(-1)).unsqueeze(1)
        subtrahend = a * scale.unsqueeze(1)
        return softmax.mul_(factor).sub_(subtrahend) if in_place else softmax * factor - subtrahend
    ignored = target == ignore_index
    safe_target = target.masked_fill(ignored, 0)
    target_weight = weight[safe_target] if weight is not None else torch.ones_like(scale)
    row_sum = (1.0 - label_smoothing) * target_weight
    if label_smoothing > 0:
        row_sum = row_sum + smooth * (weight.sum() if weight is not None else n_classes)
    factor = (scale * row_sum).unsqueeze(1)
    grad = softmax.mul_(factor) if in_place else softmax * factor
    if label_smoothing > 0:
        column = weight if weight is not None else torch.ones(n_classes, dtype=grad.dtype, device=grad.device)
        if in_place:
            grad.addr_(scale * smooth, column, alpha=-1.0)
        else:
            grad = grad - (scale * smooth).unsqueeze(1) * column
    picked = (-(1.0 - label_smoothing) * target_weight * scale).unsqueeze(1)
    index = safe_target.unsqueeze(1)
    return grad.scatter_add_(1, index, picked) if in_place else grad.scatter_add(1, index, picked)


def manual_function(
    x: Tensor,
    target: Tensor,
    weight: Tensor | None,
    probabilities: bool,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    shape: torch.Size,
    round_to: torch.dtype | None = None,
) -> Tensor:
    """``ManualCrossEntropyFunction`` on flat (M, C) inputs: the loss alone (in ``shape`` for "none")."""
    return ManualCrossEntropyFunction.apply(
        x, target, weight, probabilities, ignore_index, reduction, label_smoothing, shape, round_to
    )[0]


# --------------------------------------------------------------------------------------------------
# Functional forms.


def _probability_loss_like_aten(
    log_probs: Tensor, target: Tensor, weight: Tensor | None, reduction: str, label_smoothing: float, class_dim: int
) -> Tensor:
    """Class probabilities, in aten's order of operations (cross_entropy_loss_prob_target): one product
    log_probs * q * w, summed at once. In bfloat16 on CUDA the order shows: a per-position sum first gave
    5.8e-2 relative from F.cross_entropy on PyTorch's own OpInfo sample (H100, torch 2.11)."""
    n_classes = log_probs.shape[class_dim]
    if label_smoothing > 0:  # not _probability_coefficients: that takes (M, C), this the input's own shape
        target = target * (1.0 - label_smoothing) + label_smoothing / n_classes
    products = log_probs * target
    if weight is not None:
        shape = [1] * log_probs.dim()
        shape[class_dim] = -1
        products = products * weight.view(shape)
    if reduction == "none":
        return -products.sum(class_dim)
    total = -products.sum()
    if reduction == "sum":
        return total
    n_positions = log_probs.numel() // n_classes if n_classes else 0
    return total / n_positions if n_positions else total * torch.nan  # an empty mean is NaN, as in PyTorch


def nll_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """``F.log_softmax`` then ``F.nll_loss``, plus smoothing/probability terms from the log-probabilities."""
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
    if probabilities:
        return _probability_loss_like_aten(log_probs, target, weight, reduction, label_smoothing, class_dim)
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
            loss, denominator = _from_log_probs(log_probs, t, probabilities, w, ignore_index, label_smoothing)
            out = _reduce(loss, denominator, reduction, shape)
    return out.to(dtype)


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
        return dict(
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


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
