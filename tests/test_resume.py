"""Crashes cost steps, not runs: atomic checkpoints, SIGKILL and resume, clear errors on bad disks."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from harness import CUDA, QUIET, compose_train, mnist_dir, run_in_process, start_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# 2 epochs of 30 steps, a checkpoint every 5 steps, two test batches at the end; with data.augment on,
# whose random jitter must resume exactly too.
RUN = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=30",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.step_checkpoint.every_n_train_steps=5",
    "data.batch_size=128",
    "seed=3",
    "data.augment.enabled=true",
    *QUIET,
]


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    return output


def saved_step(path: Path) -> int:
    """The global step of a checkpoint, or -1 while there is none (never a half-written one)."""
    return torch.load(path, weights_only=True)["global_step"] if path.exists() else -1


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    steps = set()
    for events in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            steps |= {event.step for event in accumulator.Scalars(tag)}
    return sorted(steps)


def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path, data_dir, monkeypatch, capfd):
    """Only the killed run is a process of its own (SIGKILL needs one); the uninterrupted run and the resume
    run the script in this process, as scripts/train.py runs them."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    monkeypatch.chdir(tmp_path)
    assert run_in_process("train.py", [*RUN, f"hydra.run.dir={whole}"], monkeypatch) in (0, None)

    process = start_script("train.py", [*RUN, f"hydra.run.dir={killed}"], data_dir, tmp_path)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while saved_step(last) < 35:  # step 35: five steps into the second epoch
        assert process.poll() is None and time.monotonic() < deadline, finish(process)[-3000:]
        time.sleep(0.01)
    process.kill()  # SIGKILL: no handler runs, nothing is flushed
    finish(process)
    assert process.returncode == -signal.SIGKILL
    killed_at = saved_step(last)
    assert 35 <= killed_at < 60 and not (killed / "metrics.json").exists()

    capfd.readouterr()
    assert run_in_process("train.py", [f"resume={killed}"], monkeypatch) in (0, None)
    output = "".join(capfd.readouterr())
    assert f"resuming {killed}" in output
    assert "not resumable" not in output  # Lightning's false alarm: the resume is exact (digits.console)
    assert "exists and is not empty" not in output  # the run's own checkpoint folder (digits.console)

    expected = json.loads((whole / "metrics.json").read_text())
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["steps"] == expected["steps"] == 60 and metrics["epochs"] == 2
    # The bar is 0.1 percentage point; resuming restores the weights, optimizer, schedule,
    # the position in the epoch's batch order and the random streams, so on the CPU it is exact.
    assert abs(metrics["test/acc"] - expected["test/acc"]) <= 0.001
    assert metrics["test/acc"] == expected["test/acc"] and metrics["test/loss"] == expected["test/loss"]
    assert metrics["val/acc_best"] == expected["val/acc_best"]
    final, reference_final = (
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in (killed, whole)
    )
    assert all(torch.equal(final[key], reference_final[key]) for key in reference_final)

    # One run folder: the original Hydra snapshot kept, the resume's beside it, and TensorBoard's
    # curves continue to the last step.
    assert (killed / ".hydra" / "overrides.yaml").read_text() == (whole / ".hydra" / "overrides.yaml").read_text()
    assert len(list((killed / ".hydra").glob("resumed-*/overrides.yaml"))) == 1
    steps = scalar_steps(killed, "train/loss")
    assert steps[0] < killed_at and steps[-1] >= 50


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_run_resumed_after_an_epoch_matches_the_uninterrupted_run(device, tmp_path, data_dir, monkeypatch):
    """A resume from the end of an epoch (the mid-epoch case is the SIGKILL test above). Dropout draws
    from the global random stream (on the GPU, CUDA's), which the resume restores; the data loaders
    must not draw from it (digits.data: their own generator), or the resumed epoch is one draw off.
    No schedule (its length would change with max_epochs), deterministic kernels."""
    run = [
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"data.device={device}",
        "trainer.deterministic=true",
        "scheduler=none",
        "trainer.limit_train_batches=8",
        "trainer.limit_val_batches=2",
        "test=false",
        "logger=none",
        "seed=5",
        *QUIET,
    ]
    from digits.config import resume_config
    from digits.train import train

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    # In this process, as scripts/train.py runs them: the uninterrupted run, one epoch, its resume.
    expected, _ = train(compose_train([*run, "trainer.max_epochs=2"], tmp_path / "whole", data_dir))
    train(compose_train([*run, "trainer.max_epochs=1"], tmp_path / "part", data_dir))
    metrics, _ = train(resume_config(tmp_path / "part", ["trainer.max_epochs=2"]))
    assert metrics.steps == expected.steps == 16
    assert metrics.val_acc_best == expected.val_acc_best
    final, reference = (
        torch.load(tmp_path / run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for run_dir in ("part", "whole")
    )
    assert all(torch.equal(final[key], reference[key]) for key in reference)


# --- atomic checkpoint writes -------------------------------------------------------------------


def write_forever(target: Path, atomic: bool, weights: torch.Tensor) -> None:
    """Rewrite ``target`` until killed, through the project's writer or with torch.save straight onto it."""
    from digits.checkpoints import AtomicCheckpointIO

    save = AtomicCheckpointIO().save_checkpoint if atomic else torch.save
    for step in range(1_000_000):
        save({"step": step, "weights": weights}, target)


def kill_during_writes(target: Path, atomic: bool, rounds: int) -> tuple[int, int]:
    """Kill a process that rewrites ``target`` in a loop; return (unreadable results, kills mid-write).
    The writer is a fork of this process (no second start-up of torch): SIGKILL ends it as it would a run."""
    weights = torch.randn(4_000_000)  # 16 MB: each write takes a while
    unreadable = mid_write = 0
    for round_ in range(rounds):
        process = multiprocessing.get_context("fork").Process(target=write_forever, args=(target, atomic, weights))
        process.start()
        deadline = time.monotonic() + 60
        while not target.exists():
            assert process.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3 + 0.07 * round_)
        temporary = list(target.parent.glob(f".{target.name}.*.tmp"))
        process.kill()
        process.join()
        assert process.exitcode == -signal.SIGKILL
        mid_write += bool(temporary) if atomic else 1
        try:
            torch.load(target, weights_only=True)
        except Exception:
            unreadable += 1
        target.unlink()
        for leftover in target.parent.glob(f".{target.name}.*.tmp"):
            leftover.unlink()
    return unreadable, mid_write


def test_sigkill_while_writing_never_leaves_an_unreadable_checkpoint(tmp_path):
    unreadable, mid_write = kill_during_writes(tmp_path / "last.ckpt", atomic=True, rounds=4)
    assert unreadable == 0 and mid_write >= 1  # killed while a new checkpoint was half written
    # The control: torch.save straight onto the file is what this protects against.
    unreadable, _ = kill_during_writes(tmp_path / "plain.ckpt", atomic=False, rounds=3)
    assert unreadable >= 1


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from digits.checkpoints import AtomicCheckpointIO
    from digits.writing import WriteError

    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, target)

    def disk_full(descriptor):  # the new file is written but cannot be made durable
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(WriteError) as error:
        AtomicCheckpointIO().save_checkpoint({"step": 2}, target)
    message = str(error.value)
    assert f"could not write the checkpoint {target}: No space left on device" in message
    assert "are untouched (last.ckpt)" in message and "resume=<run folder>" in message
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


# --- resume=<run folder>: what carries over, what is refused -------------------------------------


def fake_run(tmp_path: Path, source: Path) -> Path:
    """A copy of a real run folder (resume checks its config.yaml and its last.ckpt)."""
    return Path(shutil.copytree(source, tmp_path / "run"))


def test_resume_config_keeps_the_run_and_applies_plain_overrides(tmp_path, resumable_run):
    from digits.config import resume_config

    run_dir = fake_run(tmp_path, resumable_run)
    cfg = resume_config(run_dir, [f"resume={run_dir}", "trainer.max_epochs=5"])
    assert cfg.trainer.max_epochs == 5 and cfg.seed == 0
    assert cfg.paths.output_dir == str(run_dir) and cfg.ckpt_path == str(run_dir / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("override", ["loss=manual", "+extra=1", "trainer.nonsense=1"])
def test_resume_refuses_a_different_config_group_or_key(tmp_path, override, resumable_run):
    from digits.config import ConfigError, resume_config

    with pytest.raises(ConfigError, match=re.escape(f"'{override}' cannot be applied to a resumed run")):
        resume_config(fake_run(tmp_path, resumable_run), [override])


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    from digits.config import ConfigError, resume_config

    with pytest.raises(
        ConfigError, match="is not a run folder to continue: it needs config.yaml and checkpoints/last.ckpt"
    ):
        resume_config(tmp_path, [])


@pytest.mark.slow
def test_resuming_from_a_corrupt_checkpoint_exits_2_and_names_it(tmp_path, data_dir, trained_run):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)  # a real run folder (the session's short training)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # what a crash mid-write would leave without the atomic writer
    resumed = start_script("train.py", [f"resume={run_dir}"], data_dir, tmp_path)
    output = finish(resumed)
    assert resumed.returncode == 2
    assert f"CheckpointError: {last} is not a readable checkpoint" in output
    assert "Resume from another one in the same folder" in output
    assert len(list((run_dir / "checkpoints").glob("best-*.ckpt"))) == 1  # nothing else was touched


# --- read-only and full disks -------------------------------------------------------------------


@pytest.mark.slow
def test_read_only_output_folder_exits_2_before_anything_runs(tmp_path, data_dir, small_disk):
    disk = small_disk(1 << 20, read_only=True)
    process = start_script("train.py", [f"paths.log_dir={disk}/outputs"], data_dir, tmp_path)
    output = finish(process)
    assert process.returncode == 2
    assert f"WriteError: cannot write the run folder {disk}/outputs/train/" in output
    assert "Read-only file system. Choose a writable folder with free space: paths.log_dir=<dir>." in output
    assert "Traceback" not in output


def test_disk_full_during_training_exits_2_and_keeps_the_last_checkpoint(
    tmp_path, data_dir, small_disk, monkeypatch, capfd
):
    from harness import compose_train

    from digits.train import train

    args = ["debug=limit", "logger=none", "callbacks.step_checkpoint.every_n_train_steps=5"]
    sizing = ["trainer.limit_train_batches=5", "test=false", *QUIET]
    train(compose_train([*args, *sizing], tmp_path / "sizing", data_dir))
    size = (tmp_path / "sizing" / "checkpoints" / "last.ckpt").stat().st_size
    # Room for one checkpoint and half of another: the step-5 checkpoint fits, the step-10 one does not.
    disk = small_disk(int(1.5 * size))
    run_dir = disk / "run"
    capfd.readouterr()
    code = run_in_process("train.py", [*args, f"hydra.run.dir={run_dir}", *QUIET], monkeypatch)
    output = "".join(capfd.readouterr())
    assert code == 2, output[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f"WriteError: could not write the checkpoint {last}: No space left on device" in output
    assert "are untouched (last.ckpt)" in output
    assert torch.load(last, weights_only=True)["global_step"] == 5  # the one before the disk filled up
    assert not list(last.parent.glob(".*.tmp"))


# --- run folders from elsewhere: copied runs, crafted callback state, symlinks, other runs' folders -----


def sha256_tree(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (symlinks as their link text) and its SHA-256."""
    sums = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            sums[str(path.relative_to(folder))] = "link:" + os.readlink(path)
        elif path.is_file():
            sums[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


@pytest.fixture(scope="module")
def resumable_run(tmp_path_factory, data_dir) -> Path:
    """One epoch of 5 steps without a schedule (so that it may be resumed for longer), with TensorBoard."""
    from digits.train import train

    run_dir = tmp_path_factory.mktemp("resumable") / "run"
    overrides = ["scheduler=none", "callbacks=minimal", "test=false", "trainer.max_epochs=1"]
    overrides += ["trainer.limit_train_batches=5", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", *QUIET]
    train(compose_train(overrides, run_dir, data_dir))
    return run_dir


def test_a_copied_run_resumes_into_itself_and_the_original_stays_byte_for_byte(resumable_run, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(resumable_run, copy, symlinks=True)  # cp -a
    before = sha256_tree(resumable_run)
    assert run_in_process("train.py", [f"resume={copy}", "trainer.max_epochs=2"], monkeypatch) in (0, None)
    assert sha256_tree(resumable_run) == before  # nothing of the original was written, deleted or added
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["output_dir"] == str(copy)
    assert Path(metrics["best_checkpoint"]).parent == copy / "checkpoints"
    assert torch.load(copy / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    assert len(list(copy.glob("events.out.tfevents.*"))) == 2  # the resume's TensorBoard events beside the first


def test_crafted_callback_state_cannot_touch_files_outside_the_run(resumable_run, tmp_path, monkeypatch):
    """ModelCheckpoint state whose paths climb out with `..`: Lightning would delete them when it saves a
    better checkpoint or a new last.ckpt. Refused through resume= and through Trainer.fit(ckpt_path=)."""
    victim = tmp_path / "victim"
    (victim / "tree").mkdir(parents=True)
    (victim / "tree" / "canary.txt").write_text("alive\n")
    (victim / "last.ckpt").write_text("alive\n")
    run = tmp_path / "run"
    shutil.copytree(resumable_run, run)
    config = run / "config.yaml"  # a run trained in this folder (not a copy): its paths name it
    config.write_text(config.read_text().replace(str(resumable_run), str(run)))
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    for key, state in checkpoint["callbacks"].items():
        if key.startswith("ModelCheckpoint"):
            state["dirpath"] = str(run / "checkpoints")  # its own: Lightning reloads the state
            climb = f"{run / 'checkpoints'}/../../victim"
            state["best_k_models"] = {f"{climb}/tree": torch.tensor(0.0)}
            state["best_model_path"] = state["kth_best_model_path"] = f"{climb}/tree"
            state["best_model_score"] = state["kth_value"] = torch.tensor(0.0)
            state["last_model_path"] = f"{climb}/last.ckpt"
    torch.save(checkpoint, last)
    before, outside = sha256_tree(run), sha256_tree(victim)
    code = run_in_process("train.py", [f"resume={run}", "trainer.max_epochs=3"], monkeypatch)
    assert sha256_tree(victim) == outside  # (3bc2f47 deleted both: the tree and the file)
    assert code == 2 and sha256_tree(run) == before

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from digits.checkpoints import CheckpointError
    from digits.data import MNISTDataModule
    from digits.module import DigitsModule

    trainer = L.Trainer(
        max_epochs=3, limit_train_batches=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[ModelCheckpoint(dirpath=run / "checkpoints", monitor="val/acc",
        mode="max", save_last=True)],
    )  # fmt: skip
    module = DigitsModule(**{**checkpoint["hyper_parameters"], "scheduler": None})
    datamodule = MNISTDataModule(str(mnist_dir()), download=False)
    with pytest.raises(
        CheckpointError,
        match=r"(best_model_path|best_k_models|last_model_path) is '.*/\.\./\.\./victim/.*', not a file directly in",
    ):
        trainer.fit(module, datamodule=datamodule, ckpt_path=last)
    assert sha256_tree(victim) == outside and sha256_tree(run) == before


def test_a_symlink_in_the_run_folder_is_refused_not_written_through(resumable_run, tmp_path, monkeypatch):
    target = tmp_path / "elsewhere.json"
    target.write_text("{}\n")
    run = tmp_path / "run"
    shutil.copytree(resumable_run, run)
    (run / "metrics.json").unlink()
    (run / "metrics.json").symlink_to(target)
    before = sha256_tree(run)
    assert run_in_process("train.py", [f"resume={run}", "trainer.max_epochs=2"], monkeypatch) == 2
    assert target.read_text() == "{}\n" and sha256_tree(run) == before
    # the checkpoints folder itself as a link to another run's: refused, the other run untouched
    other = tmp_path / "other"
    shutil.copytree(resumable_run, other)
    linked = tmp_path / "linked"
    shutil.copytree(resumable_run, linked)
    shutil.rmtree(linked / "checkpoints")
    (linked / "checkpoints").symlink_to(other / "checkpoints")
    others = sha256_tree(other)
    assert run_in_process("train.py", [f"resume={linked}", "trainer.max_epochs=2"], monkeypatch) == 2
    assert sha256_tree(other) == others
    # a new run into a folder with a symlink is refused too
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "train.log").symlink_to(target)
    assert run_in_process("train.py", [f"hydra.run.dir={fresh}"], monkeypatch) == 2
    assert target.read_text() == "{}\n"


def test_resuming_for_longer_under_a_schedule_is_refused_before_anything_is_written(
    trained_run, tmp_path, monkeypatch, capsys
):
    """The default run (OneCycleLR fitted to its length) resumed with more epochs: one line that says
    what to do, exit code 2, and the run folder byte for byte as it was (no train.log, no .hydra/resumed-*)."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = sha256_tree(run)
    assert run_in_process("train.py", [f"resume={run}", "trainer.max_epochs=5"], monkeypatch) == 2
    error = capsys.readouterr().err
    assert "'trainer.max_epochs=5' cannot be applied to a resumed run: its learning-rate schedule (OneCycleLR)" in error
    assert "scheduler=none" in error and "Traceback" not in error
    assert sha256_tree(run) == before


def test_a_checkpoint_never_lets_a_new_run_into_another_runs_folder(trained_run, resumable_run, tmp_path, monkeypatch):
    """train.py ckpt_path=<a checkpoint> hydra.run.dir=<another finished run>: a new run, refused there."""
    other = tmp_path / "other"
    shutil.copytree(resumable_run, other)
    before = sha256_tree(other)
    last = trained_run / "checkpoints" / "last.ckpt"
    assert run_in_process("train.py", [f"ckpt_path={last}", f"hydra.run.dir={other}"], monkeypatch) == 2
    assert sha256_tree(other) == before
    # a folder with only another run's metrics.json (an evaluation's, say) is taken too
    metrics_only = tmp_path / "metrics_only"
    metrics_only.mkdir()
    (metrics_only / "metrics.json").write_text("{}\n")
    assert run_in_process("train.py", [f"hydra.run.dir={metrics_only}"], monkeypatch) == 2
    assert [p.name for p in metrics_only.iterdir()] == ["metrics.json"]


def test_a_crafted_config_yaml_cannot_point_the_resume_elsewhere(resumable_run, tmp_path, monkeypatch):
    """dirpath, save_dir or default_root_dir outside the run folder (not below its own output_dir, so not
    re-derived): refused before anything is written."""
    from digits.config import ConfigError, resume_config

    for key in ("callbacks.model_checkpoint.dirpath", "logger.tensorboard.save_dir", "trainer.default_root_dir"):
        run = tmp_path / key / "run"
        shutil.copytree(resumable_run, run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        group, *middle, last_key = key.split(".")
        section = config[group]
        for name in middle:
            section = section[name]
        section[last_key] = str(tmp_path / "outside")
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError, match=re.escape(f"{key}='{tmp_path / 'outside'}' is outside the run folder")):
            resume_config(run, [])
        assert run_in_process("train.py", [f"resume={run}", "trainer.max_epochs=2"], monkeypatch) == 2
        assert not (tmp_path / "outside").exists()
