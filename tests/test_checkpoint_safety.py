"""Crafted checkpoints and run folders that would run code are refused before anything is built.

Each crafted file loads with ``torch.load(weights_only=True)``, so only the allow-list
(``digits.allowlist``) stands between it and Hydra's ``instantiate``. A canary file outside every run
folder shows that nothing was written; ``test_the_crafted_checkpoints_are_real_attacks`` shows that
the harmful ones do write it when the check is skipped.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, run_in_process, run_script

from digits.allowlist import UnsafeConfigError, offered_targets
from digits.checkpoints import check_checkpoint
from digits.config import resume_config
from digits.module import DigitsModule

CANARY_TEXT = "the canary is alive\n"


def _nested_open(h, canary, scratch):
    h["model"]["hidden"] = {"_target_": "builtins.open", "file": str(canary), "mode": "w"}


def _write_text(h, canary, scratch):
    h["model"] = {
        "_target_": "digits.train.write_text",
        "path": {"_target_": "pathlib.Path", "_args_": [str(canary)]},
        "text": "overwritten",
    }


def _partial(h, canary, scratch):
    h["loss"]["_partial_"] = True


def _target_in_a_list(h, canary, scratch):
    h["model"]["channels"] = [16, {"_target_": "builtins.open", "file": str(canary), "mode": "w"}, 64]


def _allowed_prefix(h, canary, scratch):
    # under the old prefix list ("digits."): creates a folder and a probe file wherever it is told
    h["model"] = {"_target_": "digits.config.check_writable", "folder": str(scratch / "made_by_a_checkpoint")}


def _tensor_value(h, canary, scratch):
    h["model"]["hidden"] = torch.tensor(64)


def _interpolation(h, canary, scratch):
    h["model"]["dropout"] = "${oc.env:HOME}"


def _foreign_callback(h, canary, scratch):
    h["run_config"]["callbacks"]["model_checkpoint"]["_target_"] = "builtins.exec"


def _unknown_entry(h, canary, scratch):
    h["_recursive_"] = False


# name: (craft, part of the message, does it write the canary or the scratch folder when unchecked)
CASES = {
    "nested builtins.open": (
        _nested_open,
        "model.hidden._target_ names 'builtins.open': a _target_ is only allowed at the top of a config group",
        True,
    ),
    "write_text with pathlib.Path": (
        _write_text,
        "model._target_ is 'digits.train.write_text', not one of digits.models.DigitCNN, digits.models.ExampleNet",
        True,
    ),
    "_partial_": (_partial, "loss._partial_ is a Hydra key (='True'), not allowed", False),
    "target inside a list": (_target_in_a_list, "model.channels[1]._target_ names 'builtins.open'", True),
    "allowed prefix, not on the list": (
        _allowed_prefix,
        "model._target_ is 'digits.config.check_writable', not one of",
        True,
    ),
    "non-plain value": (_tensor_value, "model.hidden is a torch.Tensor, not plain data", False),
    "interpolation": (_interpolation, "model.dropout is an interpolation '${oc.env:HOME}'", False),
    "foreign class in run_config": (
        _foreign_callback,
        "run_config.callbacks.model_checkpoint._target_ is 'builtins.exec', not one of",
        False,
    ),
    "unknown hyperparameter": (_unknown_entry, "hyper_parameters has an unknown entry '_recursive_'", False),
}


class Canary:
    """A file outside every run folder, and a scratch folder that must stay empty."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "canary.txt"
        self.scratch = folder / "scratch"
        self.scratch.mkdir(parents=True)
        self.file.write_text(CANARY_TEXT)
        self.stat = self.file.stat()

    def untouched(self) -> bool:
        stat = self.file.stat()
        return (
            self.file.read_text() == CANARY_TEXT
            and stat.st_mtime_ns == self.stat.st_mtime_ns
            and stat.st_size == self.stat.st_size
            and not any(self.scratch.iterdir())
        )


@pytest.fixture
def canary(tmp_path) -> Canary:
    return Canary(tmp_path)


def crafted(source: Path, case: str, canary: Canary, target: Path) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    CASES[case][0](checkpoint["hyper_parameters"], canary.file, canary.scratch)
    torch.save(checkpoint, target)
    torch.load(target, weights_only=True)  # the crafted file passes PyTorch's own safe loading
    return target


def slug(case: str) -> str:
    """A case's name as a file name Hydra's command line parses as one value (no commas, no spaces)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", case)


def test_the_allow_list_is_read_from_the_config_groups(tmp_path):
    """No Python list to keep in sync: what configs/<group>/*.yaml name is what a file may ask for, and
    a YAML file added to a group is enough (here in a copy of configs/)."""
    offered = offered_targets()
    assert offered["model"] == {"digits.models.DigitCNN", "digits.models.ExampleNet"}
    assert "torch.optim.lr_scheduler.OneCycleLR" in offered["scheduler"]
    assert "lightning.pytorch.callbacks.ModelCheckpoint" in offered["callbacks"]
    assert offered["plugins"] == {"digits.sync_batchnorm.SyncBatchNorm"}
    assert offered["trainer"] == {"lightning.pytorch.Trainer"}
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / "configs" / "model" / "tiny.yaml").write_text("_target_: digits.tiny.TinyNet\n")
    assert offered_targets(tmp_path / "configs")["model"] == offered["model"] | {"digits.tiny.TinyNet"}
    assert offered_targets(tmp_path / "nowhere")["model"] == frozenset()  # no configs: everything is refused


@pytest.mark.parametrize("case", CASES)
def test_crafted_checkpoints_are_refused_before_anything_is_built(case, short_run, canary, tmp_path):
    path = crafted(short_run / "checkpoints" / "last.ckpt", case, canary, tmp_path / "crafted.ckpt")
    with pytest.raises(UnsafeConfigError, match=re.escape(CASES[case][1])):
        DigitsModule.from_checkpoint(path)
    with pytest.raises(UnsafeConfigError, match=re.escape(CASES[case][1])):  # Lightning's own API: the same gate
        DigitsModule.load_from_checkpoint(path)
    with pytest.raises(UnsafeConfigError):  # what train.py ckpt_path= and resume= load a checkpoint with
        check_checkpoint(path)
    assert canary.untouched()


def test_the_crafted_checkpoints_are_real_attacks(short_run, tmp_path):
    """Without the check, the harmful ones write the canary or the scratch folder: the table tests
    something real. (The module is built here as Lightning's own load_from_checkpoint builds it.)"""
    import lightning as L

    for case, (_, _, harmful) in CASES.items():
        canary = Canary(tmp_path / slug(case))
        path = crafted(short_run / "checkpoints" / "last.ckpt", case, canary, canary.scratch.parent / "c.ckpt")
        try:
            L.LightningModule.load_from_checkpoint.__func__(DigitsModule, path)
        except Exception:
            pass
        assert canary.untouched() is not harmful, case


def test_evaluate_script_refuses_every_crafted_checkpoint(short_run, canary, tmp_path, monkeypatch):
    for case in CASES:
        path = crafted(short_run / "checkpoints" / "last.ckpt", case, canary, tmp_path / f"{slug(case)}.ckpt")
        out = tmp_path / "eval" / slug(case)
        code = run_in_process("evaluate.py", [f"ckpt_path={path}", f"hydra.run.dir={out}", "device=cpu"], monkeypatch)
        assert code == 2, case
        assert canary.untouched(), case
        assert not (out / "metrics.json").exists()


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target, ignore=shutil.ignore_patterns(".hydra"))
    return target


def test_train_script_refuses_them_on_resume_and_ckpt_path(short_run, canary, tmp_path, monkeypatch):
    run = copy_run(short_run, tmp_path / "run")
    last = run / "checkpoints" / "last.ckpt"
    original = last.read_bytes()
    for case in CASES:
        crafted(short_run / "checkpoints" / "last.ckpt", case, canary, last)
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and ".hydra" not in p.parts}
        assert run_in_process("train.py", [f"resume={run}"], monkeypatch) == 2, case
        assert canary.untouched(), case
        after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and ".hydra" not in p.parts}
        assert after.keys() - before.keys() <= {run / "train.log"} and all(
            after[p] == before[p] for p in before if p.name != "train.log"
        ), case
        if case in ("nested builtins.open", "write_text with pathlib.Path"):  # the same check_checkpoint
            new = tmp_path / "new" / slug(case)
            assert run_in_process("train.py", [f"ckpt_path={last}", f"hydra.run.dir={new}"], monkeypatch) == 2
            assert canary.untouched() and not (new / "config.yaml").exists() and not (new / "checkpoints").exists()
    last.write_bytes(original)


def test_resume_refuses_a_crafted_config_yaml(short_run, canary, tmp_path, monkeypatch):
    run = copy_run(short_run, tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["hidden"] = {"_target_": "builtins.open", "file": str(canary.file), "mode": "w"}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(
        UnsafeConfigError,
        match="config.yaml: refusing to instantiate anything from it: model.hidden._target_ names 'builtins.open'",
    ):
        resume_config(run, [])
    assert run_in_process("train.py", [f"resume={run}"], monkeypatch) == 2
    assert canary.untouched()
    config["model"]["hidden"] = 0
    config["callbacks"]["model_checkpoint"]["_target_"] = "digits.train.write_text"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(
        UnsafeConfigError,
        match="callbacks.model_checkpoint._target_ is 'digits.train.write_text', "
        "not one of digits.monitoring.OutputHistograms",
    ):
        resume_config(run, [])
    # the run's own, unmodified config and checkpoint pass the same check
    copy_run(short_run, tmp_path / "clean")
    assert resume_config(tmp_path / "clean", []).model._target_ == "digits.models.DigitCNN"
    check_checkpoint(tmp_path / "clean" / "checkpoints" / "last.ckpt")


def test_resume_exits_2_as_a_process(short_run, canary, tmp_path, data_dir):
    """Once as a real process: the second attack from the issue, through resume=."""
    run = copy_run(short_run, tmp_path / "run")
    crafted(
        short_run / "checkpoints" / "last.ckpt",
        "write_text with pathlib.Path",
        canary,
        run / "checkpoints" / "last.ckpt",
    )
    result = run_script("train.py", [f"resume={run}"], data_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "UnsafeConfigError" in output and "model._target_ is 'digits.train.write_text'" in output
    assert canary.untouched()
