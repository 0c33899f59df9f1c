"""The recipes' claims, on full trainings (minutes on 2 cores, hence the lab's suite): the default and
experiment=fast reach the accuracy the README's table promises, and a compiled run trains. The product's
suite proves a short real training (tests/test_train.py)."""

from __future__ import annotations

import pytest
import torch
from harness import QUIET, compose_train

from digits.module import DigitsModule
from digits.train import train


@pytest.mark.slow
def test_default_configuration_reaches_99_percent(tmp_path, data_dir):
    """The README's accuracy claim, on the run `make train` makes (seed 0, one of the table's seeds): the claim is
    a three-seed mean of at least 99.3 % (the benchmark's recipes table); one run may land a seed's spread below
    it, about a tenth of a point on this machine (the benchmark measured seeds 0-2 at 99.34-99.39 %)."""
    cfg = compose_train(["logger=none", *QUIET], tmp_path, data_dir)
    metrics, _ = train(cfg)
    assert metrics.test_acc >= 0.992, metrics
    assert metrics.steps == 3 * 215  # three epochs of 55,000 images in batches of 256: the recipe as configured


@pytest.mark.slow
def test_the_fast_experiment_reaches_its_bar(tmp_path, data_dir):
    """experiment=fast's claim is a three-seed mean of at least 99.0 % (the benchmark's recipes table); one run
    with its own seed may land a seed's spread below it, about a tenth of a point on this machine."""
    cfg = compose_train(["experiment=fast", "logger=none", *QUIET], tmp_path, data_dir)
    threads = torch.get_num_threads()
    try:
        metrics, _ = train(cfg)  # sets its threads=1 in this process
    finally:
        torch.set_num_threads(threads)
    assert metrics.threads == 1
    assert metrics.test_acc >= 0.989, metrics
    assert metrics.steps == 430  # one epoch of 55,000 images in batches of 128: the recipe as configured


@pytest.mark.slow
def test_a_compiled_run_trains_and_its_checkpoint_loads_as_an_eager_network(tmp_path, data_dir):
    """compile=default on the CPU: the network's forward and backward run through torch.compile (Inductor), and
    the checkpoint keeps the eager network's names, so Lightning's own load_from_checkpoint rebuilds it."""
    overrides = ["debug=limit", "logger=none", "callbacks=minimal", "model.channels=[4,8]", *QUIET]
    metrics, objects = train(compose_train([*overrides, "compile=default"], tmp_path / "compiled", data_dir))
    net = objects["module"].net
    assert net._compiled_call_impl is not None  # nn.Module.compile: the calls went through torch.compile
    assert metrics.test_acc > 0.3 and metrics.steps > 0
    loaded = DigitsModule.load_from_checkpoint(metrics.best_checkpoint)
    assert loaded.net._compiled_call_impl is None
    assert list(loaded.net.state_dict()) == list(net.state_dict())
    images = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(loaded.net.eval()(images), net.eval()(images), rtol=1e-4, atol=1e-4)
