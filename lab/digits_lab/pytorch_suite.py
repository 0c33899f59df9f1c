"""PyTorch's own test material for cross-entropy, fed through the project's forms.

The material (``torch.testing._internal``; it needs ``expecttest``, in the ``test`` extra):

* the ``OpInfo`` sample inputs of ``nn.functional.cross_entropy`` and ``nn.functional.nll_loss``
  (``common_methods_invocations.op_db``);
* the ``ModuleInfo`` inputs of ``nn.CrossEntropyLoss`` and ``nn.NLLLoss``, with their reference functions
  (``common_nn``'s ``cross_entropy_loss_reference``, ``nllloss_reference``, ...), and their error inputs
  (``common_modules.module_db``);
* ``common_nn.criterion_tests``' NLLLoss entries.

How ``nll_loss`` material maps onto cross-entropy: NLL takes log-probabilities, and the cross-entropy of
log-probabilities *is* their NLL, because ``log_softmax(log p) = log p`` when ``p`` sums to 1. So the
OpInfo samples' inputs (arbitrary numbers) are first made log-probabilities with ``F.log_softmax`` (the
ModuleInfo and criterion inputs already are), then go into every form as logits; the expected value is
PyTorch's ``F.nll_loss`` / ``nn.NLLLoss`` on them, and the expected gradients and tangents are
``F.cross_entropy``'s on the same inputs (the forms compute cross-entropy, whose gradient is not NLL's).

Every check compares a form with PyTorch on the same inputs: value, dtype and shape; the input gradient
(and the probability target's); forward-mode tangents (``torch.func.jvp``); the double backward (a
Hessian-vector product). In float16/bfloat16 a difference beyond the tolerance still passes when the form
is at least as close as PyTorch to a float64 evaluation ("closer" in the report): the manual forms compute
in float32 and round once, PyTorch's CPU kernels round in between.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from digits.errors import DigitsError
from digits.losses import (
    LogSoftmaxNLLLoss,
    LossArgumentError,
    ManualCrossEntropyLoss,
    manual_cross_entropy,
    nll_cross_entropy,
)

# Every name this module takes from PyTorch's internals, in one place: a torch upgrade that moves one
# fails here, naming it, instead of silently running fewer cases.
INTERNAL_NAMES = {
    "torch.testing._internal.common_methods_invocations": ["op_db"],
    "torch.testing._internal.common_modules": ["module_db", "ModuleErrorEnum"],
    "torch.testing._internal.common_nn": [
        "criterion_tests",
        "cross_entropy_loss_reference",
        "nllloss_reference",
        "nlllossNd_reference",
        "loss_reference_fns",
    ],
}
OPS = ("nn.functional.cross_entropy", "nn.functional.nll_loss")
MODULES = ("CrossEntropyLoss", "NLLLoss")
CRITERION_PREFIXES = ("CrossEntropyLoss", "NLLLoss_")

FUNCTIONAL_FORMS: dict[str, Callable[..., Tensor]] = {
    "nll": nll_cross_entropy,
    "manual": manual_cross_entropy,
    "manual_backward": partial(manual_cross_entropy, backward="manual"),
}
MODULE_FORMS: dict[str, Callable[..., torch.nn.Module]] = {
    "nll": LogSoftmaxNLLLoss,
    "manual": ManualCrossEntropyLoss,
    "manual_backward": partial(ManualCrossEntropyLoss, backward="manual"),
}
# Relative and absolute tolerance per dtype, as in tests/test_losses.py.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


class PyTorchSuiteMissingError(DigitsError, ImportError):
    """PyTorch's internal test material is not importable as this module expects."""


def internals() -> dict[str, Any]:
    """The pinned names, imported; a clear error naming what is missing otherwise."""
    found = {}
    for module_name, names in INTERNAL_NAMES.items():
        frozen = torch.backends.flags_frozen()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise PyTorchSuiteMissingError(
                f"cannot import {module_name} ({error}): install the lab's extra, "
                "make setup-lab (pip install -e '.[lab]' -e lab)"
            ) from error
        finally:
            # common_utils freezes torch.backends' flags on import (torch.backends.disable_global_flags()), for
            # PyTorch's own test runs; Lightning's Trainer sets cudnn flags later in the same process and would
            # fail. Undo it (torch has no public call for that; the flag is a module global).
            if not frozen:
                torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
        for name in names:
            if not hasattr(module, name):
                raise PyTorchSuiteMissingError(
                    f"torch {torch.__version__}: {module_name}.{name} is gone; update digits/pytorch_suite.py"
                )
            found[name] = getattr(module, name)
    return found


def _find(items, key: Callable[[Any], str], wanted: str, where: str):
    matches = [item for item in items if key(item) == wanted]
    if not matches:
        raise PyTorchSuiteMissingError(
            f"torch {torch.__version__}: no {wanted!r} in {where}; update digits/pytorch_suite.py"
        )
    return matches[0]


@dataclass
class Case:
    """One input from PyTorch's material: logits, target, nn.CrossEntropyLoss options, and PyTorch's answer."""

    source: str
    name: str
    input: Tensor
    target: Tensor
    options: dict[str, Any]
    expected: Callable[[Tensor, Tensor], Tensor]  # PyTorch's op or module, on (input, target)
    reference: Callable[[torch.nn.Module, Tensor, Tensor], Tensor] | None = None  # common_nn's, given a module

    @property
    def probabilities(self) -> bool:
        return self.target.shape == self.input.shape and self.target.is_floating_point()


@dataclass
class ErrorCase:
    source: str
    name: str
    constructor: dict[str, Any]
    input: Tensor
    target: Tensor
    error_type: type[BaseException]
    error_regex: str


def _class_dim(x: Tensor) -> int:
    return 0 if x.dim() == 1 else 1


def _module_options(module: torch.nn.Module) -> dict[str, Any]:
    """nn.CrossEntropyLoss / nn.NLLLoss's settings as the forms' keyword arguments."""
    return dict(
        weight=module.weight,
        ignore_index=module.ignore_index,
        reduction=module.reduction,
        label_smoothing=getattr(module, "label_smoothing", 0.0),
    )


def opinfo_cases(op_name: str, device: str, dtype: torch.dtype) -> list[Case]:
    """The OpInfo's sample inputs; nll_loss's inputs made log-probabilities (module docstring)."""
    op = _find(internals()["op_db"], lambda o: o.name, op_name, "common_methods_invocations.op_db")
    if dtype not in op.supported_dtypes(torch.device(device).type):
        return []
    cases = []
    for i, sample in enumerate(op.sample_inputs(device, dtype, requires_grad=False)):
        x, (target,), options = sample.input, sample.args, dict(sample.kwargs)
        if op_name.endswith("nll_loss"):
            x = F.log_softmax(x, _class_dim(x))
        cases.append(
            Case(
                f"OpInfo {op_name}",
                f"{i}: {tuple(x.shape)} {_describe(options)}",
                x,
                target,
                options,
                partial(op.op, **options),
            )
        )
    return cases


def module_cases(module_name: str, device: str, dtype: torch.dtype) -> list[Case]:
    """The ModuleInfo's inputs, with PyTorch's module as the expected answer and its reference function."""
    info = _find(internals()["module_db"], lambda m: m.module_cls.__name__, module_name, "common_modules.module_db")
    if dtype not in info.dtypes:
        return []
    cases = []
    for sample in info.module_inputs_func(info, device=device, dtype=dtype, requires_grad=False, training=True):
        pytorch_module = info.module_cls(*sample.constructor_input.args, **sample.constructor_input.kwargs)
        x, target = sample.forward_input.args
        cases.append(
            Case(
                f"ModuleInfo nn.{module_name}",
                sample.desc or "default",
                x,
                target,
                _module_options(pytorch_module),
                pytorch_module,
                sample.reference_fn,
            )
        )
    return cases


def has_module_error_inputs(module_name: str) -> bool:
    """Whether this torch's ModuleInfo lists error inputs for the module (2.14.1's does; 2.11's does not)."""
    info = _find(internals()["module_db"], lambda m: m.module_cls.__name__, module_name, "common_modules.module_db")
    return info.module_error_inputs_func is not None


def module_error_cases(module_name: str, device: str, dtype: torch.dtype) -> list[ErrorCase]:
    info = _find(internals()["module_db"], lambda m: m.module_cls.__name__, module_name, "common_modules.module_db")
    if info.module_error_inputs_func is None:
        return []
    cases = []
    for i, error in enumerate(
        info.module_error_inputs_func(info, device=device, dtype=dtype, requires_grad=False, training=True)
    ):
        sample = error.module_error_input
        x, target = sample.forward_input.args
        cases.append(
            ErrorCase(
                f"ModuleInfo nn.{module_name} errors",
                f"{i}: {error.error_regex}",
                dict(sample.constructor_input.kwargs),
                x,
                target,
                error.error_type,
                error.error_regex,
            )
        )
    return cases


def criterion_cases() -> list[Case]:
    """common_nn.criterion_tests' cross-entropy and NLL entries (float64, CPU)."""
    cases = []
    for test in internals()["criterion_tests"]:
        name = test.get("fullname") or test.get("module_name", "")
        if not name.startswith(CRITERION_PREFIXES):
            continue
        pytorch_module = test["constructor"]()
        x, target = test["input_fn"](), test["target_fn"]()
        reference = test.get("reference_fn")
        cases.append(
            Case(
                "common_nn criterion_tests",
                name,
                x,
                target,
                _module_options(pytorch_module),
                pytorch_module,
                None if reference is None else (lambda m, i, t, r=reference: r(i, t, m)),
            )
        )
    return cases


def _describe(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'tensor' if isinstance(v, Tensor) else v}" for k, v in sorted(options.items()))


# --------------------------------------------------------------------------------------------------
# Checks: each returns the largest relative difference from PyTorch (0 where bitwise equal), or raises.


@dataclass
class Outcome:
    """One (case, form, check): the difference from PyTorch, and whether the form passes."""

    difference: float
    passed: bool
    closer_than_pytorch: bool = False
    detail: str = ""


def _relative(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    both_nan = torch.isnan(a) & torch.isnan(b)
    a, b = a.masked_fill(both_nan, 0.0), b.masked_fill(both_nan, 0.0)
    if not torch.equal(torch.isfinite(a), torch.isfinite(b)):
        return float("inf")
    same_inf = ~torch.isfinite(a) & (a == b)
    diff = (a - b).masked_fill(same_inf, 0.0).abs()
    if diff.numel() == 0:
        return 0.0
    scale = max(b.masked_fill(~torch.isfinite(b), 0.0).abs().max().item(), 1.0)  # relative, absolute below 1
    return diff.max().item() / scale


def _tolerance(*dtypes: torch.dtype) -> float:
    return max(TOLERANCE[d] for d in dtypes if d in TOLERANCE)


def _float64(case: Case) -> tuple[Tensor, Tensor, dict[str, Any]]:
    options = dict(case.options)
    if options.get("weight") is not None:
        options["weight"] = options["weight"].double()
    target = case.target.double() if case.probabilities else case.target
    return case.input.double(), target, options


def check_forward(case: Case, form: Callable[..., Tensor]) -> Outcome:
    """Value, dtype and shape against PyTorch's op/module (and common_nn's reference, where given)."""
    expected = case.expected(case.input, case.target)
    value = form(case.input, case.target)
    if value.dtype != expected.dtype or value.shape != expected.shape:
        return Outcome(
            float("inf"), False, detail=f"{value.dtype}{tuple(value.shape)} vs {expected.dtype}{tuple(expected.shape)}"
        )
    difference = _relative(value, expected)
    tolerance = _tolerance(case.input.dtype, expected.dtype)
    if difference <= tolerance:
        return Outcome(difference, True)
    if case.input.dtype in (torch.float16, torch.bfloat16):
        # float64 F.cross_entropy is exact enough for NLL cases too: their inputs are log-probabilities
        x, target, options = _float64(case)
        exact = F.cross_entropy(x, target, **options)
        closer = _relative(value, exact) <= _relative(expected, exact)
        return Outcome(difference, closer, closer_than_pytorch=closer, detail="low precision")
    return Outcome(difference, False)


def check_reference(case: Case, module: torch.nn.Module) -> Outcome:
    """The module's value against common_nn's reference function for the case (float32/float64)."""
    expected = case.reference(module, case.input, case.target)
    value = module(case.input, case.target)
    difference = _relative(value, expected)
    return Outcome(difference, difference <= _tolerance(case.input.dtype))


def _gradient_inputs(case: Case) -> tuple[Tensor, Tensor]:
    x = case.input.detach().clone().requires_grad_()
    target = case.target.detach().clone().requires_grad_() if case.probabilities else case.target
    return x, target


def check_backward(case: Case, form: Callable[..., Tensor]) -> Outcome:
    """The input gradient (and the probability target's) against F.cross_entropy's, for a fixed upstream."""

    def gradients(fn):
        x, target = _gradient_inputs(case)
        loss = fn(x, target)
        upstream = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype, device=loss.device).reshape(loss.shape)
        wrt = (x, target) if case.probabilities else (x,)
        return torch.autograd.grad(loss, wrt, upstream, allow_unused=True)

    expected = gradients(partial(F.cross_entropy, **case.options))
    got = gradients(form)
    difference = max(_relative(g, e) for g, e in zip(got, expected, strict=True))
    return Outcome(difference, difference <= _tolerance(case.input.dtype))


def check_jvp(case: Case, form: Callable[..., Tensor]) -> Outcome:
    """Forward-mode tangents (torch.func.jvp) against F.cross_entropy's, for a fixed random direction."""
    generator = torch.Generator().manual_seed(0)
    tangents = [torch.randn(case.input.shape, generator=generator, dtype=case.input.dtype)]
    primals = [case.input]
    if case.probabilities:
        primals.append(case.target)
        tangents.append(torch.randn(case.target.shape, generator=generator, dtype=case.target.dtype))
    tangents = [t.to(case.input.device) for t in tangents]

    def run(fn):
        if case.probabilities:
            return torch.func.jvp(lambda x, q: fn(x, q), tuple(primals), tuple(tangents))[1]
        return torch.func.jvp(lambda x: fn(x, case.target), tuple(primals), tuple(tangents))[1]

    difference = _relative(run(form), run(partial(F.cross_entropy, **case.options)))
    return Outcome(difference, difference <= _tolerance(case.input.dtype))


def check_double_backward(case: Case, form: Callable[..., Tensor]) -> Outcome:
    """A Hessian-vector product (backward of the backward) against F.cross_entropy's."""
    generator = torch.Generator().manual_seed(1)
    direction = torch.randn(case.input.shape, generator=generator, dtype=case.input.dtype).to(case.input.device)

    def run(fn):
        x = case.input.detach().clone().requires_grad_()
        (grad,) = torch.autograd.grad(fn(x, case.target).sum(), x, create_graph=True)
        return torch.autograd.grad((grad * direction).sum(), x, allow_unused=True)[0]

    got, expected = run(form), run(partial(F.cross_entropy, **case.options))
    got = torch.zeros_like(case.input) if got is None else got
    expected = torch.zeros_like(case.input) if expected is None else expected
    difference = _relative(got, expected)
    return Outcome(difference, difference <= _tolerance(case.input.dtype))


def check_error(case: ErrorCase, form_name: str, functional: bool) -> Outcome:
    """The form must refuse the input with a LossArgumentError of PyTorch's type, whose message matches
    PyTorch's regex. The modules check their options at construction, where PyTorch waits for forward."""
    try:
        if functional:
            FUNCTIONAL_FORMS[form_name](case.input, case.target, **case.constructor)
        else:
            MODULE_FORMS[form_name](**case.constructor)(case.input, case.target)
    except LossArgumentError as error:
        ok = isinstance(error, case.error_type) and re.search(case.error_regex, str(error)) is not None
        return Outcome(0.0, ok, detail=f"{type(error).__name__}: {error}")
    return Outcome(float("inf"), False, detail="no error")


# --------------------------------------------------------------------------------------------------
# Running the whole material.


@dataclass
class Summary:
    """Per (source, form, check, dtype): cases run, largest difference, failures."""

    source: str
    form: str
    check: str
    dtype: str
    cases: int = 0
    max_difference: float = 0.0
    closer_than_pytorch: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, name: str, outcome: Outcome) -> None:
        self.cases += 1
        if outcome.difference == outcome.difference:  # not NaN
            self.max_difference = max(self.max_difference, outcome.difference)
        self.closer_than_pytorch += outcome.closer_than_pytorch
        if not outcome.passed:
            self.failures.append(f"{name}: {outcome.difference:.3g} {outcome.detail}")

    def row(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "form": self.form,
            "check": self.check,
            "dtype": self.dtype,
            "cases": self.cases,
            "max_rel_diff": self.max_difference,
            "closer_than_pytorch": self.closer_than_pytorch,
            "failures": len(self.failures),
        }


def all_cases(device: str, dtype: torch.dtype) -> Iterator[tuple[Case, bool]]:
    """(case, functional?) for every sample: OpInfos through the functional forms, ModuleInfos and criterion
    tests through the modules (the classes the ``loss`` config group builds)."""
    for op_name in OPS:
        for case in opinfo_cases(op_name, device, dtype):
            yield case, True
    for module_name in MODULES:
        for case in module_cases(module_name, device, dtype):
            yield case, False
    if dtype == torch.float64 and device == "cpu":
        for case in criterion_cases():
            yield case, False


# Which checks run in which dtypes: forward everywhere; gradients in float32/float64 (and on the GPU's
# float16 too, cheaply); forward mode and double backward in float64, where PyTorch's own gradcheck runs.
CHECK_DTYPES = {
    "forward": (torch.float64, torch.float32, torch.float16, torch.bfloat16),
    "reference": (torch.float64, torch.float32),
    "backward": (torch.float64, torch.float32),
    "jvp": (torch.float64,),
    "double_backward": (torch.float64,),
}


def run_suite(
    device: str = "cpu",
    dtypes: tuple[torch.dtype, ...] = CHECK_DTYPES["forward"],
    checks: tuple[str, ...] = ("forward", "reference", "backward", "jvp", "double_backward", "errors"),
) -> list[Summary]:
    """Every form on every case: one Summary per (source, form, check, dtype). Runs on one CPU thread:
    the material is hundreds of tiny tensors, where OpenMP's start-up per op costs more than the op (on a
    busy 2-core machine F.cross_entropy of a (2, 3, 5, 5, 2, 2) input took 23 ms with 2 threads, 0.12 ms with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_suite(device, dtypes, checks)
    finally:
        torch.set_num_threads(threads)


def _run_suite(device: str, dtypes: tuple[torch.dtype, ...], checks: tuple[str, ...]) -> list[Summary]:
    summaries: dict[tuple, Summary] = {}

    def summary(source, form, check, dtype) -> Summary:
        key = (source, form, check, str(dtype).removeprefix("torch."))
        return summaries.setdefault(key, Summary(*key))

    for dtype in dtypes:
        for case, functional in all_cases(device, dtype):
            for form_name in FUNCTIONAL_FORMS:
                if functional:
                    form = partial(FUNCTIONAL_FORMS[form_name], **case.options)
                    module = None
                else:
                    module = MODULE_FORMS[form_name](**case.options)
                    form = module
                for check in checks:
                    if check == "errors" or dtype not in CHECK_DTYPES[check]:
                        continue
                    if check == "reference":
                        if module is None or case.reference is None:
                            continue
                        outcome = check_reference(case, module)
                    else:
                        outcome = {
                            "forward": check_forward,
                            "backward": check_backward,
                            "jvp": check_jvp,
                            "double_backward": check_double_backward,
                        }[check](case, form)
                    summary(case.source, form_name, check, dtype).add(case.name, outcome)
        if "errors" in checks:
            for module_name in MODULES:
                for error_case in module_error_cases(module_name, device, dtype):
                    for form_name in MODULE_FORMS:
                        for functional in (False, True):
                            outcome = check_error(error_case, form_name, functional)
                            source = error_case.source + (" (functional)" if functional else "")
                            summary(source, form_name, "errors", dtype).add(error_case.name, outcome)
    return list(summaries.values())


def summary_by_form(summaries: list[Summary]) -> list[dict[str, Any]]:
    """One row per (check, dtype, form), over all sources: cases, largest difference, failures."""
    rows: dict[tuple, dict[str, Any]] = {}
    for s in summaries:
        row = rows.setdefault(
            (s.check, s.dtype, s.form),
            {
                "check": s.check,
                "dtype": s.dtype,
                "form": s.form,
                "cases": 0,
                "max_rel_diff": 0.0,
                "closer_than_pytorch": 0,
                "failures": 0,
            },
        )
        row["cases"] += s.cases
        row["max_rel_diff"] = max(row["max_rel_diff"], s.max_difference)
        row["closer_than_pytorch"] += s.closer_than_pytorch
        row["failures"] += len(s.failures)
    return list(rows.values())


def table_by_check(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``summary_by_form`` rows pivoted for the README: one row per (check, dtype), the forms side by side."""
    table: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault(
            (row.get("device", "cpu"), row["check"], row["dtype"]),
            {
                "device": row.get("device", "cpu"),
                "check": row["check"],
                "dtype": row["dtype"],
                "cases per form": row["cases"],
                "closer_than_pytorch": 0,
                "failures": 0,
            },
        )
        entry[row["form"]] = row["max_rel_diff"]
        entry["closer_than_pytorch"] += row["closer_than_pytorch"]
        entry["failures"] += row["failures"]
    return list(table.values())
