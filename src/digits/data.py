"""MNIST as preloaded tensors: read the IDX files once, normalise once, slice batches. torchvision's
``MNIST`` only downloads and parses: its PIL image per sample costs more than a small CNN's training step.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from digits.augment import Augmentation, augment, batch_generator
from digits.configs import CONFIG_DIR
from digits.errors import DigitsError
from digits.mnist_files import (  # noqa: F401  (default_data_dir: part of this module's API)
    RAW_FILES,
    DataNotFoundError,
    default_data_dir,
    missing_files,
    not_found,
    resolve_data_dir,
)

log = logging.getLogger(__name__)

# Mean and standard deviation of the 60,000 training images' pixels in [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class CorruptDataError(DigitsError, ValueError):
    """An MNIST file is truncated, of another format, or not the published file."""


# Files already verified in this process, by (path, size, modification time): train() checks them before it
# writes anything, and setup() reads them again; the MD5 of 47 MB is computed once.
_verified: set[tuple[str, int, int, bool]] = set()


def verify_raw_file(path: Path, checksum: bool = True) -> None:
    """Size, IDX magic number, the header's dimensions and (optionally) MD5 against the published file: never
    a silent partial dataset, nor a header that makes the reader allocate or reshape what it claims."""
    size, md5, magic = RAW_FILES[path.name]
    fix = (
        "Delete it and let torchvision download it again (data.download=true, needs internet), "
        "or copy the original file there."
    )
    try:
        status = path.stat()
        key = (str(path), status.st_size, status.st_mtime_ns, checksum)
        if key in _verified:
            return
        actual = status.st_size
        with path.open("rb") as file:
            head = file.read(16 if magic == 2051 else 8)
            digest = hashlib.md5(head + file.read()).hexdigest() if checksum else md5
    except PermissionError as error:
        raise DataNotFoundError(
            f"cannot read {path}: {error.strerror}. Give this user read permission "
            "on the data directory, or point data.data_dir elsewhere."
        ) from error
    if actual != size:
        raise CorruptDataError(f"{path} has {actual:,} bytes, MNIST's has {size:,}: truncated or another file. {fix}")
    if int.from_bytes(head[:4], "big") != magic:
        raise CorruptDataError(
            f"{path} starts with magic number {int.from_bytes(head[:4], 'big')}, an MNIST "
            f"{'image' if magic == 2051 else 'label'} file with {magic}: not an IDX file. {fix}"
        )
    dims = [int.from_bytes(head[i : i + 4], "big") for i in range(4, len(head), 4)]
    count = (size - len(head)) // (28 * 28 if magic == 2051 else 1)
    expected = [count, 28, 28] if magic == 2051 else [count]
    if dims != expected:
        raise CorruptDataError(
            f"{path}'s header declares {' x '.join(map(str, dims))}, MNIST's file {' x '.join(map(str, expected))}: "
            f"not the published file. {fix}"
        )
    if digest != md5:
        raise CorruptDataError(f"{path} has MD5 {digest}, the published file {md5}: the file is damaged. {fix}")
    _verified.add(key)


def standardize(pixels: Tensor) -> Tensor:
    """Pixels in [0, 1] -> standardised with MNIST's training statistics, as the network was trained."""
    return (pixels - MNIST_MEAN) / MNIST_STD


def to_pixels(images: Tensor) -> Tensor:
    """Standardised images back to pixels in [0, 1]: ``standardize`` undone, for pictures of them."""
    return images * MNIST_STD + MNIST_MEAN


def normalize(images: Tensor) -> Tensor:
    """uint8 (N, 28, 28) -> standardised float32 (N, 1, 28, 28), in place on one copy: the same values as
    ``(x / 255 - mean) / std`` bit for bit, in a third of the time (no temporaries of 188 MB)."""
    return images.to(torch.float32, copy=True).div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)


def find_mnist(data_dir: str | Path, download: bool = True) -> Path:
    """Return ``<data_dir>/MNIST/raw``, downloading the files there (torchvision) when missing."""
    data_dir = resolve_data_dir(data_dir)
    raw = data_dir / "MNIST" / "raw"
    missing = missing_files(raw)
    download_error = None
    if missing and download:
        from torchvision.datasets import MNIST

        # torchvision creates the folders before it downloads: a failed download removes those it made,
        # up to the first that existed (DIGITS_DATA_DIR=../shared/data may create ../shared too)
        new_folders = [p for p in (raw, *raw.parents) if not p.exists()]
        try:
            MNIST(str(data_dir), train=True, download=True)
            missing = missing_files(raw)
        except Exception as error:  # no network, proxy, disk: all end in the same advice
            download_error = error
        if missing:
            for folder in new_folders:  # deepest first; a folder holding anything is kept
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
    if missing:
        reason = (
            f"the download failed ({download_error})" if download_error else "download is off (data.download=false)"
        )
        raise not_found(raw, missing, reason)
    return raw


def load_mnist(data_dir: str | Path, train: bool, download: bool = True, verify: bool = True) -> tuple[Tensor, Tensor]:
    """(uint8 images (N, 28, 28), int64 labels (N)) of the training or test set; ``verify``: also the MD5."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = find_mnist(data_dir, download)
    prefix = "train" if train else "t10k"
    for name in RAW_FILES:
        if name.startswith(prefix):
            verify_raw_file(raw / name, checksum=verify)
    images = read_image_file(str(raw / f"{prefix}-images-idx3-ubyte"))
    labels = read_label_file(str(raw / f"{prefix}-labels-idx1-ubyte"))
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) <= 9:  # verify=false: not checked by MD5
        raise CorruptDataError(
            f"{raw / f'{prefix}-labels-idx1-ubyte'} holds labels in [{int(labels.min())}, {int(labels.max())}], "
            "MNIST's are 0-9: not the published file. Copy the original file there."
        )
    return images, labels


class TensorBatches(Dataset):
    """A dataset indexed by a whole batch of indices: ``ds[[3, 1, 4]]`` -> (images, labels)."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, device=self.labels.device)
        return self.images[index], self.labels[index]


class AugmentedBatches(TensorBatches):
    """Training batches with random jitter (``digits.augment``), drawn from (seed, the batch's indices)."""

    def __init__(self, images: Tensor, labels: Tensor, settings: Augmentation, seed: int) -> None:
        super().__init__(images, labels)
        self.settings, self.seed = settings, seed

    def __getitem__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        images, labels = super().__getitem__(indices)
        return augment(images, self.settings, batch_generator(self.seed, indices)), labels


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices for one process: a shuffle seeded by ``(seed, epoch)`` alone, every ``world_size``-th
    index from ``rank``, and a start offset, so that a run resumed mid-epoch gets exactly the batches an
    uninterrupted run would have had. Training shares are padded to equal length (every DDP process takes
    the same number of steps); evaluation shares are not, so no image counts twice."""

    def __init__(
        self, size: int, batch_size: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0  # the first batch of this epoch to yield (non-zero only after a resume)
        self.batches_done = 0  # batches of this epoch handed out so far

    def _share(self) -> Tensor:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            total = math.ceil(self.size / self.world_size) * self.world_size
            order = torch.cat([order, order[: total - self.size]])  # pad: equal shares
        else:
            order = torch.arange(self.size)
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        share = (
            math.ceil(self.size / self.world_size)
            if self.shuffle
            else len(range(self.rank, self.size, self.world_size))
        )
        return math.ceil(share / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._share().split(self.batch_size)
        for position in range(self.start, len(batches)):
            self.batches_done = position + 1
            yield batches[position].tolist()
        self.epoch, self.start, self.batches_done = self.epoch + 1, 0, 0  # a full pass: next epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.start, self.batches_done = state["epoch"], state["batches_done"], state["batches_done"]


def split_defaults() -> dict[str, int]:
    """``val_size`` and ``split_seed`` as configs/data/mnist.yaml sets them: the one place they are written."""
    data = yaml.safe_load((CONFIG_DIR / "data" / "mnist.yaml").read_text())
    return {"val_size": int(data["val_size"]), "split_seed": int(data["split_seed"])}


class MNISTDataModule(L.LightningDataModule):
    """MNIST with a fixed, seeded train/validation split of the 60,000 training images and the official test
    set. The training sampler's position goes into checkpoints, so a resume continues the epoch exactly."""

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 256,
        eval_batch_size: int = 1000,
        val_size: int | None = None,
        split_seed: int | None = None,
        shuffle_seed: int = 0,
        download: bool = True,
        verify: bool = True,
        device: str = "cpu",
        augment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        defaults = split_defaults()  # None: configs/data/mnist.yaml's split, the one place it is written
        self.val_size = defaults["val_size"] if val_size is None else val_size
        self.split_seed = defaults["split_seed"] if split_seed is None else split_seed
        self.shuffle_seed = shuffle_seed
        self.download = download
        self.verify = verify
        # "cuda" keeps all of MNIST (about 200 MB as float32) on the GPU: batches never cross the bus.
        self.device = torch.device(device)
        # {"enabled": true, "degrees": ..., ...}: random jitter of the training batches only
        settings = dict(augment or {})
        self.augmentation = (
            Augmentation(**{k: v for k, v in settings.items() if k != "enabled"}) if settings.get("enabled") else None
        )
        self.train_set: TensorBatches | None = None
        self.val_set: TensorBatches | None = None
        self.test_set: TensorBatches | None = None
        self.train_sampler: EpochBatchSampler | None = None
        self._sampler_state: dict[str, int] | None = None  # from a checkpoint loaded before setup()

    def prepare_data(self) -> None:
        find_mnist(self.data_dir, download=self.download)

    def check_files(self) -> None:
        """The raw files that are there, checked as ``setup`` will, before a run writes anything."""
        raw = self.data_dir / "MNIST" / "raw"
        for name in RAW_FILES:
            if (raw / name).is_file():
                verify_raw_file(raw / name, checksum=self.verify)

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            images, labels = load_mnist(self.data_dir, train=True, download=self.download, verify=self.verify)
            log.info("MNIST from %s", self.data_dir / "MNIST" / "raw")
            # A generator of its own: the split is the same whatever the training seed.
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
            val, train = order[: self.val_size], order[self.val_size :]
            # split the uint8 images, then normalise each part: one float copy instead of two
            train_images, train_labels = normalize(images[train]).to(self.device), labels[train].to(self.device)
            self.train_set = (
                TensorBatches(train_images, train_labels)
                if self.augmentation is None
                else AugmentedBatches(train_images, train_labels, self.augmentation, self.shuffle_seed)
            )
            self.val_set = TensorBatches(normalize(images[val]).to(self.device), labels[val].to(self.device))
            rank, world_size = self._rank()
            self.train_sampler = EpochBatchSampler(
                len(self.train_set), self.batch_size, seed=self.shuffle_seed, rank=rank, world_size=world_size
            )
            if self._sampler_state is not None:
                self.train_sampler.load_state_dict(self._sampler_state)
        if self.test_set is None and stage in (None, "test", "predict"):
            images, labels = load_mnist(self.data_dir, train=False, download=self.download, verify=self.verify)
            self.test_set = TensorBatches(normalize(images).to(self.device), labels.to(self.device))

    def _loader(self, dataset: TensorBatches, sampler: Sampler) -> DataLoader:
        # batch_size=None: the sampler yields whole batches of indices. generator: each new iterator draws a
        # base seed from it, not from the global stream dropout uses (a resume would otherwise lose one draw:
        # Lightning creates the resumed epoch's iterator before the module restores the random streams).
        return DataLoader(dataset, sampler=sampler, batch_size=None, generator=torch.Generator())

    def _eval_loader(self, dataset: TensorBatches) -> DataLoader:
        rank, world_size = self._rank()
        sampler = EpochBatchSampler(len(dataset), self.eval_batch_size, shuffle=False, rank=rank, world_size=world_size)
        return self._loader(dataset, sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.train_sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            self.setup("test")
        return self._eval_loader(self.test_set)

    def state_dict(self) -> dict[str, Any]:
        return {"train_sampler": self.train_sampler.state_dict()} if self.train_sampler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("train_sampler")
        if state is not None and self.train_sampler is not None:
            self.train_sampler.load_state_dict(state)
        else:
            self._sampler_state = state
