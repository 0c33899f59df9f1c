"""MNIST files whose header or labels lie, read with ``data.verify=false`` (no MD5): refused as
CorruptDataError from the header and the labels, not a RuntimeError from the reader; and with
``verify=true`` a damaged file is refused before the run writes anything (no TensorBoard events file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from harness import QUIET, compose_train

from digits.data import RAW_FILES, CorruptDataError, load_mnist


def data_copy(data_dir: Path, tmp_path: Path, edit: dict[str, callable]) -> Path:
    """A data folder: the real files linked, those in ``edit`` copied and changed (bytes -> bytes)."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        source = data_dir / "MNIST" / "raw" / name
        if name in edit:
            (raw / name).write_bytes(edit[name](bytearray(source.read_bytes())))
        else:
            (raw / name).symlink_to(source)
    return tmp_path / "data"


def header(offset: int, value: int):
    def edit(data: bytearray) -> bytes:
        data[offset : offset + 4] = value.to_bytes(4, "big")
        return bytes(data)

    return edit


def reshaped(data: bytearray) -> bytes:
    """10,000 x 28 x 28 declared as 40,000 x 14 x 14: the same number of bytes."""
    data[4:16] = b"".join(n.to_bytes(4, "big") for n in (40_000, 14, 14))
    return bytes(data)


def label_200(data: bytearray) -> bytes:
    data[8 + 17] = 200
    return bytes(data)


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("t10k-images-idx3-ubyte", header(4, 10**9), "header declares 1000000000 x 28 x 28"),
        ("t10k-images-idx3-ubyte", reshaped, "header declares 40000 x 14 x 14"),
        ("t10k-labels-idx1-ubyte", header(4, 20_000), "header declares 20000, MNIST's file 10000"),
        ("t10k-labels-idx1-ubyte", label_200, r"holds labels in \[0, 200\]"),
    ],
    ids=["a_billion_images", "reshaped_14x14", "more_labels", "label_200"],
)  # fmt: skip
def test_a_lying_header_or_label_is_corrupt_data_without_verify(data_dir, tmp_path, name, edit, message):
    folder = data_copy(data_dir, tmp_path, {name: edit})
    with pytest.raises(CorruptDataError, match=message):
        load_mnist(folder, train=False, download=False, verify=False)


def test_a_damaged_file_is_refused_before_the_run_writes_anything(data_dir, tmp_path):
    from digits.train import train

    def damage(data: bytearray) -> bytes:
        data[-1] ^= 1
        return bytes(data)

    folder = data_copy(data_dir, tmp_path, {"t10k-labels-idx1-ubyte": damage})
    run = tmp_path / "run"
    cfg = compose_train(["logger=tensorboard", "trainer.max_epochs=1", *QUIET], run, folder)
    with pytest.raises(CorruptDataError, match="has MD5"):
        train(cfg)
    assert not run.exists() or sorted(p.name for p in run.iterdir()) == []  # no config.yaml, no events file
    shutil.rmtree(folder)
