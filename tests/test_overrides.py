"""Unknown keys and group names on the command line are refused with the closest known name: Hydra's
own refusals (raised by hydra.main, turned into one line by digits.entry.run) and a stray ``+key``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness import CONFIG_DIR, ROOT

from digits.config import ConfigError
from digits.overrides import check_overrides
from digits.run_names import MAX_OVERRIDES_LENGTH, run_name


@pytest.mark.parametrize(
    "overrides, message",
    [
        # Hydra's hint for `optimiser=sgd` is `+optimiser=sgd`, which would train AdamW with a stray key
        (
            ["+optimiser=sgd"],
            "'+optimiser=sgd': there is no key or config group 'optimiser'; did you mean 'optimizer'?",
        ),
        (["optimiser=sgd"], "there is no key or config group 'optimiser'; did you mean 'optimizer'?"),
        (["++optimiser=sgd"], "did you mean 'optimizer'?"),
        (["sed=3"], "there is no key or config group 'sed'; did you mean 'seed'?"),
        (["trainer.epochs=3"], "'trainer' has no key 'epochs'; did you mean 'trainer.max_epochs'?"),
        (["+trainer.epochs=3"], "did you mean 'trainer.max_epochs'?"),
        (["data.batchsize=64"], "did you mean 'data.batch_size'?"),
        (
            ["loss=crossentropy"],
            "loss=crossentropy is not a choice of 'loss'; did you mean 'cross_entropy'? The choices: "
            "cross_entropy, manual, manual_naive, nll, sigmoid, softmax_first",
        ),
        (["-m", "loss=cross_entropy,nll,manul"], "loss=manul is not a choice of 'loss'; did you mean 'manual'?"),
        # a key that exists only under another choice of its group
        (["loss.backward=manual"], "'loss' has no key 'backward'"),
        (["optimizer=sgd", "optimizer.momentun=0.9"], "did you mean 'optimizer.momentum'?"),
    ],
)
def test_unknown_names_are_refused_with_the_closest_one(overrides, message):
    with pytest.raises(ConfigError) as error:
        check_overrides(CONFIG_DIR, "train", [o for o in overrides if o != "-m"])
    assert message in str(error.value)


@pytest.mark.parametrize(
    "config, overrides",
    [
        ("train", ["loss=manual", "loss.backward=manual", "trainer.max_epochs=5", "model.channels=[8,16]"]),
        ("train", ["loss=cross_entropy,nll,manual", "debug=limit", "~callbacks.rich_progress_bar"]),
        ("train", ["+trainer.benchmark=true", "++trainer.detect_anomaly=false"]),  # new Lightning arguments, not typos
        ("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.run.dir=/tmp/x"]),
        ("train", ["experiment=fast", "resume=outputs/train/x", "data.data_dir=/data"]),
        ("eval", ["ckpt_path=outputs/train/x", "data.split=val", "device=cpu", "predict=digits/"]),
    ],
)
def test_valid_overrides_pass(config, overrides):
    check_overrides(CONFIG_DIR, config, overrides)


def test_run_names_are_safe_and_bounded():
    assert run_name("2026-01-01_10-00-00-000000", "") == "2026-01-01_10-00-00-000000"
    assert (
        run_name(0, "model.channels=[8,16],predict=a/b c,~callbacks.x")
        == "0_model.channels-8_16_predict-a-b-c_-callbacks.x"
    )
    long = run_name("t", "loss=" + "x" * 500)
    assert len(long) == len("t_") + MAX_OVERRIDES_LENGTH


# Runs a script as `python scripts/<name>` would, then says whether torch was imported by the end.
PROBE = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("train.py", ["trainer.epochs=3"], "'trainer' has no key 'epochs'; did you mean 'trainer.max_epochs'?"),
        ("train.py", ["+optimiser=sgd"], "'+optimiser=sgd': there is no key or config group 'optimiser'"),
        ("train.py", ["loss=crossentropy"], "loss=crossentropy is not a choice of 'loss'; did you mean"),
        (
            "train.py",
            ["-m", "loss=cross_entropy,manul"],
            "loss=manul is not a choice of 'loss'; did you mean 'manual'?",
        ),
        ("train.py", ["-m", "+optimiser=sgd,adamw"], "there is no key or config group 'optimiser'"),
        (
            "evaluate.py",
            ["ckpt_path=x", "devise=cpu"],
            "there is no key or config group 'devise'; did you mean 'device'?",
        ),
        ("train.py", ["data.batch_size=[1"], "Hydra cannot read the override 'data.batch_size=[1'"),
    ],
)
def test_a_script_refuses_an_unknown_name_in_one_line_before_torch(script, args, message, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    command = [sys.executable, "-c", PROBE, str(ROOT / "scripts" / script), *args]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("ConfigError: ") and message in lines[0], result.stderr
    assert lines[1:] == ["torch imported: False"], result.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, not even a sweep's folder
