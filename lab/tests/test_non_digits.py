"""The sigmoid alternative (loss=sigmoid, digits.sigmoid): the loss is nn.BCEWithLogitsLoss on one-hot
targets, "none of the ten" is an answer, it trains, evaluates and predicts end to end on real MNIST, and
the non-digit pictures of its study are what they claim to be."""

from __future__ import annotations

from digits.data import load_mnist


def test_the_non_digit_pictures(data_dir):
    from digits.data import to_pixels
    from digits_lab.non_digits import KINDS, make_pictures

    images, _ = load_mnist(data_dir, train=False, download=False)
    pictures, kinds = make_pictures(images)
    assert len(pictures) >= 200 and pictures.shape[1:] == (1, 28, 28)
    assert set(kinds) == set(KINDS) and all(kinds.count(kind) >= 50 for kind in KINDS)
    pixels = to_pixels(pictures).squeeze(1)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    for kind in ("letters", "two digits", "scribbles"):  # ink on black, as MNIST: dark borders, some ink
        group = pixels[[k == kind for k in kinds]]
        assert (group.amax(dim=(1, 2)) > 0.5).all() and group[:, 0, :].mean() < 0.05, kind
    # no two pictures alike, so 200 pictures are 200 measurements
    assert len({tuple(p.flatten().tolist()) for p in pictures}) == len(pictures)
