"""The package's architecture, as the README's Layout section draws it: the training path never
reaches into evaluation, the demo or the studies, and the renamed command still answers."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "digits"
TRAINING_PATH = [
    "data", "augment", "models", "losses", "module", "monitoring", "train", "checkpoints", "sync_batchnorm",
    "config", "overrides", "run_names", "resolvers", "allowlist", "console", "errors", "sigmoid",
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
    assert top_level == set(TRAINING_PATH) | {"export", "handwriting", "report", "search"}


def test_the_old_search_command_still_works_with_a_deprecation_message(tmp_path):
    (tmp_path / "0").mkdir()  # a sweep folder whose only trial has not finished: an empty table
    old, new = (
        subprocess.run([sys.executable, "-m", module, str(tmp_path)], capture_output=True, text=True, timeout=120)
        for module in ("digits.search", "digits.studies.search")
    )
    assert old.returncode == new.returncode == 0 and old.stdout == new.stdout
    assert "deprecated" in old.stderr and "digits.studies.search" in old.stderr and not new.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "digits.studies.search", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and "Traceback" not in missing.stderr
