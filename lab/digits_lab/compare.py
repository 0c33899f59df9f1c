"""Measure how far each loss implementation is from ``nn.CrossEntropyLoss``: single calls over the
options, the naive form's failures, and whole trainings side by side. Used by
``scripts/compare_losses.py`` and by the tests."""

from __future__ import annotations

import decimal
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from digits.loss_inputs import DTYPES, make_inputs
from digits.losses import manual_cross_entropy, nll_cross_entropy
from digits.module import DigitsModule

IMPLEMENTATIONS: dict[str, Callable[..., Tensor]] = {
    "nll": nll_cross_entropy,
    "manual": manual_cross_entropy,
    "manual_backward": lambda *args, **kw: manual_cross_entropy(*args, backward="manual", **kw),
    "manual_naive": lambda *args, **kw: manual_cross_entropy(*args, naive=True, **kw),
}
# Each: (target kind, options). "ignore" marks 30% of the targets with ignore_index.
OPTION_SETS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": ("index", {}),
    "weight": ("index", {"weight": True}),
    "ignore_index": ("ignore", {}),
    "label_smoothing=0.1": ("index", {"label_smoothing": 0.1}),
    "weight+ignore+smoothing": ("ignore", {"weight": True, "label_smoothing": 0.1}),
    "reduction=sum": ("index", {"reduction": "sum"}),
    "reduction=none": ("index", {"reduction": "none"}),
    "probabilities": ("probabilities", {}),
    "probabilities+weight+smoothing": ("probabilities", {"weight": True, "label_smoothing": 0.1}),
    "extra dims (N,C,4,4)": ("index", {"extra_dims": (4, 4)}),
}


def _loss_and_grad(fn, logits, target, **options) -> tuple[Tensor, Tensor]:
    x = logits.detach().clone().requires_grad_()
    loss = fn(x, target, **options)
    loss.backward(torch.ones_like(loss))
    return loss.detach().double(), x.grad.double()


def _relative(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b| (inf where a is not finite and b is)."""
    if not torch.isfinite(a).all():
        return float("inf") if torch.isfinite(b).all() else float("nan")
    scale = b.abs().max().item() or 1.0
    return (a - b).abs().max().item() / scale


def compare_single_calls(
    devices: list[str], dtypes: list[str], batch: int, n_classes: int, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per (device, dtype, option set, implementation): relative differences of the loss and
    of the input gradient against nn.CrossEntropyLoss in the same dtype, and each one's error against
    a float64 computation of F.cross_entropy on the same (rounded) inputs."""
    rows = []
    for device in devices:
        for dtype_name in dtypes:
            dtype = DTYPES[dtype_name]
            for option_name, (kind, options) in OPTION_SETS.items():
                options = dict(options)
                extra_dims = options.pop("extra_dims", ())
                logits, target, weight = make_inputs(
                    kind, (batch, n_classes, *extra_dims), options.pop("weight", False), seed
                )
                logits = logits.to(dtype).to(device)
                target = (target.to(dtype) if kind == "probabilities" else target).to(device)
                weight = None if weight is None else weight.to(dtype).to(device)
                exact_loss, exact_grad = _loss_and_grad(
                    F.cross_entropy,
                    logits.double(),
                    target.double() if kind == "probabilities" else target,
                    weight=None if weight is None else weight.double(),
                    **options,
                )
                ref_loss, ref_grad = _loss_and_grad(F.cross_entropy, logits, target, weight=weight, **options)
                for name, fn in IMPLEMENTATIONS.items():
                    loss, grad = _loss_and_grad(fn, logits, target, weight=weight, **options)
                    rows.append(
                        {
                            "device": device,
                            "dtype": dtype_name,
                            "options": option_name,
                            "implementation": name,
                            "loss_vs_pytorch": _relative(loss, ref_loss),
                            "grad_vs_pytorch": _relative(grad, ref_grad),
                            "loss_error": _relative(loss, exact_loss),
                            "pytorch_loss_error": _relative(ref_loss, exact_loss),
                        }
                    )
    return rows


def naive_failures(devices: list[str], dtypes: list[str], scales: list[float], seed: int = 0) -> list[dict]:
    """For logits of growing size: is each form's loss finite, and how far from float64?"""
    rows = []
    for device in devices:
        for dtype_name in dtypes:
            for scale in scales:
                logits, target, _ = make_inputs("index", (256, 10), False, seed, scale=scale)
                exact = F.cross_entropy(logits.to(DTYPES[dtype_name]).double(), target).item()
                x, y = logits.to(DTYPES[dtype_name]).to(device), target.to(device)
                row = {"device": device, "dtype": dtype_name, "logit_std": scale, "exact": exact}
                for name, fn in [
                    ("cross_entropy", F.cross_entropy),
                    ("manual", manual_cross_entropy),
                    ("manual_naive", IMPLEMENTATIONS["manual_naive"]),
                ]:
                    row[name] = fn(x, y).item()
                rows.append(row)
    return rows


def float16_long_mean(device: str, size: int = 40_000, seed: int = 0) -> dict[str, float]:
    """The mean over many float16 targets: PyTorch's CPU kernel sums in float16 and overflows."""
    logits, target, _ = make_inputs("index", (size, 10), False, seed, scale=1.0)
    x = logits.half().to(device)
    return {
        "device": device,
        "targets": size,
        "exact": F.cross_entropy(x.double(), target.to(device)).item(),
        "cross_entropy": F.cross_entropy(x, target.to(device)).item(),
        "nll": nll_cross_entropy(x, target.to(device)).item(),
        "manual": manual_cross_entropy(x, target.to(device)).item(),
    }


def exact_cross_entropy(logits: Tensor, target: Tensor) -> tuple[float, Tensor]:
    """The mean cross-entropy of (N, C) logits and class indices, and its gradient, from the logits' exact
    binary values in 40-digit decimal arithmetic: a reference that no float rounding touches (float64 and
    no float128 would round the log-sum-exp of logits near 1e15 to their spacing)."""
    rows, targets = logits.double().tolist(), target.tolist()  # float32 -> float64 is exact
    with decimal.localcontext() as context:
        context.prec = 40
        total, grad = decimal.Decimal(0), []
        for row, t in zip(rows, targets):
            # x_c - x_t is exact in decimal; loss = log(sum_c exp(x_c - x_t)), softmax_c = exp(x_c - x_t - loss)
            differences = [decimal.Decimal(v) - decimal.Decimal(row[t]) for v in row]
            loss = sum(d.exp() for d in differences).ln()
            total += loss
            grad.append([float((d - loss).exp()) - (c == t) for c, d in enumerate(differences)])
    n = len(rows)
    return float(total / n), torch.tensor(grad, dtype=torch.float64) / n


def large_logit_errors(
    dtype_name: str, shifts: list[float], batch: int = 64, n_classes: int = 10, seed: int = 0
) -> list[dict[str, Any]]:
    """Logits of standard deviation 3 shifted by each of ``shifts`` (rounded to the dtype): each form's
    relative error of the mean loss and of the input gradient against ``exact_cross_entropy``."""
    rows = []
    forms = {
        "cross_entropy": F.cross_entropy,
        **{name: fn for name, fn in IMPLEMENTATIONS.items() if name != "manual_naive"},
    }
    for shift in shifts:
        logits, target, _ = make_inputs("index", (batch, n_classes), False, seed)
        logits = (logits + shift).to(DTYPES[dtype_name])
        exact_loss, exact_grad = exact_cross_entropy(logits, target)
        for name, fn in forms.items():
            loss, grad = _loss_and_grad(fn, logits, target)
            rows.append(
                {
                    "dtype": dtype_name,
                    "shift": shift,
                    "implementation": name,
                    "loss_error": abs(loss.item() - exact_loss) / exact_loss,
                    "grad_error": _relative(grad, exact_grad),
                }
            )
    return rows


def large_logit_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``large_logit_errors`` rows pivoted for the README: per (dtype, shift), "loss error / gradient error"
    of each form side by side."""
    table: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault((row["dtype"], row["shift"]), {"dtype": row["dtype"], "shift": f"{row['shift']:.0e}"})
        entry[row["implementation"]] = f"{row['loss_error']:.2g} / {row['grad_error']:.2g}"
    return list(table.values())


def _outcome(fn: Callable[..., Tensor], *args, **options) -> str:
    """A call's result as a report cell: its value, or the type of the error it raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 'elementwise_mean' warns; the table says so
            value = fn(*args, **options)
    except Exception as error:  # noqa: BLE001 - the point is to show which error PyTorch raises
        return f"raises {type(error).__name__}"
    return f"{value.item():.6g}"


def deliberate_differences() -> list[dict[str, str]]:
    """Where the forms and F.cross_entropy knowingly differ: each case run through both, and why.
    Each row is pinned by a test in tests/test_losses.py or tests/test_losses_pytorch_rules.py."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    target = torch.tensor([0, 2, 2, 5, 3, 0])  # class 1 unused
    weight = torch.rand(6, generator=generator, dtype=torch.float64) + 0.2
    nan_weight = torch.tensor([1.0, float("nan"), 1, 1, 1, 1], dtype=torch.float64)
    long_mean = make_inputs("index", (40_000, 10), False, 0, scale=1.0)
    cases = [
        (
            "negative label_smoothing",
            dict(label_smoothing=-0.1),
            logits,
            target,
            "a typo, not a setting: PyTorch silently treats it as 0",
        ),
        (
            "a NaN or inf weight",
            dict(weight=nan_weight),
            logits,
            target,
            "PyTorch returns NaN, or ignores it while no target hits that class; refused where it is given",
        ),
        (
            "reduction='elementwise_mean'",
            dict(reduction="elementwise_mean"),
            logits,
            target,
            "a deprecated alias of 'mean' (PyTorch warns); refused with the valid names",
        ),
        (
            "uint8 class indices with label smoothing",
            dict(weight=weight, label_smoothing=0.1),
            logits,
            target.to(torch.uint8),
            "a PyTorch 2.14.1 bug (its smoothing path gathers with uint8); the forms give the int64 targets' answer",
        ),
        (
            "float16 mean over 40,000 targets",
            {},
            long_mean[0].half(),
            long_mean[1],
            "the manual forms sum in float32 and round once; PyTorch's CPU kernel sums in float16 and overflows "
            f"(exact: {F.cross_entropy(long_mean[0].half().double(), long_mean[1]).item():.4g})",
        ),
    ]
    return [
        {
            "input": name,
            "F.cross_entropy": _outcome(F.cross_entropy, x, y, **options),
            "nll": _outcome(nll_cross_entropy, x, y, **options),
            "manual": _outcome(manual_cross_entropy, x, y, **options),
            "why": why,
        }
        for name, options, x, y, why in cases
    ]


class Float64CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss computed in float64 and rounded back: the same function, rounded differently.

    A control for the whole-training comparison: if this run drifts from the float32 reference as far
    as the manual form does, the manual form's drift is rounding amplified by training, not a
    different function.
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return super().forward(input.double(), target).to(input.dtype)


class StepLosses(Callback):
    """Records the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(loss.item())


def training_curves(
    datamodule: L.LightningDataModule,
    model: dict,
    losses: dict[str, dict],
    optimizer: dict,
    scheduler: dict | None,
    steps: int,
    seed: int,
    accelerator: str = "cpu",
    channels_last: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train once per loss with the same seed, data order and deterministic kernels; return each run's
    per-step losses and its final parameters as one flat vector."""
    results = {}
    for name, loss in losses.items():
        L.seed_everything(seed, workers=True, verbose=False)
        module = DigitsModule(
            model=model, loss=loss, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last
        )
        recorder = StepLosses()
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=1,
            max_epochs=1,
            limit_train_batches=steps,
            limit_val_batches=0,
            deterministic=True,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[recorder],
        )
        trainer.fit(module, datamodule=datamodule)
        parameters = torch.cat([p.detach().flatten().double().cpu() for p in module.net.parameters()])
        results[name] = {"losses": recorder.losses, "parameters": parameters}
    return results


def curve_differences(curves: dict[str, dict[str, Any]], reference: str = "cross_entropy") -> dict[str, dict]:
    """Largest per-step loss difference and final-parameter difference of each run against the reference."""
    base = curves[reference]
    out = {}
    for name, run in curves.items():
        steps = torch.tensor(run["losses"], dtype=torch.float64)
        base_steps = torch.tensor(base["losses"], dtype=torch.float64)
        step_diff = (steps - base_steps).abs()
        first_diff = int(torch.nonzero(step_diff).min()) if step_diff.any() else None
        out[name] = {
            "max_loss_diff": step_diff.max().item(),
            "max_loss_rel_diff": (step_diff / base_steps.abs()).max().item(),
            "first_step_with_a_difference": first_diff,
            "first_step_rel_diff": (step_diff[0] / base_steps[0].abs()).item(),
            "max_parameter_diff": (run["parameters"] - base["parameters"]).abs().max().item(),
            "bitwise_equal": bool(
                torch.equal(steps, base_steps) and torch.equal(run["parameters"], base["parameters"])
            ),
        }
    return out
