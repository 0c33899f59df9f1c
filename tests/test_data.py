import os
from pathlib import Path

import pytest
import torch

from digits.data import (
    MNIST_MEAN,
    MNIST_STD,
    RAW_FILES,
    CorruptDataError,
    DataNotFoundError,
    EpochBatchSampler,
    MNISTDataModule,
    find_mnist,
    load_mnist,
    resolve_data_dir,
)

# Published label counts of the official 10,000-image test set (digits 0..9).
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def datamodule(data_dir):
    dm = MNISTDataModule(data_dir=str(data_dir), batch_size=128, val_size=5000, download=False)
    dm.setup()
    return dm


def test_split_sizes_shapes_and_dtypes(datamodule):
    assert len(datamodule.train_set) == 55_000
    assert len(datamodule.val_set) == 5_000
    assert len(datamodule.test_set) == 10_000
    for ds in (datamodule.train_set, datamodule.val_set, datamodule.test_set):
        assert ds.images.shape[1:] == (1, 28, 28)
        assert ds.images.dtype == torch.float32
        assert ds.labels.dtype == torch.int64


def test_normalisation_uses_training_statistics(data_dir, datamodule):
    images, _ = load_mnist(data_dir, train=True, download=False)
    pixels = images.float() / 255
    assert pixels.mean().item() == pytest.approx(MNIST_MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(MNIST_STD, abs=1e-4)
    both = torch.cat([datamodule.train_set.images, datamodule.val_set.images])
    assert both.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert both.std().item() == pytest.approx(1.0, abs=1e-3)
    # the background pixel (0) maps to -mean/std
    assert datamodule.test_set.images.min().item() == pytest.approx(-MNIST_MEAN / MNIST_STD, abs=1e-6)


def test_official_test_set_is_kept(datamodule):
    counts = torch.bincount(datamodule.test_set.labels, minlength=10).tolist()
    assert counts == TEST_LABEL_COUNTS


def test_split_is_seeded_disjoint_and_idempotent(data_dir, datamodule):
    train_before = datamodule.train_set
    datamodule.setup("fit")  # a second setup keeps what it has
    assert datamodule.train_set is train_before
    other = MNISTDataModule(data_dir=str(data_dir), val_size=5000, download=False)
    other.setup("fit")
    assert torch.equal(other.val_set.labels, datamodule.val_set.labels)
    assert torch.equal(other.val_set.images, datamodule.val_set.images)
    reshuffled = MNISTDataModule(data_dir=str(data_dir), val_size=5000, split_seed=1, download=False)
    reshuffled.setup("fit")
    assert not torch.equal(reshuffled.val_set.labels, datamodule.val_set.labels)
    # no image is in both train and validation: compare exact pixel rows via hashing
    train_keys = {hash(row.numpy().tobytes()) for row in datamodule.train_set.images[:, 0].flatten(1)}
    val_keys = [hash(row.numpy().tobytes()) for row in datamodule.val_set.images[:, 0].flatten(1)]
    duplicates = sum(key in train_keys for key in val_keys)
    assert duplicates < 10  # MNIST itself has a handful of exact duplicate images, not thousands


def test_train_loader_yields_each_image_once_per_epoch(datamodule):
    loader = datamodule.train_dataloader()
    sizes, label_total = [], 0
    for images, labels in loader:
        assert images.shape[1:] == (1, 28, 28) and images.dtype == torch.float32
        sizes.append(len(labels))
        label_total += labels.sum().item()
    assert sum(sizes) == 55_000
    assert max(sizes) == 128
    assert label_total == datamodule.train_set.labels.sum().item()
    second_epoch = next(iter(loader))[1]
    loader.sampler.set_epoch(0)
    first_epoch = next(iter(loader))[1]
    assert not torch.equal(first_epoch, second_epoch)  # a full pass moves on to a new shuffle
    assert torch.equal(first_epoch, next(iter(loader))[1])  # an epoch's order is a function of its number


@pytest.mark.parametrize("size,world_size", [(55_000, 2), (5_000, 3), (10, 4)])
def test_sampler_shares_split_every_epoch_between_processes(size, world_size):
    for shuffle in (True, False):
        shares = [
            EpochBatchSampler(size, 64, shuffle=shuffle, seed=5, rank=rank, world_size=world_size)
            for rank in range(world_size)
        ]
        for sampler in shares:
            sampler.set_epoch(3)
        indices = [sum(iter(sampler), []) for sampler in shares]
        counts = torch.bincount(torch.tensor(sum(indices, [])), minlength=size)
        assert counts.min() == 1  # every image, in every process's epoch together
        if shuffle:  # training: equal shares (the same number of steps), padded with a few repeats
            assert len({len(i) for i in indices}) == 1 and len({len(s) for s in shares}) == 1
            assert counts.sum() - size < world_size
        else:  # evaluation: each image exactly once, in order
            assert counts.max() == 1 and all(i == sorted(i) for i in indices)
        assert [len(s) for s in shares] == [len(list(iter(s))) for s in shares]


def test_sampler_resumes_mid_epoch_with_the_remaining_batches():
    sampler = EpochBatchSampler(1000, 32, seed=1)
    sampler.set_epoch(2)
    uninterrupted = list(sampler)
    sampler.set_epoch(2)
    seen = [batch for _, batch in zip(range(7), sampler)]
    state = sampler.state_dict()
    assert state == {"epoch": 2, "batches_done": 7}
    resumed = EpochBatchSampler(1000, 32, seed=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what Lightning calls at the start of the resumed epoch
    assert seen + list(resumed) == uninterrupted
    resumed.set_epoch(3)
    assert len(list(resumed)) == len(sampler)  # the next epoch is whole again


def test_eval_loaders_are_ordered(datamodule):
    images, labels = next(iter(datamodule.test_dataloader()))
    assert torch.equal(labels, datamodule.test_set.labels[: len(labels)])


def test_missing_data_gives_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(tmp_path / "nowhere", train=True, download=False)
    message = str(error.value)
    assert str((tmp_path / "nowhere" / "MNIST" / "raw").resolve()) in message
    assert "train-images-idx3-ubyte" in message
    assert "DIGITS_DATA_DIR" in message and "data.data_dir" in message


def test_a_failed_download_leaves_no_folders_and_names_the_absolute_path(tmp_path, monkeypatch):
    """Relative to the folder the command started in, reported absolute; torchvision makes the
    folders before it downloads, and a failed download (a real one, to a closed local port) removes them."""
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept").mkdir()
    with pytest.raises(DataNotFoundError, match="the download failed") as error:
        find_mnist("kept/nowhere", download=True)
    assert f"{tmp_path}/kept/nowhere/MNIST/raw lacks" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())
    assert resolve_data_dir("kept") == tmp_path / "kept"


def test_default_data_dir_follows_the_environment(monkeypatch):
    from digits.data import default_data_dir

    monkeypatch.setenv("DIGITS_DATA_DIR", "/some/where")
    assert default_data_dir() == "/some/where"
    monkeypatch.delenv("DIGITS_DATA_DIR")
    assert default_data_dir() == "data"


def copy_raw(data_dir, tmp_path):
    """A data dir whose files are links to the real ones, to be replaced one at a time."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        (raw / name).symlink_to(data_dir / "MNIST" / "raw" / name)
    return raw


def replace_with(raw, name, content: bytes):
    (raw / name).unlink()
    (raw / name).write_bytes(content)


def test_truncated_file_is_refused_with_the_fix(data_dir, tmp_path):
    raw = copy_raw(data_dir, tmp_path)
    original = (raw / "t10k-images-idx3-ubyte").read_bytes()
    replace_with(raw, "t10k-images-idx3-ubyte", original[: len(original) // 2])
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte has 3,920,008 bytes, MNIST's has 7,840,016"):
        load_mnist(tmp_path, train=False, download=False)
    load_mnist(tmp_path, train=True, download=False)  # the training files are fine


def test_wrong_magic_number_is_refused(data_dir, tmp_path):
    raw = copy_raw(data_dir, tmp_path)
    original = (raw / "t10k-labels-idx1-ubyte").read_bytes()
    replace_with(raw, "t10k-labels-idx1-ubyte", (2051).to_bytes(4, "big") + original[4:])
    with pytest.raises(CorruptDataError, match="magic number 2051, an MNIST label file with 2049: not an IDX file"):
        load_mnist(tmp_path, train=False, download=False)


def test_checksum_mismatch_is_refused(data_dir, tmp_path):
    raw = copy_raw(data_dir, tmp_path)
    damaged = bytearray((raw / "t10k-images-idx3-ubyte").read_bytes())
    damaged[5_000_000] ^= 0xFF  # one pixel of one image
    replace_with(raw, "t10k-images-idx3-ubyte", bytes(damaged))
    with pytest.raises(CorruptDataError, match="has MD5 .* the published file 2646ac647ad5339dbf082846283269ea"):
        load_mnist(tmp_path, train=False, download=False)
    images, _ = load_mnist(tmp_path, train=False, download=False, verify=False)  # the user's choice
    assert images.shape == (10_000, 28, 28)


def test_unreadable_file_names_the_file_and_the_fix(data_dir, tmp_path, monkeypatch):
    raw = copy_raw(data_dir, tmp_path)
    name = "t10k-labels-idx1-ubyte"
    replace_with(raw, name, (data_dir / "MNIST" / "raw" / name).read_bytes())
    (raw / name).chmod(0)
    if os.geteuid() == 0:  # root reads a mode-000 file anyway: make the open fail as it would for a user
        real_open = Path.open

        def refuse(path, *args, **kwargs):
            if path.name == name:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(tmp_path, train=False, download=False)
    assert str(error.value).startswith(
        f"cannot read {raw / name}: Permission denied. Give this user read "
        "permission on the data directory, or point data.data_dir elsewhere."
    )
