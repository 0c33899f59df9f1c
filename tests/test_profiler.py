"""debug=profiler: Lightning's SimpleProfiler times the fit's and the test's hooks and writes its report
into the run folder."""

from __future__ import annotations

import pytest
from harness import QUIET, compose_train

from digits.config import ConfigError
from digits.train import train

SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "logger=none"]


def test_debug_profiler_writes_its_report_into_the_run_folder(tmp_path, data_dir):
    cfg = compose_train(["debug=profiler", *SHORT, "trainer.limit_test_batches=2", *QUIET], tmp_path, data_dir)
    train(cfg)
    fit = (tmp_path / "fit-profile.txt").read_text()
    for action in ("run_training_batch", "training_step", "backward", "optimizer_step", "validation_step"):
        assert action in fit, action
    assert "ModelCheckpoint" in fit  # the callbacks' hooks too: the step checkpoint's cost shows
    assert "test_step" in (tmp_path / "test-profile.txt").read_text()


def test_an_unknown_profiler_is_refused_before_training(tmp_path, data_dir):
    cfg = compose_train(["profiler=fancy", *SHORT, *QUIET], tmp_path, data_dir)
    with pytest.raises(ConfigError, match="profiler"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()
