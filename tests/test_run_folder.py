"""The run folder's rules (digits.run_folder), through every door: a value that would write outside
the run (resume's config.yaml or a fresh run's command line), two processes in one folder, a finished
run resumed with nothing to do, and a config.yaml that Hydra's callbacks used to only warn about."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from harness import QUIET, ROOT, compose_train, run_in_process

from digits import run_folder
from digits.config import ConfigError, read_run_config, resume_config

# --- every path inside the run ---------------------------------------------------------------------

TENSORBOARD = {
    "_target_": "lightning.pytorch.loggers.TensorBoardLogger",
    "save_dir": "<run>",
    "name": "",
    "version": "",
    "default_hp_metric": False,
}


def copied_run(trained_run: Path, tmp_path: Path, edit=None) -> Path:
    """A copy of the shared run (harness.trained_run: finished, default callbacks, no logger), config.yaml edited."""
    run = Path(shutil.copytree(trained_run, tmp_path / "runs" / "run"))
    if edit is not None:
        config = yaml.safe_load((run / "config.yaml").read_text())
        edit(config, run)
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def escapes(kind: str):
    """Config edits that each make a resumed run write outside its folder (shapes beyond the issue's too)."""

    def edit(config, run):
        checkpoint = config["callbacks"]["model_checkpoint"]
        logger = config.setdefault("logger", {}) or {}
        config["logger"] = logger
        if kind == "checkpoint_filename":
            checkpoint["filename"] = "../../victim/canary"
        elif kind == "checkpoint_filename_template":
            checkpoint["filename"] = "{epoch}/../../../victim/x"
        elif kind == "checkpoint_filename_absolute":
            checkpoint["filename"] = str(run.parent / "victim" / "canary")
        elif kind.startswith("logger_"):
            logger["tensorboard"] = {**TENSORBOARD, "save_dir": str(run)}
            key, value = {
                "logger_name": ("name", "../victim/tb"),
                "logger_version": ("version", ".."),
                "logger_sub_dir": ("sub_dir", "../../victim"),
                # a relative save_dir is read against the working directory, not the run: no separator needed
                "logger_relative_save_dir": ("save_dir", "victim"),
            }[kind]
            logger["tensorboard"][key] = value
        elif kind == "step_checkpoint_home":
            config["callbacks"]["step_checkpoint"]["dirpath"] = "~/victim"

    return edit


@pytest.mark.parametrize(
    "kind",
    [
        "checkpoint_filename",
        "checkpoint_filename_template",
        "checkpoint_filename_absolute",
        "logger_name",
        "logger_version",
        "logger_sub_dir",
        "logger_relative_save_dir",
        "step_checkpoint_home",
    ],
)
def test_a_resumed_config_cannot_write_outside_its_run(kind, trained_run, tmp_path):
    run = copied_run(trained_run, tmp_path, escapes(kind))
    with pytest.raises(ConfigError, match="is outside the run folder"):
        resume_config(run, [])


def test_the_issues_resume_writes_nothing_outside_and_exits_2(trained_run, tmp_path, monkeypatch):
    """The issue's case end to end: filename ../../victim/canary and logger name ../victim/tb."""

    def edit(config, run):
        config["callbacks"]["model_checkpoint"]["filename"] = "../../victim/canary"
        config["logger"] = {"tensorboard": {**TENSORBOARD, "save_dir": str(run), "name": "../victim/tb"}}

    run = copied_run(trained_run, tmp_path, edit)
    victim = tmp_path / "runs" / "victim"
    victim.mkdir()
    (victim / "canary.ckpt").write_text("keep me")
    before = sorted(p.name for p in run.rglob("*"))
    assert run_in_process("train.py", [f"resume={run}"], monkeypatch) == 2
    assert (victim / "canary.ckpt").read_text() == "keep me" and sorted(victim.iterdir()) == [victim / "canary.ckpt"]
    assert sorted(p.name for p in run.rglob("*")) == before  # no .hydra/resumed-*, no log, no lock left


@pytest.mark.parametrize(
    "override",
    [
        "callbacks.model_checkpoint.filename=../../elsewhere/x",
        "logger.tensorboard.name=../elsewhere",
        "logger.tensorboard.version=../../elsewhere",
        "callbacks.step_checkpoint.dirpath=/tmp/elsewhere",
    ],
)
def test_a_fresh_runs_command_line_cannot_write_outside_its_run(override, tmp_path, data_dir):
    from digits.train import train

    cfg = compose_train(["trainer.max_epochs=1", override, *QUIET], tmp_path / "run", data_dir)
    with pytest.raises(ConfigError, match="is outside the run folder"):
        train(cfg)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "run" / "config.yaml").exists()


def test_paths_inside_the_run_are_accepted(tmp_path):
    """The default layout, a relative name, a template with metric names holding '/', a version number."""
    run = tmp_path / "run"
    run_folder.check_paths_inside(
        {
            "trainer": {"default_root_dir": str(run)},
            "callbacks": {
                "model_checkpoint": {
                    "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "dirpath": str(run / "checkpoints"),
                    "filename": "best-epoch{epoch:02d}-acc{val/acc:.4f}",
                    "monitor": "val/acc",
                }
            },
            "logger": {"tensorboard": {**TENSORBOARD, "save_dir": str(run), "name": "tb", "version": 3}},
        },
        run,
    )


# --- one process per run folder ---------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from digits import run_folder
    run_folder.claim(sys.argv[1])
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_a_second_process_is_refused_the_folder_and_removes_nothing(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (folder / "config.yaml").write_text("the holder's\n")
        with pytest.raises(run_folder.FolderInUseError, match="is in use by another process"):
            run_folder.claim(folder)
        run_folder.remove_if_unused(folder, "train")  # not ours: never removed
        assert (folder / "config.yaml").read_text() == "the holder's\n"
    finally:
        holder.kill()
        holder.wait()
    run_folder.claim(folder)  # the kernel dropped the dead holder's lock
    assert not run_folder.claim(folder)  # claimed again by the same process: a no-op; it did not make it
    run_folder.release(folder)


def test_of_two_claims_at_once_exactly_one_makes_the_folder(tmp_path):
    """Two processes racing for a new folder: one makes and holds it, the other is refused."""
    folder = tmp_path / "race"
    racer = textwrap.dedent(
        """
        import sys, time
        from digits import run_folder
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
        try:
            print("made" if run_folder.claim(sys.argv[1]) else "joined", flush=True)
        except run_folder.FolderInUseError:
            print("refused", flush=True)
            sys.exit(2)
        time.sleep(3)
        """
    )
    import time

    at = str(time.time() + 1.5)
    racers = [
        subprocess.Popen([sys.executable, "-c", racer, str(folder), at], stdout=subprocess.PIPE, text=True, env=_env())
        for _ in range(2)
    ]
    answers = sorted(p.communicate(timeout=30)[0].strip() for p in racers)
    assert answers in (["made", "refused"], ["joined", "refused"]) and folder.is_dir()


def test_two_resumes_of_one_run_the_second_refused(trained_run, tmp_path, monkeypatch):
    """The lock is the folder's, whatever the command: a resume while the folder is held exits 2."""
    run = copied_run(trained_run, tmp_path)
    (run / "metrics.json").unlink()  # an interrupted run, so that the resume itself would be allowed
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in run.rglob("*"))
        assert run_in_process("train.py", [f"resume={run}"], monkeypatch) == 2
        assert sorted(p.name for p in run.rglob("*")) == before
    finally:
        holder.kill()
        holder.wait()


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}"}


def test_a_full_disk_fails_the_write_probe(tmp_path, monkeypatch):
    """An empty probe file needs no space: the probe writes and fsyncs a few KB, and ENOSPC is a WriteError."""
    import errno
    import os

    from digits.writing import WriteError

    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="No space left on device"):
        run_folder.check_writable(tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []


# --- a finished run ---------------------------------------------------------------------------------


def test_resuming_a_finished_run_is_refused_and_changes_nothing(trained_run, tmp_path, monkeypatch):
    run = copied_run(trained_run, tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="this run finished"):
        resume_config(run, [])
    assert run_in_process("train.py", [f"resume={run}", "test=false"], monkeypatch) == 2
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    json.loads((run / "metrics.json").read_text())


# --- config.yaml: every flaw one line and exit 2, nothing written ----------------------------------


def _replace(run: Path, text: str | bytes) -> None:
    path = run / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _sections(run: Path) -> str:
    return (run / "config.yaml").read_text()


FLAWS = {
    "not_utf8": lambda run: _replace(run, b"seed: 42\n\xff\xfe: x\n"),
    "bad_syntax": lambda run: _replace(run, _sections(run) + "\n  - : [\n"),
    "duplicate_key": lambda run: _replace(run, _sections(run) + "\nseed: 7\n"),
    "top_level_list": lambda run: _replace(run, "- 1\n- 2\n"),
    "trainer_is_5": lambda run: _replace(run, re.sub(r"(?m)^trainer:\n(  .*\n)+", "trainer: 5\n", _sections(run))),
    "seed_missing": lambda run: _replace(run, re.sub(r"(?m)^seed: .*$", "seed: ???", _sections(run))),
    "yaml_aliases": lambda run: _replace(
        run, _sections(run) + "\nnotes:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n  b: &b [*a, *a, *a, *a, *a, *a]\n"
    ),
}


@pytest.mark.parametrize("flaw", sorted(FLAWS))
def test_a_flawed_config_yaml_is_one_line_and_exit_2_with_nothing_written(
    flaw, trained_run, tmp_path, monkeypatch, capsys
):
    run = copied_run(trained_run, tmp_path)
    (run / "metrics.json").unlink()  # interrupted: resumable but for the flaw
    FLAWS[flaw](run)
    before = sorted(p.name for p in run.rglob("*"))
    assert run_in_process("train.py", [f"resume={run}"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in run.rglob("*")) == before


def test_yaml_laughs_are_refused_at_once(tmp_path):
    """Six levels of nested aliases (a few hundred bytes, millions of nodes): refused at the first alias."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(levels) + "\n")
    with pytest.raises(ConfigError, match="anchor or alias"):
        read_run_config(path)


def test_a_path_component_too_long_is_one_line(tmp_path, monkeypatch, capsys, data_dir):
    long = tmp_path / ("x" * 300)
    assert run_in_process("train.py", [f"hydra.run.dir={long}"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "File name too long" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_plus_on_an_existing_key_says_to_drop_the_plus(tmp_path, monkeypatch, capsys, data_dir):
    """`+trainer.limit_train_batches=20`: the key exists (its value is null); the message used to say it did not."""
    code = run_in_process(
        "train.py", ["+trainer.limit_train_batches=20", f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch
    )
    err = capsys.readouterr().err
    assert code == 2 and "drop the '+' (trainer.limit_train_batches=20)" in err and "has no key" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_new_run_into_a_folder_another_process_holds_is_refused_and_removes_nothing(tmp_path, monkeypatch, capsys):
    """The issue's race, made certain: the first run holds the folder (as from Hydra's start); a second
    train.py into it exits 2 with one line and deletes nothing of the first's."""
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (folder / ".hydra").mkdir()
        (folder / "train.log").write_text("the first run's log\n")
        assert run_in_process("train.py", [f"hydra.run.dir={folder}"], monkeypatch) == 2
        err = capsys.readouterr().err
        assert "FolderInUseError" in err and len(err.strip().splitlines()) == 1, err
        assert sorted(p.name for p in folder.iterdir()) == [".hydra", "train.log"]
    finally:
        holder.kill()
        holder.wait()
