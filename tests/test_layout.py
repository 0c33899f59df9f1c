"""The package's architecture, as the README's Layout section draws it: the training path never
reaches into evaluation, the demo or the studies, and the sweep-table command answers."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "digits"
TRAINING_PATH = [
    "data", "augment", "models", "losses", "loss_checks", "loss_weights", "loss_backward", "module", "monitoring",
    "train", "run_metrics", "checkpoints", "sync_batchnorm", "config", "overrides", "run_names", "resolvers",
    "allowlist", "console", "errors", "entry", "early_checks", "writing", "mnist_files", "sigmoid", "threads",
    "run_folder",
]  # fmt: skip
OUTSIDE = ("digits.evaluation", "digits.demo", "digits.studies", "digits.export", "digits.handwriting")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("name", TRAINING_PATH)
def test_the_training_path_imports_nothing_from_after_training_or_the_studies(name):
    imported = imported_modules(PACKAGE / f"{name}.py")
    assert not [m for m in imported if m.startswith(OUTSIDE)], imported


def test_every_module_is_placed():
    """A new top-level module must be added to the training path above, or go into a subpackage."""
    top_level = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top_level == set(TRAINING_PATH) | {"export", "handwriting", "report"}


def test_the_search_command_reports_a_missing_folder_in_one_line(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "digits.studies.search", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and "Traceback" not in missing.stderr
