"""Shared fixtures: the real MNIST directory and an in-process Hydra compose of the train config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from digits.data import RAW_FILES

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def mnist_dir() -> Path:
    """$DIGITS_DATA_DIR, else ../shared/data beside the checkout."""
    return Path(os.environ.get("DIGITS_DATA_DIR") or ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = mnist_dir()
    if not all((path / "MNIST" / "raw" / name).is_file() for name in RAW_FILES):
        message = f"real MNIST not found under {path}/MNIST/raw: set DIGITS_DATA_DIR"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must not pass by skipping the tests that need the data
        pytest.skip(message)
    return path


# Small, quiet runs: no rich widgets, a few batches.
QUIET = [
    "trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
]


def compose_train(overrides: list[str], output_dir: Path, data_dir: Path) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[f"paths.output_dir={output_dir}", f"data.data_dir={data_dir}", *overrides],
        )
