"""The package as a user installs it: a wheel built from this checkout, installed into a folder of its own
and used from another folder, with no checkout in sight. Its configs travel inside it (digits.configs), its
console entry points run, and both ways of loading a checkpoint accept this project's checkpoints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT

# The slow tier (make test-slow): real processes and outside tools.
pytestmark = pytest.mark.slow

LOAD = """
import sys
from pathlib import Path
import digits, digits.configs
from digits.data import MNISTDataModule
from digits.module import DigitsModule

assert Path(digits.__file__).is_relative_to(Path(sys.argv[2])), digits.__file__  # the wheel's copy, not the checkout
assert (digits.configs.CONFIG_DIR / "model" / "cnn.yaml").is_file()
checkpoint = next(Path(sys.argv[1]).glob("checkpoints/best-*.ckpt"))
ours = DigitsModule.from_checkpoint(checkpoint)
lightnings = DigitsModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
assert type(ours.net) is type(lightnings.net)
print("data split", MNISTDataModule().val_size)  # read from the installed configs/data/mnist.yaml
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install`` of a wheel built from a copy of the checkout (the build leaves no build/ in it)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "src", "configs"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copyfile
        copy(
            ROOT / part,
            source / part,
            **({"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")} if copy is shutil.copytree else {}),
        )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("digits-*.whl")
    site = work / "site"
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return site


def _env(site: Path, data_dir: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "DIGITS_DATA_DIR": str(data_dir)}


def test_the_wheel_carries_the_configs_and_loads_this_projects_checkpoints(installed, trained_run, data_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(trained_run), str(installed)],
        cwd=tmp_path, env=_env(installed, data_dir), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data split 5000" in done.stdout
    assert not (ROOT / "build").exists()


def test_the_entry_points_run_from_any_folder(installed, trained_run, data_dir, tmp_path):
    evaluate = subprocess.run(
        [str(installed / "bin" / "digits-evaluate"), f"ckpt_path={trained_run}"],
        cwd=tmp_path, env=_env(installed, data_dir), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = evaluate.stdout + evaluate.stderr
    assert evaluate.returncode == 0, output[-3000:]
    assert "test/acc" in output or "accuracy" in output, output[-2000:]
    (run,) = (tmp_path / "outputs" / "evaluate").iterdir()  # its run folder under the folder it was started in
    assert (run / "metrics.json").is_file()
    refused = subprocess.run(
        [str(installed / "bin" / "digits-train"), "loss=manul"],
        cwd=tmp_path, env=_env(installed, data_dir), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2 and "did you mean 'manual'" in refused.stderr, refused.stderr[-2000:]
