"""What TensorBoard shows of a training run: tags in the event files, and a real tensorboard server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
import torch
import yaml
from harness import QUIET, compose_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from digits.train import train


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory, data_dir):
    run_dir = tmp_path_factory.mktemp("monitored")
    cfg = compose_train(
        [
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=20",
            "trainer.limit_val_batches=3",
            "trainer.limit_test_batches=2",
            "trainer.log_every_n_steps=5",
            "callbacks.output_histograms.every_n_steps=5",
            "trainer.enable_progress_bar=false",
            "~callbacks.model_summary",
        ],
        run_dir,
        data_dir,
    )
    metrics, _ = train(cfg)
    return run_dir, metrics


def accumulated(folder: Path) -> dict[str, set[str]]:
    tags: dict[str, set[str]] = {}
    for events in folder.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0, "histograms": 0})
        accumulator.Reload()
        for kind, names in accumulator.Tags().items():
            if isinstance(names, list):
                tags.setdefault(kind, set()).update(names)
        try:
            tags.setdefault("text", set()).update(accumulator.PluginTagToContent("text"))
        except KeyError:  # this file has no text summaries
            pass
    return tags


def test_event_files_hold_what_the_readme_promises(monitored_run):
    run_dir, metrics = monitored_run
    tags = accumulated(run_dir)
    assert {
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "test/loss",
        "test/acc",
        "lr",
        "train/images_per_s",
    } <= tags["scalars"]
    assert {"val/confusion_matrix", "val/misclassified"} <= tags["images"]
    assert {"train/logits", "train/confidence"} <= tags["histograms"]
    assert {"val/confusion_matrix/text_summary", "val/misclassified/text_summary"} <= tags["text"]
    accumulator = training_events(run_dir)
    confusion = accumulator.Images("val/confusion_matrix")
    assert [event.step for event in confusion] == [20, 40]  # once per validation epoch
    assert confusion[0].width == confusion[0].height == 240
    # LearningRateMonitor: the one-cycle schedule, on the steps the logger writes the loss
    lr = accumulator.Scalars("lr")
    assert [event.step for event in lr] == [event.step for event in accumulator.Scalars("train/loss")]
    peak = yaml.safe_load((run_dir / "config.yaml").read_text())["optimizer"]["lr"]  # the one-cycle's peak
    assert 0.5 * peak < max(event.value for event in lr) <= peak * (1 + 1e-6)  # logged every 20 steps of 40
    assert lr[0].value > lr[-1].value and lr[0].value < peak  # warming up at first, annealed at the end
    # The counts as text: every validation image once (3 batches of 1000), and their diagonal is val/acc.
    accuracies = [event.value for event in accumulator.Scalars("val/acc")]
    tables = logged_confusion_matrices(accumulator)
    assert sorted(tables) == [20, 40] and len(accuracies) == 2
    for counts, accuracy in zip([tables[20], tables[40]], accuracies):
        assert counts.sum() == 3000
        assert counts.trace() / counts.sum() == pytest.approx(accuracy, abs=1e-6)
    rates = [event.value for event in accumulator.Scalars("train/images_per_s")]
    assert len(rates) >= 4 and all(100 < rate < 1e6 for rate in rates)
    assert 0 <= metrics.monitoring_seconds < 0.05 * metrics.fit_seconds + 0.5


def test_a_constant_learning_rate_is_logged_under_the_optimizer_name(tmp_path, data_dir):
    """scheduler=none: no schedule to name the tag after, so LearningRateMonitor names it lr-AdamW."""
    cfg = compose_train(
        [
            "scheduler=none",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0",
            "trainer.log_every_n_steps=1",
            "test=false",
            "callbacks=minimal",
            *QUIET,
        ],
        tmp_path,
        data_dir,
    )
    train(cfg)
    lr = cfg.optimizer.lr
    assert [event.value for event in training_events(tmp_path).Scalars("lr-AdamW")] == [pytest.approx(lr)] * 2


def training_events(folder: Path) -> EventAccumulator:
    """The event file written during fit (the first; trainer.test writes a second)."""
    accumulator = EventAccumulator(str(sorted(folder.glob("events.out.tfevents.*"))[0]), size_guidance={"images": 0})
    accumulator.Reload()
    return accumulator


def logged_confusion_matrices(accumulator: EventAccumulator) -> dict[int, torch.Tensor]:
    """Step -> the 10 x 10 counts of the ``val/confusion_matrix`` text (a Markdown table)."""
    tables = {}
    for event in accumulator.Tensors("val/confusion_matrix/text_summary"):
        rows = event.tensor_proto.string_val[0].decode().splitlines()[2:]  # below the header and |---|
        tables[event.step] = torch.tensor([[int(n) for n in row.split("|")[2:-1]] for row in rows])
    return tables


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_server_serves_the_logged_values(monitored_run):
    run_dir, _ = monitored_run
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen(
        [str(tensorboard), "--logdir", str(run_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        runs = None
        while time.monotonic() < deadline:
            try:
                runs = get_json(f"{base}/data/runs")
                if runs:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert runs == ["."], runs
        served = get_json(f"{base}/data/plugin/scalars/scalars?run=.&tag={quote('val/acc', safe='')}")
        accumulator = training_events(run_dir)
        logged = [(event.step, event.value) for event in accumulator.Scalars("val/acc")]
        assert [(step, pytest.approx(value)) for _, step, value in served] == logged
        assert len(logged) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)
