"""The README as a new user reads it: every command it prints works as printed, and its result
tables are what the scripts produce now."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIG_DIR, ROOT, run_script

from digits.overrides import check_overrides
from digits.studies.readme_tables import readme_blocks

README = (ROOT / "README.md").read_text()
CONFIG_NAMES = {
    "train": "train",
    "evaluate": "eval",
    "compare_losses": "compare_losses",
    "benchmark": "benchmark",
    "benchmark_losses": "benchmark_losses",
}
# The README's placeholders, filled as a user would.
PLACEHOLDERS = {"<run>": "2026-01-01_00-00-00-000000", "<partition>": "gpu", "<old-checkout>": "/tmp/old-checkout"}


def readme_commands() -> list[str]:
    """Each `python scripts/...` and `make ...` command the README prints: lines of its bash blocks
    and inline code, without trailing comments."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.DOTALL):
        commands += [line.split("  #")[0].strip() for line in block.splitlines()]
    commands += re.findall(r"`((?:python scripts/|make )[^`]+)`", README)
    commands = [c.split(", then ")[-1] for c in commands]
    return sorted({c for c in commands if c.startswith(("python scripts/", "make "))})


def script_and_overrides(command: str) -> tuple[str, list[str]]:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    words = shlex.split(command)
    if words[0] == "make":  # make train ARGS="..." passes ARGS to the train script
        args = next((w.split("=", 1)[1] for w in words if w.startswith("ARGS=")), "")
        return ("train" if words[1] == "train" else ""), shlex.split(args)
    return Path(words[1]).stem, [w for w in words[2:] if not w.startswith("-")]


def test_the_readme_prints_the_commands_this_test_checks():
    commands = readme_commands()
    scripts = {script_and_overrides(c)[0] for c in commands}
    assert {"train", "evaluate", "compare_losses", "benchmark", "benchmark_losses"} <= scripts
    assert len(commands) >= 25, commands


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_is_accepted_as_printed(command):
    """Each command's overrides name existing keys and choices (check_overrides composes the config
    with the command's group choices, as the script does before Hydra runs)."""
    script, overrides = script_and_overrides(command)
    if script in CONFIG_NAMES:  # (make test ...: no overrides of ours)
        check_overrides(CONFIG_DIR, CONFIG_NAMES[script], overrides)


def assert_readme_table_is_current(name: str, args: list[str], tmp_path: Path, data_dir: Path) -> None:
    """Run compare_losses.py now and compare its ``tables/<name>.md`` with the README's block."""
    result = run_script("compare_losses.py", [f"hydra.run.dir={tmp_path}", *args], data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    produced = (tmp_path / "tables" / f"{name}.md").read_text()
    assert readme_blocks(README)[f"compare_losses/{name}"] == produced, (
        "README.md is out of date: python scripts/compare_losses.py && python scripts/update_readme.py"
    )


def test_the_largest_differences_table_is_what_the_script_prints_now(tmp_path, data_dir):
    """The README's single-call table (deterministic: fixed seeds, CPU), from the script itself."""
    assert_readme_table_is_current("largest_differences", ["training.enabled=false"], tmp_path, data_dir)


@pytest.mark.slow
def test_the_whole_trainings_table_is_what_the_script_prints_now(tmp_path, data_dir):
    """The README's whole-training table: 5 trainings of 100 steps, deterministic."""
    assert_readme_table_is_current("whole_trainings", ["dtypes=[float32]"], tmp_path, data_dir)


def fresh_copy(destination: Path) -> Path:
    """The working tree as a clone has it (tracked and not ignored files), with the quick start's
    .venv beside it."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    (destination / ".venv").symlink_to(Path(sys.prefix))
    return destination


@pytest.mark.slow
def test_walk_the_readme_after_the_quick_start(tmp_path, data_dir):
    """In a fresh copy, after `source .venv/bin/activate` (the README's line after the quick start),
    the commands a new user runs next, exactly as printed, with <run> filled in from the run."""
    clone = fresh_copy(tmp_path / "digits")
    env = {**os.environ, "DIGITS_DATA_DIR": str(data_dir), "PYTHONPATH": str(clone / "src")}  # the copy's code
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    assert "\n```bash\nsource .venv/bin/activate\n```" in README

    def run(printed: str, run_name: str = "") -> str:
        assert printed in readme_commands() or printed.endswith("--help"), f"not in the README: {printed}"
        command = f"source .venv/bin/activate && {printed.replace('<run>', run_name)}"
        result = subprocess.run(
            ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        return result.stdout + result.stderr

    assert "usage: tensorboard" in run("tensorboard --help")  # `tensorboard --logdir outputs` finds it
    assert "ckpt_path" in run("python scripts/evaluate.py --help")
    run("python scripts/train.py debug=limit")
    (run_dir,) = (clone / "outputs" / "train").iterdir()
    assert run_dir.name.endswith("_debug-limit")
    assert "accuracy" in run("python scripts/evaluate.py ckpt_path=outputs/train/<run>", run_dir.name)
    run(
        "python scripts/evaluate.py ckpt_path=outputs/train/<run>/checkpoints/last.ckpt data.split=val device=cpu",
        run_dir.name,
    )
    evaluations = sorted(p.name for p in (clone / "outputs" / "evaluate").iterdir())
    assert len(evaluations) == 2 and evaluations[1].endswith("_data.split-val_device-cpu")


def test_make_train_ends_by_printing_the_line_that_enters_the_environment():
    """The README's line after the quick start is what `make train` prints last (dry run: nothing runs)."""
    # --no-print-directory: under another make (CI's `make test`) make would add "Leaving directory" lines
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "train"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert recipe.strip().splitlines()[-1] == 'echo "    source .venv/bin/activate"'
    assert "\n```bash\nsource .venv/bin/activate\n```" in README
