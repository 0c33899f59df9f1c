"""The docs as a reader meets them: `make docs-check` holds on the real README.md and docs/, and fails on
each kind of problem it exists to catch (crafted pages in a temporary repository); the config reference
says what configs/ says; the README's next commands work in a fresh copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from harness import ROOT

from digits.report import write_result
from digits_lab import docs


def test_the_docs_hold():
    """README.md and docs/: blocks current with the committed results and configs, links and anchors
    resolve, every command shown is accepted, no measured number in prose."""
    assert docs.check(ROOT) == []


def test_make_docs_check_is_what_ci_runs():
    assert "make docs-check\nmake test" in (ROOT / ".ci/run").read_text()
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "docs-check"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "-m digits_lab.docs --check" in recipe


def repository(tmp_path: Path, page: str) -> Path:
    """A repository with the real configs, scripts and Makefile, one result file and one manual page."""
    root = tmp_path / "repo"
    (root / "docs" / "results").mkdir(parents=True)
    for name in ("configs", "scripts", "src", "lab/scripts", "lab/configs"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "Makefile", root / "Makefile")
    (root / "README.md").write_text("# Front\n\nSee [the page](docs/page.md#usage).\n")
    (root / "docs/results/README.md").write_text("# Results\n")
    (root / "docs/results/speed.md").write_text("| run | seconds |\n|---|---|\n| default | 12.5 |\n")
    (root / "docs/page.md").write_text(page)
    return root


CLEAN = """# Page

## Usage

```bash
python scripts/train.py trainer.max_epochs=3 loss=nll
make train ARGS="seed=7"
```

<!-- BEGIN GENERATED from docs/results/speed.md -->
| run | seconds |
|---|---|
| default | 12.5 |
<!-- END GENERATED -->

The default run's time is in the table above; the target is 99 %. Back to the [front](../README.md).
"""


def test_a_clean_page_passes(tmp_path):
    assert docs.check(repository(tmp_path, CLEAN)) == []


def test_a_stale_block_fails_and_make_docs_refreshes_it(tmp_path):
    root = repository(tmp_path, CLEAN.replace("| default | 12.5 |", "| default | 11.0 |"))
    assert docs.check(root) == ["docs/page.md: block from docs/results/speed.md is stale: make docs"]
    assert docs.refresh(root) == [root / "docs/page.md"]
    assert docs.check(root) == []
    assert "| default | 12.5 |" in (root / "docs/page.md").read_text()


def test_a_result_files_title_becomes_a_section_of_the_page_that_shows_it(tmp_path):
    root = repository(tmp_path, CLEAN)
    table = "| run | seconds |\n|---|---|\n| default | 12.5 |\n"
    (root / "docs/results/speed.md").write_text("# Speed\n\n## Runs\n\n" + table)
    docs.refresh(root)
    page = (root / "docs/page.md").read_text()
    assert "\n### Speed\n" in page and "\n#### Runs\n" in page  # below the block's "## Usage"
    assert page.count("\n# ") == 0 and page.startswith("# Page\n")  # one page title
    assert docs.check(root) == [] and docs.refresh(root) == []  # current, and refreshing again changes nothing


@pytest.mark.parametrize(
    ("link", "problem"),
    [("other.md", "no such file"), ("#no-such-heading", "no heading with that anchor"), ("../README.md#x", "anchor")],
)
def test_a_broken_link_or_anchor_fails(tmp_path, link, problem):
    root = repository(tmp_path, CLEAN + f"\nSee [there]({link}).\n")
    (found,) = docs.check(root)
    assert found.startswith(f"docs/page.md: link to {link}: ") and problem in found


def test_an_anchor_to_a_heading_with_code_and_punctuation_resolves(tmp_path):
    page = CLEAN + "\n## Run `train.py`: one CPU, one GPU\n\nSee [it](#run-trainpy-one-cpu-one-gpu).\n"
    assert docs.check(repository(tmp_path, page)) == []


@pytest.mark.parametrize(
    "command",
    [
        "python scripts/train.py trainer.epochs=3",  # a misspelt key
        "python scripts/train.py loss=crossentropy",  # a choice that does not exist
        "python scripts/evaluate.py ckpt=outputs/train/<run>",  # the eval config's key is ckpt_path
        "python scripts/nope.py",
        "make trian",
        'make train ARGS="optimiser=sgd"',
    ],
)
def test_a_refused_command_fails(tmp_path, command):
    root = repository(tmp_path, CLEAN + f"\n```bash\n{command}   # comment\n```\n")
    (found,) = docs.check(root)
    assert found.startswith(f"docs/page.md: `{command}` is refused")


def test_an_inline_command_is_checked_too(tmp_path):
    root = repository(tmp_path, CLEAN + "\nRun `python scripts/train.py trainer.epochs=3` to train.\n")
    assert len(docs.check(root)) == 1


@pytest.mark.parametrize(
    "prose", ["It took 12.5 s.", "It reaches 99.37 % on the test set.", "a 134 kB file", "in 3-5 minutes"]
)
def test_a_measured_number_in_prose_fails(tmp_path, prose):
    (found,) = docs.check(repository(tmp_path, CLEAN + f"\n{prose}\n"))
    assert "in prose" in found


@pytest.mark.parametrize(
    "prose", ["Measured on 2026-11-23.", "Unlike the previous default,", "A run is still to be done."]
)
def test_history_in_prose_fails(tmp_path, prose):
    (found,) = docs.check(repository(tmp_path, CLEAN + f"\n{prose}\n"))
    assert "dated runs are result files" in found


@pytest.mark.parametrize(
    "text",
    [
        "`--timeout 12.5 s` is a flag.",  # inline code
        "```\nreal 12.5 s\n```",  # a code block
        "batch 256, 4 epochs, lr 0.025",  # numbers without a unit are settings, not measurements
        "the target of 99 % and the public record, 0.76 s",  # allowed by name
    ],
)
def test_numbers_outside_prose_and_allowed_constants_pass(tmp_path, text):
    assert docs.check(repository(tmp_path, CLEAN + f"\n{text}\n")) == []


def test_yaml_keys_gives_nested_keys_with_defaults_and_comments():
    text = """# Header comment, the file's own.

defaults:
  - _self_
  - paths: default

# the seed
seed: 42
data:
  # where it is
  data_dir: ${paths.data_dir}
  batch_size: 256  # per process
"""
    assert docs.yaml_keys(text) == [
        {"key": "seed", "default": "42", "comment": "the seed"},
        {"key": "data.data_dir", "default": "${paths.data_dir}", "comment": "where it is"},
        {"key": "data.batch_size", "default": "256", "comment": "per process"},
    ]


def flat(tree, prefix=""):
    if isinstance(tree, dict) and tree:
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.stem)
def test_the_config_reference_lists_every_key_of_every_config_with_its_value(path):
    """Each leaf key of each YAML file (defaults lists aside) with the value YAML reads, in the reference."""
    loaded = yaml.safe_load(path.read_text()) or {}
    loaded.pop("defaults", None)
    expected = flat(loaded) if loaded else {}
    found = {}
    for row in docs.yaml_keys(path.read_text()):
        if row["default"]:  # a flow mapping ({a: 1}) is shown as written, one row
            value = yaml.safe_load(row["default"])
            found.update(flat(value, row["key"] + ".") if isinstance(value, dict) and value else {row["key"]: value})
    assert found == expected


def test_the_config_reference_names_every_group_and_choice():
    reference = docs.config_reference(ROOT)
    for path in (ROOT / "configs").rglob("*/*.yaml"):
        group = path.parent.relative_to(ROOT / "configs").as_posix()
        assert f"`{group}={path.stem}`" in reference
    assert "Choices: adadelta, **adamw** (default), sgd." in reference
    assert "| `max_epochs` | `3` |" in reference  # configs/trainer/default.yaml


def test_write_result_and_the_recipes_table(tmp_path):
    """A result file carries where and when it was measured; the front table is made from it."""
    results = tmp_path / "docs" / "results"
    data = {
        "config": {"baseline": {"target": 0.99}},
        "runs": [{"run": "(default)", "wall_seconds": 30.0, "test_acc": 0.9934}],
        "baseline_time_to_accuracy": {
            "seconds": 250.0,
            # 50 s per epoch, crossing 99 % at the 5th: an anchor of 6 x 50 s
            "history": [
                {"epoch": e, "test_acc": acc, "seconds": 50.0 * e}
                for e, acc in enumerate([0.9851, 0.9873, 0.9882, 0.9896, 0.9903], 1)
            ],
        },
    }
    write_result(results, "benchmark", "Speed", data, "| a |\n|---|\n| 1 |")
    written = json.loads((results / "benchmark.json").read_text())
    assert {"date", "machine", "versions", "commit"} <= set(written) and written["results"] == data
    assert written["machine"]["load_average"] and written["versions"]["torch"]
    text = (results / "benchmark.md").read_text()
    assert text.startswith("# Speed\n\nMeasured ") and "load average" in text and text.endswith("| 1 |\n")
    # an older result: one run per recipe, no seed, no train_seconds, no targets
    table = docs.recipes_table(tmp_path)
    assert "| recipe | test accuracy | train (vs anchor) | whole run (vs anchor) | measured on |" in table
    assert "| `python scripts/train.py` | 99.34 % (1 seed) | - | 30.0 s (0.1) | " in table
    baseline = (
        "| anchor: pytorch/examples' MNIST recipe | 99.03 % | 300.0 s = 6 x 50.0 s per epoch (crossed 99 % at "
        "epoch 5, 250.0 s) | 300.0 s = 6 x 50.0 s per epoch (crossed 99 % at epoch 5, 250.0 s) |"
    )
    assert baseline in table
    # today's: each recipe over its seeds, against its targets
    data["config"]["targets"] = {"experiment=fast": {"test_acc": 0.99, "train": 0.015, "whole": 0.03}}
    data["runs"] = [
        {"run": "experiment=fast", "seed": seed, "test_acc": acc, "train_seconds": train, "wall_seconds": wall}
        for seed, acc, train, wall in [(0, 0.9904, 4.0, 8.0), (1, 0.9898, 5.0, 10.0), (2, 0.9910, 6.0, 12.0)]
    ]
    # a candidate the benchmark also timed (no target): benchmark.md shows it, the front table does not
    data["runs"].append({"run": "model.downsample=stride", "seed": 0, "test_acc": 0.99, "wall_seconds": 9.0})
    write_result(results, "benchmark", "Speed", data, "| a |\n|---|\n| 1 |")
    table = docs.recipes_table(tmp_path)
    fast = (
        "| `python scripts/train.py experiment=fast` | 99.04 % (98.98–99.10, 3 seeds; target 99.00 %: met) "
        "| 5.00 s (0.0167; target 0.015: not met) | 10.0 s (0.0333; target 0.03: not met) | "
    )
    assert fast in table and baseline in table and "`python scripts/train.py` |" not in table
    assert "downsample" not in table
    # no benchmark committed: the default's runs from the spread, without a baseline to compare with
    (results / "benchmark.json").unlink()
    runs = [{"run": "seed=1", "test_acc": 0.9926, "fit_seconds": 60.0, "wall_seconds": None}]
    (tmp_path / "lab/results").mkdir(parents=True)
    write_result(tmp_path / "lab/results", "spread", "Spread", {"runs": runs}, "")  # the lab's finding
    table = docs.recipes_table(tmp_path)
    assert "| `python scripts/train.py seed=1` | 99.26 % | 60.0 s (fit) | - | " in table
    assert "No benchmark result is committed" in table


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
    readme = (ROOT / "README.md").read_text()
    clone = fresh_copy(tmp_path / "digits")
    env = {**os.environ, "DIGITS_DATA_DIR": str(data_dir), "PYTHONPATH": str(clone / "src")}  # the copy's code
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    assert "\n```bash\nsource .venv/bin/activate\n```" in readme
    shown = [command for page in docs.pages(ROOT) for command in docs.commands(page.read_text())]

    def run(printed: str, run_name: str = "") -> str:
        assert printed in shown or printed.endswith("--help"), f"not in the docs: {printed}"
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


def test_make_train_ends_by_printing_the_line_that_enters_the_environment():
    """The README's line after the quick start is what `make train` prints last (dry run: nothing runs)."""
    # --no-print-directory: under another make (CI's `make test`) make would add "Leaving directory" lines
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "train"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert recipe.strip().splitlines()[-1] == 'echo "    source .venv/bin/activate"'
    assert "\n```bash\nsource .venv/bin/activate\n```" in (ROOT / "README.md").read_text()


def test_the_labs_page_shows_lab_results_and_its_commands_are_checked(tmp_path):
    """lab/README.md is a checked page: a block from lab/results/ is refilled, a study's command is checked
    against its config in lab/configs/."""
    root = repository(tmp_path, CLEAN)
    (root / "lab/results").mkdir()
    (root / "lab/results/finding.md").write_text("| a |\n|---|\n| 1 |\n")
    block = "<!-- BEGIN GENERATED from lab/results/finding.md -->\n<!-- END GENERATED -->\n"
    (root / "lab/README.md").write_text(f"# The lab\n\n```bash\npython lab/scripts/spread.py\n```\n\n{block}")
    assert docs.check(root) == ["lab/README.md: block from lab/results/finding.md is stale: make docs"]
    assert docs.refresh(root) == [root / "lab/README.md"]
    assert docs.check(root) == []
    (root / "lab/README.md").write_text("# The lab\n\n```bash\npython lab/scripts/spread.py no_such_key=1\n```\n")
    (found,) = docs.check(root)
    assert found.startswith("lab/README.md: `python lab/scripts/spread.py no_such_key=1` is refused")
