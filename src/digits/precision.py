"""``trainer.precision: auto``: bf16 autocast where the CPU computes bf16 in hardware, float32 elsewhere.

On a CPU with AVX-512 BF16 or AMX, bf16-mixed halves the default network's step and keeps its accuracy
(lab/results/step_study.md); on one without them PyTorch emulates bf16 and the step is slower than float32.
Lightning has no such choice, so the run resolves ``auto`` before Lightning sees it, and config.yaml and the
checkpoint keep the resolved value (a resumed run trains on as it started). A GPU run keeps float32 unless
asked (``experiment=fast_gpu`` asks for bf16-mixed).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

AUTO = "auto"


def cpu_bf16_units() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX tiles); torch's private checks, so a
    torch without them reads as no."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def trains_on_cpu(accelerator: Any) -> bool:
    """Whether ``trainer.accelerator`` puts the run on the CPU (``auto``: when no GPU is visible)."""
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def resolved_precision(trainer: Any) -> Any:
    """``trainer.precision`` as Lightning takes it: ``auto`` becomes bf16-mixed on a CPU with bf16 units and
    32-true elsewhere; any other value is Lightning's to check."""
    precision = trainer.get("precision")
    if precision != AUTO:
        return precision
    return "bf16-mixed" if trains_on_cpu(trainer.get("accelerator")) and cpu_bf16_units() else "32-true"


def at_least_float32(values: Tensor) -> Tensor:
    """bf16 and float16 values as float32; float32 and float64 as they are: what the loss, the evaluation and
    DDP's batch statistics compute in under any ``trainer.precision``."""
    return values.to(torch.promote_types(values.dtype, torch.float32))
