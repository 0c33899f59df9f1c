"""The same cross-entropy in TensorFlow, Keras and JAX: values and gradients against ``F.cross_entropy``
and the project's three forms (``digits.losses``), option by option.

Each PyTorch option either maps to something in the other library ("built in"), is written by hand from
that library's pieces ("by hand"), or the same word means something else there ("differs", with the
numbers). Every case is computed, never typed: ``cases()`` runs them all, ``mapping_table()`` folds them
into the table the docs show. Gradients come from ``tf.GradientTape`` and ``jax.grad`` of
``sum(loss * upstream)`` with the proof's fixed upstream gradient (tests/test_losses.py).

Needs the ``interop`` extra (tensorflow-cpu, jax, optax); nothing outside this module, its test and
``scripts/interop.py`` imports them.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from digits.errors import DigitsError
from digits.loss_inputs import make_inputs
from digits.losses import LogSoftmaxNLLLoss, ManualCrossEntropyLoss
from digits_lab import results_dir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner on stderr


class InteropMissingError(DigitsError, ImportError):
    """The interop extra (tensorflow-cpu, jax, optax) is not installed."""


try:
    import jax
    import jax.numpy as jnp
    import optax
    import tensorflow as tf
except ImportError as error:
    raise InteropMissingError(
        f"the lab's extra is not installed ({error}): make setup-lab, or pip install -e '.[lab]' -e lab"
    ) from error

# Under a script's Hydra logging, JAX's INFO line about absent TPU backends would reach the console.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64 (JAX's default rounds them to float32)

PACKAGES = ("torch", "tensorflow-cpu", "keras", "jax", "jaxlib", "optax", "numpy")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# The proof's tolerances (tests/test_losses.py): relative and absolute, on the loss and the input gradient.
TOLERANCE = {"float64": dict(rtol=1e-12, atol=1e-14), "float32": dict(rtol=1e-6, atol=1e-6)}
# The proof's input forms: (C), (N, C), (N, C, d1), (N, C, d1, d2).
SHAPES = [(7,), (6, 7), (4, 7, 3), (3, 7, 2, 3)]
SMOOTHING = 0.25
IGNORE_INDEX = -100

# The project's three forms, built as the loss config group builds them (configs/loss/*.yaml).
FORMS: dict[str, Callable[..., torch.Tensor]] = {
    "nll": lambda **options: LogSoftmaxNLLLoss(**options),
    "manual": lambda **options: ManualCrossEntropyLoss(**options),
    "manual_backward": lambda **options: ManualCrossEntropyLoss(backward="manual", **options),
}


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# --------------------------------------------------------------------------------------------------
# One scenario: a PyTorch call (inputs and options) and its reference values.


@dataclass
class Scenario:
    option: str  # the PyTorch option this scenario exercises
    kind: str  # "index", "ignore" or "probabilities" (digits.loss_inputs.make_inputs)
    shape: tuple[int, ...]
    dtype: str
    options: dict[str, Any]  # F.cross_entropy's keyword arguments, weight as a bool
    seed: int = 0


def _upstream(shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """tests/test_losses.py's fixed, non-trivial upstream gradient (also for reduction="none")."""
    n = max(1, int(np.prod(shape)))
    return torch.linspace(0.5, 1.5, n, dtype=dtype).reshape(shape)


def torch_inputs(s: Scenario) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    dtype = DTYPES[s.dtype]
    logits, target, weight = make_inputs(s.kind, s.shape, s.options.get("weight", False), s.seed)
    target = target.to(dtype) if s.kind == "probabilities" else target
    return logits.to(dtype), target, None if weight is None else weight.to(dtype)


def _torch_loss_and_grad(fn: Callable, logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = logits.detach().clone().requires_grad_()
    loss = fn(x)
    loss.backward(_upstream(loss.shape, loss.dtype))
    return loss.detach().numpy(), x.grad.numpy()


def references(s: Scenario) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """F.cross_entropy's and the three forms' (loss, input gradient) for the scenario."""
    logits, target, weight = torch_inputs(s)
    options = {**s.options, "weight": weight}
    out = {"F.cross_entropy": _torch_loss_and_grad(lambda x: F.cross_entropy(x, target, **options), logits)}
    for name, build in FORMS.items():
        module = build(**options)
        out[name] = _torch_loss_and_grad(lambda x, m=module: m(x, target), logits)
    return out


# --------------------------------------------------------------------------------------------------
# The other libraries. Each expression gets class-last logits (N, d1, ..., C) as that library's tensor,
# the scenario's targets (class-last) and weight as NumPy, and returns the loss PyTorch's call returns.


def class_last(a: np.ndarray) -> np.ndarray:
    return a if a.ndim < 2 else np.moveaxis(a, 1, -1)


def class_first(a: np.ndarray) -> np.ndarray:
    return a if a.ndim < 2 else np.moveaxis(a, -1, 1)


def tf_loss_and_grad(fn: Callable, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = tf.constant(class_last(logits))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = fn(x)
        upstream = tf.constant(_upstream(torch.Size(loss.shape), torch.float64).numpy(), dtype=loss.dtype)
        total = tf.reduce_sum(loss * upstream)
    return loss.numpy(), class_first(tape.gradient(total, x).numpy())


def jax_loss_and_grad(fn: Callable, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = jnp.asarray(class_last(logits))
    shape = jax.eval_shape(fn, x)  # traced, not run: the upstream gradient needs the loss's shape first
    upstream = jnp.asarray(_upstream(torch.Size(shape.shape), torch.float64).numpy(), dtype=shape.dtype)

    def total(v):
        loss = fn(v)
        return jnp.sum(loss * upstream), loss

    grad, loss = jax.grad(total, has_aux=True)(x)  # one pass: the loss and its gradient
    return np.asarray(loss), class_first(np.asarray(grad))


@dataclass
class Expression:
    framework: str  # "TensorFlow", "Keras" or "JAX (optax)"
    function: str  # the library function it is built on
    how: str  # the expression, as a user writes it
    kind: str  # "built in", "by hand" or "differs"
    build: Callable[[np.ndarray, np.ndarray | None, str], Callable]  # (target, weight, dtype) -> loss of logits


def _one_hot(target: np.ndarray, n_classes: int, dtype: str) -> np.ndarray:
    return np.eye(n_classes, dtype=dtype)[target]


def _mask(target: np.ndarray) -> np.ndarray:
    return target != IGNORE_INDEX


def _safe(target: np.ndarray) -> np.ndarray:
    return np.where(_mask(target), target, 0)


def _smoothed(labels: np.ndarray, eps: float) -> np.ndarray:
    """PyTorch's smoothing of class-last labels: (1 - eps) * q + eps / C."""
    return labels * (1 - eps) + eps / labels.shape[-1]


def _tf_reduce(per_position, reduction: str, denominator=None):
    if reduction == "none":
        return per_position
    total = tf.reduce_sum(per_position)
    if reduction == "sum":
        return total
    return total / (tf.cast(tf.size(per_position), total.dtype) if denominator is None else denominator)


def _jax_reduce(per_position, reduction: str, denominator=None):
    if reduction == "none":
        return per_position
    total = jnp.sum(per_position)
    if reduction == "sum":
        return total
    return total / (per_position.size if denominator is None else denominator)


def _keras_reduction(reduction: str) -> str | None:
    return {"none": None, "sum": "sum", "mean": "sum_over_batch_size"}[reduction]


def expressions(s: Scenario) -> list[Expression]:
    """The other libraries' ways of writing the scenario's PyTorch call."""
    keras = tf.keras
    reduction = s.options.get("reduction", "mean")
    eps = s.options.get("label_smoothing", 0.0)
    weighted = s.options.get("weight", False)
    red = {"none": "", "sum": "sum of ", "mean": "mean of "}[reduction]
    kred = _keras_reduction(reduction)
    out: list[Expression] = []

    if s.option == "ignore_index":

        def tf_ignore(t, w, d):
            return lambda x: _tf_reduce(
                tf.where(
                    _mask(t), tf.nn.sparse_softmax_cross_entropy_with_logits(labels=_safe(t), logits=x), tf.zeros((), d)
                ),
                reduction,
                float(_mask(t).sum()),
            )

        def jax_ignore(t, w, d):
            return lambda x: _jax_reduce(
                optax.softmax_cross_entropy_with_integer_labels(x, _safe(t), where=_mask(t)[..., None]),
                reduction,
                float(_mask(t).sum()),
            )

        out += [
            Expression(
                "TensorFlow",
                "tf.nn.sparse_softmax_cross_entropy_with_logits",
                f"{red}where(y != -100, sparse_xent(labels=where(y != -100, y, 0)), 0)"
                + (", mean over the kept positions" if reduction == "mean" else ""),
                "by hand",
                tf_ignore,
            ),
            Expression(
                "Keras",
                "SparseCategoricalCrossentropy",
                f"SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100, reduction={kred!r})",
                "built in",
                lambda t, w, d: _keras_call(
                    keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True, ignore_class=IGNORE_INDEX, reduction=kred, dtype=d
                    ),
                    t,
                ),
            ),
            Expression(
                "JAX (optax)",
                "optax.softmax_cross_entropy_with_integer_labels",
                f"{red}softmax_cross_entropy_with_integer_labels(x, where(y != -100, y, 0),"
                " where=(y != -100)[..., None])" + (", mean over the kept positions" if reduction == "mean" else ""),
                "by hand",
                jax_ignore,
            ),
        ]
        return out

    if s.kind == "probabilities":
        # a_ic = ((1 - eps) q_ic + eps / C) w_c; the mean divides by the number of positions.
        def labels_of(t, w):
            a = _smoothed(class_last(t), eps) if eps else class_last(t)
            return a * w if w is not None else a

        if weighted:
            out += [
                Expression(
                    "TensorFlow",
                    "tf.nn.log_softmax",
                    f"{red}-reduce_sum(q' * w * log_softmax(x), -1)",
                    "by hand",
                    lambda t, w, d: (
                        lambda x: _tf_reduce(-tf.reduce_sum(labels_of(t, w) * tf.nn.log_softmax(x), -1), reduction)
                    ),
                ),
                Expression(
                    "JAX (optax)",
                    "optax.softmax_cross_entropy",
                    f"{red}softmax_cross_entropy(x, q' * w)",
                    "built in",
                    lambda t, w, d: lambda x: _jax_reduce(optax.softmax_cross_entropy(x, labels_of(t, w)), reduction),
                ),
            ]
            return out
        smooth_note = "smoothed by hand: (1 - eps) * q + eps / C, " if eps else ""
        out += [
            Expression(
                "TensorFlow",
                "tf.nn.softmax_cross_entropy_with_logits",
                f"{red}softmax_cross_entropy_with_logits(labels={smooth_note}q, logits=x)",
                "by hand" if eps else "built in",
                lambda t, w, d: (
                    lambda x: _tf_reduce(
                        tf.nn.softmax_cross_entropy_with_logits(labels=labels_of(t, w), logits=x), reduction
                    )
                ),
            ),
            Expression(
                "Keras",
                "CategoricalCrossentropy",
                f"CategoricalCrossentropy(from_logits=True, label_smoothing={eps}, reduction={kred!r})",
                "built in",
                lambda t, w, d: _keras_call(
                    keras.losses.CategoricalCrossentropy(
                        from_logits=True, label_smoothing=eps, reduction=kred, dtype=d
                    ),
                    class_last(t),
                ),
            ),
            Expression(
                "JAX (optax)",
                "optax.softmax_cross_entropy",
                f"{red}softmax_cross_entropy(x, "
                + ("smooth_labels(q, eps)" if eps else "q")
                + ")"
                + (" (optax's smooth_labels is PyTorch's formula)" if eps else ""),
                "built in",
                lambda t, w, d: (
                    lambda x: _jax_reduce(
                        optax.softmax_cross_entropy(
                            x, optax.smooth_labels(class_last(t), eps) if eps else class_last(t)
                        ),
                        reduction,
                    )
                ),
            ),
        ]
        return out

    # Class indices, no ignored positions.
    if weighted:
        # a_ic = ((1 - eps) onehot + eps / C) w_c; the mean divides by sum_i w_{y_i}.
        def weighted_labels(t, w, d):
            return _smoothed(_one_hot(t, len(w), d), eps) * w

        out += [
            Expression(
                "TensorFlow",
                "tf.nn.log_softmax",
                f"{red}-reduce_sum(onehot' * w * log_softmax(x), -1)" + (" / sum(w[y])" if reduction == "mean" else ""),
                "by hand",
                lambda t, w, d: (
                    lambda x: _tf_reduce(
                        -tf.reduce_sum(weighted_labels(t, w, d) * tf.nn.log_softmax(x), -1),
                        reduction,
                        float(w[t].sum()),
                    )
                ),
            ),
            Expression(
                "JAX (optax)",
                "optax.softmax_cross_entropy",
                f"{red}softmax_cross_entropy(x, onehot' * w)" + (" / sum(w[y])" if reduction == "mean" else ""),
                "by hand",
                lambda t, w, d: (
                    lambda x: _jax_reduce(
                        optax.softmax_cross_entropy(x, weighted_labels(t, w, d)), reduction, float(w[t].sum())
                    )
                ),
            ),
        ]
        if not eps:
            out.append(
                Expression(
                    "Keras",
                    "SparseCategoricalCrossentropy",
                    "SparseCategoricalCrossentropy(from_logits=True, reduction='sum')(y, x, sample_weight=w[y])"
                    + (" / sum(w[y])" if reduction == "mean" else ""),
                    "by hand",
                    lambda t, w, d: lambda x: _keras_weighted(t, w, d, x, reduction),
                )
            )
        return out

    onehot_note = "one_hot(y)" if not eps else "(1 - eps) * one_hot(y) + eps / C"
    out += [
        Expression(
            "TensorFlow",
            "tf.nn.softmax_cross_entropy_with_logits",
            f"{red}softmax_cross_entropy_with_logits(labels={onehot_note}, logits=x)",
            "by hand" if eps else "built in",
            lambda t, w, d: (
                lambda x: _tf_reduce(
                    tf.nn.softmax_cross_entropy_with_logits(
                        labels=_smoothed(_one_hot(t, x.shape[-1], d), eps), logits=x
                    ),
                    reduction,
                )
            ),
        ),
        Expression(
            "Keras",
            "CategoricalCrossentropy",
            f"CategoricalCrossentropy(from_logits=True, label_smoothing={eps}, reduction={kred!r})(one_hot(y), x)",
            "built in",
            lambda t, w, d: _keras_call(
                keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps, reduction=kred, dtype=d),
                _one_hot(t, s.shape[0 if len(s.shape) == 1 else 1], d),
            ),
        ),
        Expression(
            "JAX (optax)",
            "optax.softmax_cross_entropy",
            f"{red}softmax_cross_entropy(x, " + ("smooth_labels(one_hot(y), eps)" if eps else "one_hot(y)") + ")",
            "built in",
            lambda t, w, d: (
                lambda x: _jax_reduce(
                    optax.softmax_cross_entropy(x, optax.smooth_labels(_one_hot(t, x.shape[-1], d), eps)), reduction
                )
            ),
        ),
    ]
    if not eps:
        out += [
            Expression(
                "TensorFlow",
                "tf.nn.sparse_softmax_cross_entropy_with_logits",
                f"{red}sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)",
                "built in",
                lambda t, w, d: (
                    lambda x: _tf_reduce(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=x), reduction)
                ),
            ),
            Expression(
                "Keras",
                "SparseCategoricalCrossentropy",
                f"SparseCategoricalCrossentropy(from_logits=True, reduction={kred!r})",
                "built in",
                lambda t, w, d: _keras_call(
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=kred, dtype=d), t
                ),
            ),
            Expression(
                "JAX (optax)",
                "optax.softmax_cross_entropy_with_integer_labels",
                f"{red}softmax_cross_entropy_with_integer_labels(x, y)",
                "built in",
                lambda t, w, d: lambda x: _jax_reduce(optax.softmax_cross_entropy_with_integer_labels(x, t), reduction),
            ),
        ]
    else:
        out.append(
            Expression(
                "Keras",
                "SparseCategoricalCrossentropy",
                "no label_smoothing argument: CategoricalCrossentropy(label_smoothing=eps) on one_hot(y)",
                "by hand",
                lambda t, w, d: _keras_call(
                    keras.losses.CategoricalCrossentropy(
                        from_logits=True, label_smoothing=eps, reduction=kred, dtype=d
                    ),
                    _one_hot(t, s.shape[0 if len(s.shape) == 1 else 1], d),
                ),
            )
        )
    return out


def _keras_call(loss, y_true: np.ndarray) -> Callable:
    """A Keras loss object as a function of the logits: ``loss(y_true, logits)``."""
    return lambda x: loss(y_true, x)


def _keras_weighted(t: np.ndarray, w: np.ndarray, d: str, x, reduction: str):
    """PyTorch's class weight in Keras: the per-sample weight w[y] and, for the mean, PyTorch's denominator."""
    loss = tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=_keras_reduction("sum" if reduction == "mean" else reduction), dtype=d
    )
    value = loss(t, x, sample_weight=w[t])
    return value / float(w[t].sum()) if reduction == "mean" else value


# --------------------------------------------------------------------------------------------------
# The cases: every expression of every scenario, compared with every PyTorch reference.

OPTION_SETS: list[tuple[str, str, dict[str, Any]]] = [
    # (PyTorch option, target kind, F.cross_entropy options)
    ("class indices", "index", {}),
    ("reduction", "index", {"reduction": "none"}),
    ("reduction", "index", {"reduction": "sum"}),
    ("label_smoothing", "index", {"label_smoothing": SMOOTHING}),
    ("weight", "index", {"weight": True}),
    ("weight", "index", {"weight": True, "reduction": "none"}),
    ("weight", "index", {"weight": True, "label_smoothing": SMOOTHING}),
    ("ignore_index", "ignore", {}),
    ("ignore_index", "ignore", {"reduction": "sum"}),
    ("probability targets", "probabilities", {}),
    ("probability targets", "probabilities", {"reduction": "none"}),
    ("label_smoothing", "probabilities", {"label_smoothing": SMOOTHING}),
    ("weight", "probabilities", {"weight": True}),
]


# Every (dtype, input form) pair: the report's grid.
GRID = [(dtype, shape) for dtype in DTYPES for shape in SHAPES]
# Every input form once and each dtype twice: the test suite's grid. JAX compiles each operation once per
# shape and dtype, which makes each pair cost seconds; the report runs the whole GRID.
TEST_GRID = [("float64", (6, 7)), ("float64", (3, 7, 2, 3)), ("float32", (7,)), ("float32", (4, 7, 3))]


def scenarios(grid: list[tuple[str, tuple[int, ...]]] = GRID) -> list[Scenario]:
    return [
        Scenario(option, kind, shape, dtype, options) for dtype, shape in grid for option, kind, options in OPTION_SETS
    ]


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|, as digits_lab.compare reports it."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a - b).max() / (scale or 1.0)) if b.size else 0.0


def _within(a: np.ndarray, b: np.ndarray, dtype: str) -> bool:
    tol = TOLERANCE[dtype]
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol["atol"] + tol["rtol"] * np.abs(b)))


def run_case(s: Scenario, e: Expression, refs: dict, logits: torch.Tensor, target, weight) -> dict[str, Any]:
    t = target.numpy()
    w = None if weight is None else weight.numpy()
    fn = e.build(t, w, s.dtype)
    runner = jax_loss_and_grad if e.framework.startswith("JAX") else tf_loss_and_grad
    loss, grad = runner(fn, logits.numpy())
    row = {
        "framework": e.framework,
        "function": e.function,
        "option": s.option,
        "options": ", ".join(f"{k}={v}" for k, v in s.options.items()) or "defaults",
        "how": e.how,
        "kind": e.kind,
        "shape": "x".join(map(str, s.shape)),
        "extra dims": len(s.shape) > 2,
        "dtype": s.dtype,
        "result dtype": str(loss.dtype),
    }
    for name, (ref_loss, ref_grad) in refs.items():
        row[f"loss vs {name}"] = _relative(loss, ref_loss)
        row[f"grad vs {name}"] = _relative(grad, ref_grad)
    row["max relative difference"] = max(v for k, v in row.items() if k.startswith(("loss vs", "grad vs")))
    row["within tolerance"] = (
        all(
            _within(loss, ref_loss, s.dtype) and _within(grad, ref_grad, s.dtype)
            for ref_loss, ref_grad in refs.values()
        )
        and str(loss.dtype) == s.dtype
    )
    return row


def run_scenario(s: Scenario, data: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[dict[str, Any]]:
    """Every expression of one scenario; ``data`` replaces the drawn logits and class indices."""
    logits, target, weight = torch_inputs(s)
    if data is not None:
        logits, target = data[0].to(DTYPES[s.dtype]), data[1]
    refs = references(s) if data is None else _references_on(s, logits, target, weight)
    return [run_case(s, e, refs, logits, target, weight) for e in expressions(s)]


def _references_on(s: Scenario, logits, target, weight) -> dict:
    options = {**s.options, "weight": weight}
    out = {"F.cross_entropy": _torch_loss_and_grad(lambda x: F.cross_entropy(x, target, **options), logits)}
    for name, build in FORMS.items():
        module = build(**options)
        out[name] = _torch_loss_and_grad(lambda x, m=module: m(x, target), logits)
    return out


def cases(grid: list[tuple[str, tuple[int, ...]]] = GRID) -> list[dict[str, Any]]:
    """Every scenario over the proof's input forms, float32 and float64."""
    return [row for s in scenarios(grid) for row in run_scenario(s)]


def real_logit_cases(logits: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
    """The trained network's (N, 10) logits for the test images with their labels, plain and smoothed."""
    rows = []
    for dtype in DTYPES:
        for option, options in [("class indices", {}), ("label_smoothing", {"label_smoothing": 0.1})]:
            s = Scenario(option, "index", tuple(logits.shape), dtype, options)
            for row in run_scenario(s, (logits, labels)):
                rows.append({**row, "shape": f"{row['shape']} (test set logits)"})
    return rows


def mapping_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (PyTorch option, library function, kind): how it is written (the (N, C) mean form, or the
    first one seen), the number of cases and the largest relative difference in each dtype."""
    table: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        options = (
            [("extra dimensions (N, C, d1, ...)", "classes on the last axis: x.movedim(1, -1)")]
            if row["extra dims"]
            else []
        )
        for option, how in [(row["option"], row["how"]), *options]:
            key = (option, row["framework"], row["function"], row["kind"])
            entry = table.setdefault(
                key,
                {
                    "PyTorch option": option,
                    "library": row["framework"],
                    "function": row["function"],
                    "kind": row["kind"],
                    "how": how,
                    "cases": 0,
                    "all within tolerance": True,
                    "float32": 0.0,
                    "float64": 0.0,
                },
            )
            entry["cases"] += 1
            entry["all within tolerance"] &= row["within tolerance"]
            entry[row["dtype"]] = max(entry[row["dtype"]], row["max relative difference"])
    order = [o for o, _, _ in OPTION_SETS]
    order = list(dict.fromkeys(order)) + ["extra dimensions (N, C, d1, ...)"]
    return sorted(table.values(), key=lambda r: (order.index(r["PyTorch option"]), r["library"], r["function"]))


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per library: the number of cases, how many are within the proof's tolerances, the largest differences."""
    out = {}
    for row in rows:
        entry = out.setdefault(
            row["framework"],
            {"library": row["framework"], "cases": 0, "within tolerance": 0, "float32": 0.0, "float64": 0.0},
        )
        entry["cases"] += 1
        entry["within tolerance"] += row["within tolerance"]
        entry[row["dtype"]] = max(entry[row["dtype"]], row["max relative difference"])
    return list(out.values())


# --------------------------------------------------------------------------------------------------
# Where the same word means something else: the numbers.


def differences(dtype: str = "float64", seed: int = 0) -> list[dict[str, Any]]:
    """Each row: a PyTorch call, the other library's call a reader would write for it, both values (or
    gradient differences) and the relative difference. Pinned by tests/test_interop.py."""
    keras = tf.keras
    logits, target, weight = make_inputs("index", (6, 7), True, seed)
    x, y, w = logits.to(DTYPES[dtype]), target, weight.to(DTYPES[dtype])
    xn, yn, wn = x.numpy(), y.numpy(), w.numpy()
    rows = []

    def row(what, pytorch, other, torch_value, other_value, why):
        rows.append(
            {
                "dtype": dtype,
                "what": what,
                "PyTorch": pytorch,
                "other library": other,
                "PyTorch value": float(torch_value),
                "other value": float(other_value),
                "relative difference": abs(float(other_value) - float(torch_value)) / abs(float(torch_value)),
                "why": why,
            }
        )

    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
    row(
        "mean with class weights",
        "F.cross_entropy(x, y, weight=w)",
        "SparseCategoricalCrossentropy(from_logits=True)(y, x, sample_weight=w[y])",
        F.cross_entropy(x, y, weight=w),
        sparse(yn, xn, sample_weight=wn[yn]),
        "PyTorch divides by sum(w[y]), Keras's 'sum_over_batch_size' by the number of samples",
    )
    smoothed = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=SMOOTHING, dtype=dtype)
    onehot = _one_hot(yn, 7, dtype)
    row(
        "label_smoothing with class weights",
        f"F.cross_entropy(x, y, weight=w, label_smoothing={SMOOTHING})",
        f"CategoricalCrossentropy(from_logits=True, label_smoothing={SMOOTHING}, reduction='sum')"
        "(one_hot(y), x, sample_weight=w[y]) / sum(w[y])",
        F.cross_entropy(x, y, weight=w, label_smoothing=SMOOTHING),
        keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=SMOOTHING, reduction="sum", dtype=dtype)(
            onehot, xn, sample_weight=wn[yn]
        )
        / wn[yn].sum(),
        "PyTorch weights the smoothing term of class c by w_c; a sample weight scales the whole row by w[y]",
    )
    row(
        "label_smoothing without weights",
        f"F.cross_entropy(x, y, label_smoothing={SMOOTHING})",
        f"CategoricalCrossentropy(from_logits=True, label_smoothing={SMOOTHING})(one_hot(y), x)",
        F.cross_entropy(x, y, label_smoothing=SMOOTHING),
        smoothed(onehot, xn),
        "the same formula, (1 - eps) * one_hot + eps / C (Keras's BinaryCrossentropy smooths towards 0.5 instead)",
    )
    row(
        "float64 inputs, no dtype given",
        "F.cross_entropy(x.double(), y)",
        "SparseCategoricalCrossentropy(from_logits=True)(y, x) (dtype not given)",
        F.cross_entropy(logits, y),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)(yn, logits.numpy()),
        "a Keras loss computes in its dtype, keras.config.floatx() = float32 unless dtype= is given",
    )
    # TensorFlow's fused kernel returns softmax - labels as the gradient: right only when each row of labels sums to 1.
    q = make_inputs("probabilities", (6, 7), False, seed)[1].to(DTYPES[dtype]).numpy() * wn
    torch_grad = _torch_loss_and_grad(
        lambda v: F.cross_entropy(v, torch.from_numpy(q / wn), weight=w, reduction="sum"), x
    )[1]
    tf_grad = tf_loss_and_grad(lambda v: tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(q, v)), xn)[1]
    rows.append(
        {
            "dtype": dtype,
            "what": "probability targets with class weights: the gradient",
            "PyTorch": "F.cross_entropy(x, q, weight=w, reduction='sum').backward()",
            "other library": "GradientTape of reduce_sum(softmax_cross_entropy_with_logits(labels=q * w, logits=x))",
            "PyTorch value": float(np.abs(torch_grad).max()),
            "other value": float(np.abs(tf_grad).max()),
            "relative difference": _relative(tf_grad, torch_grad),
            "why": "TensorFlow's kernel returns softmax - labels, the gradient only when labels sum to 1 per row; "
            "the loss value agrees",
        }
    )
    return rows


def ignore_index_in_tensorflow() -> str:
    """What tf.nn.sparse_softmax_cross_entropy_with_logits does with PyTorch's ignore_index (-100) on the CPU."""
    try:
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=np.array([2, IGNORE_INDEX]), logits=np.zeros((2, 3)))
    except tf.errors.InvalidArgumentError as error:
        return f"raises {type(error).__name__}: {error.message.splitlines()[0]}"
    return "returns a value"


# --------------------------------------------------------------------------------------------------
# The TensorFlow reader's trap: Keras's CategoricalCrossentropy() defaults to from_logits=False.


def keras_trap(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Logits handed to CategoricalCrossentropy() (from_logits=False), Keras's code path by hand, the right
    loss, and the project's own demonstration of the same mistake (loss=softmax_first), on float32 logits."""
    from digits.demo.lesson import keras_default_loss  # the logit lab page's line, the same steps
    from digits.losses import SoftmaxFirstCrossEntropyLoss

    keras = tf.keras
    x = logits.float()
    xn, yn = x.numpy(), labels.numpy()
    onehot = _one_hot(yn, x.shape[1], "float32")
    epsilon = keras.config.epsilon()
    keras_value = keras.losses.CategoricalCrossentropy(reduction=None)(onehot, xn).numpy()
    by_hand = keras_default_loss(x, labels, epsilon).numpy()
    per_image = {
        "CategoricalCrossentropy() on logits (Keras)": keras_value,
        "Keras's path by hand: x / sum(x), clip, -log": by_hand,
        "nn.CrossEntropyLoss (right)": F.cross_entropy(x, labels, reduction="none").numpy(),
        "CategoricalCrossentropy(from_logits=True) (right)": keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=None
        )(onehot, xn).numpy(),
        "loss=softmax_first (the project's mistake)": SoftmaxFirstCrossEntropyLoss(reduction="none")(x, labels).numpy(),
    }
    normalised = xn / xn.sum(-1, keepdims=True)
    _, keras_gradient = tf_loss_and_grad(lambda v: keras.losses.CategoricalCrossentropy(reduction=None)(onehot, v), xn)
    return {
        "epsilon": epsilon,
        "images": int(len(yn)),
        "means": {name: float(v.mean()) for name, v in per_image.items()},
        "keras_path_by_hand_max_abs_difference": float(np.abs(keras_value - by_hand).max()),
        "share_clipped_at_epsilon": float((normalised[np.arange(len(yn)), yn] <= epsilon).mean()),
        "share_with_negative_logit_sum": float((xn.sum(-1) < 0).mean()),
        "share_with_zero_gradient": float((np.abs(keras_gradient).max(-1) == 0).mean()),
        "first_images": [
            {"image": i, "label": int(yn[i]), **{name: float(v[i]) for name, v in per_image.items()}} for i in range(3)
        ],
    }


# --------------------------------------------------------------------------------------------------
# The report: scripts/interop.py writes it to docs/results/interop.json and .md.


def test_set_logits(checkpoint: str, data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A trained checkpoint's float32 logits for the 10,000 MNIST test images, and their labels."""
    from digits.data import load_mnist, normalize
    from digits.evaluation.loading import collect_logits, load_module, resolve_checkpoint

    module = load_module(resolve_checkpoint(checkpoint), torch.device("cpu"))
    images, labels = load_mnist(data_dir, train=False, download=False)
    with torch.no_grad():
        return collect_logits(module, normalize(images)), labels


def report(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Every number of the study, as plain data."""
    rows = cases() + real_logit_cases(logits, labels)
    return {
        "versions": versions(),
        "summary": summary(rows),
        "mapping": mapping_table(rows),
        "differences": [*differences("float64"), *differences("float32")],
        "tensorflow_ignore_index": ignore_index_in_tensorflow(),
        "keras_trap": keras_trap(logits, labels),
        # each case's largest difference over the four references (the table's numbers)
        "cases": [{key: row[key] for key in CASE_FIELDS} for row in rows],
    }


CASE_FIELDS = (
    "framework",
    "function",
    "option",
    "options",
    "kind",
    "shape",
    "dtype",
    "max relative difference",
    "within tolerance",
)


def markdown(data: dict[str, Any]) -> str:
    from digits.report import markdown_table

    trap = data["keras_trap"]
    mapping = [{**row, "float32": row["float32"], "float64": row["float64"]} for row in data["mapping"]]
    columns = ["PyTorch option", "library", "function", "kind", "how", "cases", "all within tolerance"]
    return "\n".join(
        [
            "Cases per library (every one against F.cross_entropy and the three forms, loss and input gradient; "
            "largest relative difference max|a - b| / max|b| per dtype):",
            "",
            markdown_table(data["summary"]),
            "How each PyTorch option is written in the other libraries (built in: a function or argument of "
            "that library; by hand: written from its pieces; every row is computed):",
            "",
            markdown_table(mapping, [*columns, "float32", "float64"]),
            "Where the same word means something else (relative difference of the values, or of the gradients "
            "where the row says so):",
            "",
            markdown_table(
                data["differences"],
                [
                    "dtype",
                    "what",
                    "PyTorch",
                    "other library",
                    "PyTorch value",
                    "other value",
                    "relative difference",
                    "why",
                ],
            ),
            f"`ignore_index=-100` handed to `tf.nn.sparse_softmax_cross_entropy_with_logits` on the CPU: "
            f"{data['tensorflow_ignore_index'].split(':')[0]}.",
            "",
            f"The trap: `CategoricalCrossentropy()` (from_logits=False) handed the trained network's logits for the "
            f"{trap['images']:,} test images. Keras divides each row by its sum, clips to "
            f"[{trap['epsilon']:g}, 1 - {trap['epsilon']:g}] and takes -log; the same steps by hand differ from it "
            f"by at most {trap['keras_path_by_hand_max_abs_difference']:.2g}. Share of images whose target "
            f"entry was clipped at epsilon: {trap['share_clipped_at_epsilon']:.2%}; whose logits sum to a negative "
            f"number: {trap['share_with_negative_logit_sum']:.1%}; whose gradient with respect to the logits is zero "
            f"(nothing to learn from): {trap['share_with_zero_gradient']:.2%}.",
            "",
            markdown_table([{"loss": name, "mean over the test set": value} for name, value in trap["means"].items()]),
            "The first three test images:",
            "",
            markdown_table(trap["first_images"]),
        ]
    )


def run_interop(cfg) -> str:
    """Every case, with ``cfg.ckpt_path``'s test-set logits: interop.json and interop.md into
    ``paths.results_dir``. Returns the line that says where."""

    from digits.report import provenance, provenance_line, write_json

    logits, labels = test_set_logits(cfg.ckpt_path, cfg.data_dir)
    data = {**provenance(), "checkpoint": cfg.ckpt_path, **report(logits, labels)}
    out = results_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "interop.json", data)
    # provenance_line lists data["versions"]: this study's libraries (report() replaces provenance()'s)
    (out / "interop.md").write_text(provenance_line(data) + "\n\n" + markdown(data))
    return f"wrote {out / 'interop.json'} and {out / 'interop.md'}"
