"""The same cross-entropy in TensorFlow, Keras and JAX (digits_lab.interop): every case within the
proof's tolerances (tests/test_losses.py), the by-hand expressions where no mapping exists, the numbers
where the same word means something else, and Keras's from_logits=False trap.

Needs the lab's extra (make setup-lab); without it these tests skip, and under CI=true they fail (as the MNIST ones do).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

INTEROP = ("tensorflow", "jax", "optax")


def require_interop() -> None:
    missing = [name for name in INTEROP if importlib.util.find_spec(name) is None]
    if missing:
        message = f"the lab's extra is not installed (missing {', '.join(missing)}): make setup-lab"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs the extra: a skip there would hide a missing install
        pytest.skip(message)


@pytest.fixture(scope="module")
def interop():
    require_interop()
    from digits_lab import interop

    return interop


@pytest.fixture(scope="module")
def all_cases(interop):
    return interop.cases(interop.TEST_GRID)  # every input form and both dtypes; the report runs them all


def test_every_case_of_every_library_matches_pytorch_and_the_three_forms(interop, all_cases):
    bad = [(r["framework"], r["how"], r["shape"], r["dtype"]) for r in all_cases if not r["within tolerance"]]
    assert not bad, bad[:5]
    frameworks = {r["framework"] for r in all_cases}
    assert frameworks == {"TensorFlow", "Keras", "JAX (optax)"}
    # every input form, both dtypes, every option, with the forms' references beside F.cross_entropy
    assert {r["shape"] for r in all_cases} == {"x".join(map(str, s)) for s in interop.SHAPES}
    assert {r["dtype"] for r in all_cases} == {"float32", "float64"}
    assert {r["option"] for r in all_cases} == {o for o, _, _ in interop.OPTION_SETS}
    assert all(f"grad vs {name}" in all_cases[0] for name in ["F.cross_entropy", *interop.FORMS])


def test_the_mapping_table_covers_every_pytorch_option_for_every_library(interop, all_cases):
    table = interop.mapping_table(all_cases)
    options = {row["PyTorch option"] for row in table}
    assert options == {
        "class indices",
        "reduction",
        "label_smoothing",
        "weight",
        "ignore_index",
        "probability targets",
        "extra dimensions (N, C, d1, ...)",
    }
    for option in options:
        assert {row["library"] for row in table if row["PyTorch option"] == option} == {
            "TensorFlow",
            "Keras",
            "JAX (optax)",
        }, option
    # What has no counterpart is written by hand, and those expressions are among the passing cases.
    by_hand = {(row["PyTorch option"], row["library"]) for row in table if row["kind"] == "by hand"}
    assert ("weight", "TensorFlow") in by_hand and ("ignore_index", "TensorFlow") in by_hand
    assert ("weight", "Keras") in by_hand and ("ignore_index", "JAX (optax)") in by_hand
    assert all(row["all within tolerance"] for row in table)


def test_a_deliberately_wrong_expression_is_caught(interop):
    """The comparison can fail: Keras's mean over all samples is not PyTorch's weighted mean."""
    s = interop.Scenario("weight", "index", (6, 7), "float64", {"weight": True})
    logits, target, weight = interop.torch_inputs(s)
    refs = interop.references(s)
    import tensorflow as tf

    wrong = interop.Expression(
        "Keras",
        "SparseCategoricalCrossentropy",
        "sample_weight=w[y], default reduction",
        "by hand",
        lambda t, w, d: (
            lambda x: tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=d)(t, x, sample_weight=w[t])
        ),
    )
    assert not interop.run_case(s, wrong, refs, logits, target, weight)["within tolerance"]


def test_where_the_same_word_means_something_else(interop):
    rows = {row["what"]: row for row in interop.differences("float64")}
    weighted = rows["mean with class weights"]
    # Keras divides by N = 6, PyTorch by sum(w[y]): the ratio of the two denominators, exactly.
    _, target, weight = interop.make_inputs("index", (6, 7), True, 0)
    ratio = weight[target].sum().item() / 6
    assert weighted["other value"] == pytest.approx(weighted["PyTorch value"] * ratio, rel=1e-12)
    assert rows["label_smoothing with class weights"]["relative difference"] > 1e-3
    assert rows["label_smoothing without weights"]["relative difference"] < 1e-14  # the same formula
    float32_keras = rows["float64 inputs, no dtype given"]["relative difference"]
    assert 1e-10 < float32_keras < 1e-6  # computed in float32: float32 rounding, not float64's
    assert rows["probability targets with class weights: the gradient"]["relative difference"] > 0.1
    assert interop.ignore_index_in_tensorflow().startswith("raises InvalidArgumentError")


def test_the_trained_networks_test_set_logits_in_every_library(interop, trained_run, data_dir):
    checkpoint = next((trained_run / "checkpoints").glob("best-*.ckpt"))
    logits, labels = interop.test_set_logits(str(checkpoint), str(data_dir))
    assert logits.shape == (10_000, 10)
    rows = interop.real_logit_cases(logits, labels)
    assert {r["framework"] for r in rows} == {"TensorFlow", "Keras", "JAX (optax)"}
    assert {r["dtype"] for r in rows} == {"float32", "float64"}
    assert all(r["within tolerance"] for r in rows), [r["how"] for r in rows if not r["within tolerance"]]

    trap = interop.keras_trap(logits, labels)
    means = trap["means"]
    right = means["nn.CrossEntropyLoss (right)"]
    assert means["CategoricalCrossentropy(from_logits=True) (right)"] == pytest.approx(right, rel=1e-5)
    # Keras's own path, reproduced step by step: divide by the row sum, clip to [eps, 1 - eps], -log
    assert trap["keras_path_by_hand_max_abs_difference"] < 1e-4
    assert means["CategoricalCrossentropy() on logits (Keras)"] != pytest.approx(right, rel=0.1)
    # where the target's entry is clipped the loss is the constant -log(eps): exactly those images get no gradient
    assert trap["share_with_zero_gradient"] == trap["share_clipped_at_epsilon"] > 0.5
    # the project's demonstration of the same mistake cannot go below its floor
    from digits.losses import softmax_floor

    assert means["loss=softmax_first (the project's mistake)"] > softmax_floor(10)


def test_keras_default_on_logits_as_the_logit_lab_page_shows_it(interop):
    """Keras's from_logits=False path on three rows of logits, and the page's reproduction of it
    (digits.demo.lesson.keras_default_loss, shown when softmax-first is switched on)."""
    import tensorflow as tf

    from digits.demo.lesson import explain, keras_default_loss

    x = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, 1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 1, 2])
    keras = tf.keras.losses.CategoricalCrossentropy(reduction=None)(F.one_hot(target, 3).numpy(), x.numpy()).numpy()
    page = keras_default_loss(x, target)
    np.testing.assert_allclose(keras, page.numpy(), rtol=1e-6)
    # row 2 sums to -1: its target entry 1 / -1 = -1 is clipped to epsilon, a loss of -log(1e-7)
    assert page[1].item() == pytest.approx(-np.log(1e-7), rel=1e-5)
    assert keras[0] != pytest.approx(F.cross_entropy(x[:1], target[:1]).item(), rel=0.1)
    logits = torch.tensor([3.0, -2.0, 0.5, 1.0, -1.0, 0.0, 2.0, -0.5, 0.25, 1.5])
    shown = explain(logits, target=6)["softmax_first"]["keras_default"]
    onehot = F.one_hot(torch.tensor([6]), 10).numpy()
    assert shown == pytest.approx(
        float(tf.keras.losses.CategoricalCrossentropy()(onehot, logits[None].numpy())), rel=1e-6
    )
