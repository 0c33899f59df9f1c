"""The package's architecture, as docs/development.md's Layout section draws it, held by import-linter's
contracts in pyproject.toml (``lint-imports``, also in ``make lint``): the product imports nothing of the lab
or its equipment, the training path reaches nothing of what comes after training, and no two modules of a
package import each other in a circle. Every module is placed on one side; the sweep-table command answers."""

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from harness import ROOT

PACKAGE = ROOT / "src" / "digits"
# What comes after training: it may use the training path, never the other way round.
AFTER_TRAINING = {"commands", "sweeps", "export", "handwriting", "report"}


def contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["type"] + ":" + contract["name"]: contract for contract in config["contracts"]}


def test_the_import_contracts_hold(tmp_path):
    """pyproject.toml's contracts on the product alone (``make lint`` checks them on the lab too): this test
    runs where only the product is installed (``make test``)."""
    lines = ["[importlinter]", "root_package = digits", "include_external_packages = True"]
    for number, contract in enumerate(contracts().values()):
        lines.append(f"[importlinter:contract:{number}]")
        for key, value in contract.items():
            if isinstance(value, list):
                value = [item for item in value if not item.startswith("digits_lab") or key == "forbidden_modules"]
                value = "\n    " + "\n    ".join(value)
            lines.append(f"{key} = {value}")
    (tmp_path / "product.ini").write_text("\n".join(lines) + "\n")
    command = [Path(sys.executable).parent / "lint-imports", str(tmp_path / "product.ini")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_every_module_is_placed():
    """A new top-level module goes on the training path (the contract's source_modules) or after it."""
    (training,) = [c for key, c in contracts().items() if key.startswith("forbidden:The training path")]
    on_path = {name.removeprefix("digits.") for name in training["source_modules"]}
    top_level = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top_level == on_path | AFTER_TRAINING
    assert not on_path & AFTER_TRAINING


@pytest.mark.slow
def test_the_search_command_reports_a_missing_folder_in_one_line(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "digits.sweeps", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and "Traceback" not in missing.stderr
