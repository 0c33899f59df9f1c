"""A user's picture of a digit -> MNIST's form, the way MNIST itself was made (docs/evaluation.md lists the
steps): a phone photo or a scan is a dark digit somewhere on a larger, lighter, noisy page, and resizing the
whole page to 28x28 squashes and shrinks the digit. ``to_mnist`` returns the raw (1, 28, 28) picture in
[0, 1]; the caller standardises it (``digits.data.standardize``).
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from digits.errors import DigitsError, one_line

# Larger files or pictures are refused before they are decoded (a phone photo is 5-50 MB, 12-50 MP).
MAX_FILE_BYTES = 64 * 2**20
MAX_PIXELS = 100_000_000
# Pages larger than this are shrunk first (anti-aliased): the work stays bounded, and a digit that
# is 1/100 of such a page is still 40 pixels, twice what MNIST keeps of it.
WORKING_SIZE = 2048
BAND_PIXELS = 2**20  # to_mnist turns a large page to grey this many pixels at a time (4 MB of floats)
MAX_SIDE = BAND_PIXELS  # a band is whole rows: a longer row is refused (check_declared_size)
FIT = 20  # MNIST's box for the digit's longer side
FRAME = 28
CENTRE = 14  # pixel index of the centre of mass in MNIST's frame
MIN_CONTRAST = 0.15  # ink at least this much darker (lighter) than the paper, in [0, 1]
INK_LEVEL = 0.5  # of the contrast: pixels above it are ink, for finding what is digit and what is dirt
KEEP_MASS = 0.05  # a piece with less ink than this share of the largest piece's is a speck
KEEP_GAP = 0.5  # ... and so is one farther from the digit than this share of the digit's longer side
COMPETING_MASS = 0.5  # a mark apart from the digit with this share of its ink makes the reading unsure
BACKGROUND_SIDE = 64  # the paper's level (glare, shading) is estimated on a copy this long
BACKGROUND_SHARE = 0.1  # ... as this low percentile of each neighbourhood (a third of the side): ink is rarely more
LINE_LEVEL = 0.2  # of the contrast: pixels above it are looked at for the paper's lines
LINE_MIN_SHARE = 0.25  # a line is straight over at least this share of the picture's side...
LINE_MIN_PIXELS = 15  # ... and this many pixels
LINE_SPAN = 0.85  # a line crossing this share of the picture is the paper's, even without a parallel one
LINE_THINNESS = 10  # ... and a line is at least this many times longer than it is thick (a 0's sides are not)
UNSURE = "unsure: "  # the notes that say why a reading is unsure begin so
MIN_STROKE = 0.08  # strokes thinner than this share of the longer side are thickened to it (MNIST's are ~0.12)


def printable(text: str) -> str:
    """``text`` with control characters written as escapes: a file name reaches the terminal as text, never
    as commands to it or extra lines."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ImageError(DigitsError, ValueError):
    """A file that is not a readable image, or too large to read; the message names the file."""


class NoInkError(DigitsError, ValueError):
    """A picture with no digit on it (a blank or uniform page): refused rather than guessed."""


def _progressive_jpeg(image: Image.Image) -> bool:
    return image.format == "JPEG" and bool(image.info.get("progressive") or image.info.get("progression"))


def check_declared_size(image: Image.Image, path: str | Path, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a picture from the size its header declares, before anything is decoded: a decoder allocates
    for the declared size (157 bytes can declare 13,376 x 13,376). Pixels <= ``max_pixels`` (Pillow holds at
    most 4 bytes each), except a baseline JPEG, counted at its draft size in ``load_image``; a progressive
    JPEG's coefficients (2 bytes a pixel and component, whatever the draft) <= ``4 * max_pixels`` bytes;
    the longer side <= ``MAX_SIDE``, as ``to_mnist``'s bands are whole rows."""
    shown = printable(str(path))
    width, height = image.size
    if max(width, height) > MAX_SIDE:
        raise ImageError(
            f"{shown} is {width}x{height} pixels: a side longer than {MAX_SIDE:,} pixels is not read here "
            "(no camera or scanner makes one); crop the picture to the digit"
        )
    if image.format == "JPEG" and not _progressive_jpeg(image):
        return  # counted at its draft size, in load_image
    if width * height > max_pixels:
        raise ImageError(
            f"{shown} is {width}x{height} pixels, more than the {max_pixels:,} read here: "
            "crop or shrink the picture first"
        )
    if _progressive_jpeg(image):
        components = int(getattr(image, "layers", 0) or len(image.getbands()))
        needed = 2 * components * width * height
        if needed > 4 * max_pixels:
            raise ImageError(
                f"{shown} is a progressive JPEG of {width}x{height} pixels and {components} components: decoding "
                f"it holds {needed:,} bytes of coefficients, more than the {4 * max_pixels:,} allowed here; "
                "save it as a baseline JPEG or a PNG, or shrink it"
            )


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read a regular image file (a FIFO or a device would block) fully, upright (EXIF rotation), holding at
    most ``4 * max_pixels`` bytes: its declared size is checked first, and a JPEG is decoded at the smallest
    draft that still covers ``WORKING_SIZE``. Any failure to decode is an ImageError naming the file."""
    path = Path(path)
    shown = printable(str(path))  # control characters in a file name go to the terminal as escapes
    try:  # non-blocking: opening a FIFO for reading would otherwise wait for a writer
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise ImageError(f"{shown} cannot be read: {error.strerror or error}") from error
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise ImageError(f"{shown} is not a regular file (a folder, FIFO or device): give a picture file")
    with os.fdopen(descriptor, "rb") as file:
        if status.st_size > MAX_FILE_BYTES:
            raise ImageError(
                f"{shown} has {status.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} read here: "
                "crop or shrink the picture first"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked just below
                image = Image.open(file)
            with image:
                check_declared_size(image, path, max_pixels)
                scale = WORKING_SIZE / max(image.size)
                if scale < 1:  # JPEG only (others: no-op): a size whose longer side is still >= WORKING_SIZE
                    image.draft(image.mode, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
                width, height = image.size  # a baseline JPEG's draft: what its decoder holds
                if width * height > max_pixels:
                    raise ImageError(
                        f"{shown} is {width}x{height} pixels, more than the {max_pixels:,} read here: "
                        "crop or shrink the picture first"
                    )
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # not a copy of a picture that needs none
                _grey_levels(image.crop((0, 0, min(image.width, 4), min(image.height, 4))), 1.0, [])  # a grey scale?
                return image
        except ImageError:
            raise
        except Exception as error:  # Pillow's decoders raise OSError, ValueError, TypeError, NotImplementedError...
            raise ImageError(
                f"{shown} is not an image that can be read: {type(error).__name__}: {printable(one_line(error)[:200])}"
            ) from error


def _grey_levels(image: Image.Image, peak: float, notes: list[str]) -> np.ndarray:
    """Grey levels in [0, 1] (1 = white) of a band of the picture, transparency composited on white
    paper; ``peak`` is the whole picture's largest value (mode F only)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        if alpha.min() < 1.0:
            notes.append(f"composited the transparent {image.mode} picture on white")
        colour = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return colour * alpha + (1.0 - alpha)
    if image.mode.startswith("I;16") or image.mode == "I":
        notes.append(f"converted from 16-bit {image.mode} to grey scale")
        return np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32) / max(peak, 1e-12), 0.0, 1.0)
    if image.mode != "L":
        notes.append(f"converted from {image.mode} to grey scale")
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32) / 255.0


def _grey(image: Image.Image, notes: list[str]) -> np.ndarray:
    """Grey levels in [0, 1] (1 = white), transparency composited on white; a page larger than ``WORKING_SIZE``
    shrunk to it a band at a time (two box-resize passes), so the float copies never hold the whole page."""
    width, height = image.size
    peak = float(image.getextrema()[1]) if image.mode == "F" else 1.0
    longer = max(width, height)
    if longer <= WORKING_SIZE:
        return _grey_levels(image, peak, notes)
    scale = WORKING_SIZE / longer
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    wide = width >= height  # the first pass shrinks the longer side: rows of a wide page, columns of a tall one
    step = max(1, BAND_PIXELS // longer)
    seen: list[str] = []
    half = np.empty((height, size[0]) if wide else (size[1], width), dtype=np.float32)
    for start in range(0, height if wide else width, step):
        stop = min(start + step, height if wide else width)
        box = (0, start, width, stop) if wide else (start, 0, stop, height)
        band = _grey_levels(image.crop(box), peak, seen)
        band_size = (size[0], stop - start) if wide else (stop - start, size[1])
        shrunk = np.asarray(Image.fromarray(band).resize(band_size, Image.Resampling.BOX), dtype=np.float32)
        if wide:
            half[start:stop] = shrunk
        else:
            half[:, start:stop] = shrunk
    notes.extend(dict.fromkeys(seen))  # each band's notes, once
    notes.append(f"shrunk the {width}x{height} page to {size[0]}x{size[1]} before looking for the digit")
    return np.asarray(Image.fromarray(half).resize(size, Image.Resampling.BOX), dtype=np.float32)


def _peak(ink: np.ndarray) -> float:
    """The strongest ink, ignoring lone bright pixels (salt noise, dust on the scanner): a pixel
    counts at the level it shares with its brightest 4-neighbour."""
    padded = np.pad(ink, 1)
    neighbour = np.maximum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    return float(np.minimum(ink, neighbour).max())


def _background(ink: np.ndarray) -> np.ndarray:
    """The paper's own level under the ink, everywhere: a low percentile of each neighbourhood (a third of
    the picture's side) of a copy at most ``BACKGROUND_SIDE`` pixels long, smoothed and brought back to full
    size. Glare, shading and uneven light are the paper's; ink covers less than ``BACKGROUND_SHARE`` of a
    neighbourhood, so it stays out."""
    height, width = ink.shape
    scale = min(1.0, BACKGROUND_SIDE / max(height, width))
    small = cv2.resize(ink, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    window = max(3, round(max(small.shape) / 3) | 1)
    padded = np.pad(small, window // 2, mode="reflect")
    patches = np.lib.stride_tricks.sliding_window_view(padded, (window, window))
    level = np.percentile(patches.reshape(*small.shape, -1), 100 * BACKGROUND_SHARE, axis=-1).astype(np.float32)
    level = cv2.GaussianBlur(level, (0, 0), window / 4)
    return cv2.resize(level, (width, height), interpolation=cv2.INTER_LINEAR)


def _ink(grey: np.ndarray, notes: list[str]) -> np.ndarray:
    """Ink in [0, 1] on a 0 background: inverted when the paper is light, the paper's level (glare, shading)
    taken away, contrast stretched."""
    if float(np.median(grey)) > 0.5:
        notes.append("inverted (dark ink on light background)")
        ink = 1.0 - grey
    else:
        ink = grey
    lifted = np.clip(ink - _background(ink), 0.0, 1.0)
    peak = _peak(lifted)
    if peak < MIN_CONTRAST:
        raise NoInkError(
            f"no digit found: nothing in the picture is more than {peak:.0%} of the grey scale darker (lighter) "
            f"than the paper around it (a blank page?); at least {MIN_CONTRAST:.0%} is needed"
        )
    return np.clip(lifted / peak, 0.0, 1.0)


def _straight_lines(ink: np.ndarray) -> np.ndarray:
    """The pixels of ruled, squared and printed lines in the ink: thin horizontal or vertical runs (a few
    degrees of tilt allowed) that either cross most of the picture or come as a parallel pair of about the
    same extent (a printed box's sides, a grid). A digit's own strokes are neither. Where a stroke crosses or
    follows a line, as strong as the line on both sides of it, its pixels are the stroke's."""
    mask = (ink > LINE_LEVEL).astype(np.uint8)
    height, width = mask.shape
    found = {}  # axis -> (the line pixels, their thickness)
    for axis, side in ((1, width), (0, height)):
        length = max(LINE_MIN_PIXELS, round(LINE_MIN_SHARE * side))
        tilt = max(1, round(side / 100))  # a tilted line stays inside a band this thick over the kernel
        band = cv2.dilate(mask, np.ones((2 * tilt + 1, 1) if axis == 1 else (1, 2 * tilt + 1), np.uint8))
        kernel = np.ones((1, length) if axis == 1 else (length, 1), np.uint8)
        runs = cv2.morphologyEx(band, cv2.MORPH_OPEN, kernel) & mask
        count, labels, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
        along = stats[1:, cv2.CC_STAT_WIDTH if axis == 1 else cv2.CC_STAT_HEIGHT]
        start = stats[1:, cv2.CC_STAT_LEFT if axis == 1 else cv2.CC_STAT_TOP]
        across = stats[1:, cv2.CC_STAT_TOP if axis == 1 else cv2.CC_STAT_LEFT]
        thin = along >= LINE_THINNESS * stats[1:, cv2.CC_STAT_AREA] / np.maximum(along, 1)  # length / thickness
        keep = thin & (along >= LINE_SPAN * side)
        for i, j in zip(*np.nonzero(np.outer(thin, thin))):
            overlap = min(start[i] + along[i], start[j] + along[j]) - max(start[i], start[j])
            if i != j and overlap >= 0.8 * max(along[i], along[j]) and abs(across[i] - across[j]) > 0.3 * along[i]:
                keep[i] = True
        if keep.any():
            thickness = float(np.median(stats[1:, cv2.CC_STAT_AREA][keep] / along[keep]))
            found[axis] = (np.isin(labels, np.flatnonzero(keep) + 1).astype(np.uint8), thickness)
    lines = np.zeros_like(mask)
    for axis, (pixels, thickness) in found.items():
        # where a stroke crosses or follows the line the ink is thicker across it than the line: that stays
        # (measured without the other direction's lines, which are thick across this one's)
        others = found[1 - axis][0] if 1 - axis in found else np.zeros_like(mask)
        size = int(np.ceil(thickness)) + 2
        across = np.ones((size, 1) if axis == 1 else (1, size), np.uint8)
        strokes = cv2.morphologyEx(mask & (1 - others), cv2.MORPH_OPEN, across)
        # ... unless the line is darker than the writing (a printed box, pencil): then a crossing is the
        # stroke's only where the ink just beyond the line, on both sides, is at least half as strong
        writing = ink[(mask > 0) & (pixels == 0)]
        if writing.size and np.median(ink[pixels > 0]) > np.median(writing):
            beyond = cv2.erode(ink, np.ones((2 * size + 1, 1) if axis == 1 else (1, 2 * size + 1), np.float32))
            strokes &= (beyond >= 0.5 * ink).astype(np.uint8)
        lines |= pixels & (1 - strokes)
    return lines


def _remove_lines(ink: np.ndarray, notes: list[str]) -> np.ndarray:
    """``ink`` with the lines of the paper (``_straight_lines``) painted over from around them (OpenCV's
    inpainting), so a stroke they crossed is whole again; the contrast stretched again on what is left."""
    lines = _straight_lines(ink)
    if not lines.any():
        return ink
    lines = cv2.dilate(lines, np.ones((3, 3), np.uint8)) & (ink <= LINE_LEVEL * 4).astype(np.uint8) | lines
    notes.append(f"removed the paper's lines or printed box ({int(lines.sum())} pixels)")
    painted = cv2.inpaint(np.round(ink * 255).astype(np.uint8), lines, 3, cv2.INPAINT_TELEA)
    left = painted.astype(np.float32) / 255.0
    peak = _peak(left)
    if peak < MIN_CONTRAST:
        raise NoInkError("no digit found: only the paper's lines or a printed box, no writing")
    return np.clip(left / peak, 0.0, 1.0)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: (labels with 0 = background, count)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels, count - 1


def _digit(ink: np.ndarray, notes: list[str]) -> tuple[np.ndarray, tuple[int, int], str | None]:
    """The digit's box of the ink, its (top, left) and why the reader is unsure (None when it is not),
    keeping only the largest ink component and the pieces of a real size close to it (a 5's detached bar);
    specks and texture elsewhere are erased. A second mark apart from it with at least ``COMPETING_MASS`` of
    its ink makes the reading unsure."""
    mask = ink > INK_LEVEL
    grain = max(ink.shape) / 400  # on a large picture grainy pencil is held together by a little blur
    if grain >= 0.5:
        mask |= cv2.GaussianBlur(ink, (0, 0), grain) > INK_LEVEL / 2
    labels, count = _components(mask)
    if count == 0:  # cannot happen after the contrast stretch (the peak is 1), kept for safety
        raise NoInkError("no digit found: no pixel stands out from the background")
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)[1:]
    rows, cols = np.nonzero(labels)
    which = labels[rows, cols] - 1
    top_of, left_of = np.full(count, labels.size), np.full(count, labels.size)
    bottom_of, right_of = np.full(count, -1), np.full(count, -1)
    np.minimum.at(top_of, which, rows)
    np.maximum.at(bottom_of, which, rows)
    np.minimum.at(left_of, which, cols)
    np.maximum.at(right_of, which, cols)
    boxes = list(zip(top_of.tolist(), bottom_of.tolist(), left_of.tolist(), right_of.tolist()))
    order = np.argsort(-mass)
    kept = [int(order[0])]
    top, bottom, left, right = boxes[order[0]]
    changed = True
    while changed:  # grow the digit's box with every nearby real piece, until nothing joins
        changed = False
        for i in order[1:].tolist():
            if i in kept or mass[i] < KEEP_MASS * mass[order[0]]:
                continue
            t, b, lft, r = boxes[i]
            gap = max(t - bottom, top - b, lft - right, left - r, 0)
            if gap <= KEEP_GAP * max(bottom - top + 1, right - left + 1):
                kept.append(i)
                top, bottom, left, right = min(top, t), max(bottom, b), min(left, lft), max(right, r)
                changed = True
    unsure = None
    if len(kept) < count:
        notes.append(f"left out {count - len(kept)} speck(s) or mark(s) apart from the digit")
        rival = max((mass[i] for i in range(count) if i not in kept), default=0.0)
        if rival >= COMPETING_MASS * mass[kept].sum():
            unsure = f"two marks compete: one apart from the digit has {rival / mass[kept].sum():.0%} of its ink"
    # the digit's box with a margin for the soft edge around the strokes (a few pixels, more on a
    # large digit), and in it the kept pieces grown by that margin
    grow = max(1, round(0.02 * max(bottom - top + 1, right - left + 1)))
    top, left = max(top - grow, 0), max(left - grow, 0)
    bottom, right = min(bottom + grow + 1, ink.shape[0]), min(right + grow + 1, ink.shape[1])
    mask = np.isin(labels[top:bottom, left:right], np.array(kept) + 1).astype(np.uint8)
    grown = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0
    return np.where(grown, ink[top:bottom, left:right], 0.0).astype(np.float32), (top, left), unsure


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: area / half the boundary length (w*L / L)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    boundary = int(mask.sum() - inner.sum())
    return 2.0 * float(mask.sum()) / max(boundary, 1)


def _thicken(crop: np.ndarray, notes: list[str]) -> np.ndarray:
    longer = max(crop.shape)
    width = _stroke_width(crop > INK_LEVEL)
    target = MIN_STROKE * longer
    if width >= target or longer < FIT * 2:
        return crop
    grow = max(1, round((target - width) / 2))
    notes.append(
        f"thickened strokes of about {width:.1f} px to {width + 2 * grow:.1f} px "
        f"({target / longer * FIT:.1f} px at MNIST's scale)"
    )
    padded = np.pad(crop, grow)
    return F.max_pool2d(torch.from_numpy(padded)[None, None], 2 * grow + 1, stride=1)[0, 0].numpy()


def centre_of_mass(picture: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(row, column) of the intensity-weighted centre, in pixel indices."""
    picture = torch.as_tensor(picture, dtype=torch.float64).reshape(picture.shape[-2:])
    total = picture.sum()
    rows = torch.arange(picture.shape[0], dtype=torch.float64)
    cols = torch.arange(picture.shape[1], dtype=torch.float64)
    return float((picture.sum(1) * rows).sum() / total), float((picture.sum(0) * cols).sum() / total)


def to_mnist(image: Image.Image) -> tuple[torch.Tensor, list[str]]:
    """A picture of one digit -> ((1, 28, 28) float32 in [0, 1], white ink on black, not yet
    normalised; notes saying what was done, a note beginning with ``UNSURE`` when the reader is unsure
    of what it found). Raises NoInkError for a page without a digit."""
    notes: list[str] = []
    grey = _grey(image, notes)
    ink = _remove_lines(_ink(grey, notes), notes)
    digit, (box_top, box_left), unsure = _digit(ink, notes)
    rows, cols = np.nonzero(digit > 0.05)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # the digit's own strongest ink is 1 (dirt darker than the ink set the first stretch)
    crop = np.clip(digit[top:bottom, left:right] / max(_peak(digit), 1e-6), 0.0, 1.0)
    if crop.shape != ink.shape:
        notes.append(
            f"cropped to the ink: {right - left}x{bottom - top} at ({box_left + left}, {box_top + top}) "
            f"of {ink.shape[1]}x{ink.shape[0]}"
        )
    crop = _thicken(crop, notes)
    height, width = crop.shape
    scale = FIT / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32))
    digit = np.clip(np.asarray(digit.resize(size, Image.Resampling.LANCZOS), dtype=np.float32), 0.0, 1.0)
    if size != (width, height):
        notes.append(f"scaled {width}x{height} to {size[0]}x{size[1]} (longer side {FIT} px, aspect ratio kept)")
    row, col = centre_of_mass(digit)
    # a whole-pixel shift putting the centre of mass on pixel (14, 14), kept inside the frame: MNIST's
    # training digits have theirs there (mean 14.00, spread +-0.29, that of rounding to whole pixels)
    top = min(max(round(CENTRE - row), 0), FRAME - size[1])
    left = min(max(round(CENTRE - col), 0), FRAME - size[0])
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    frame[top : top + size[1], left : left + size[0]] = digit
    notes.append(f"centred the centre of mass in {FRAME}x{FRAME}")
    if unsure:
        notes.append(UNSURE + unsure)
    return torch.from_numpy(frame)[None], notes
