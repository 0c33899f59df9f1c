"""Checkpoints built to cost: shared references that expand to a billion objects when walked, and
weights of a dtype or layout the network was never built with. Each is refused by the one reader
(digits.checkpoints.read_checkpoint) or the one weights check (digits.module.check_weights), in a
second and with one line, through every entry point that loads a checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from digits.checkpoints import CheckpointError, check_checkpoint, check_expanded_size, read_checkpoint
from digits.module import DigitsModule


def laughs(levels: int, width: int = 10) -> list:
    """``width`` references to the same list at each of ``levels`` levels: width**levels leaves."""
    node: list = ["ha"] * width
    for _ in range(levels - 1):
        node = [node] * width
    return node


def crafted(trained_run: Path, tmp_path: Path, edit) -> Path:
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    edit(checkpoint)
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("where", ["hyper_parameters", "loops", "callbacks"])
def test_a_billion_laughs_checkpoint_is_refused_in_a_second(trained_run, tmp_path, where):
    def edit(checkpoint):
        if where == "hyper_parameters":
            checkpoint["hyper_parameters"]["run_config"]["notes"] = laughs(9)
        elif where == "loops":
            checkpoint["loops"]["laughs"] = laughs(9)
        else:
            checkpoint["callbacks"]["Laughs"] = {"state": laughs(9)}

    path = crafted(trained_run, tmp_path, edit)
    assert path.stat().st_size < 1_000_000
    started = time.perf_counter()
    train_check = lambda path: check_checkpoint(path, DigitsModule.hyperparameter_keys())  # noqa: E731
    for load in (read_checkpoint, train_check, DigitsModule.from_checkpoint):  # evaluate/export/demo, train
        with pytest.raises(CheckpointError, match="expands to more than 1,000,000 objects"):
            load(path)
    assert time.perf_counter() - started < 10


def test_shared_references_are_walked_once_and_small_ones_pass():
    shared = {"a": list(range(1000))}
    check_expanded_size({"x": [shared] * 100, "y": laughs(4)}, "test")  # 100k + 11k objects: fine
    with pytest.raises(CheckpointError, match="expands to more than"):
        check_expanded_size({"x": [laughs(3, 100)] * 2}, "test")  # 2 million leaves through 102 lists
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(CheckpointError, match="contains itself"):
        check_expanded_size({"x": cycle}, "test")


def _first_weight(checkpoint) -> str:
    return next(key for key, value in checkpoint["state_dict"].items() if value.is_floating_point())


@pytest.mark.parametrize("kind", ["complex64_nan", "float8", "sparse", "int_weights", "bool_weights"])
def test_weights_of_another_dtype_or_layout_are_refused(trained_run, tmp_path, kind):
    def edit(checkpoint):
        key = _first_weight(checkpoint)
        value = checkpoint["state_dict"][key]
        if kind == "complex64_nan":  # is_floating_point() is False: NaN used to pass the finite check
            checkpoint["state_dict"] = {
                k: torch.full_like(v, float("nan"), dtype=torch.complex64) if v.is_floating_point() else v
                for k, v in checkpoint["state_dict"].items()
            }
        elif kind == "float8":
            checkpoint["state_dict"][key] = value.to(torch.float8_e4m3fn)
        elif kind == "sparse":
            checkpoint["state_dict"][key] = value.to_sparse()
        elif kind == "int_weights":
            checkpoint["state_dict"][key] = value.to(torch.int32)
        else:
            checkpoint["state_dict"][key] = value > 0

    path = crafted(trained_run, tmp_path, edit)
    with pytest.raises(CheckpointError, match="not of the kinds the network holds"):
        DigitsModule.from_checkpoint(path)


def test_weights_in_another_training_precision_are_read(trained_run, tmp_path):
    """float64 (precision=64) and bfloat16 (bf16-true) weights are a network of this project."""
    for dtype in (torch.float64, torch.bfloat16):

        def edit(checkpoint, dtype=dtype):
            checkpoint["state_dict"] = {
                k: v.to(dtype) if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()
            }

        DigitsModule.from_checkpoint(crafted(trained_run, tmp_path, edit))


# --- the state a resume continues from: checked before anything is written ---------------------------


def _sampler_key(checkpoint) -> str:
    return next(key for key, value in checkpoint.items() if isinstance(value, dict) and "train_sampler" in value)


@pytest.mark.parametrize("value", ["abc", 10**12, -1, 2.5, True])
def test_a_crafted_sampler_position_is_refused_by_the_gate(trained_run, tmp_path, value):
    def edit(checkpoint):
        checkpoint[_sampler_key(checkpoint)]["train_sampler"]["batches_done"] = value

    with pytest.raises(CheckpointError, match="train_sampler.batches_done=.* is not a whole number"):
        check_checkpoint(crafted(trained_run, tmp_path, edit), DigitsModule.hyperparameter_keys())


def test_an_optimizer_state_of_the_wrong_shape_is_refused_before_anything_is_written(trained_run, tmp_path, data_dir):
    from harness import QUIET, compose_train

    from digits.train import train

    def edit(checkpoint):
        state = checkpoint["optimizer_states"][0]["state"][0]
        state["exp_avg"] = torch.zeros(3, 3)

    path = crafted(trained_run, tmp_path, edit)
    cfg = compose_train(
        ["callbacks=minimal", "logger=tensorboard", f"ckpt_path={path}", *QUIET], tmp_path / "run", data_dir
    )
    with pytest.raises(CheckpointError, match="optimizer state does not fit the network: .*exp_avg"):
        train(cfg)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("value", ["x", 0, 60_000, None])
def test_a_crafted_validation_size_is_refused_when_the_checkpoint_is_read(trained_run, tmp_path, value):
    from digits.allowlist import UnsafeConfigError

    def edit(checkpoint):
        checkpoint["hyper_parameters"]["run_config"]["data"]["val_size"] = value

    path = crafted(trained_run, tmp_path, edit)
    if value is None:  # absent: the defaults' split
        DigitsModule.from_checkpoint(path)
        return
    with pytest.raises(UnsafeConfigError, match=r"run_config.data.val_size=.* is not a whole number in \[1, 59999\]"):
        DigitsModule.from_checkpoint(path)


def test_a_zip_bomb_checkpoint_is_refused_before_torch_inflates_it(trained_run, tmp_path):
    """torch.save stores its members uncompressed; one that inflates (here 64 MB of zeros in 64 KB) is
    refused from the archive's directory, before torch.load allocates it."""
    import zipfile

    source = trained_run / "checkpoints" / "last.ckpt"
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as crafted_zip:
        prefix = original.infolist()[0].filename.split("/")[0]
        for member in original.infolist():
            crafted_zip.writestr(member.filename, original.read(member))
        crafted_zip.writestr(f"{prefix}/data/999", bytes(64 * 2**20))
    assert bomb.stat().st_size < 2 * 2**20
    with pytest.raises(CheckpointError, match="its archive declares .* bytes unpacked from a file of"):
        read_checkpoint(bomb)
    read_checkpoint(source)  # a checkpoint torch wrote passes
