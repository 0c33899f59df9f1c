"""Writing what a run leaves behind: one error for a disk that refuses a write (``WriteError``, ``writing``),
and sets of files that describe each other, moved into place together, their last file last
(``output_set``): a reader who finds it finds the whole set."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digits.errors import DigitsError


class WriteError(DigitsError, OSError):
    """A file could not be written (read-only folder, full disk, no permission); the message names
    the file, what is intact and what to change."""


@contextmanager
def writing(path: str | Path, intact: str = "") -> Iterator[None]:
    """An ``OSError`` inside the block becomes a WriteError naming ``path``; ``intact`` says what survived."""
    try:
        yield
    except DigitsError:
        raise
    except OSError as error:
        raise WriteError(
            f"cannot write {path}: {error.strerror or error}. Free disk space or choose a writable folder: "
            f"paths.log_dir=<dir> (or hydra.run.dir=<dir>).{' ' + intact if intact else ''}"
        ) from error


def write_text(path: str | Path, text: str) -> None:
    """Write one file (its folder created), or raise WriteError."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON (numpy and torch scalars as floats), or raise WriteError."""
    write_text(path, json.dumps(data, indent=2, default=float) + "\n")


def fsync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def output_set(folder: str | Path, last: str) -> Iterator[Path]:
    """Yield a fresh staging folder inside ``folder``; once the block succeeds, make every file in it durable
    and move it into ``folder``, ``last`` last. A failure removes the staging folder: nothing appears."""
    folder = Path(folder)
    staging = folder / f".writing-{os.getpid()}"
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # a killed earlier process of the same id
        staging.mkdir()
    try:
        with writing(folder):  # the libraries' own writers inside the block (savefig, ONNX, TensorBoard)
            yield staging
        names = sorted(p.name for p in staging.iterdir())
        if last not in names:
            raise RuntimeError(f"{staging / last} was not written")  # a bug in the caller, not the disk
        with writing(folder):
            for name in names:
                if (staging / name).is_file():
                    with open(staging / name, "rb") as file:
                        os.fsync(file.fileno())
            fsync_directory(staging)
            for name in [*(n for n in names if n != last), last]:
                os.replace(staging / name, folder / name)
            staging.rmdir()
            fsync_directory(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
