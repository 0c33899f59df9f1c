"""Pictures that are not digits, shown to a softmax model and to a sigmoid model (``loss=sigmoid``).

The teaching text's claim: with one sigmoid per output a model need not pick a class just because its
output is slightly higher; it can say "none of the ten". Measured here on four kinds of non-digit
pictures in MNIST's form (white ink on black, 28x28): noise, letters rendered from Pillow's own font,
two test digits squeezed side by side, and random scribbles. Both models get the same rule
(``digits.sigmoid.decide``): the most probable class if its probability passes the threshold, else
none. A softmax model's ten probabilities sum to 1, so its largest is at least 0.1, and it declines
only when no class gets more than the threshold.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from digits.data import normalize, standardize
from digits.sigmoid import NONE, class_probabilities, decide
from digits_lab import results_dir

CONFIDENT = 0.9  # "labelled a digit with more than 90 % confidence"
KINDS = ("noise", "letters", "two digits", "scribbles")


def _draw(draw_fn) -> Tensor:
    """A 28x28 picture in [0, 1]: white strokes drawn by ``draw_fn`` on black, at 4x size then reduced (antialiased)."""
    image = Image.new("L", (112, 112), 0)
    draw_fn(ImageDraw.Draw(image))
    return torch.from_numpy(np.asarray(image.resize((28, 28), Image.LANCZOS), dtype=np.float32) / 255.0)


def noise(count: int, generator: torch.Generator) -> Tensor:
    """Uniform noise, from faint to full brightness (half the pictures), and sparse speckles (the other half)."""
    levels = torch.linspace(0.2, 1.0, count)
    pictures = torch.rand(count, 28, 28, generator=generator) * levels[:, None, None]
    speckled = torch.rand(count, 28, 28, generator=generator) < 0.15
    half = torch.arange(count) % 2 == 1
    pictures[half] = speckled[half].float()
    return pictures


def letters() -> Tensor:
    """A-Z and a-z in Pillow's bundled font (no system font needed) at two sizes, centred as MNIST centres
    its digits (in the middle of the 28x28 field)."""
    pictures = []
    for size in (72, 88):
        font = ImageFont.load_default(size=size)
        for letter in string.ascii_letters:

            def draw(d, letter=letter, font=font):
                d.text((56, 56), letter, fill=255, font=font, anchor="mm")

            pictures.append(_draw(draw))
    return torch.stack(pictures)


def two_digits(images: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Two different MNIST test digits, each squeezed to half the width, side by side. ``images``: uint8 (N, 28, 28)."""
    index = torch.randperm(len(images), generator=generator)[: 2 * count].reshape(count, 2)
    halves = F.interpolate(images[index.flatten()].float()[:, None] / 255.0, size=(28, 14), mode="bilinear")
    halves = halves.reshape(count, 2, 28, 14)
    return torch.cat([halves[:, 0], halves[:, 1]], dim=2).clamp(0, 1)


def scribbles(count: int, seed: int) -> Tensor:
    """Random polylines of 4 to 8 points and MNIST's stroke width: ink that is no digit."""
    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(count):
        points = [tuple(p) for p in rng.uniform(16, 96, size=(int(rng.integers(4, 9)), 2))]
        pictures.append(_draw(lambda d, points=points: d.line(points, fill=255, width=9, joint="curve")))
    return torch.stack(pictures)


def make_pictures(test_images: Tensor, seed: int = 0, per_kind: int = 50) -> tuple[Tensor, list[str]]:
    """The non-digit pictures as standardised (N, 1, 28, 28) input, and the kind of each."""
    generator = torch.Generator().manual_seed(seed)
    groups = {
        "noise": noise(per_kind, generator),
        "letters": letters(),
        "two digits": two_digits(test_images, per_kind, generator),
        "scribbles": scribbles(per_kind, seed),
    }
    kinds = [kind for kind, pictures in groups.items() for _ in range(len(pictures))]
    return standardize(torch.cat(list(groups.values()))[:, None]), kinds


def shares(probabilities: Tensor, threshold: float) -> dict[str, float]:
    answers = decide(probabilities, threshold)
    return {
        "pictures": len(probabilities),
        "declined": (answers == NONE).float().mean().item(),
        "labelled a digit with > 90 %": (probabilities.max(dim=1).values > CONFIDENT).float().mean().item(),
        "mean largest probability": probabilities.max(dim=1).values.mean().item(),
        "mean sum of the ten": probabilities.sum(dim=1).mean().item(),
    }


@torch.no_grad()
def study(module, pictures: Tensor, kinds: list[str], test_images: Tensor, test_labels: Tensor) -> dict[str, Any]:
    """One model's numbers: on the non-digits (all, and per kind) and on the 10,000 real test digits."""
    from digits.evaluation.loading import collect_logits

    threshold = getattr(module.loss_fn, "threshold", 0.5)
    probabilities = class_probabilities(collect_logits(module, pictures), module.loss_fn)
    test_logits = collect_logits(module, normalize(test_images))
    test_probabilities = class_probabilities(test_logits, module.loss_fn)
    answers = decide(test_probabilities, threshold)
    kinds_array = np.array(kinds)
    return {
        "loss": module.hparams.loss["_target_"],
        "threshold": threshold,
        "non-digits": shares(probabilities, threshold),
        "per kind": {kind: shares(probabilities[torch.from_numpy(kinds_array == kind)], threshold) for kind in KINDS},
        "test accuracy": (test_logits.argmax(dim=1) == test_labels).float().mean().item(),
        "test digits declined": (answers == NONE).float().mean().item(),
    }


def run_non_digits(cfg) -> str:
    """``study`` of ``cfg.softmax_ckpt_path`` and ``cfg.sigmoid_ckpt_path`` on the same pictures:
    non_digits.json and non_digits.md into ``paths.results_dir``. Returns the line that says where."""

    from digits.data import load_mnist
    from digits.evaluation.loading import load_module, resolve_checkpoint
    from digits.report import markdown_table, provenance, provenance_line, write_json

    images, labels = load_mnist(cfg.data_dir, train=False, download=False)
    pictures, kinds = make_pictures(images)
    checkpoints = {"softmax": cfg.softmax_ckpt_path, "sigmoid": cfg.sigmoid_ckpt_path}
    models = {
        name: study(load_module(resolve_checkpoint(path), torch.device("cpu")), pictures, kinds, images, labels)
        for name, path in checkpoints.items()
    }
    data = {**provenance(), "torch": torch.__version__, "checkpoints": checkpoints, "models": models}
    rows = [
        {
            "model": name,
            "threshold": m["threshold"],
            "non-digits declined": f"{m['non-digits']['declined']:.1%}",
            "non-digits labelled a digit with > 90 %": f"{m['non-digits']['labelled a digit with > 90 %']:.1%}",
            "test accuracy": f"{m['test accuracy']:.2%}",
            "test digits declined": f"{m['test digits declined']:.2%}",
        }
        for name, m in models.items()
    ]
    per_kind = [
        {
            "kind": kind,
            "pictures": models["softmax"]["per kind"][kind]["pictures"],
            **{
                f"{name} {what}": f"{models[name]['per kind'][kind][what]:.0%}"
                for name in models
                for what in ("declined", "labelled a digit with > 90 %")
            },
        }
        for kind in KINDS
    ]
    out = results_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "non_digits.json", data)
    (out / "non_digits.md").write_text(
        f"{provenance_line(data)} {len(kinds)} non-digit pictures.\n\n"
        + markdown_table(rows)
        + "\n"
        + markdown_table(per_kind)
    )
    return f"wrote {out / 'non_digits.json'} and {out / 'non_digits.md'}"
