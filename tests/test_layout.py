"""The package's architecture, as docs/development.md's Layout section draws it, held by import-linter's
contracts in pyproject.toml (``lint-imports``, also in ``make lint``): the product imports nothing of the lab
or its equipment, the training path reaches nothing of what comes after training, and no two modules of a
package import each other in a circle. Every module is placed on one side; the sweep-table command answers."""

import subprocess
import sys
from pathlib import Path

import tomllib
from harness import ROOT

PACKAGE = ROOT / "src" / "digits"
# What comes after training: it may use the training path, never the other way round.
AFTER_TRAINING = {"commands", "sweeps", "export", "handwriting", "report"}


def contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["type"] + ":" + contract["name"]: contract for contract in config["contracts"]}


def test_the_import_contracts_hold():
    done = subprocess.run([Path(sys.executable).parent / "lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout and len(contracts()) == 3


def test_every_module_is_placed():
    """A new top-level module goes on the training path (the contract's source_modules) or after it."""
    (training,) = [c for key, c in contracts().items() if key.startswith("forbidden:The training path")]
    on_path = {name.removeprefix("digits.") for name in training["source_modules"]}
    top_level = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top_level == on_path | AFTER_TRAINING
    assert not on_path & AFTER_TRAINING


def test_the_search_command_reports_a_missing_folder_in_one_line(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "digits.sweeps", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and "Traceback" not in missing.stderr
