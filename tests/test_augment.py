"""data.augment: batched jitter of the training images that a resumed run repeats exactly."""

from __future__ import annotations

import math

import pytest
import torch
from harness import compose_train
from torchvision.transforms.v2 import functional as TF

from digits.augment import Augmentation, augment, batch_generator
from digits.config import ConfigError, validate_train_config
from digits.data import MNIST_MEAN, MNIST_STD, MNISTDataModule, load_mnist, normalize

SETTINGS = {"enabled": True, "degrees": 10, "translate": 0.1, "scale": 0.1, "stroke": 0.3}
BACKGROUND = -MNIST_MEAN / MNIST_STD


@pytest.fixture(scope="module")
def digits(data_dir):
    return normalize(load_mnist(data_dir, train=False, download=False)[0][:64])


def test_no_jitter_is_the_identity(digits):
    out = augment(digits, Augmentation(0, 0, 0, 0), batch_generator(0, list(range(64))))
    assert torch.allclose(out, digits, atol=1e-5)


def test_the_draw_is_a_function_of_the_seed_and_the_batch(digits):
    settings = Augmentation()
    a = augment(digits, settings, batch_generator(0, list(range(64))))
    assert torch.equal(a, augment(digits, settings, batch_generator(0, list(range(64)))))
    assert not torch.allclose(a, augment(digits, settings, batch_generator(1, list(range(64)))))
    assert not torch.allclose(a, augment(digits, settings, batch_generator(0, list(range(1, 65)))))
    assert (a - digits).abs().mean() > 0.1  # it does move the digits
    assert a.min() >= BACKGROUND - 1e-5 and a.max() <= digits.max() + 1e-5  # no values MNIST cannot have


def test_rotation_is_torchvisions_rotation_about_the_centre(digits):
    """Rotation alone, checked against torchvision's own rotate (counter-clockwise) with the angles
    the batch drew."""
    generator = batch_generator(7, list(range(64)))
    out = augment(digits, Augmentation(degrees=30, translate=0, scale=0, stroke=0), generator)
    angles = (torch.rand(64, 5, generator=batch_generator(7, list(range(64))))[:, 0] * 2 - 1) * 30
    expected = torch.stack(
        [
            TF.rotate(image, float(angle), TF.InterpolationMode.BILINEAR, fill=BACKGROUND)
            for image, angle in zip(digits, angles)
        ]
    )
    assert (out - expected).abs().mean() < 0.05 * (digits - expected).abs().mean()


def test_shift_moves_the_centre_of_mass_by_at_most_the_setting(digits):
    out = augment(digits, Augmentation(degrees=0, translate=0.1, scale=0, stroke=0), batch_generator(0, [1, 2]))
    coords = torch.arange(28, dtype=torch.float32)

    def centre(images):
        ink = images[:, 0] - BACKGROUND
        return torch.stack([(ink.sum(2) * coords).sum(1), (ink.sum(1) * coords).sum(1)], 1) / ink.sum((1, 2))[:, None]

    moved = (centre(out) - centre(digits)).abs()
    assert moved.max() <= 2.8 + 0.3 and moved.max() > 1.0


def test_stroke_width_changes_by_a_pixel(digits):
    out = augment(digits, Augmentation(degrees=0, translate=0, scale=0, stroke=1), batch_generator(0, [3]))
    ink, new_ink = (digits - BACKGROUND).sum((1, 2, 3)), (out - BACKGROUND).sum((1, 2, 3))
    thicker, thinner = new_ink > ink * 1.2, new_ink < ink * 0.8
    assert bool((thicker | thinner).all()) and 15 <= int(thicker.sum()) <= 49


def test_shear_leans_a_vertical_stroke_by_the_drawn_angle():
    """A vertical bar sheared: its column at the top and at the bottom differ by tan(angle) x the rows
    between them, leaning both ways over a batch; nothing else moves (the bar's centre row stays put)."""
    bar = torch.full((32, 1, 28, 28), BACKGROUND)
    bar[:, :, 4:24, 13:15] = 2.8
    generator = batch_generator(5, list(range(32)))
    out = augment(bar, Augmentation(degrees=0, translate=0, scale=0, stroke=0, shear=20), generator)
    draws = torch.rand(32, 5, generator=batch_generator(5, list(range(32))))  # the draws before shear's
    lean = torch.tan((torch.rand(32, 2, generator=_after(draws, 5))[:, 0] * 2 - 1) * math.radians(20))
    cols = torch.arange(28, dtype=torch.float32)

    def column(images, row):
        ink = (images[:, 0, row] - BACKGROUND).clamp(min=0)
        return (ink * cols).sum(1) / ink.sum(1)

    slope = (column(out, 6) - column(out, 21)) / (21 - 6)
    # the output pixel (x, y) reads the input at x + lean * y: the bar sits at x = c - lean * y, higher rows right
    assert torch.allclose(slope, lean, atol=0.03), (slope, lean)
    assert (lean > 0.1).any() and (lean < -0.1).any()
    assert torch.allclose(column(out, 14), column(bar, 14), atol=0.6)


def _after(draws: torch.Tensor, seed: int) -> torch.Generator:
    """The batch's generator advanced past the first draw, as augment leaves it for shear and blur."""
    generator = batch_generator(seed, list(range(len(draws))))
    torch.rand(len(draws), 5, generator=generator)
    return generator


def test_blur_softens_the_chosen_share_and_keeps_the_ink(digits):
    none = Augmentation(degrees=0, translate=0, scale=0, stroke=0)
    some = augment(digits, Augmentation(**{**none.__dict__, "blur": 0.5}), batch_generator(0, list(range(64))))
    every = augment(digits, Augmentation(**{**none.__dict__, "blur": 1.0}), batch_generator(0, list(range(64))))
    changed = (some - digits).abs().amax((1, 2, 3)) > 1e-4
    assert 16 <= int(changed.sum()) <= 48  # about half of 64
    assert torch.equal(some[changed], every[changed])
    assert bool(((every - digits).abs().amax((1, 2, 3)) > 1e-4).all())
    ink, blurred_ink = (digits - BACKGROUND).sum((1, 2, 3)), (every - BACKGROUND).sum((1, 2, 3))
    assert torch.allclose(blurred_ink, ink, rtol=1e-4)  # a normalised kernel on a replicated border
    assert every.amax((1, 2, 3)).mean() < digits.amax((1, 2, 3)).mean()  # the sharpest pixels soften


def test_only_training_batches_are_jittered_and_a_resumed_epoch_repeats_them(data_dir):
    def datamodule(augmented: bool) -> MNISTDataModule:
        dm = MNISTDataModule(
            data_dir=str(data_dir),
            batch_size=500,
            download=False,
            verify=False,
            augment=SETTINGS if augmented else None,
        )
        dm.setup("fit")
        return dm

    plain, jittered = datamodule(False), datamodule(True)
    assert torch.equal(next(iter(plain.val_dataloader()))[0], next(iter(jittered.val_dataloader()))[0])
    assert not torch.allclose(next(iter(jittered.train_dataloader()))[0], next(iter(plain.train_dataloader()))[0])
    # the uninterrupted epoch's batch 100, and the first batch of the same epoch resumed after 100
    batches = list(jittered.train_sampler)
    uninterrupted = jittered.train_set[batches[100]][0]
    jittered.train_sampler.load_state_dict({"epoch": 0, "batches_done": 100})
    assert torch.equal(next(iter(jittered.train_dataloader()))[0], uninterrupted)


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.augment.degrees=90", r"data.augment.degrees=90 is not allowed: a number in \[0, 45\]"),
        ("data.augment.stroke=-1", r"data.augment.stroke=-1 is not allowed"),
        ("data.augment.shear=40", r"data.augment.shear=40 is not allowed: a number in \[0, 30\]"),
        ("data.augment.blur=2", r"data.augment.blur=2 is not allowed: a number in \[0, 1\]"),
        ("data.augment.enabled=yes", "data.augment.enabled='yes' is not allowed: true or false"),
        ("+data.augment.rotate=5", "data.augment.rotate=5 is not allowed: one of the keys"),
    ],
)
def test_bad_augment_values_are_refused(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        validate_train_config(compose_train([override], tmp_path, tmp_path))
