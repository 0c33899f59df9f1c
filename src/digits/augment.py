"""Mild training-time augmentation of whole batches on their device, in a few tensor operations instead of
a PIL round trip per image. A batch's draw is seeded by the seed and its own indices, so a resumed run and
every DDP process see exactly the jitter an uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Augmentation:
    """The largest jitter: degrees of rotation, shift as a share of the image side, relative scale
    change, the share of images whose strokes are made one pixel thicker or thinner, degrees of
    horizontal shear (a slanted hand), and the share of images softened by a 3x3 blur (a photo's focus).
    Shear and blur draw from the generator after the others, so without them the draw is as before."""

    degrees: float = 10.0
    translate: float = 0.1
    scale: float = 0.1
    stroke: float = 0.3
    shear: float = 0.0
    blur: float = 0.0


# A 3x3 binomial kernel: the mildest blur that softens a one-pixel edge (a slightly unfocused photo).
BLUR_KERNEL = torch.tensor([1.0, 2.0, 1.0])[:, None] * torch.tensor([1.0, 2.0, 1.0])[None, :] / 16


def batch_generator(seed: int, indices: list[int] | Tensor) -> torch.Generator:
    """A CPU generator seeded by (seed, these indices): the same batch always gets the same draw."""
    data = torch.as_tensor(indices, dtype=torch.int64).cpu().numpy().tobytes()
    digest = hashlib.blake2b(data, digest_size=8, key=seed.to_bytes(8, "little", signed=True)).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def augment(images: Tensor, settings: Augmentation, generator: torch.Generator) -> Tensor:
    """Randomly rotated, shifted, scaled and stroke-thickened/thinned copies of (N, 1, H, W) images; pixels
    from outside the frame repeat the border (the normalised background is not 0)."""
    n = len(images)
    uniform = torch.rand(n, 5, generator=generator) * 2 - 1  # in [-1, 1)
    angle = uniform[:, 0] * math.radians(settings.degrees)
    scale = 1 + uniform[:, 1] * settings.scale
    shift = uniform[:, 2:4] * 2 * settings.translate  # affine_grid's coordinates span 2 per side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # theta maps output coordinates to the input's: rotate by -angle, shrink by scale, then shift
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    extra = torch.rand(n, 2, generator=generator) * 2 - 1 if settings.shear or settings.blur else None
    if settings.shear:  # x_in = x_out + tan(shear) * y_out before the rotation: strokes lean left or right
        lean = torch.tan(extra[:, 0] * math.radians(settings.shear))
        shear = torch.zeros(n, 2, 2)
        shear[:, 0, 0], shear[:, 0, 1], shear[:, 1, 1] = 1, lean, 1
        theta = torch.cat([theta[:, :, :2] @ shear, theta[:, :, 2:]], 2)
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if settings.stroke > 0:
        padded = F.pad(moved, (0, 1, 0, 1), mode="replicate")
        thicker = F.max_pool2d(padded, 2, stride=1)
        thinner = -F.max_pool2d(-padded, 2, stride=1)
        choice = uniform[:, 4].to(images.device)[:, None, None, None]
        moved = torch.where(
            choice > 1 - settings.stroke, thicker, torch.where(choice < -1 + settings.stroke, thinner, moved)
        )
    if settings.blur:
        kernel = BLUR_KERNEL.to(images.device, images.dtype)[None, None]
        blurred = F.conv2d(F.pad(moved, (1, 1, 1, 1), mode="replicate"), kernel)
        chosen = (extra[:, 1] > 1 - 2 * settings.blur).to(images.device)[:, None, None, None]
        moved = torch.where(chosen, blurred, moved)
    return moved
