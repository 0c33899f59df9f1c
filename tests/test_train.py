"""Training through the real entry points, on real MNIST."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from harness import CONFIG_DIR, QUIET, compose_train, run_in_process, run_script, start_script
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from digits.config import ConfigError
from digits.data import MNISTDataModule
from digits.module import DigitsModule, NonFiniteLossError, build_loss
from digits.run_metrics import RunMetrics
from digits.train import plain, train

LOSSES = ["cross_entropy", "nll", "manual", "manual_naive"]
SCALARS = {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/loss", "test/acc", "lr"}


@pytest.fixture(scope="module")
def batches(data_dir):
    dm = MNISTDataModule(data_dir=str(data_dir), batch_size=128, download=False)
    dm.setup("fit")
    torch.manual_seed(0)  # the sampler draws from the global generator
    return [batch for _, batch in zip(range(40), dm.train_dataloader())]


@pytest.mark.parametrize("loss", LOSSES + ["manual backward=manual"])
def test_each_loss_choice_trains_with_a_falling_loss(loss, batches, tmp_path, data_dir):
    name, *extra = loss.split()
    cfg = compose_train([f"loss={name}", *[f"loss.{e}" for e in extra]], tmp_path, data_dir)
    torch.manual_seed(0)
    net, loss_fn = instantiate(cfg.model), build_loss(cfg.loss)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for images, labels in batches:
        value = loss_fn(net(images), labels)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[0] > 1.8  # about log(10) = 2.30 for an untrained net
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses


def test_a_short_real_training_reaches_its_accuracy(trained_run):
    """The shared short training (harness.trained_run: 60 steps of the default recipe, 15,360 images, a
    quarter of an epoch) already reads the whole test set at 95 % or more (measured: 97 %)."""
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["test/acc"] >= 0.95, metrics


def test_train_task_in_process_writes_metrics_and_a_safe_checkpoint(tmp_path, data_dir):
    cfg = compose_train(["debug=limit", "logger=none", *QUIET], tmp_path, data_dir)
    metrics, objects = train(cfg)
    assert metrics.steps == 20 and metrics.epochs == 1
    assert 0.5 < metrics.test_acc <= 1.0  # 20 steps of 256 images already beat chance by far
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics.to_json() and RunMetrics.read(tmp_path) == metrics  # the file is the record
    assert list(saved) == [key for key in RunMetrics.json_keys() if key != "stopped_early"]
    best = Path(metrics.best_checkpoint)
    assert best.parent == tmp_path / "checkpoints" and best.name.startswith("best-epoch00-acc")
    checkpoint = torch.load(best, weights_only=True)  # plain values only: no pickled code
    assert checkpoint["hyper_parameters"]["model"]["_target_"] == "digits.models.DigitCNN"
    rebuilt = DigitsModule.from_checkpoint(best).eval()
    images, labels = objects["datamodule"].test_set[list(range(1000))]
    with torch.no_grad():
        accuracy = (rebuilt(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.5
    # a second run into the same folder is refused, the first run's checkpoint untouched
    before = best.read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg)
    assert best.read_bytes() == before


def test_checkpoint_naming_a_foreign_callable_is_refused(tmp_path, data_dir):
    cfg = compose_train(["debug=limit", "logger=none", "test=false", *QUIET], tmp_path, data_dir)
    metrics, _ = train(cfg)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["model"]["_target_"] = "os.system"
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="model._target_ is 'os.system', not one of digits.models.DigitCNN"):
        DigitsModule.from_checkpoint(tmp_path / "evil.ckpt")


def test_same_seed_gives_the_same_run(tmp_path, data_dir):
    overrides = [
        "debug=limit",
        "logger=none",
        "callbacks=none",
        "trainer.enable_progress_bar=false",
        "trainer.deterministic=true",
        "trainer.limit_train_batches=5",
        "trainer.limit_test_batches=1",
        "seed=3",
    ]
    a, _ = train(compose_train(overrides, tmp_path / "a", data_dir))
    b, _ = train(compose_train(overrides, tmp_path / "b", data_dir))
    c, _ = train(compose_train([*overrides[:-1], "seed=4"], tmp_path / "c", data_dir))
    assert a.test_loss == b.test_loss
    assert a.test_loss != c.test_loss


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 is not allowed: an integer >= 1"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: an integer >= 1"),
        ("optimizer.lr=0", "optimizer.lr=0 is not allowed: a number > 0"),
        ("model.dropout=1.5", r"model.dropout=1.5 is not allowed: a number in \[0, 1\)"),
        ("loss.label_smoothing=2", r"loss: label_smoothing must be between 0.0 and 1.0. Got: 2"),
        ("trainer.accelerator=banana", "trainer.accelerator='banana' is refused by Lightning: "),
        ("threads=0", "threads=0 is not allowed"),
        ("matmul_precision=low", "matmul_precision='low' is not allowed"),
        ("compile=fast", "compile='fast' is not allowed: null or one of default, reduce-overhead, max-autotune"),
    ],
)
def test_bad_values_are_refused_before_any_data_is_loaded(override, message, tmp_path):
    # the data directory does not exist: the config check must fire first
    cfg = compose_train([override], tmp_path, tmp_path / "no-data")
    with pytest.raises(ConfigError, match=message):
        train(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is what a machine without CUDA gets")
def test_a_gpu_recipe_without_a_gpu_is_refused_before_any_data_is_loaded(tmp_path):
    cfg = compose_train(["experiment=fast_gpu"], tmp_path, tmp_path / "no-data")
    with pytest.raises(ConfigError, match="no CUDA GPU is visible: use trainer=cpu"):
        train(cfg)
    assert not (tmp_path / "no-data").exists()


def test_cuda_graphs_on_the_cpu_are_refused_before_any_data_is_loaded(tmp_path):
    cfg = compose_train(["trainer=cpu", "compile=reduce-overhead"], tmp_path, tmp_path / "no-data")
    with pytest.raises(
        ConfigError, match=r"compile=reduce-overhead records CUDA graphs, which need a GPU.*compile=def"
    ):
        train(cfg)
    assert not (tmp_path / "no-data").exists()


def test_the_loss_options_are_checked_early_by_the_losses_own_rule(tmp_path):
    """config.py asks losses.check_options, the same rule the loss modules apply: one place."""
    cfg = compose_train(["loss=manual", "loss.backward=sideways"], tmp_path, tmp_path / "no-data")
    with pytest.raises(ConfigError, match="loss: backward must be 'autograd' or 'manual', got 'sideways'"):
        train(cfg)


def test_non_finite_loss_stops_with_the_step_and_the_loss(tmp_path, data_dir):
    # lr 1e6 makes the logits huge after one step; the naive form's exp() then overflows to NaN
    cfg = compose_train(
        ["debug=limit", "logger=none", "loss=manual_naive", "optimizer.lr=1e6", "scheduler=none", *QUIET],
        tmp_path,
        data_dir,
    )
    with pytest.raises(
        NonFiniteLossError,
        match=r"training loss is nan at step [1-9]\d* \(epoch 0\) with loss "
        r"NaiveCrossEntropyLoss; lower optimizer.lr",
    ):
        train(cfg)


def test_unknown_loss_choice_lists_the_available_ones():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        with pytest.raises(MissingConfigException) as error:
            compose("train", overrides=["loss=crossentropy"])
    for name in ("cross_entropy", "nll", "manual"):
        assert name in str(error.value)


def event_tags(folder: Path) -> set[str]:
    tags = set()
    for events in folder.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def tensorboard_hparams(folder: Path) -> tuple[dict, list[str]]:
    """The hyperparameters and metric columns of TensorBoard's hparams view, read from the event files."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams, metrics = {}, []
    for events in folder.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        try:
            contents = accumulator.PluginTagToContent("hparams")
        except KeyError:
            continue
        for content in contents.values():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if data.HasField("session_start_info"):
                for key, value in data.session_start_info.hparams.items():
                    hparams[key] = value.number_value if value.HasField("number_value") else value.string_value
            if data.HasField("experiment"):
                metrics = [info.name.tag for info in data.experiment.metric_infos]
    return hparams, metrics


@pytest.mark.slow
def test_train_script_end_to_end(tmp_path, data_dir):
    result = run_script(
        "train.py",
        [
            "debug=limit",
            f"paths.log_dir={tmp_path / 'outputs'}",
            "loss=nll",
            "model.channels=[8,16]",
            "data.batch_size=128",
            "seed=7",
        ],
        data_dir,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stderr + result.stdout
    assert "best val/acc" in output
    # its own folder under outputs/train, named by the time and the overrides (sorted; usable as ckpt_path=)
    (run_dir,) = (tmp_path / "outputs" / "train").iterdir()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}_data.batch_size-128_debug-limit_loss-nll_"
        r"model.channels-8_16_seed-7",
        run_dir.name,
    ), run_dir.name
    assert f"MNIST from {data_dir}/MNIST/raw" in output  # the data directory, absolute, in the log
    # the console: no advertisement, no library deprecation warning, each Lightning line once
    # (Lightning's handler and Hydra's both printed it before)
    assert "Tip:" not in output and "Warning" not in output
    assert output.count("`Trainer.fit` stopped") == 1
    config = (run_dir / "config.yaml").read_text()
    assert "channels:\n  - 8\n  - 16" in config and "LogSoftmaxNLLLoss" in config and "batch_size: 128" in config
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints[0].startswith("best-epoch00-acc") and checkpoints[1] == "last.ckpt"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test/acc", "test/loss", "val/acc_best", "best_checkpoint"} <= metrics.keys()
    assert metrics["steps"] == 20 and metrics["loss"] == "nll" and metrics["loss_class"] == "LogSoftmaxNLLLoss"
    assert SCALARS <= event_tags(run_dir)
    hparams, metrics = tensorboard_hparams(run_dir)
    assert hparams["optimizer/lr"] == yaml.safe_load(config)["optimizer"]["lr"]  # the run's own value
    assert hparams["loss/_target_"] == "digits.losses.LogSoftmaxNLLLoss"
    assert hparams["model/channels"] == "[8, 16]" and hparams["scheduler/interval"] == "step"
    assert "data/data_dir" not in hparams and hparams["trainer/max_epochs"] == 1
    assert metrics == ["val/acc_best", "test/acc"]  # the hparams view's columns


@pytest.mark.slow
def test_bad_input_exits_with_a_message(tmp_path, data_dir):
    result = run_script(
        "train.py", ["trainer.max_epochs=0", f"hydra.run.dir={tmp_path / 'run'}"], data_dir, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "trainer.max_epochs=0 is not allowed" in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()  # a run that fails before training leaves no folder
    # a relative data directory: resolved against the folder the script was started from, reported
    # absolute, before torch is imported; the failed run leaves no folder (and so no TensorBoard events)
    result = run_script(
        "train.py",
        ["data.data_dir=empty", "data.download=false", f"hydra.run.dir={tmp_path / 'run2'}"],
        data_dir,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert f"MNIST not found: {tmp_path}/empty/MNIST/raw lacks" in result.stderr + result.stdout
    assert not (tmp_path / "empty").exists()
    assert not (tmp_path / "run2").exists()


@pytest.mark.slow
def test_multirun_over_the_three_losses(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        [
            "-m",
            "loss=cross_entropy,nll,manual",
            "debug=limit",
            f"hydra.sweep.dir={sweep}",
            "trainer.deterministic=true",
            *QUIET,
        ],
        data_dir,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name[:2] for p in runs] == ["0_", "1_", "2_"]
    for run, loss in zip(runs, ["loss-cross_entropy", "loss-nll", "loss-manual"]):
        assert f"_{loss}_" in run.name
    losses = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert [m["loss"] for m in losses] == ["cross_entropy", "nll", "manual"]  # as typed on the command line
    for run in runs:
        assert SCALARS <= event_tags(run)
    # Same seed, same data order, the same function. cross_entropy and nll run the same CPU kernels:
    # bitwise equal. The manual form differs by float32 rounding (~1e-7) per step, which 20 steps of
    # AdamW at the one-cycle peak amplify to ~1e-3 (see the README's whole-training comparison).
    assert losses[0]["test/loss"] == losses[1]["test/loss"]
    assert losses[0]["test/loss"] == pytest.approx(losses[2]["test/loss"], rel=1e-2)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes(tmp_path, data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    args = [
        f"hydra.run.dir={run_dir}",
        "model.channels=[4,8]",
        "data.batch_size=64",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=300",
        "trainer.limit_val_batches=5",
        "logger=none",
        *QUIET,
    ]
    process = start_script("train.py", args, data_dir, cwd=tmp_path)
    deadline = time.monotonic() + 120
    # Lightning logs this line right before the first training step
    while not (run_dir / "train.log").exists() or "stepping batches" not in (run_dir / "train.log").read_text():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    time.sleep(2)  # into the first epoch (600 steps take about 8 s here)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]
    assert "stopped on request at step" in output and f"resume with: python scripts/train.py resume={run_dir}" in output
    assert "[INFO] - done" not in output  # a stopped run does not say "done"
    assert "weights_only" not in output  # Lightning's notice when a checkpoint is saved without saying what
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    stopped_step = checkpoint["global_step"]
    assert 0 < stopped_step < 600
    assert not (run_dir / "metrics.json").read_text().count('"test/acc"')
    # as the stop's message says: resume= continues the folder (a ckpt_path= run may not write into it)
    assert run_in_process("train.py", [f"resume={run_dir}"], monkeypatch) in (0, None)  # as the script runs it
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 600 and metrics["epochs"] == 2  # the stopped run's steps were not repeated
    assert metrics["test/acc"] > 0.85


@pytest.mark.slow
def test_more_bad_input_through_the_script(tmp_path, data_dir, monkeypatch, capfd):
    """Exit codes and messages as a user sees them, for the cases not covered above."""
    unknown_key = run_script(
        "train.py", ["trainer.epochs=3", f"hydra.run.dir={tmp_path / 'a'}"], data_dir, cwd=tmp_path
    )
    assert unknown_key.returncode == 2
    assert "ConfigError: 'trainer' has no key 'epochs'; did you mean 'trainer.max_epochs'?" in unknown_key.stderr
    # Hydra's own hint for the line above (+key) would train with a stray key: refused as well
    stray = run_script("train.py", ["+optimiser=sgd", f"hydra.run.dir={tmp_path / 'a'}"], data_dir, cwd=tmp_path)
    assert stray.returncode == 2
    assert "there is no key or config group 'optimiser'; did you mean 'optimizer'?" in stray.stderr
    assert not (tmp_path / "a").exists()  # refused before Hydra made a run folder

    # the rest in this process, as the script runs them (exit codes and messages are the script's own)
    nan = [
        "debug=limit",
        "logger=none",
        "loss=manual_naive",
        "optimizer.lr=1e6",
        "scheduler=none",
        f"hydra.run.dir={tmp_path / 'b'}",
        *QUIET,
    ]
    assert run_in_process("train.py", nan, monkeypatch) == 2
    assert "NonFiniteLossError: training loss is nan at step" in "".join(capfd.readouterr())

    taken = tmp_path / "taken"
    (taken / "checkpoints").mkdir(parents=True)
    (taken / "checkpoints" / "last.ckpt").write_bytes(b"an earlier run's")
    assert run_in_process("train.py", ["debug=limit", f"hydra.run.dir={taken}"], monkeypatch) == 2
    assert f"ConfigError: {taken} already holds a run (checkpoints)" in "".join(capfd.readouterr())
    assert (taken / "checkpoints" / "last.ckpt").read_bytes() == b"an earlier run's"  # untouched
    assert sorted(p.name for p in taken.iterdir()) == ["checkpoints"]  # not even Hydra wrote there


@pytest.mark.parametrize(
    "model, flops",
    [
        # 2 FLOPs per multiply-add of each conv (3x3, padding 1, at 28, 14 and 7 px) and of the linear head
        ("cnn", 2 * 9 * (1 * 16 * 28 * 28 + 16 * 32 * 14 * 14 + 32 * 48 * 7 * 7) + 2 * 48 * 3 * 3 * 10),
        # pytorch/examples: two unpadded 3x3 convs (26, 24 px), then 9216-128-10
        ("example", 2 * 9 * (1 * 32 * 26 * 26 + 32 * 64 * 24 * 24) + 2 * (9216 * 128 + 128 * 10)),
    ],
)
def test_model_summary_counts_the_forward_flops(model, flops, tmp_path, data_dir):
    """The summary printed at the start of training counts one image's forward pass (it printed
    `Total FLOPs: 0` without an example input)."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    cfg = compose_train([f"model={model}"], tmp_path, data_dir)
    assert model != "cnn" or list(cfg.model.channels) == [16, 32, 48]  # the formula's widths
    module = DigitsModule(model=plain(cfg.model), loss=plain(cfg.loss), optimizer=plain(cfg.optimizer))
    summary = ModelSummary(module, max_depth=2)
    assert summary.total_flops == flops  # 3,395,520 (channels [16, 32, 48]) and 23,984,896
    assert re.search(rf"\b{flops / 1e6:.1f} M +Total Flops", str(summary))


def test_lightnings_num_workers_warning_is_silenced_for_the_preloaded_batches(monkeypatch, data_dir):
    """On the 16-core GPU machine Lightning suggested DataLoader workers for every loader; the batches
    are slices of tensors in memory, and digits.console silences the line (README, the console list).
    Lightning's own check, on the project's loader, as a machine with 16 cores runs it."""
    import warnings

    import lightning as L
    from lightning.pytorch.trainer.connectors import data_connector

    from digits.console import quiet_console

    monkeypatch.setattr(data_connector, "suggested_max_num_workers", lambda devices: 15)
    datamodule = MNISTDataModule(str(data_dir), download=False)
    datamodule.setup("fit")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # the control: without the project's filters Lightning says it
        data_connector._worker_check(trainer, datamodule.train_dataloader(), "train_dataloader")
    assert any("does not have many workers" in str(w.message) for w in shown)
    with warnings.catch_warnings(record=True) as shown:
        quiet_console()
        data_connector._worker_check(trainer, datamodule.train_dataloader(), "train_dataloader")
    assert not [w for w in shown if "does not have many workers" in str(w.message)]
