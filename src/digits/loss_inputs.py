"""Seeded inputs for comparing the loss forms with ``F.cross_entropy``: the proof's tests and the lab's
reports draw from this one generator, so a case in a report is a case the tests check."""

from __future__ import annotations

import torch
from torch import Tensor

DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def make_inputs(
    kind: str, shape: tuple[int, ...], weighted: bool, seed: int, scale: float = 3.0, ignore_index: int = -100
) -> tuple[Tensor, Tensor, Tensor | None]:
    """float64 logits of ``shape``, targets of ``kind`` ("index"; "ignore": 30 % of them ``ignore_index``;
    "probabilities") and a weight, on the CPU, from one seeded generator; callers cast and move them."""
    generator = torch.Generator().manual_seed(seed)
    class_dim = 0 if len(shape) == 1 else 1
    index_shape = tuple(shape[:1]) + tuple(shape[2:]) if len(shape) > 1 else ()
    logits = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
    if kind == "probabilities":
        target = torch.rand(shape, generator=generator, dtype=torch.float64).softmax(class_dim)
    else:
        target = torch.randint(0, shape[class_dim], index_shape, generator=generator)
        if kind == "ignore":
            target[torch.rand(index_shape, generator=generator) < 0.3] = ignore_index
    weight = torch.rand(shape[class_dim], generator=generator, dtype=torch.float64) + 0.2 if weighted else None
    return logits, target, weight
