"""Crafted checkpoints and run folders that would run code are refused before anything is built.

Each crafted file loads with ``torch.load(weights_only=True)``, so only the allow-list
(``digits.allowlist``) stands between it and Hydra's ``instantiate``. A canary file outside every run
folder shows that nothing was written; ``test_the_crafted_checkpoints_are_real_attacks`` shows that
the harmful ones do write it when the check is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from harness import ROOT, run_in_process, run_script

from digits.allowlist import ConfigsNotFoundError, UnsafeConfigError, offered_targets
from digits.checkpoints import CheckpointError, check_checkpoint
from digits.config import resume_config
from digits.errors import DigitsError
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
    h["model"] = {"_target_": "digits.run_folder.check_writable", "folder": str(scratch / "made_by_a_checkpoint")}


def _tensor_value(h, canary, scratch):
    h["model"]["hidden"] = torch.tensor(64)


def _interpolation(h, canary, scratch):
    h["model"]["dropout"] = "${oc.env:HOME}"


def _foreign_callback(h, canary, scratch):
    h["run_config"]["callbacks"]["model_checkpoint"]["_target_"] = "builtins.exec"


def _unknown_entry(h, canary, scratch):
    h["_recursive_"] = False


def _lightning_instantiator(h, canary, scratch):
    # Lightning's own hook for LightningCLI checkpoints: its load_from_checkpoint would hand the
    # hyperparameters to this function instead of the class
    h["_instantiator"] = "lightning.pytorch.cli.instantiate_module"


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
        "model._target_ is 'digits.run_folder.check_writable', not one of",
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
    "Lightning's _instantiator": (
        _lightning_instantiator,
        "hyper_parameters has an unknown entry '_instantiator'",
        False,
    ),
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
    with pytest.raises(ConfigsNotFoundError, match="model/ is missing from .*nowhere: digits' configs did not install"):
        offered_targets(tmp_path / "nowhere")  # an incomplete install is said as such


@pytest.mark.parametrize("case", CASES)
def test_crafted_checkpoints_are_refused_before_anything_is_built(case, trained_run, canary, tmp_path):
    path = crafted(trained_run / "checkpoints" / "last.ckpt", case, canary, tmp_path / "crafted.ckpt")
    with pytest.raises(UnsafeConfigError, match=re.escape(CASES[case][1])):
        DigitsModule.from_checkpoint(path)
    with pytest.raises(UnsafeConfigError, match=re.escape(CASES[case][1])):  # Lightning's own API: the same gate
        DigitsModule.load_from_checkpoint(path)
    with pytest.raises(CheckpointError, match="hparams_file=, strict=False and weights_only=False are not supported"):
        DigitsModule.load_from_checkpoint(path, hparams_file=tmp_path / "hparams.yaml")  # would replace them unchecked
    with pytest.raises(UnsafeConfigError):  # what train.py ckpt_path= and resume= load a checkpoint with
        check_checkpoint(path, DigitsModule.hyperparameter_keys())
    assert canary.untouched()


def test_the_crafted_checkpoints_are_real_attacks(trained_run, tmp_path):
    """Without the check, the harmful ones write the canary or the scratch folder: the table tests
    something real. (The module is built here as Lightning's own load_from_checkpoint builds it.)"""
    import lightning as L

    for case, (_, _, harmful) in CASES.items():
        canary = Canary(tmp_path / slug(case))
        path = crafted(trained_run / "checkpoints" / "last.ckpt", case, canary, canary.scratch.parent / "c.ckpt")
        try:
            L.LightningModule.load_from_checkpoint.__func__(DigitsModule, path)
        except Exception:
            pass
        assert canary.untouched() is not harmful, case


@pytest.mark.slow
def test_evaluate_script_refuses_every_crafted_checkpoint(trained_run, canary, tmp_path, monkeypatch):
    for case in CASES:
        path = crafted(trained_run / "checkpoints" / "last.ckpt", case, canary, tmp_path / f"{slug(case)}.ckpt")
        out = tmp_path / "eval" / slug(case)
        code = run_in_process("evaluate.py", [f"ckpt_path={path}", f"hydra.run.dir={out}", "device=cpu"], monkeypatch)
        assert code == 2, case
        assert canary.untouched(), case
        assert not (out / "metrics.json").exists()


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target, ignore=shutil.ignore_patterns(".hydra"))
    return target


@pytest.mark.slow
def test_train_script_refuses_them_on_resume_and_ckpt_path(trained_run, canary, tmp_path, monkeypatch):
    run = copy_run(trained_run, tmp_path / "run")
    last = run / "checkpoints" / "last.ckpt"
    original = last.read_bytes()
    for case in CASES:
        crafted(trained_run / "checkpoints" / "last.ckpt", case, canary, last)
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


def test_resume_refuses_a_crafted_config_yaml(trained_run, canary, tmp_path, monkeypatch):
    run = copy_run(trained_run, tmp_path / "run")
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
    copy_run(trained_run, tmp_path / "clean")
    (tmp_path / "clean" / "metrics.json").unlink()  # an interrupted run: a finished one has nothing to resume
    assert resume_config(tmp_path / "clean", []).model._target_ == "digits.models.DigitCNN"
    check_checkpoint(tmp_path / "clean" / "checkpoints" / "last.ckpt", DigitsModule.hyperparameter_keys())


@pytest.mark.slow
def test_resume_exits_2_as_a_process(trained_run, canary, tmp_path, data_dir):
    """Once as a real process: the second attack from the issue, through resume=."""
    run = copy_run(trained_run, tmp_path / "run")
    crafted(
        trained_run / "checkpoints" / "last.ckpt",
        "write_text with pathlib.Path",
        canary,
        run / "checkpoints" / "last.ckpt",
    )
    result = run_script("train.py", [f"resume={run}"], data_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "UnsafeConfigError" in output and "model._target_ is 'digits.train.write_text'" in output
    assert canary.untouched()


# --- checkpoints whose values pass the allow-list but that cannot be loaded: one line, exit code 2 --------


def _deep(checkpoint):
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    checkpoint["hyper_parameters"]["model"]["channels"] = nested


def _nan_weights(checkpoint):
    checkpoint["state_dict"]["net.classifier.2.weight"][0, 0] = float("nan")


# name: (change to the session's checkpoint, part of the one-line message)
BROKEN = {
    "negative hidden": (lambda c: c["hyper_parameters"]["model"].update(hidden=-5), "its classes refuse"),
    "unknown argument": (lambda c: c["hyper_parameters"]["model"].update(colour="red"), "its classes refuse"),
    "NaN dropout": (lambda c: c["hyper_parameters"]["model"].update(dropout=float("nan")), "its classes refuse"),
    "string weight": (lambda c: c["hyper_parameters"]["loss"].update(weight="heavy"), "its classes refuse"),
    "state_dict a list": (lambda c: c.update(state_dict=[1, 2]), "its state_dict is a list, not a dict of tensors"),
    "5,000-deep nesting": (_deep, "model.channels[0][0]"),
    "NaN weights": (_nan_weights, "its weights are not finite (NaN or infinite values in net.classifier.2.weight"),
    "text file": (None, "not a PyTorch checkpoint that loads safely"),
}


# what train.py ckpt_path= reads of a checkpoint: the file, its state_dict, and its nesting
TRAIN_CASES = ("state_dict a list", "5,000-deep nesting", "NaN weights", "text file")


def broken(source: Path, case: str, target: Path) -> Path:
    change = BROKEN[case][0]
    if change is None:
        target.write_text("epoch: 3\nweights: not here\n")
        return target
    checkpoint = torch.load(source, weights_only=True)
    change(checkpoint)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # pickling the 5,000-deep list needs it; loading it does not
    try:
        torch.save(checkpoint, target)
    finally:
        sys.setrecursionlimit(limit)
    return target


@pytest.mark.parametrize("case", BROKEN)
def test_checkpoints_the_classes_reject_are_one_line_errors(case, trained_run, tmp_path):
    path = broken(trained_run / "checkpoints" / "last.ckpt", case, tmp_path / f"{slug(case)}.ckpt")
    for load in (DigitsModule.from_checkpoint, DigitsModule.load_from_checkpoint):
        with pytest.raises(DigitsError) as error:
            load(path)
        assert BROKEN[case][1] in str(error.value) and "\n" not in str(error.value), case


@pytest.mark.slow
def test_scripts_exit_2_on_them_with_one_line(trained_run, tmp_path, monkeypatch, capsys):
    """evaluate.py, export.py and train.py ckpt_path= (a new run from those weights): exit code 2, one
    line naming the problem, no traceback, and no output files."""
    for case in BROKEN:
        path = broken(trained_run / "checkpoints" / "last.ckpt", case, tmp_path / f"{slug(case)}.ckpt")
        for script, args in (
            ("evaluate.py", [f"ckpt_path={path}", "device=cpu"]),
            ("export.py", [f"ckpt_path={path}"]),
            ("train.py", [f"ckpt_path={path}"]),
        ):
            if script == "train.py" and case not in TRAIN_CASES:
                continue  # a new run builds its network from its own config; these weights fit it
            out = tmp_path / "out" / script / slug(case)
            code = run_in_process(script, [*args, f"hydra.run.dir={out}"], monkeypatch)
            output = capsys.readouterr()
            assert code == 2, (case, script, output.err[-2000:])
            assert "Traceback" not in output.out + output.err, (case, script)
            log = out / f"{script[:-3]}.log"  # gone with the run folder a failed start made
            assert BROKEN[case][1] in output.out + output.err + (log.read_text() if log.exists() else "")
            assert not any(p.suffix in (".json", ".onnx", ".ckpt") for p in out.rglob("*")), (case, script)
            assert not (out / "config.yaml").exists()


def test_a_checkpoint_of_another_network_through_train_ckpt_path(trained_run, tmp_path, monkeypatch, capsys):
    """The session's CNN checkpoint as the start of an ExampleNet run: refused by names and shapes,
    before the new run folder gets a config.yaml or checkpoints."""
    out = tmp_path / "new"
    last = trained_run / "checkpoints" / "last.ckpt"
    code = run_in_process("train.py", [f"ckpt_path={last}", "model=example", f"hydra.run.dir={out}"], monkeypatch)
    output = capsys.readouterr()
    # the run folder this failed start made is removed (digits.entry), so the message is read where it was printed
    shown = output.out + output.err
    assert code == 2 and "Traceback" not in shown
    assert "WeightMismatchError" in shown and "do not fit the network its config describes" in shown
    assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()


def test_a_checkpoint_of_another_block_order_names_the_override_that_fits(trained_run, tmp_path, monkeypatch, capsys):
    """Weights of the default network (pool_first) as the start of a run configured with pool: refused, and the
    message gives the model.* override that rebuilds the checkpoint's network, read from its hyperparameters."""
    out = tmp_path / "new"
    last = trained_run / "checkpoints" / "last.ckpt"
    code = run_in_process(
        "train.py", [f"ckpt_path={last}", "model.downsample=pool", f"hydra.run.dir={out}"], monkeypatch
    )
    shown = "".join(capsys.readouterr())
    assert code == 2 and "Traceback" not in shown
    assert "do not fit the network its config describes" in shown
    assert "its network was built with model.downsample=pool_first: add that to the command" in shown
    assert not (out / "config.yaml").exists()


def test_lightnings_trainer_paths_pass_the_same_gate(trained_run, canary, tmp_path, data_dir):
    """Trainer.fit/test(ckpt_path=...) with a module built from a clean config: the class's
    on_load_checkpoint refuses a crafted file before any step (not just the scripts' checks)."""
    import lightning as L

    from digits.data import MNISTDataModule

    hparams = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    datamodule = MNISTDataModule(str(data_dir), batch_size=64, download=False)
    unsafe = crafted(trained_run / "checkpoints" / "last.ckpt", "nested builtins.open", canary, tmp_path / "a.ckpt")
    nan = broken(trained_run / "checkpoints" / "last.ckpt", "NaN weights", tmp_path / "nan.ckpt")
    for path, error in ((unsafe, UnsafeConfigError), (nan, CheckpointError)):
        for run in ("fit", "test"):
            trainer = L.Trainer(
                max_epochs=2, limit_train_batches=1, limit_val_batches=1, limit_test_batches=1, logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                default_root_dir=tmp_path / "lightning",
            )  # fmt: skip
            with pytest.raises(error):
                getattr(trainer, run)(DigitsModule(**hparams), datamodule=datamodule, ckpt_path=path)
            assert trainer.global_step == 0
    assert canary.untouched()


TINY_NET = '''"""A model added as a user would: this class and configs/model/tiny.yaml, nothing else."""

from torch import Tensor, nn


class TinyNet(nn.Module):
    def __init__(self, hidden: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)
'''


# Runs scripts as __main__ in turn (each argument: a JSON list, the script and its arguments); stops at the
# first that exits with an error.
SCRIPTS_IN_TURN = """
import json, runpy, sys
from hydra.core.global_hydra import GlobalHydra
for command in sys.argv[1:]:
    sys.argv = json.loads(command)
    GlobalHydra.instance().clear()
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exit:
        if exit.code not in (0, None):
            sys.exit(f"{sys.argv[0]} exited with {exit.code}")
"""


@pytest.mark.slow
def test_a_new_model_is_its_class_and_one_yaml_file(tmp_path, data_dir):
    """In a copy of the project: add a model class and its config, train a few steps, evaluate and export
    the checkpoint. No Python list is edited; the allow-list reads the new YAML file."""
    project = tmp_path / "project"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("src", "configs", "scripts"):
        shutil.copytree(ROOT / part, project / part, ignore=skip)
    (project / "src" / "digits" / "tiny.py").write_text(TINY_NET)
    # what pip install -e maps (pyproject's package-dir): the copy's configs/ as its digits.configs
    (project / "src" / "digits" / "configs").symlink_to(project / "configs")
    (project / "configs" / "model" / "tiny.yaml").write_text("_target_: digits.tiny.TinyNet\nhidden: 16\n")
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "DIGITS_DATA_DIR": str(data_dir)}

    run_dir = tmp_path / "run"
    train = [
        "model=tiny", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "test=false", "logger=none", "callbacks=minimal", "trainer.enable_progress_bar=false",
        "~callbacks.rich_progress_bar", "~callbacks.model_summary", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    evaluate = [f"ckpt_path={run_dir}", "device=cpu", f"hydra.run.dir={tmp_path / 'evaluated'}"]
    export = [f"ckpt_path={run_dir}", f"hydra.run.dir={tmp_path / 'exported'}"]
    # the copy's three scripts, one after the other in one interpreter started in the copy (one start-up)
    commands = [json.dumps([str(project / "scripts" / name), *args]) for name, args in
                (("train.py", train), ("evaluate.py", evaluate), ("export.py", export))]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", SCRIPTS_IN_TURN, *commands],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    hparams = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["model"]["_target_"] == "digits.tiny.TinyNet"
    assert json.loads((tmp_path / "evaluated" / "metrics.json").read_text())["split"] == "test"
    assert (tmp_path / "exported" / "model.onnx").is_file()


def test_paths_in_callback_and_loop_state_must_stay_in_the_run(trained_run, tmp_path):
    """rebase_callback_state, the rule behind resume= and Trainer.fit(ckpt_path=): paths in other callbacks'
    and the loops' state resolve inside the run folder; a ModelCheckpoint's names are plain files of its
    folder, not symlinks; a real checkpoint passes with its paths re-derived from where it is read."""
    from digits.checkpoints import rebase_callback_state

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns(".hydra"))
    folder = run / "checkpoints"
    (tmp_path / "victim.txt").write_text("alive\n")
    (folder / "evil.ckpt").symlink_to(tmp_path / "victim.txt")

    def model_checkpoint_link(checkpoint):
        state = next(s for k, s in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint"))
        state["best_k_models"] = {f"{state['dirpath']}/evil.ckpt": torch.tensor(0.0)}

    changes = {
        "outside the run folder": [
            lambda c: c["callbacks"].update({"Throughput": {"log": "/etc/cron.d/job"}}),
            lambda c: c["loops"]["fit_loop"].update(extra="../../outside"),
        ],
        "a symlink or a folder": [model_checkpoint_link],
    }
    for message, crafts in changes.items():
        for craft in crafts:
            checkpoint = torch.load(folder / "last.ckpt", weights_only=True)
            craft(checkpoint)
            with pytest.raises(CheckpointError, match=message):
                rebase_callback_state(checkpoint, folder, "crafted")
    clean = torch.load(folder / "last.ckpt", weights_only=True)
    rebase_callback_state(clean, folder, "clean")
    states = [s for k, s in clean["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert states and all(s["dirpath"] == str(folder.resolve()) for s in states)
    assert all(Path(s["last_model_path"]).parent == folder.resolve() for s in states)
    assert (tmp_path / "victim.txt").read_text() == "alive\n"
