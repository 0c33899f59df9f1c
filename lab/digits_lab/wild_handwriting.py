"""Handwriting that is not MNIST, photographed the way users photograph it: scikit-learn's UCI digits
(1,797 digits by 43 writers, 8x8 counts of ink on a 32x32 grid) drawn as strokes and rendered in the
styles a user meets: a page scan, a phone photo of squared paper, faint pencil inside a form's printed box,
a thick marker on a whiteboard with a glare spot, a ruled notebook, a small digit off-centre in a photo.
Each picture is read by ``digits.handwriting`` and classified; the result is one row per style.

Every picture is a function of (seed, style, index) alone. Tune on one seed, report another.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from digits_lab import results_dir
from digits_lab.handwriting_benchmark import _jpeg, classify

STYLES = {
    "scan": "a page scan: dark pen on light paper, 40-160 px digit somewhere on the page, slight tilt, JPEG",
    "squared_paper": "a phone photo of squared paper: grid lines through the digit, tilt, uneven light, "
    "tinted colour, blur, noise, JPEG",
    "form_pencil": "faint, grainy pencil inside a form's printed box (strokes may touch or cross it), "
    "the neighbouring boxes in the picture",
    "whiteboard": "a thick marker on a whiteboard, a glare spot over part of the digit, shading, JPEG",
    "ruled_notebook": "blue ballpoint on ruled notebook paper, the digit sitting on a line, a red margin",
    "small_offcentre": "a phone photo of a page with a small digit (6-15 % of the picture) anywhere on it",
}


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled UCI digits: (1797, 8, 8) ink counts in [0, 16], labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


def stroke_alpha(counts: np.ndarray, height: int, width_scale: float, rng: np.random.Generator) -> np.ndarray:
    """An 8x8 count image as a drawn digit: smoothed up to a grid, cut at an ink level (a pen's edge), grown
    or thinned by ``width_scale`` and resized to ``height`` pixels (the aspect ratio varies a little)."""
    grid = np.asarray(Image.fromarray(counts / 16.0).resize((48, 48), Image.Resampling.BICUBIC), dtype=np.float32)
    level = 0.45 - 0.25 * (width_scale - 1.0)  # a lower cut, wider strokes
    alpha = np.clip((grid - level) / 0.12, 0.0, 1.0)
    width = max(6, int(height * rng.uniform(0.7, 1.0)))
    return np.asarray(Image.fromarray(alpha).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _place(alpha: np.ndarray, page: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(page, dtype=np.float32)
    top, left = at
    h, w = alpha.shape
    canvas[top : top + h, left : left + w] = alpha[: page[0] - top, : page[1] - left]
    return canvas


def _tilt(layer: np.ndarray, degrees: float) -> np.ndarray:
    return np.asarray(Image.fromarray(layer).rotate(degrees, Image.Resampling.BILINEAR), dtype=np.float32)


def _lines(shape: tuple[int, int], spacing: float, width: int, offset: float, horizontal: bool) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.float32)
    length = shape[0] if horizontal else shape[1]
    for position in np.arange(offset % spacing, length, spacing):
        p = int(position)
        if horizontal:
            mask[p : p + width] = 1.0
        else:
            mask[:, p : p + width] = 1.0
    return mask


def _light(shape: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """Uneven light: a tilted plane of brightness, 1 +- strength/2."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * rows / shape[0] + np.sin(angle) * cols / shape[1]
    return 1.0 + strength * (ramp - ramp.mean())


def _finish(grey: np.ndarray, rng: np.random.Generator, noise: float, blur: float, quality: int) -> Image.Image:
    picture = Image.fromarray(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8))
    if blur > 0:
        picture = picture.filter(ImageFilter.GaussianBlur(blur))
    noisy = np.asarray(picture, dtype=np.float32) + rng.normal(0, noise, grey.shape[:2] + grey.shape[2:])
    return _jpeg(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), quality)


def render(counts: np.ndarray, style: str, seed: int, index: int) -> Image.Image:
    """One UCI digit (8x8 counts) as a user's picture in ``style``."""
    rng = np.random.default_rng([seed, list(STYLES).index(style), index])
    if style == "scan":
        height = int(rng.uniform(40, 160))
        alpha = stroke_alpha(counts, height, rng.uniform(0.9, 1.2), rng)
        page = (int(height * rng.uniform(1.3, 2.5)), int(alpha.shape[1] * rng.uniform(1.4, 3.0)))
        at = (int(rng.integers(0, page[0] - height + 1)), int(rng.integers(0, page[1] - alpha.shape[1] + 1)))
        ink = _tilt(_place(alpha, page, at), rng.uniform(-5, 5))
        paper, pen = rng.uniform(0.85, 0.97), rng.uniform(0.05, 0.3)
        return _finish(
            paper + (pen - paper) * ink, rng, rng.uniform(1, 5), rng.uniform(0, 0.8), int(rng.integers(60, 96))
        )
    if style == "squared_paper":
        height = int(rng.uniform(50, 150))
        alpha = stroke_alpha(counts, height, rng.uniform(0.9, 1.3), rng)
        page = (int(height * rng.uniform(1.4, 2.5)), int(alpha.shape[1] * rng.uniform(1.6, 3.0)))
        at = (int(rng.integers(0, page[0] - height + 1)), int(rng.integers(0, page[1] - alpha.shape[1] + 1)))
        spacing = height * rng.uniform(0.25, 0.6)
        line_width = int(rng.integers(1, 3))
        grid = np.maximum(
            _lines(page, spacing, line_width, rng.uniform(0, spacing), True),
            _lines(page, spacing, line_width, rng.uniform(0, spacing), False),
        )
        degrees = rng.uniform(-3, 3)
        ink, grid = _tilt(_place(alpha, page, at), degrees), _tilt(grid, degrees)
        paper, pen, line = rng.uniform(0.8, 0.95), rng.uniform(0.05, 0.3), rng.uniform(0.15, 0.4)
        grey = paper * (1 - line * grid)
        grey = (grey + (pen - grey) * ink) * _light(page, rng, rng.uniform(0.1, 0.4))
        tint = np.array([rng.uniform(0.9, 1.0), rng.uniform(0.92, 1.0), rng.uniform(0.9, 1.0)], dtype=np.float32)
        colour = grey[..., None] * tint
        return _finish(colour, rng, rng.uniform(2, 7), rng.uniform(0.3, 1.2), int(rng.integers(40, 86)))
    if style == "form_pencil":
        height = int(rng.uniform(40, 120))
        alpha = stroke_alpha(counts, height, rng.uniform(0.7, 1.0), rng)
        grain = np.clip(rng.normal(0.75, 0.25, alpha.shape), 0.2, 1.0).astype(np.float32)
        alpha = alpha * grain
        box_h, box_w = int(height * rng.uniform(1.0, 1.35)), int(alpha.shape[1] * rng.uniform(1.3, 2.0))
        border = int(rng.integers(1, 5))
        margin_h, margin_w = int(box_h * rng.uniform(0.05, 0.5)), int(box_w * rng.uniform(0.05, 0.6))
        page = (box_h + 2 * margin_h, box_w + 2 * margin_w)
        frame = np.zeros(page, dtype=np.float32)
        for left in (margin_w - box_w, margin_w, margin_w + box_w):  # this box and its neighbours in the row
            top = margin_h
            for r0, r1, c0, c1 in (
                (top, top + border, left, left + box_w + border),
                (top + box_h, top + box_h + border, left, left + box_w + border),
                (top, top + box_h + border, left, left + border),
                (top, top + box_h + border, left + box_w, left + box_w + border),
            ):
                frame[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = 1.0
        top = margin_h + int(rng.integers(-height // 10, box_h - height + height // 10 + 1))
        left = margin_w + int(rng.integers(0, max(1, box_w - alpha.shape[1]) + 1))
        ink = _place(alpha, page, (max(top, 0), max(left, 0)))
        paper, printed, pencil = rng.uniform(0.82, 0.95), rng.uniform(0.0, 0.2), rng.uniform(0.12, 0.35)
        grey = paper + (printed - paper) * frame
        grey = grey - pencil * ink * (grey > 0.5)  # pencil darkens the paper by its own small amount
        grey = grey * _light(page, rng, rng.uniform(0.0, 0.2))
        return _finish(grey, rng, rng.uniform(1, 4), rng.uniform(0, 0.7), int(rng.integers(60, 96)))
    if style == "whiteboard":
        height = int(rng.uniform(60, 180))
        alpha = stroke_alpha(counts, height, rng.uniform(1.3, 1.7), rng)
        page = (int(height * rng.uniform(1.3, 2.2)), int(alpha.shape[1] * rng.uniform(1.5, 2.8)))
        at = (int(rng.integers(0, page[0] - height + 1)), int(rng.integers(0, page[1] - alpha.shape[1] + 1)))
        ink = _place(alpha, page, at)
        board = rng.uniform(0.72, 0.9)
        marker = np.array(
            [(0.1, 0.1, 0.12), (0.1, 0.15, 0.55), (0.6, 0.1, 0.1), (0.1, 0.45, 0.15)][int(rng.integers(0, 4))],
            dtype=np.float32,
        )
        colour = board + (marker - board) * ink[..., None]
        colour = colour * _light(page, rng, rng.uniform(0.1, 0.35))[..., None]
        rows, cols = np.mgrid[0 : page[0], 0 : page[1]].astype(np.float32)
        centre = (at[0] + height * rng.uniform(0.1, 0.9), at[1] + alpha.shape[1] * rng.uniform(0.1, 0.9))
        radius = height * rng.uniform(0.12, 0.3)
        glare = np.exp(-(((rows - centre[0]) ** 2 + ((cols - centre[1]) * rng.uniform(0.5, 1.0)) ** 2) / radius**2))
        colour = colour + rng.uniform(0.3, 0.6) * glare[..., None]
        return _finish(colour, rng, rng.uniform(1, 5), rng.uniform(0.3, 1.0), int(rng.integers(50, 90)))
    if style == "ruled_notebook":
        height = int(rng.uniform(40, 110))
        alpha = stroke_alpha(counts, height, rng.uniform(0.8, 1.1), rng)
        spacing = height * rng.uniform(0.55, 1.0)
        page = (int(height * rng.uniform(1.8, 3.0)), int(alpha.shape[1] * rng.uniform(1.8, 3.5)))
        offset = rng.uniform(0, spacing)
        lines = _lines(page, spacing, int(rng.integers(1, 3)), offset, True)
        line_rows = np.arange(offset % spacing, page[0], spacing)
        sitting = [r for r in line_rows if r - height >= 0] or [page[0] - 1]
        bottom = int(sitting[int(rng.integers(0, len(sitting)))]) + int(rng.integers(-3, 4))
        left = int(rng.integers(0, page[1] - alpha.shape[1] + 1))
        ink = _place(alpha, page, (max(0, min(bottom - height, page[0] - height)), left))
        margin = np.zeros(page, dtype=np.float32)
        margin_at = int(rng.uniform(0.02, 0.25) * page[1])
        margin[:, margin_at : margin_at + 2] = 1.0 if rng.random() < 0.6 else 0.0
        paper = rng.uniform(0.85, 0.97)
        colour = np.full((*page, 3), paper, dtype=np.float32)
        colour = colour + (np.array([0.55, 0.7, 0.9]) * paper - colour) * lines[..., None]
        colour = colour + (np.array([0.9, 0.45, 0.45]) * paper - colour) * margin[..., None]
        colour = colour + (np.array([0.12, 0.15, 0.5]) - colour) * ink[..., None]
        colour = colour * _light(page, rng, rng.uniform(0.05, 0.25))[..., None]
        return _finish(colour, rng, rng.uniform(1, 5), rng.uniform(0, 0.8), int(rng.integers(50, 90)))
    if style == "small_offcentre":
        side = int(rng.uniform(400, 900))
        page = (side, int(side * rng.uniform(0.75, 1.33)))
        height = int(min(page) * rng.uniform(0.06, 0.15))
        alpha = stroke_alpha(counts, height, rng.uniform(0.9, 1.3), rng)
        at = (int(rng.integers(0, page[0] - height + 1)), int(rng.integers(0, page[1] - alpha.shape[1] + 1)))
        ink = _place(alpha, page, at)
        paper, pen = rng.uniform(0.75, 0.95), rng.uniform(0.05, 0.3)
        grey = (paper + (pen - paper) * ink) * _light(page, rng, rng.uniform(0.1, 0.4))
        return _finish(grey, rng, rng.uniform(2, 6), rng.uniform(0, 1.0), int(rng.integers(50, 90)))
    raise ValueError(f"unknown style {style!r}; the styles are {', '.join(STYLES)}")


def measure(net: torch.nn.Module, count: int, seed: int, styles: tuple[str, ...] = tuple(STYLES)) -> dict[str, Any]:
    """Per style: the share of ``count`` UCI digits read right, the reading time per picture (the drawing
    not counted), and the share the reader calls unsure."""
    from digits.evaluation.user_images import read_picture

    images, labels = uci_digits()
    order = np.random.default_rng(seed).permutation(len(labels))[:count]
    truth = torch.from_numpy(labels[order])
    results: dict[str, Any] = {"source": "scikit-learn UCI digits", "digits": len(order), "seed": seed, "styles": {}}
    for style in styles:
        drawn = [render(images[i], style, seed, int(i)) for i in order]
        started = time.perf_counter()  # the reading alone, not the drawing
        readings = [read_picture(picture) for picture in drawn]
        reading_ms = 1000 * (time.perf_counter() - started) / len(order)
        right = classify(net, torch.stack([picture for picture, _, _ in readings])) == truth
        unsure = torch.tensor([why is not None for _, _, why in readings])
        results["styles"][style] = {
            "description": STYLES[style],
            "accuracy": right.float().mean().item(),
            "unsure_share": unsure.float().mean().item(),
            "ms_per_picture": reading_ms,
        }
    return results


def markdown(results: dict[str, Any], checkpoint: str) -> str:
    from digits.report import markdown_table

    rows = [
        {
            "style": name,
            "pictures": results["digits"],
            "read right": f"{row['accuracy']:.1%}",
            "ms/picture": f"{row['ms_per_picture']:.1f}",
            "what": row["description"],
        }
        for name, row in results["styles"].items()
    ]
    return "\n".join(
        [
            f"# Handwriting in the wild: `{checkpoint}`",
            "",
            f"{results['digits']} of scikit-learn's UCI digits (not MNIST; seed {results['seed']}) rendered in each "
            "style, read by `digits.handwriting.to_mnist` and classified.",
            "",
            markdown_table(rows),
        ]
    )


def run_wild_handwriting(cfg) -> str:
    """Measure ``cfg.ckpt_path`` on ``cfg.styles``; wild_handwriting.json and .md in the run folder, or in
    ``paths.results_dir`` when publishing. Returns the Markdown."""
    from digits.evaluation.loading import load_module, resolve_checkpoint
    from digits.report import write_result

    path = resolve_checkpoint(cfg.ckpt_path)
    module = load_module(path, torch.device("cpu"))
    results = measure(module, cfg.digits, cfg.seed, tuple(cfg.styles))
    results["checkpoint"] = str(path)
    text = markdown(results, str(path))
    title = "Handwriting in the wild: UCI digits as users' pictures"
    write_result(results_dir(cfg), "wild_handwriting", title, results, text.split("\n", 1)[1])
    return text
