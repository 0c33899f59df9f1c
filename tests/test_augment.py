"""data.augment: batched jitter of the training images that a resumed run repeats exactly."""

from __future__ import annotations

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
        ("data.augment.enabled=yes", "data.augment.enabled='yes' is not allowed: true or false"),
        ("+data.augment.rotate=5", "data.augment.rotate=5 is not allowed: one of the keys"),
    ],
)
def test_bad_augment_values_are_refused(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        validate_train_config(compose_train([override], tmp_path, tmp_path))
