"""Networks mapping (N, 1, 28, 28) images to (N, 10) logits; no softmax at the end: the loss takes logits."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

# How a block halves the image (DigitCNN's docstring): the values of model.downsample.
DOWNSAMPLE = ("pool", "pool_first", "stride")


class ModelArgumentError(ValueError):
    """A network argument out of range; its message names the config key (``model.<argument>``)."""


class DigitCNN(nn.Module):
    """Blocks of conv3x3, [BatchNorm], ReLU and a 2x downsampling, then dropout and a linear head.

    ``downsample``, per block or one for all (docs/performance.md compares them): ``pool`` (a MaxPool2 after
    ReLU), ``pool_first`` (straight after the conv, so BatchNorm and ReLU see a quarter of the pixels, as the
    fast CIFAR-10 recipes do) or ``stride`` (the conv steps by 2: cheapest, less accurate).
    ``hidden`` > 0 adds a hidden linear layer before the head (the classic recipe has 128).
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64),
        hidden: int = 0,
        dropout: float = 0.1,
        batch_norm: bool = True,
        num_classes: int = 10,
        image_size: int = 28,
        downsample: str | Sequence[str] = "pool",  # checkpoints from before model.downsample rebuild with it
    ) -> None:
        super().__init__()
        # torch builds a zero-width convolution and nn.Dropout(1.0) without a word: both train nothing
        if not channels or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels):
            raise ModelArgumentError(
                f"model.channels={list(channels)} is not allowed: a non-empty list of integers >= 1, e.g. [16,32,64]"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ModelArgumentError(f"model.dropout={dropout!r} is not allowed: a number in [0, 1)")
        is_list = isinstance(downsample, Sequence) and not isinstance(downsample, str)
        per_block = [downsample] * len(channels) if not is_list else list(downsample)
        if len(per_block) != len(channels) or not all(d in DOWNSAMPLE for d in per_block):
            raise ModelArgumentError(
                f"model.downsample={downsample!r} is not allowed: {', '.join(DOWNSAMPLE)}, or one of them per block "
                f"({len(channels)} blocks), e.g. [stride,pool,pool]"
            )
        layers: list[nn.Module] = []
        in_channels, size = 1, image_size
        for width, how in zip(channels, per_block):
            # The conv's bias is redundant before BatchNorm, which subtracts the mean anyway.
            stride = 2 if how == "stride" else 1
            layers += [nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=not batch_norm)]
            layers += [nn.MaxPool2d(2)] if how == "pool_first" else []
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            layers += [nn.MaxPool2d(2)] if how == "pool" else []
            # a strided 3x3 conv with padding 1 rounds up (7 -> 4), pooling rounds down (7 -> 3)
            in_channels, size = width, (size + 1) // 2 if how == "stride" else size // 2
        if size == 0:
            raise ModelArgumentError(
                f"model.channels={list(channels)} is not allowed: {len(channels)} blocks are too many 2x poolings "
                f"for {image_size}px images"
            )
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        features = in_channels * size * size
        if hidden:
            head += [nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            features = hidden
        head += [nn.Linear(features, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))


class ExampleNet(nn.Module):
    """pytorch/examples' MNIST network: 2 convs (32, 64), max-pool, 9216-128-10. The baseline."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(9216, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
