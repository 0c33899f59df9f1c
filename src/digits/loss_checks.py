"""What the cross-entropy forms accept and return, by PyTorch's rules: the errors (each also of the built-in
type ``F.cross_entropy`` raises for the same input), the argument checks, and the dtype rules."""

from __future__ import annotations

import torch
from torch import Tensor

from digits.errors import DigitsError

REDUCTIONS = ("none", "mean", "sum")
LOW_PRECISION = (torch.float16, torch.bfloat16)


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


# F.cross_entropy's class-index targets: "expected target dtype to be Long or Byte" (aten nll_loss).
INDEX_DTYPES = (torch.int64, torch.uint8)
BACKWARDS = ("autograd", "manual")


def check_options(reduction: str, label_smoothing: float, backward: str = "autograd") -> None:
    """The options a module takes, the one place their rules live. Stricter than PyTorch on purpose:
    'elementwise_mean' (a deprecated alias) and a negative smoothing (silently 0 in PyTorch) are refused."""
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


def autocast_log_probs_dtype(input: Tensor) -> torch.dtype | None:
    """The dtype that F.cross_entropy rounds the log-probabilities to under autocast, or None. On CUDA (not
    the CPU, where the logits are upcast first) aten's log_softmax keeps the input's own dtype. Measured on an
    H100 (torch 2.11): with this rounding F.cross_entropy is reproduced exactly; computed in float32
    throughout, it differs by up to 3.8e-4 (float16) and 3.0e-3 (bfloat16)."""
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
    # under autocast cross-entropy is a float32 op (autocast's fp32 list)
    return torch.float32 if torch.is_autocast_enabled(input.device.type) else dtype
