"""How well a trained model reads digits that are not MNIST's distribution: MNIST test digits
re-rendered as users' pictures (a photo of a page, a scan, a transparent drawing), classified after
the old preprocessing (the whole picture resized to 28x28, inverted when light) and after
``digits.handwriting.to_mnist``, beside the plain accuracy on the same digits.

Each picture is a function of (seed, test index, variant) alone, so any subset renders the same.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

from digits.data import load_mnist, standardize
from digits.handwriting import to_mnist
from digits_lab import results_dir

VARIANTS = ("mnist", "page", "photo", "drawing", "chalkboard")
DESCRIPTIONS = {
    "mnist": "the 28x28 test image itself, as a PNG (control)",
    "page": "dark ink on light paper, 40-200 px digit at a random place on a 1.3-3x larger non-square page, "
    "digit aspect ratio 0.8-1.25, PNG",
    "photo": "the page photographed: RGB, blue-black ink, uneven light, sensor noise, 0-3 specks, mild blur "
    "(half of them), JPEG quality 40-90",
    "drawing": "a drawing program's RGBA PNG: coloured ink on a transparent (transparent-black) canvas",
    "chalkboard": "light chalk on a dark board (no inversion needed), noise, JPEG",
}


def _page(digit: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The digit's ink (alpha in [0, 1]) placed on a larger, non-square page; returns it and the box."""
    height = int(rng.uniform(40, 200))
    width = max(8, int(height * rng.uniform(0.8, 1.25)))
    alpha = (
        np.asarray(Image.fromarray(digit).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    )
    page_w, page_h = int(width * rng.uniform(1.3, 3.0)), int(height * rng.uniform(1.3, 3.0))
    top, left = int(rng.integers(0, page_h - height + 1)), int(rng.integers(0, page_w - width + 1))
    page = np.zeros((page_h, page_w), dtype=np.float32)
    page[top : top + height, left : left + width] = np.clip(alpha, 0.0, 1.0)
    return page, (top, left, height, width)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        decoded.load()
        return decoded.copy()


def render(digit: np.ndarray, variant: str, seed: int, index: int) -> Image.Image:
    """A user's picture of an MNIST digit (uint8 28x28, white on black)."""
    if variant == "mnist":
        return Image.fromarray(digit)
    rng = np.random.default_rng([seed, index, VARIANTS.index(variant)])
    alpha, _ = _page(digit, rng)
    if variant == "drawing":
        colour = rng.integers(0, 160, size=3)
        rgba = np.zeros((*alpha.shape, 4), dtype=np.uint8)
        rgba[..., :3] = colour
        rgba[..., 3] = np.round(alpha * 255).astype(np.uint8)
        rgba[alpha == 0] = 0  # transparent black, as a browser canvas stores it
        return Image.fromarray(rgba)
    paper, ink = (
        (rng.uniform(0.7, 0.98), rng.uniform(0.0, 0.35))
        if variant != "chalkboard"
        else (rng.uniform(0.05, 0.3), rng.uniform(0.75, 1.0))
    )
    if variant == "page":
        grey = paper + (ink - paper) * alpha
        return Image.fromarray(np.round(grey * 255).astype(np.uint8))
    rows, cols = np.mgrid[0 : alpha.shape[0], 0 : alpha.shape[1]].astype(np.float32)
    light = (
        1.0
        + 0.08 * rng.uniform(-1, 1) * (rows / alpha.shape[0] - 0.5)
        + 0.08 * rng.uniform(-1, 1) * (cols / alpha.shape[1] - 0.5)
    )
    grey = (paper + (ink - paper) * alpha) * light
    picture = Image.fromarray(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(0, 4)) if variant == "photo" else 0):
        x, y, r = rng.uniform(0, alpha.shape[1]), rng.uniform(0, alpha.shape[0]), rng.uniform(0.7, 2.0)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=int(ink * 255))
    if rng.random() < 0.5:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    noisy = np.asarray(picture, dtype=np.float32) + rng.normal(0, rng.uniform(1, 8), alpha.shape)
    picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if variant == "photo":  # blue-black ink on slightly warm paper
        tint = np.asarray(picture, dtype=np.float32)[..., None] * np.array([1.0, 0.98, 0.92]) + alpha[
            ..., None
        ] * np.array([0, 10, 40])
        picture = Image.fromarray(np.clip(tint, 0, 255).astype(np.uint8))
    return _jpeg(picture, int(rng.integers(40, 91)))


def old_preprocessing(image: Image.Image) -> Tensor:
    """The preprocessing evaluate.py had before ``digits.handwriting`` (the 'before' baseline):
    grey, the whole picture resized to 28x28, inverted when its mean is light."""
    image = image.convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    return (1.0 - pixels if pixels.mean() > 0.5 else pixels)[None]


def new_preprocessing(image: Image.Image) -> Tensor:
    return to_mnist(image)[0]


PREPROCESSINGS: dict[str, Callable[[Image.Image], Tensor]] = {"before": old_preprocessing, "after": new_preprocessing}


def classify(net: torch.nn.Module, pictures: Tensor) -> Tensor:
    """Predicted classes of raw (N, 1, 28, 28) pictures in [0, 1]."""
    from digits.evaluation.loading import collect_logits

    return collect_logits(net.eval(), standardize(pictures)).argmax(1)


def sample_test_digits(data_dir: str | Path, count: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(indices, uint8 images, labels) of ``count`` test digits drawn with ``seed`` (all 10,000 when
    count >= 10,000)."""
    images, labels = load_mnist(data_dir, train=False, download=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:count]
    return order, images[order], labels[order]


def prepare(data_dir: str | Path, count: int, seed: int, variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """The pictures of every variant, rendered and preprocessed both ways (once, for any number of
    models), with the preprocessing time per picture."""
    indices, images, labels = sample_test_digits(data_dir, count, seed)
    prepared: dict[str, Any] = {"labels": labels, "plain": images[:, None].float() / 255.0, "variants": {}}
    for variant in variants:
        pictures = [render(images[i].numpy(), variant, seed, int(indices[i])) for i in range(len(labels))]
        row: dict[str, Any] = {}
        for name, preprocess in PREPROCESSINGS.items():
            started = time.perf_counter()
            row[name] = torch.stack([preprocess(picture) for picture in pictures])
            row[f"{name}_ms_per_picture"] = 1000 * (time.perf_counter() - started) / len(labels)
        prepared["variants"][variant] = row
    return prepared


def score(net: torch.nn.Module, prepared: dict[str, Any], seed: int) -> dict[str, Any]:
    """Per variant: accuracy before and after, beside the plain accuracy on the same digits."""
    labels = prepared["labels"]
    plain = (classify(net, prepared["plain"]) == labels).float().mean().item()
    results: dict[str, Any] = {"digits": len(labels), "seed": seed, "plain_accuracy": plain, "variants": {}}
    for variant, row in prepared["variants"].items():
        results["variants"][variant] = {
            "description": DESCRIPTIONS[variant],
            **{
                key: (classify(net, value) == labels).float().mean().item() if isinstance(value, Tensor) else value
                for key, value in row.items()
            },
        }
    return results


def accuracies(
    net: torch.nn.Module, data_dir: str | Path, count: int, seed: int, variants: tuple[str, ...] = VARIANTS
) -> dict[str, Any]:
    return score(net, prepare(data_dir, count, seed, variants), seed)


def markdown(results: dict[str, Any], checkpoint: str) -> str:
    from digits.report import markdown_table

    rows = [
        {
            "variant": name,
            "pictures": results["digits"],
            "before": f"{row['before']:.2%}",
            "after": f"{row['after']:.2%}",
            "after - plain": f"{row['after'] - results['plain_accuracy']:+.2%}",
            "ms/picture after": f"{row['after_ms_per_picture']:.1f}",
            "what": row["description"],
        }
        for name, row in results["variants"].items()
    ]
    return "\n".join(
        [
            f"# Own-digit accuracy of `{checkpoint}`",
            "",
            f"{results['digits']} MNIST test digits (seed {results['seed']}); plain accuracy on them "
            f"(the 28x28 test images) **{results['plain_accuracy']:.2%}**. 'before': the whole picture resized to "
            "28x28 and inverted when light; 'after': `digits.handwriting.to_mnist`.",
            "",
            markdown_table(rows),
        ]
    )


def measure_checkpoint(
    checkpoint: str | Path, data_dir: str | Path, output_dir: Path, count: int, seed: int
) -> dict[str, Any]:
    from digits.evaluation.loading import load_module, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    module = load_module(path, torch.device("cpu"))
    results = accuracies(module, data_dir, count, seed)
    results["checkpoint"] = str(path)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "handwriting.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "handwriting.md").write_text(markdown(results, str(path)) + "\n")
    return results


def run_handwriting_benchmark(cfg) -> str:
    """``measure_checkpoint`` as ``cfg`` says, and its result in ``paths.results_dir``
    (handwriting.json and .md). Returns the Markdown."""
    from digits.report import write_result

    results = measure_checkpoint(cfg.ckpt_path, cfg.data_dir, Path(cfg.paths.output_dir), cfg.digits, cfg.seed)
    text = markdown(results, results["checkpoint"])
    body = text.split("\n", 1)[1] if text.startswith("# ") else text  # write_result gives the title
    title = "Own handwriting: MNIST digits as users' pictures"
    write_result(results_dir(cfg), "handwriting", title, results, body)
    return text
