"""The frame the scripts share (digits.entry, digits.early_checks, digits.writing): a mistake is one
line and exit code 2 before torch is imported and before anything is written; a failed start leaves
no run folder; evaluate, export and the demo write only into folders of their own; a set of output
files is whole or lacks its last file after a kill; a read-only or full disk is one WriteError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT, run_in_process

# Runs a script as `python scripts/<name>` would, then says whether torch was imported by the end.
PROBE = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def probe(script: str, args: list[str], cwd: Path, data_dir: Path | str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIGITS_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-c", PROBE, str(ROOT / "scripts" / script), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("train.py", ["resume=outputs/train/nope"], "ConfigError: resume={cwd}/outputs/train/nope is not a run folder"),
        ("train.py", ["ckpt_path=nope.ckpt"], "ConfigError: ckpt_path=nope.ckpt: {cwd}/nope.ckpt does not exist"),
        ("evaluate.py", ["ckpt_path=nope"], "ConfigError: ckpt_path=nope: {cwd}/nope does not exist"),
        ("evaluate.py", ["ckpt_path=x.ckpt", "predict=nope.png"], "ConfigError: predict=nope.png: {cwd}/nope.png"),
        ("evaluate.py", [], "ConfigError: ckpt_path is missing: give a checkpoint or a run folder"),
        ("export.py", ["ckpt_path=nope"], "ConfigError: ckpt_path=nope: {cwd}/nope does not exist"),
        ("demo.py", ["ckpt_path=nope"], "ConfigError: ckpt_path=nope: {cwd}/nope does not exist"),
        # DIGITS_DATA_DIR pointing where no MNIST is (and no folder to create): refused, nothing made
        ("export.py", ["ckpt_path=x.ckpt"], "DataNotFoundError: MNIST not found: {cwd}/../shared/data/MNIST/raw lacks"),
        # an override Hydra's grammar cannot read: the fix is to quote it for Hydra
        ("evaluate.py", ["ckpt_path=x.ckpt", "predict=digit (1).webp"], """'predict="digit (1).webp"'"""),
    ],
)
def test_a_wrong_path_is_one_line_before_torch_and_leaves_nothing(script, args, message, tmp_path):
    cwd = tmp_path / "clone"
    cwd.mkdir()
    (cwd / "x.ckpt").write_bytes(b"")  # exists: the check under test is another one
    result = probe(script, args, cwd, "../shared/data")
    assert result.returncode == 2, result.stderr[-2000:]
    assert message.format(cwd=cwd) in result.stderr.replace(f"{tmp_path}/shared", f"{cwd}/../shared"), result.stderr
    assert "Traceback" not in result.stderr and "torch imported: False" in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["clone", "x.ckpt"]  # no outputs/, no ../shared


def test_a_failure_inside_the_task_removes_the_run_folder_it_made(tmp_path, monkeypatch):
    logs = tmp_path / "outputs"
    assert run_in_process("train.py", ["trainer.max_epochs=0", f"paths.log_dir={logs}"], monkeypatch) == 2
    assert list((logs / "train").iterdir()) == []  # Hydra's .hydra/ and train.log went with it
    given = tmp_path / "given"  # a folder the user made is never removed
    given.mkdir()
    assert run_in_process("train.py", ["trainer.max_epochs=0", f"hydra.run.dir={given}"], monkeypatch) == 2
    assert given.is_dir()


@pytest.mark.parametrize("script", ["evaluate.py", "export.py", "demo.py"])
def test_a_folder_holding_another_runs_outputs_is_refused(script, tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"a training run's checkpoint")
    (run / "metrics.json").write_text('{"test/acc": 0.99}')
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code = run_in_process(script, [f"ckpt_path={run}", f"hydra.run.dir={run}"], monkeypatch)
    assert code == 2
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # not even a log file


def test_every_script_is_a_thin_wrapper_over_its_entry_point():
    """Each script in scripts/ is a docstring and its console entry point (digits.commands), so that a
    checkout's ``python scripts/train.py`` and an installed ``digits-train`` are one command."""
    scripts = sorted((ROOT / "scripts").glob("*.py"))
    assert [s.stem for s in scripts] == ["demo", "evaluate", "export", "train"]
    for script in scripts:
        code = [line for line in script.read_text().split('"""')[-1].splitlines() if line.strip()]
        assert code == [
            f"from digits.commands import {script.stem}",
            'if __name__ == "__main__":',
            f"    {script.stem}()",
        ], script.name


@pytest.mark.parametrize("script", ["evaluate.py", "export.py"])
def test_an_unknown_key_on_a_converted_script_is_one_line_and_exit_code_2(script, tmp_path):
    result = probe(script, ["softmax_ckpt=x.ckpt"], tmp_path, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if not line.startswith("torch imported:")]
    assert len(lines) == 1 and lines[0].startswith("ConfigError: there is no key or config group 'softmax_ckpt'"), lines
    assert "torch imported: False" in result.stderr and list(tmp_path.iterdir()) == []


# --- output sets after a kill ---------------------------------------------------------------------

KILLER = """
import os, signal, sys
from pathlib import Path
from digits.writing import output_set

kill_at, folder = int(sys.argv[1]), Path(sys.argv[2])
moved = []
real_replace = os.replace

def replace(source, target):
    if len(moved) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # between two moves of the set
    moved.append(target)
    real_replace(source, target)

os.replace = replace
with output_set(folder, last="metrics.json") as staging:
    for name in ("a.png", "report.md", "metrics.json"):
        (staging / name).write_text(name * 1000)
"""


@pytest.mark.parametrize("kill_at", [0, 1, 2, 3])
def test_a_kill_between_the_moves_leaves_the_set_whole_or_without_its_last_file(kill_at, tmp_path):
    folder = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", KILLER, str(kill_at), str(folder)], capture_output=True, text=True)
    assert result.returncode == (0 if kill_at == 3 else -9), result.stderr
    present = {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}
    assert all(text == name * 1000 for name, text in present.items())  # never a half-written file
    if "metrics.json" in present:
        assert set(present) == {"a.png", "report.md", "metrics.json"}
    assert len(present) == kill_at


@pytest.mark.slow
def test_evaluate_killed_before_its_last_move_leaves_no_metrics(trained_run, data_dir, tmp_path):
    """The real script, SIGKILLed just before metrics.json moves into place: figures and report, whole."""
    hook = (
        "import os, signal, sys, runpy\n"
        "real = os.replace\n"
        "def replace(source, target):\n"
        "    if str(target).endswith('metrics.json') and '.writing-' in str(source):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(source, target)\n"
        "os.replace = replace\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    out = tmp_path / "eval"
    args = [f"ckpt_path={trained_run}", f"hydra.run.dir={out}", "device=cpu", "tensorboard=false"]
    env = {**os.environ, "DIGITS_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-c", hook, str(ROOT / "scripts" / "evaluate.py"), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]
    assert not (out / "metrics.json").exists()
    assert (out / "report.md").read_text().startswith("#") and (out / "confusion_matrix.png").stat().st_size > 1000


# --- read-only and full disks: one WriteError, exit code 2 ----------------------------------------


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "export.py", "demo.py"])
def test_a_read_only_run_folder_is_one_write_error(script, tmp_path, data_dir, small_disk):
    disk = small_disk(1 << 20, read_only=True)
    (tmp_path / "x.ckpt").write_bytes(b"")
    result = probe(script, ["ckpt_path=x.ckpt", f"hydra.run.dir={disk}/run"], tmp_path, data_dir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"WriteError: cannot write the run folder {disk}/run: Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr and "torch imported: False" in result.stderr


def test_a_full_disk_is_a_write_error_for_each_writer(trained_run, tmp_path, data_dir, small_disk):
    from harness import QUIET, compose_train

    from digits.evaluation.run import run_evaluation
    from digits.export import run_export
    from digits.train import train
    from digits.writing import WriteError

    disk = small_disk(8192)
    (disk / "filler").write_bytes(b"x" * 8192)  # full: folders and empty files can still be made, no byte written
    with pytest.raises(WriteError, match=f"cannot write {disk}/train/config.yaml: No space left on device"):
        train(compose_train(["logger=none", *QUIET], disk / "train", data_dir))
    with pytest.raises(WriteError, match=f"cannot write {disk}/evaluate: No space left on device"):
        run_evaluation(trained_run, disk / "evaluate", "test", str(data_dir), device="cpu", tensorboard=False)
    with pytest.raises(WriteError, match=f"cannot write {disk}/export/.writing-.*/model.onnx: No space left"):
        run_export(trained_run, disk / "export", data_dir)
    assert not list((disk / "evaluate").iterdir()) and not list((disk / "export").iterdir())  # no partial set


def test_a_failed_download_removes_every_folder_it_made(tmp_path, monkeypatch):
    """DIGITS_DATA_DIR=../shared/data in a fresh clone: torchvision makes shared/data/MNIST/raw, the
    download fails (no network here), and not even shared/ is left."""
    import torchvision.datasets

    from digits.data import DataNotFoundError, find_mnist

    def offline(root: str, train: bool, download: bool) -> None:
        (Path(root) / "MNIST" / "raw").mkdir(parents=True)
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    (tmp_path / "clone").mkdir()
    with pytest.raises(DataNotFoundError, match="the download failed"):
        find_mnist(tmp_path / "clone" / ".." / "shared" / "data", download=True)
    assert [p.name for p in tmp_path.iterdir()] == ["clone"]
