"""Where MNIST's four files are on disk, without torch: the scripts check the data folder before
their heavy imports, with the same rule and message as the loader (``digits.data.find_mnist``)."""

from __future__ import annotations

import os
from pathlib import Path

from digits.errors import DigitsError

# name: (bytes, MD5 of the uncompressed file, IDX magic number) of the published MNIST files.
RAW_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb", 2051),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624", 2049),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea", 2051),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637", 2049),
}


class DataNotFoundError(DigitsError, FileNotFoundError):
    """MNIST is neither on disk nor downloadable; the message says where to put it."""


def default_data_dir() -> str:
    """``$DIGITS_DATA_DIR`` when set, else ``data/``: the one rule, for the Python API and the scripts."""
    return os.environ.get("DIGITS_DATA_DIR") or "data"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory as an absolute path: a relative one against the folder the script was started
    from (Hydra's ``runtime.cwd``), never against a run folder."""
    path = Path(data_dir or default_data_dir()).expanduser()
    if not path.is_absolute():
        from hydra.core.hydra_config import HydraConfig

        launched_from = Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else Path.cwd()
        path = launched_from / path
    return Path(os.path.abspath(path))


def missing_files(raw: Path) -> list[str]:
    """The names of the four files that ``raw`` (``<data_dir>/MNIST/raw``) lacks."""
    return [name for name in RAW_FILES if not (raw / name).is_file()]


def not_found(raw: Path, missing: list[str], reason: str) -> DataNotFoundError:
    """The error for a data folder without MNIST: where the files go, and how to point elsewhere."""
    return DataNotFoundError(
        f"MNIST not found: {raw.resolve()} lacks {', '.join(missing)} and {reason}.\n"
        f"Put the four uncompressed IDX files ({', '.join(RAW_FILES)}) in {raw.resolve()}, "
        "or point the project at a directory that has MNIST/raw/ inside it: "
        "DIGITS_DATA_DIR=/path/to/data, or the override data.data_dir=/path/to/data."
    )


def check_mnist(data_dir: str | Path | None) -> None:
    """Raise DataNotFoundError unless ``<data_dir>/MNIST/raw`` holds the four files (not downloading)."""
    raw = resolve_data_dir(data_dir) / "MNIST" / "raw"
    missing = missing_files(raw)
    if missing:
        raise not_found(raw, missing, "download is off (data.download=false)")
