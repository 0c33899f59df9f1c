"""PyTorch's own test material for cross-entropy (OpInfo samples, ModuleInfo inputs and error inputs, the
criterion tests and reference functions of common_nn), through every form: forward, reverse-mode and
forward-mode gradients, double backward, errors. The adapter is ``digits_lab.pytorch_suite``; its docstring
says how the nll_loss material maps onto cross-entropy.

A torch upgrade that moves a pinned internal name fails ``test_pinned_internals_are_importable``; one that
yields fewer samples fails ``test_every_form_ran_at_least_the_known_number_of_cases``.
"""

from __future__ import annotations

import pytest
import torch
from harness import CUDA

from digits_lab import pytorch_suite
from digits_lab.pytorch_suite import (
    CHECK_DTYPES,
    FUNCTIONAL_FORMS,
    PyTorchSuiteMissingError,
    run_suite,
    summary_by_form,
)

# Cases per (source, dtype) that torch 2.14.1's material yields (the same for every form and check).
# Fewer means PyTorch's material changed shape: look, then lower these on purpose.
MIN_CASES = {
    "OpInfo nn.functional.cross_entropy": 21,
    "OpInfo nn.functional.nll_loss": 61,
    "ModuleInfo nn.CrossEntropyLoss": 105,  # float64, float32, float16 (its ModuleInfo's dtypes)
    "ModuleInfo nn.NLLLoss": 28,  # float64, float32
    "common_nn criterion_tests": 3,  # float64, CPU
    "ModuleInfo nn.CrossEntropyLoss errors": 7,
    "ModuleInfo nn.CrossEntropyLoss errors (functional)": 7,
    "ModuleInfo nn.NLLLoss errors": 1,
    "ModuleInfo nn.NLLLoss errors (functional)": 1,
}
SOURCE_DTYPES = {
    "ModuleInfo nn.CrossEntropyLoss": ("float64", "float32", "float16"),
    "ModuleInfo nn.NLLLoss": ("float64", "float32"),
    "common_nn criterion_tests": ("float64",),
}
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


@pytest.fixture(scope="module", params=DEVICES)
def summaries(request):
    return request.param, run_suite(request.param)


def test_pinned_internals_are_importable():
    found = pytorch_suite.internals()
    assert set(found) == {name for names in pytorch_suite.INTERNAL_NAMES.values() for name in names}


def test_a_moved_internal_fails_with_its_name(monkeypatch):
    monkeypatch.setitem(pytorch_suite.INTERNAL_NAMES, "torch.testing._internal.common_nn", ["no_such_reference"])
    with pytest.raises(PyTorchSuiteMissingError, match=r"common_nn\.no_such_reference is gone"):
        pytorch_suite.internals()
    monkeypatch.undo()
    with pytest.raises(PyTorchSuiteMissingError, match="'nn.functional.no_such_op'"):
        pytorch_suite.opinfo_cases("nn.functional.no_such_op", "cpu", torch.float64)


def test_every_form_agrees_with_pytorch_on_its_material(summaries):
    _, rows = summaries
    failures = [f"{s.source} / {s.form} / {s.check} / {s.dtype}: {failure}" for s in rows for failure in s.failures]
    assert not failures, "\n".join(failures[:40])


def test_every_form_ran_at_least_the_known_number_of_cases(summaries):
    device, rows = summaries
    counts = {(s.source, s.form, s.check, s.dtype): s.cases for s in rows}
    missing = []
    for source, minimum in MIN_CASES.items():
        if source == "common_nn criterion_tests" and device != "cpu":
            continue
        if "errors" in source and not pytorch_suite.has_module_error_inputs(source.split("nn.")[1].split()[0]):
            continue  # an older torch (2.11 on the lent GPU machine) has no error inputs for this module
        checks = (
            ("errors",)
            if source.startswith("ModuleInfo") and "errors" in source
            else ("forward", "backward", "jvp", "double_backward")
            + (() if source.startswith("OpInfo") else ("reference",))
        )
        for form in FUNCTIONAL_FORMS:
            for check in checks:
                dtypes = [str(d).removeprefix("torch.") for d in CHECK_DTYPES.get(check, CHECK_DTYPES["forward"])]
                for dtype in dtypes:
                    if dtype not in SOURCE_DTYPES.get(source, dtypes):
                        continue
                    if counts.get((source, form, check, dtype), 0) < minimum:
                        missing.append(
                            f"{source} / {form} / {check} / {dtype}: "
                            f"{counts.get((source, form, check, dtype), 0)} < {minimum}"
                        )
    assert not missing, "\n".join(missing)


def test_summary_by_form_adds_up_the_sources(summaries):
    _, rows = summaries
    by_form = {(r["check"], r["dtype"], r["form"]): r for r in summary_by_form(rows)}
    forward = by_form[("forward", "float64", "manual_backward")]
    parts = [s for s in rows if (s.check, s.dtype, s.form) == ("forward", "float64", "manual_backward")]
    assert (
        forward["cases"]
        == sum(s.cases for s in parts)
        >= sum(
            MIN_CASES[s]
            for s in (
                "OpInfo nn.functional.cross_entropy",
                "OpInfo nn.functional.nll_loss",
                "ModuleInfo nn.CrossEntropyLoss",
                "ModuleInfo nn.NLLLoss",
                "common_nn criterion_tests",
            )
        )
        - (0 if _ == "cpu" else 3)
    )
    assert forward["max_rel_diff"] == max(s.max_difference for s in parts)


def test_importing_the_material_leaves_torch_backends_flags_settable():
    """torch.testing._internal.common_utils freezes torch.backends' flags on import; Lightning's Trainer
    (tests/test_train.py, the comparison script) sets cudnn flags afterwards in the same process."""
    pytorch_suite.internals()
    assert not torch.backends.flags_frozen()
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark  # raises RuntimeError while frozen
