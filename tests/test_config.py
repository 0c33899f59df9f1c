"""What config.py checks itself and what it leaves to Lightning and torch: a value Lightning accepts
passes, and one nobody accepts is one ConfigError naming the key, before any data is loaded."""

from __future__ import annotations

import pytest
import torch
from harness import compose_train, run_script

from digits.config import ConfigError, validate_train_config
from digits.train import train


@pytest.mark.parametrize(
    "override",
    [
        # refused by the old hand-written lists; Lightning takes them (bf16 and 64 are its older spellings)
        "trainer.precision=bf16",
        "trainer.precision=64",
        "trainer.precision=64-true",
        "trainer.precision=bf16-mixed",
        "trainer.precision=bf16-true",
        "trainer.precision=16-mixed",  # Lightning turns it into bf16-mixed on the CPU, with a warning
        "trainer.deterministic=warn",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "data.device=cpu:0",
        "model.dropout=0",
        "model.channels=[8,8,8,8]",
    ],
)
def test_values_lightning_and_torch_accept_pass(override, tmp_path):
    validate_train_config(compose_train([override, "trainer.accelerator=cpu"], tmp_path, tmp_path / "no-data"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.precision=17"], "trainer.precision=17 is refused by Lightning: Precision 17 is invalid"),
        (["trainer.accelerator=banana"], "trainer.accelerator='banana' is refused by Lightning: .*invalid accelerator"),
        (["trainer.accelerator=cpu", "trainer.devices=0"], "trainer.devices=0, .* is refused by Lightning"),
        (["trainer.accelerator=cpu", "trainer.strategy=sideways"], "trainer.strategy='sideways' is refused by"),
        (["trainer.accelerator=cpu", "trainer.num_nodes=0"], "trainer.num_nodes=0, .* is refused by Lightning"),
        (["trainer.deterministic=maybe"], "trainer.deterministic='maybe' is not allowed: true, false or warn"),
        (["data.device=banana"], "data.device='banana' is refused by torch: Expected one of cpu, cuda"),
        # one place for the network's argument checks (digits.models), turned into a ConfigError here
        (["model.dropout=1.0"], r"^model.dropout=1.0 is not allowed: a number in \[0, 1\)$"),
        (["model.channels=[16,0]"], r"^model.channels=\[16, 0\] is not allowed: a non-empty list of integers"),
        (["model.channels=[4,4,4,4,4]"], "5 blocks are too many 2x poolings for 28px images"),
        (["+model.widht=3"], r"model \(digits.models.DigitCNN\): .*unexpected keyword argument 'widht'"),
        (["seed=4294967296"], r"seed=4294967296 is not allowed: an integer in \[0, 2\*\*32\)"),
    ],
)
def test_values_nobody_accepts_are_one_config_error_before_the_data(overrides, message, tmp_path):
    # the data folder does not exist: the config check must fire first
    cfg = compose_train(overrides, tmp_path, tmp_path / "no-data")
    with pytest.raises(ConfigError, match=message) as error:
        train(cfg)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is what a machine without CUDA gets")
def test_an_accelerator_lightning_knows_but_this_machine_lacks_is_lightnings_error(tmp_path):
    for accelerator, says in (("tpu", "torch_xla"), ("cuda", "CUDAAccelerator` can not run on your system")):
        cfg = compose_train([f"trainer.accelerator={accelerator}"], tmp_path, tmp_path / "no-data")
        with pytest.raises(ConfigError, match=f"trainer.accelerator='{accelerator}' is refused by Lightning: .*{says}"):
            validate_train_config(cfg)


@pytest.mark.slow
def test_the_script_prints_one_line_and_exits_2(tmp_path, data_dir):
    result = run_script(
        "train.py", ["trainer.precision=17", f"hydra.run.dir={tmp_path / 'run'}"], data_dir, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in (result.stderr + result.stdout).splitlines() if "ConfigError" in line]
    assert len(lines) == 1 and "trainer.precision=17 is refused by Lightning" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # a run that fails before training leaves no folder
