"""The manual form's hand-written derivatives (``manual_cross_entropy(..., backward="manual")``): an
``autograd.Function`` whose forward, backward and jvp take ``a`` and ``D`` from ``digits.loss_weights``."""

from __future__ import annotations

import torch
from torch import Tensor

from digits.loss_weights import TargetWeights, reduce, reduce_total


def row_max(x: Tensor) -> Tensor:
    """The (M, 1) maximum of each row, detached; 0 for rows without classes (C = 0), which have none."""
    if x.shape[-1] == 0:
        return x.new_zeros(*x.shape[:-1], 1)
    return x.detach().amax(dim=-1, keepdim=True)


class ManualCrossEntropyFunction(torch.autograd.Function):
    """Cross-entropy on flat (M, C) logits with its derivatives written out:

        d loss_i / d x_ic = softmax(x_i)_c * sum_k a_ik - a_ic
        d loss_i / d q_ic = -(1 - eps) * w_c * log_softmax(x_i)_c        (class probabilities q)
        d loss_i / d w_c  = -a_ic / w_c * log_softmax(x_i)_c               (class probabilities only)

    reduced like the loss. ``backward`` applies them to an upstream gradient, ``jvp`` (forward mode) to
    tangents. It saves no (M, C) intermediate, only the row maximum and the log-sum, and rebuilds
    log_softmax as (x - max) - logsum (x - (max + logsum) would round logsum away for large logits). The
    backward works in place on one buffer, out of place when a second derivative is asked for.

    ``forward`` also returns the saved intermediates as non-differentiable outputs, the form torch.func
    needs: call it through ``manual_function``.
    """

    @staticmethod
    def forward(x, target, weight, probabilities, ignore_index, reduction, label_smoothing, shape, round_to):
        m = row_max(x)
        shifted = x - m
        log_sum = shifted.exp().sum(dim=-1, keepdim=True).log_()
        log_probs = shifted.sub_(log_sum)
        if round_to is not None:  # CUDA autocast's rounding (autocast_log_probs_dtype); the backward is unchanged
            log_probs = log_probs.to(round_to).to(x.dtype)
        weights = TargetWeights(x, target, probabilities, weight, ignore_index, label_smoothing)
        return reduce(weights.loss(log_probs), weights.denominator, reduction, shape), m, log_sum, weights.denominator

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
        weights = TargetWeights(x, target, probabilities, weight, ignore_index, label_smoothing)
        scale = weights.without_ignored(_position_scale(grad_output, denominator, reduction, x.shape[0]))
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
                grad_target = -weights.by_target(scaled_log_probs)
            if ctx.needs_input_grad[2]:
                grad_weight = -weights.by_weight(scaled_log_probs).sum(0)
        grad_x = weights.logits_gradient(log_probs, scale, in_place=not differentiable)
        return grad_x, grad_target, grad_weight, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_tangent, target_tangent, weight_tangent, *_):
        x, target, weight, m, log_sum, denominator = ctx.saved_tensors
        probabilities, ignore_index, reduction, label_smoothing = ctx.options
        weights = TargetWeights(x, target, probabilities, weight, ignore_index, label_smoothing)
        log_probs = (x - m).sub_(log_sum)
        per_position = x.new_zeros(x.shape[0])
        if x_tangent is not None:
            ones = weights.without_ignored(x.new_ones(x.shape[0]))
            rows = weights.logits_gradient(log_probs.clone(), ones, in_place=True)
            per_position = per_position + (rows * x_tangent).sum(-1)
        if probabilities and target_tangent is not None:
            per_position = per_position - (weights.by_target(target_tangent) * log_probs).sum(-1)
        if probabilities and weight_tangent is not None:
            per_position = per_position - (weights.by_weight(weight_tangent) * log_probs).sum(-1)
        return reduce(per_position, denominator, reduction, ctx.shape), None, None, None


def _position_scale(grad_output: Tensor, denominator: Tensor, reduction: str, n_positions: int) -> Tensor:
    """The upstream gradient of each position's loss: itself ("none"), the total's ("sum"), that over D
    ("mean"; NaN where D = 0, as PyTorch's 0 / 0): the upstream gradient reduced like the total."""
    if reduction == "none":
        return grad_output.reshape(-1)
    return reduce_total(grad_output, denominator, reduction).expand(n_positions)


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
