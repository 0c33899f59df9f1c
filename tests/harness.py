"""The fixtures and hooks the product's tests and the lab's tests share: the real MNIST directory, an
in-process Hydra compose of the train config, the scripts run as a user runs them, and one short real
training run shared by the tests that need a trained checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from digits.console import quiet_console
from digits.data import RAW_FILES, default_data_dir
from digits.resolvers import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
register_resolvers()  # as every script does before composing a config
# GPU cases carry the `gpu` marker; without CUDA they are not collected at all (one summary line
# instead of ~1,500 `s`), with CUDA they run as any other test.
CUDA = pytest.mark.gpu


def mnist_dir() -> Path:
    """The scripts' own rule (digits.mnist_files.default_data_dir): $DIGITS_DATA_DIR, else data/."""
    return Path(default_data_dir()).resolve()


def has_mnist(path: Path) -> bool:
    return all((path / "MNIST" / "raw" / name).is_file() for name in RAW_FILES)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = mnist_dir()
    if not has_mnist(path):
        message = f"real MNIST not found under {path}/MNIST/raw: set DIGITS_DATA_DIR"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must not pass by skipping the tests that need the data
        pytest.skip(message)
    return path


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_protocol(item, nextitem):
    """Inside pytest's per-test warning capture: in-process runs get the scripts' filters
    (src/digits/console.py), no more and no fewer."""
    quiet_console()
    return (yield)


_SKIPPED = {"without_data": 0, "gpu": 0}


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]
        _SKIPPED["gpu"] = len(gpu)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # (other skips, e.g. a disk test where mounting is not allowed, do not count)
    if report.skipped and report.when == "setup" and "data_dir" in item.fixturenames and not has_mnist(mnist_dir()):
        _SKIPPED["without_data"] += 1
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    if _SKIPPED["gpu"]:
        terminalreporter.write_line(
            f"{_SKIPPED['gpu']} GPU cases not collected: no CUDA GPU here (they run on a machine with one)"
        )


def pytest_unconfigure(config) -> None:
    """The very last line of the run, loud: a green run without the real data proves little."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if _SKIPPED["without_data"] and reporter is not None:
        reporter.write_sep(
            "!",
            f"{_SKIPPED['without_data']} TESTS THAT NEED REAL MNIST WERE SKIPPED: not found "
            f"under {mnist_dir()}/MNIST/raw; set DIGITS_DATA_DIR",
            red=True,
            bold=True,
        )


# A run of two training steps and one validation batch, with no logger, callbacks, test or MD5 check (the data
# tests check the files): what a test needs to see a configuration train at all, in about a second.
TINY_RUN = [
    "logger=none",
    "callbacks=none",
    "test=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "data.verify=false",
]

# Small, quiet runs: no rich widgets, a few batches.
QUIET = [
    "trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
]


def compose_train(overrides: list[str], output_dir: Path, data_dir: Path) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[f"paths.output_dir={output_dir}", f"data.data_dir={data_dir}", *overrides],
        )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir) -> Path:
    """The run folder of a short real training (1 epoch of 60 batches, about 97 % on the test set), shared by
    every test that needs a genuine run folder and checkpoint: evaluation, export, the demo, the safety gate."""
    from digits.train import train

    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_train(
        [
            "logger=none",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=60",
            "trainer.limit_val_batches=2",
            *QUIET,
        ],
        run_dir,
        data_dir,
    )
    train(cfg)
    return run_dir


def script_path(name: str) -> Path:
    """``scripts/<name>``, or the lab's ``lab/scripts/<name>``."""
    product = ROOT / "scripts" / name
    return product if product.exists() else ROOT / "lab" / "scripts" / name


def _script(name: str, args: list[str]) -> list[str]:
    return [sys.executable, str(script_path(name)), *args]


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "DIGITS_DATA_DIR": str(data_dir)}


def run_script(
    name: str, args: list[str], data_dir: Path, cwd: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``scripts/<name>`` as a user would, on the real MNIST, and wait for it."""
    return subprocess.run(
        _script(name, args), cwd=cwd, env=_env(data_dir), capture_output=True, text=True, timeout=timeout
    )


def run_in_process(name: str, args: list[str], monkeypatch) -> int | None:
    """``scripts/<name>`` run as ``__main__`` inside the test process (no second start-up of torch and
    Lightning): the exit code it would give the shell."""
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", [str(script_path(name)), *args])
    GlobalHydra.instance().clear()
    try:
        runpy.run_path(str(script_path(name)), run_name="__main__")
    except SystemExit as exit:
        return exit.code
    return 0


def start_script(name: str, args: list[str], data_dir: Path, cwd: Path) -> subprocess.Popen:
    """Start ``scripts/<name>`` without waiting (to signal or kill it); stdout and stderr together."""
    return subprocess.Popen(
        _script(name, args), cwd=cwd, env=_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size (bytes), unmounted afterwards; skipped where mounting is not allowed."""
    mounts = []

    def mount(size: int, read_only: bool = False) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if result.returncode:
            pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip()}); needs root/CAP_SYS_ADMIN")
        mounts.append(point)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=False)
