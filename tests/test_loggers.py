"""Each logger of configs/logger/ after a tiny in-process run, read back with its own reader: the CSV file with
the csv module, the MLflow store with mlflow's client, the W&B offline run file with wandb's own record type.
Hyperparameters and the best metrics land in each. MLflow and W&B need their extras: without one its test
skips, and under CI=true (which installs the extras) it fails."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

import pytest
import yaml
from harness import compose_train, run_in_process

from digits.train import summary, train

TINY = [
    "callbacks=none",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "data.verify=false",
]


def require(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        message = f"the {package} extra is not installed: pip install -e '.[{package}]'"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs the extras: a skip there would hide a missing install
        pytest.skip(message)


def tiny_run(logger: str, tmp_path: Path, data_dir: Path):
    cfg = compose_train([f"logger={logger}", f"paths.log_dir={tmp_path}", *TINY], tmp_path / "run", data_dir)
    metrics, _ = train(cfg)
    return cfg, metrics


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def last_value(rows: list[dict[str, str]], column: str) -> float:
    return float([row[column] for row in rows if row.get(column)][-1])


def test_csv_logger_writes_metrics_and_hyperparameters(tmp_path, data_dir):
    cfg, metrics = tiny_run("csv", tmp_path, data_dir)
    folder = tmp_path / "run" / "csv"
    rows = csv_rows(folder / "metrics.csv")
    assert last_value(rows, "val/acc_best") == pytest.approx(metrics.val_acc_best)
    assert last_value(rows, "test/acc") == pytest.approx(metrics.test_acc)
    assert {"train/loss", "val/loss"} <= rows[0].keys()
    hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
    assert hparams["optimizer"]["lr"] == cfg.optimizer.lr and hparams["seed"] == cfg.seed
    assert f"csv            {folder / 'metrics.csv'}" in summary(metrics, cfg.logger)


def test_many_loggers_at_once_tensorboard_and_csv(tmp_path, data_dir):
    from test_train import event_tags, tensorboard_hparams

    cfg, metrics = tiny_run("many", tmp_path, data_dir)
    assert set(cfg.logger) == {"tensorboard", "csv"}
    assert {"val/acc_best", "test/acc"} <= event_tags(tmp_path / "run")
    hparams, columns = tensorboard_hparams(tmp_path / "run")
    assert hparams["optimizer/lr"] == cfg.optimizer.lr and columns == ["val/acc_best", "test/acc"]
    assert last_value(csv_rows(tmp_path / "run" / "csv" / "metrics.csv"), "test/acc") == pytest.approx(metrics.test_acc)
    lines = summary(metrics, cfg.logger)
    assert "tensorboard    tensorboard --logdir" in lines and "csv            " in lines


@pytest.mark.slow
def test_mlflow_logger_writes_into_one_store_under_the_log_dir(tmp_path, data_dir):
    require("mlflow")
    import mlflow

    cfg, metrics = tiny_run("mlflow", tmp_path, data_dir)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    assert cfg.logger.mlflow.tracking_uri == store and (tmp_path / "mlflow.db").is_file()
    client = mlflow.MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert run.info.run_name == "run" and run.data.tags["run_folder"] == str(tmp_path / "run")
    assert run.data.params["optimizer/lr"] == str(cfg.optimizer.lr) and run.data.params["seed"] == str(cfg.seed)
    assert run.data.metrics["val/acc_best"] == pytest.approx(metrics.val_acc_best)
    assert run.data.metrics["test/acc"] == pytest.approx(metrics.test_acc)
    assert f"mlflow         mlflow ui --backend-store-uri {store}" in summary(metrics, cfg.logger)


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (``run-<id>.wandb``): wandb's own protobuf ``Record``s in LevelDB's log
    format (32 KiB blocks of chunks with a 7-byte header: CRC, length, type FULL/FIRST/MIDDLE/LAST) after
    W&B's 7-byte file header (":W&B", magic, version)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, records, pending = 7, 32768, [], b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        if kind == 0:  # zeros: the end of what was written
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.slow
def test_wandb_logger_offline_writes_its_run_into_the_run_folder(tmp_path, data_dir):
    require("wandb")
    import json

    cfg, metrics = tiny_run("wandb", tmp_path, data_dir)
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    kinds = [record.WhichOneof("record_type") for record in records]
    assert "exit" in kinds  # the run was finished with its training (digits.loggers.finish)
    (run,) = [record.run for record in records if record.HasField("run")]
    assert run.project == "digits" and run.display_name == "run"
    config = {u.key: json.loads(u.value_json) for r in records if r.HasField("config") for u in r.config.update}
    assert config["optimizer"]["lr"] == cfg.optimizer.lr and config["seed"] == cfg.seed
    history = {
        "/".join(item.nested_key) or item.key: json.loads(item.value_json)
        for record in records
        if record.HasField("history")
        for item in record.history.item
    }
    assert history["val/acc_best"] == pytest.approx(metrics.val_acc_best)
    assert history["test/acc"] == pytest.approx(metrics.test_acc)


@pytest.mark.parametrize("logger, extra", [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_logger_without_its_package_is_refused_before_anything_is_written(
    logger, extra, tmp_path, monkeypatch, capsys
):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == logger else real(name, *a))
    run_dir = tmp_path / "run"
    code = run_in_process("train.py", [f"logger={logger}", f"hydra.run.dir={run_dir}"], monkeypatch)
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"pip install -e '.[{extra}]'" in error[0], error
    assert error[0].startswith("LoggerPackageError: logger.")
    assert not run_dir.exists()
