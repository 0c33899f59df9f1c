"""Configs say what they do: the schedule a run uses is logged at train start and written out as config keys
(``--cfg job`` and config.yaml show them), OneCycle's momentum cycling says so and can be turned off, and an
optimizer OneCycle cannot cycle is refused before the data loads."""

from __future__ import annotations

import inspect
import logging

import pytest
import torch
import yaml
from harness import CONFIG_DIR, TINY_RUN, compose_train

from digits.config import ConfigError
from digits.schedule import describe
from digits.train import train

TINY = TINY_RUN
SGD = ["optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9"]


def logged_schedule(caplog, overrides, tmp_path, data_dir):
    cfg = compose_train([*overrides, *TINY], tmp_path / "run", data_dir)
    with caplog.at_level(logging.INFO, logger="digits"):
        _, objects = train(cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("optimizer:", "schedule:"))]
    return lines, objects["trainer"].optimizers[0].param_groups[0]


def test_the_run_logs_the_schedule_it_uses_and_that_onecycle_cycles_the_momentum(caplog, tmp_path, data_dir):
    lines, group = logged_schedule(caplog, SGD, tmp_path, data_dir)
    assert lines == [
        "optimizer: SGD, weight_decay 0.0005, momentum 0.9, nesterov true",
        "schedule: OneCycleLR over 2 steps: lr 0.002 -> 0.05 at step 0 -> 2e-07 at the end; momentum cycled "
        "0.95 -> 0.85 -> 0.95, in place of optimizer.momentum (scheduler.cycle_momentum=false keeps it)",
    ]
    assert group["momentum"] != 0.9  # what the line says: OneCycle's value, not the optimizer's


def test_cycle_momentum_false_keeps_the_optimizers_momentum(caplog, tmp_path, data_dir):
    lines, group = logged_schedule(caplog, [*SGD, "scheduler.cycle_momentum=false"], tmp_path, data_dir)
    assert lines[1].endswith("; momentum not cycled (scheduler.cycle_momentum=false)")
    assert group["momentum"] == 0.9 and group["nesterov"] is True


def test_config_yaml_records_the_schedule_and_the_settings_that_come_with_a_choice(tmp_path, data_dir):
    cfg = compose_train([*SGD, *TINY], tmp_path / "run", data_dir)
    train(cfg)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["optimizer"] == {
        "_target_": "torch.optim.SGD",
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.0005,
    }
    scheduler = saved["scheduler"]
    assert scheduler["max_lr"] == 0.05 and scheduler["div_factor"] == 25.0 and scheduler["cycle_momentum"] is True
    assert (scheduler["max_momentum"], scheduler["base_momentum"]) == (0.95, 0.85)


def test_every_onecycle_value_is_a_config_key():
    """No hidden default: each OneCycleLR argument but the ones filled in from the run or not a schedule's."""
    written = yaml.safe_load((CONFIG_DIR / "scheduler" / "onecycle.yaml").read_text())
    arguments = set(inspect.signature(torch.optim.lr_scheduler.OneCycleLR).parameters)
    not_knobs = {"optimizer", "epochs", "steps_per_epoch", "last_epoch", "verbose"}
    assert arguments - not_knobs <= written.keys(), arguments - not_knobs - written.keys()


@pytest.mark.parametrize("choice, keys", [("sgd", {"momentum", "nesterov", "weight_decay"}), ("adamw", {"betas"})])
def test_the_settings_of_an_optimizer_choice_are_config_keys(choice, keys):
    written = yaml.safe_load((CONFIG_DIR / "optimizer" / f"{choice}.yaml").read_text())
    assert keys | {"lr", "weight_decay"} <= written.keys()


def test_onecycle_with_an_optimizer_without_momentum_is_refused_before_the_data_loads(tmp_path):
    cfg = compose_train(["optimizer=adadelta"], tmp_path / "run", tmp_path / "no-data")
    with pytest.raises(ConfigError, match=r"Adadelta .* no momentum .* scheduler.cycle_momentum=false"):
        train(cfg)


def test_describe_the_other_schedules():
    parameters = [torch.nn.Parameter(torch.zeros(1))]
    adamw = torch.optim.AdamW(parameters, lr=0.025, weight_decay=0.0007)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(adamw, T_max=10)
    assert describe(adamw, cosine, {"betas": [0.9, 0.999]}, 10) == [
        "optimizer: AdamW, weight_decay 0.0007, betas (0.9, 0.999)",
        "schedule: CosineAnnealingLR over 10 steps: lr 0.025 -> 0",
    ]
    sgd = torch.optim.SGD(parameters, lr=0.1)
    assert describe(sgd, None, {}, None)[1] == "schedule: none, a constant lr 0.1"
