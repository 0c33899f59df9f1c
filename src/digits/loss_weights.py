"""The target weights ``a_ic`` and the denominator ``D`` of cross-entropy (``digits.losses`` gives the
formula), written once for every form:

    loss_i = -sum_c a_ic * log_softmax(x_i)_c        d loss_i / d x_i = softmax(x_i) * sum_c a_ic - a_i

* class indices: ``a_ic = (1 - eps) * w_{y_i} * [c == y_i] + eps / C * w_c``, 0 on ignored positions, and
  ``D = sum_i w_{y_i}`` over the positions kept. Never built as an (M, C) tensor: the first term is a
  gather (a scatter in the gradient), the second one column ``w``.
* class probabilities: ``a_ic = q'_ic * w_c`` with ``q' = (1 - eps) * q + eps / C``, and ``D`` the number
  of positions. Kept as its two factors, so that a product is taken in aten's order, log_probs * q' * w
  (cross_entropy_loss_prob_target; in bfloat16 the order shows).

Without ``weight``, ``w_c = 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor


class TargetWeights:
    """``a`` and ``D`` for log-probabilities shaped like ``like``, whose classes lie along ``class_dim``:
    the forms pass flat (M, C) logits (the default, ``class_dim=-1``), the nll form its input's own shape."""

    def __init__(
        self,
        like: Tensor,
        target: Tensor,
        probabilities: bool,
        weight: Tensor | None,
        ignore_index: int,
        label_smoothing: float,
        class_dim: int = -1,
    ) -> None:
        self.probabilities = probabilities
        self.weight = weight
        self.smoothing = label_smoothing
        self.class_dim = class_dim
        self.n_classes = n_classes = like.shape[class_dim]
        if probabilities:
            self.ignored = None
            smoothing = label_smoothing > 0
            self.q = target * (1.0 - label_smoothing) + label_smoothing / n_classes if smoothing else target
            self.positions = like.numel() // n_classes if like.numel() else 0  # an empty mean is NaN, as in PyTorch
            self.denominator = like.new_tensor(float(self.positions))
            return
        self.ignored = target == ignore_index
        self.index = target.masked_fill(self.ignored, 0)
        if n_classes == 0:  # check_arguments lets only ignored positions (or none) get here: D = 0
            self.denominator = like.new_zeros(())
            return
        picked_weight = weight[self.index] if weight is not None else torch.ones_like(target, dtype=like.dtype)
        self.target_weight = picked_weight.masked_fill(self.ignored, 0.0)  # w_{y_i}, 0 where ignored
        self.denominator = self.target_weight.sum()

    def denominator_as_aten(self) -> Tensor | int:
        """D summed the way aten's cross_entropy sums it, for the nll form to equal F.cross_entropy bit for bit
        (the same value as ``denominator``, rounded differently in float32 and below)."""
        if self.probabilities:
            return self.positions
        kept = ~self.ignored
        return self.weight[self.index[kept]].sum() if self.weight is not None else kept.sum()

    # The loss: -sum_c a_ic * log_probs_ic.
    def loss(self, log_probs: Tensor) -> Tensor:
        """Each position's loss (the index shape)."""
        dim = self.class_dim
        if self.probabilities:
            return -(self.dense() * log_probs).sum(dim)
        if self.n_classes == 0:
            return -log_probs.sum(dim)  # empty sums: 0, on the autograd graph
        picked = log_probs.gather(dim, self.index.unsqueeze(dim)).squeeze(dim)
        loss = -self.target_weight * picked
        if self.smoothing > 0:
            loss = (1.0 - self.smoothing) * loss + (self.smoothing / self.n_classes) * self.smoothing_loss(log_probs)
        # where(), not a product: ignored positions must get a zero gradient even when D = 0 makes
        # the upstream gradient infinite (an all-ignored batch: NaN loss, zero gradient, as in PyTorch).
        return loss.masked_fill(self.ignored, 0.0)

    def dense(self) -> Tensor:
        """Class probabilities: a = q' * w, as an (M, C) tensor."""
        return self.q if self.weight is None else self.q * self._along_classes(self.weight, self.q)

    def products(self, log_probs: Tensor) -> Tensor:
        """Class probabilities: a * log_probs in aten's order, (log_probs * q') * w (in bfloat16 it shows)."""
        products = log_probs * self.q
        return products if self.weight is None else products * self._along_classes(self.weight, log_probs)

    def smoothing_loss(self, log_probs: Tensor) -> Tensor:
        """Class indices: -sum_c w_c * log_probs_ic, the term that smoothing spreads over the classes
        (its factor eps / C not applied), 0 on ignored positions."""
        dim = self.class_dim
        weighted = log_probs if self.weight is None else log_probs * self._along_classes(self.weight, log_probs)
        return (-weighted.sum(dim)).masked_fill(self.ignored, 0.0)

    def _along_classes(self, column: Tensor, like: Tensor) -> Tensor:
        shape = [1] * like.dim()
        shape[self.class_dim] = -1
        return column.view(shape)

    def without_ignored(self, values: Tensor) -> Tensor:
        """Per-position ``values`` with 0 on ignored positions (and 0 * NaN stays 0 there)."""
        return values if self.ignored is None else values.masked_fill(self.ignored, 0.0)

    # The derivatives, on flat (M, C) log-probabilities.
    def logits_gradient(self, log_probs: Tensor, scale: Tensor, in_place: bool) -> Tensor:
        """scale_i * (softmax(x_i) * sum_c a_ic - a_i); ``in_place`` reuses the log-probabilities' buffer."""
        n_classes = self.n_classes
        if n_classes == 0:  # an (M, 0) gradient: nothing to fill
            return log_probs
        softmax = log_probs.exp_() if in_place else log_probs.exp()
        if self.probabilities:
            a = self.dense()
            factor = (scale * a.sum(-1)).unsqueeze(1)
            subtrahend = a * scale.unsqueeze(1)
            return softmax.mul_(factor).sub_(subtrahend) if in_place else softmax * factor - subtrahend
        smooth = self.smoothing / n_classes
        row_sum = (1.0 - self.smoothing) * self.target_weight
        if self.smoothing > 0:
            row_sum = row_sum + smooth * (self.weight.sum() if self.weight is not None else n_classes)
        factor = (scale * row_sum).unsqueeze(1)
        grad = softmax.mul_(factor) if in_place else softmax * factor
        if self.smoothing > 0:
            column = self.weight if self.weight is not None else grad.new_ones(n_classes)
            if in_place:
                grad.addr_(scale * smooth, column, alpha=-1.0)
            else:
                grad = grad - (scale * smooth).unsqueeze(1) * column
        picked = (-(1.0 - self.smoothing) * self.target_weight * scale).unsqueeze(1)
        index = self.index.unsqueeze(1)
        return grad.scatter_add_(1, index, picked) if in_place else grad.scatter_add(1, index, picked)

    def by_target(self, tangent: Tensor) -> Tensor:
        """Class probabilities: the change of ``a`` along a change ``tangent`` of q, (1 - eps) * tangent * w."""
        scaled = (1.0 - self.smoothing) * tangent
        return scaled if self.weight is None else scaled * self.weight

    def by_weight(self, tangent: Tensor) -> Tensor:
        """Class probabilities: the change of ``a`` along a change ``tangent`` of w, q' * tangent."""
        return self.q * tangent


def reduce(per_position: Tensor, denominator: Tensor, reduction: str, shape: torch.Size) -> Tensor:
    """``reduction`` of the per-position losses: as they are (in ``shape``), their sum, or the sum over D."""
    if reduction == "none":
        return per_position.reshape(shape)
    total = per_position.sum()
    return reduce_total(total, denominator, reduction)


def reduce_total(total: Tensor, denominator: Tensor, reduction: str) -> Tensor:
    """The summed loss, over D for "mean". D = 0 (every position ignored or on a zero-weight class, or no
    position): PyTorch's 0 / 0 = NaN, smoothing term included (total / 0 would give inf there)."""
    if reduction == "sum":
        return total
    return torch.where(denominator != 0, total / denominator, torch.nan)
