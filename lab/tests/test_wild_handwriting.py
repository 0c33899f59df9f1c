"""The wild-handwriting benchmark: its pictures are a function of (seed, style, index), each style is what
it says (the form has its printed box, the whiteboard its glare), and a real trained model reads the
boxed pencil that the reader before line removal read as 0s."""

from __future__ import annotations

import json

import numpy as np
import torch
from harness import run_script

from digits.evaluation.loading import load_module, resolve_checkpoint
from digits_lab.wild_handwriting import STYLES, measure, render, uci_digits


def test_pictures_are_reproducible_and_each_style_differs():
    images, _ = uci_digits()
    for style in STYLES:
        first, again = render(images[5], style, 0, 5), render(images[5], style, 0, 5)
        assert np.array_equal(np.asarray(first), np.asarray(again)), style
        assert not np.array_equal(np.asarray(first), np.asarray(render(images[5], style, 1, 5))), style
    # the form's printed box: a dark straight run across most of the picture's width
    form = np.asarray(render(images[5], "form_pencil", 0, 5).convert("L"), dtype=np.float32)
    assert ((form < 80).mean(axis=1) > 0.8).any()
    # the whiteboard's glare: a washed-out spot brighter than the board around it
    board = np.asarray(render(images[5], "whiteboard", 0, 5).convert("L"), dtype=np.float32)
    assert board.max() >= 250 and np.median(board) < 235


def test_a_trained_model_reads_every_style(trained_run):
    """60 digits per style through the product's reader and the shared short training (97-98 % on MNIST):
    the boxed pencil, read as 0 by the reader without line removal (about 10 %), is read."""
    module = load_module(resolve_checkpoint(trained_run), torch.device("cpu"))
    results = measure(module, count=60, seed=2)
    for style, row in results["styles"].items():
        assert row["accuracy"] >= 0.7 - 1e-6, (style, row)  # 42 of 60 is 0.7, stored in float32 as 0.69999999


def test_the_script_writes_its_result_files(trained_run, data_dir, tmp_path):
    done = run_script(
        "wild_handwriting.py",
        [f"ckpt_path={trained_run}", "digits=10", "styles=[scan,form_pencil]", f"hydra.run.dir={tmp_path / 'run'}"],
        data_dir,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((tmp_path / "run" / "wild_handwriting.json").read_text())["results"]
    assert set(saved["styles"]) == {"scan", "form_pencil"} and saved["digits"] == 10
    assert "| form_pencil | 10 |" in (tmp_path / "run" / "wild_handwriting.md").read_text()
