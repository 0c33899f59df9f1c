"""The report of ``scripts/gpu_check.sh``: one ``gpu_check.md`` and ``gpu_check.json`` from its steps'
outputs (``steps.tsv``, pytest's JUnit XML, the scripts' own JSON files), with the machine and versions.

    python -m digits_lab.gpu_check <out folder> [--device cuda|cpu]

Exit code 1 when a step failed, or when CUDA test cases were skipped on a CUDA device (on a GPU
machine a skip means the GPU was not used, which is what the check is there to catch).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import sys
import xml.etree.ElementTree as ElementTree
from importlib import metadata
from pathlib import Path
from typing import Any

from digits.report import markdown_table, write_json

TARGET_ACCURACY = 0.99
RECORD_SECONDS = 0.76  # the public record to 99 % on MNIST (tuomaso/train_mnist_fast, one GTX 1660 Ti)


def machine() -> dict[str, Any]:
    """Versions and the GPU, as this Python sees them."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    for package in ("lightning", "torchmetrics", "torchvision", "hydra-core", "tensorboard"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(
            gpu=properties.name,
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            gpu_count=torch.cuda.device_count(),
        )
    else:
        info["gpu"] = None
    return info


def read_steps(out: Path) -> list[dict[str, Any]]:
    with (out / "steps.tsv").open() as file:
        return [
            {
                "step": row["step"],
                "exit": int(row["exit"]),
                "seconds": round(float(row["seconds"]), 2),
                "command": row["command"],
            }
            for row in csv.DictReader(file, delimiter="\t")
        ]


def read_junit(path: Path) -> dict[str, int]:
    """Counts of pytest's JUnit XML: tests, failures, errors, skipped."""
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


# The CUDA cases a GPU machine must run (1,566 counted here, listed without CUDA by tests/conftest.py):
# far fewer means pytest did not see the GPU.
MIN_CUDA_CASES = 1000


def collect(out: Path, device: str) -> dict[str, Any]:
    """Everything the steps left in ``out``, and what counts as a problem."""
    steps = read_steps(out)
    seconds = {step["step"]: step["seconds"] for step in steps}
    results: dict[str, Any] = {"device": device, "machine": machine(), "steps": steps, "problems": []}
    results["problems"] += [
        f"step {s['step']} exited with {s['exit']} (see {s['step']}.log)" for s in steps if s["exit"]
    ]
    junit = out / "tests" / "junit.xml"
    if junit.is_file():
        results["tests"] = read_junit(junit)
        if device == "cuda" and results["tests"]["skipped"]:
            results["problems"].append(f"{results['tests']['skipped']} CUDA test cases skipped on a CUDA machine")
        if device == "cuda" and results["tests"]["tests"] < MIN_CUDA_CASES:
            # without CUDA the parametrisations are not even collected (tests/conftest.py)
            results["problems"].append(
                f"only {results['tests']['tests']} CUDA test cases ran, fewer than {MIN_CUDA_CASES}: "
                "torch.cuda.is_available() was false for pytest"
            )
    results["compare_losses"] = _json(out / "compare_losses" / "report.json")
    timed = _json(out / "benchmark_losses" / "benchmark_losses.json")  # the result file: provenance and "results"
    results["benchmark_losses"] = timed and timed.get("results", timed)
    for step in ("train", "train_graphs"):  # eager, and the step captured as CUDA graphs
        train = _json(out / step / "metrics.json")
        if train is not None:
            accuracy = train.get("test/acc")
            results[step] = {
                "test_acc": accuracy,
                "reached_99": accuracy is not None and accuracy >= TARGET_ACCURACY,
                "train_seconds": train["train_seconds"],
                "fit_seconds": train["fit_seconds"],
                "startup_seconds": train["startup_seconds"],
                "wall_seconds": seconds.get(step),
                "epochs": train["epochs"],
                "steps": train["steps"],
                "train_vs_record": train["train_seconds"] / RECORD_SECONDS,
            }
    evaluation = _json(out / "evaluate" / "metrics.json")
    if evaluation is not None:
        results["evaluate"] = {"accuracy": evaluation["accuracy"], "ece": evaluation["ece"], "loss": evaluation["loss"]}
    return results


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    lines = [
        f"# GPU check ({results['device']}): {info.get('gpu') or 'no GPU'}",
        "",
        markdown_table([{"what": key, "value": value} for key, value in info.items()]),
        "",
        "## Steps",
        "",
        markdown_table(results["steps"], ["step", "exit", "seconds", "command"]),
        "",
    ]
    lines += ["## Problems", ""] + ([f"* {p}" for p in results["problems"]] or ["none"]) + [""]
    if "tests" in results:
        lines += ["## CUDA test cases (pytest -m gpu)", "", markdown_table([results["tests"]]), ""]
    if "train" in results:
        lines += [
            f"## experiment=fast_gpu (target {TARGET_ACCURACY:.1%} test accuracy; the public record trains "
            f"for {RECORD_SECONDS} s)",
            "",
            markdown_table([results["train"]]),
            "",
        ]
    if "train_graphs" in results:
        lines += [
            "## experiment=fast_gpu compile=reduce-overhead (CUDA graphs)",
            "",
            markdown_table([results["train_graphs"]]),
            "",
        ]
    if "evaluate" in results:
        evaluation = results["evaluate"]
        lines += [
            "## evaluate.py",
            "",
            markdown_table(
                [
                    {
                        "accuracy": evaluation["accuracy"],
                        "ece": evaluation["ece"],
                        **{f"loss {k}": v for k, v in evaluation["loss"].items()},
                    }
                ]
            ),
            "",
        ]
    if results.get("benchmark_losses"):
        lines += ["## benchmark_losses.py", "", markdown_table(results["benchmark_losses"]["rows"]), ""]
    if results.get("compare_losses"):
        lines += [
            "## compare_losses.py (single calls)",
            "",
            markdown_table(results["compare_losses"]["single_calls"]),
            "",
        ]
    return "\n".join(lines)


def publish(results: dict[str, Any], results_dir: Path) -> Path:
    """``gpu_check_<gpu>_<date>.md`` and ``.json`` in ``results_dir``: a GPU run's report kept as a dated result."""
    from datetime import datetime, timezone

    gpu = re.sub(r"[^a-z0-9]+", "_", str(results["machine"].get("gpu") or "gpu").lower()).strip("_")
    name = f"gpu_check_{gpu}_{datetime.now(timezone.utc):%Y-%m-%d}"
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json(results_dir / f"{name}.json", results)
    path = results_dir / f"{name}.md"
    path.write_text(markdown(results))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument(
        "--results",
        type=Path,
        help="publish a dated copy there (docs/results: the front page's fast_gpu row); default: none",
    )
    args = parser.parse_args(argv)
    results = collect(args.out, args.device)
    write_json(args.out / "gpu_check.json", results)
    (args.out / "gpu_check.md").write_text(markdown(results))
    if args.device == "cuda" and args.results:  # publishing is explicit: the front page's fast_gpu row is the newest
        publish(results, args.results)
    for problem in results["problems"]:
        print(f"gpu_check: {problem}", file=sys.stderr)
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
