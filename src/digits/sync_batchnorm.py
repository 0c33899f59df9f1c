"""Batch norm over the global batch under DDP (2 processes x 128 as the recipe of one at 256), on GPUs and
on CPUs: DDP refuses ``torch.nn.SyncBatchNorm`` on CPU processes, which get ``AllReduceBatchNorm2d`` instead.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.layer_sync import LayerSync, TorchSyncBatchNorm
from torch import Tensor, nn

from digits.precision import at_least_float32


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce(SUM), differentiable: every process's loss depends on every process's images through
    the shared statistics, so the gradient is summed the same way."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics cover every process's images (two-pass: the mean
    first, then the centred squares, for the same accuracy as a single process's kernel)."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        # under bf16 autocast the statistics in float32, as the running ones are (float64 stays float64)
        dtype, x = x.dtype, at_least_float32(x)
        # the per-channel sums and this process's pixel count per channel, summed in one collective
        sums = _SumOverProcesses.apply(torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.size(1)])]))
        total = sums[-1]
        mean = sums[:-1] / total
        centred = x - mean.view(shape)
        var = _SumOverProcesses.apply((centred * centred).sum(dims)) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * total / (total - 1), momentum)  # unbiased, as nn.BatchNorm2d
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        y = y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y
        return y.to(dtype)


def _swap(module: nn.Module, old: type[nn.Module], new: type[nn.Module]) -> nn.Module:
    """Replace every ``old`` layer (exactly that class) by a ``new`` one with the same state."""
    for name, child in module.named_children():
        if type(child) is old:
            like = child.running_mean if child.track_running_stats else child.weight
            layer = new(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            layer = layer.to(like.device, like.dtype)
            layer.load_state_dict(child.state_dict())
            layer.train(child.training)
            setattr(module, name, layer)
        else:
            _swap(child, old, new)
    return module


class SyncBatchNorm(LayerSync):
    """Lightning plugin (``trainer.plugins``): torch's SyncBatchNorm on GPUs, AllReduceBatchNorm2d on CPUs."""

    def __init__(self, accelerator: str = "auto") -> None:
        self.gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())

    def apply(self, model: nn.Module) -> nn.Module:
        return TorchSyncBatchNorm().apply(model) if self.gpu else _swap(model, nn.BatchNorm2d, AllReduceBatchNorm2d)

    def revert(self, model: nn.Module) -> nn.Module:
        return TorchSyncBatchNorm().revert(model) if self.gpu else _swap(model, AllReduceBatchNorm2d, nn.BatchNorm2d)
