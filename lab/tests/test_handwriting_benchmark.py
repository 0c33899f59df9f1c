"""A user's picture -> MNIST's form: each step on crafted pictures, MNIST's own digits coming back
unchanged, and real MNIST test digits re-rendered as users' pictures read by a real trained model."""

from __future__ import annotations

import json

import torch
from harness import run_script
from test_handwriting import ink_box, mnist_test  # noqa: F401  (a fixture, passed by name)

from digits.evaluation.loading import load_module, resolve_checkpoint
from digits.handwriting import centre_of_mass, to_mnist
from digits_lab.handwriting_benchmark import VARIANTS, accuracies, render


def test_centre_of_mass_and_the_20_pixel_fit(mnist_test):
    images, _ = mnist_test
    for index in range(40):
        picture, notes = to_mnist(render(images[index], "photo", seed=1, index=index))
        row, col = centre_of_mass(picture)
        assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5, notes
        assert max(ink_box(picture)) in (20, 21)  # Lanczos' soft edge may add a faint pixel
        assert picture.min() >= 0 and picture.max() <= 1


def test_users_pictures_are_read_as_well_as_mnist(trained_run, data_dir):
    """300 real test digits as photos and transparent drawings: the old preprocessing (whole
    picture to 28x28) loses most of them, the new one reads them about as well as MNIST itself."""
    net = load_module(resolve_checkpoint(trained_run), torch.device("cpu")).net
    results = accuracies(net, data_dir, count=300, seed=0, variants=("photo", "drawing"))
    plain = results["plain_accuracy"]
    assert plain > 0.9
    for variant, row in results["variants"].items():
        assert row["after"] >= plain - 0.03, (variant, row)
        assert row["before"] < row["after"] - 0.3, (variant, row)


def test_benchmark_script_writes_its_report_and_refuses_a_missing_checkpoint(trained_run, data_dir, tmp_path):
    done = run_script(
        "handwriting_benchmark.py",
        [f"ckpt_path={trained_run}", "digits=20", f"hydra.run.dir={tmp_path / 'ok'}"],
        data_dir,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "ok" / "handwriting.json").read_text())[
        "results"
    ]  # published form: provenance too
    assert results["digits"] == 20 and set(results["variants"]) == set(VARIANTS)
    assert "| photo | 20 |" in (tmp_path / "ok" / "handwriting.md").read_text()
    missing = run_script(
        "handwriting_benchmark.py",
        [f"ckpt_path={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'bad'}"],
        data_dir,
        timeout=300,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr + missing.stdout
