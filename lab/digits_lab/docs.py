"""The docs' generated blocks, and the checks that keep README.md and docs/ true.

    python -m digits_lab.docs            # make docs: refill every generated block
    python -m digits_lab.docs --check    # make docs-check: exit 1 and name each problem

A generated block is filled from one source and never edited by hand::

    <!-- BEGIN GENERATED from docs/results/NAME.md -->   the exact contents of that result file
    <!-- BEGIN GENERATED from recipes -->                the front table, from docs/results/benchmark.json
                                                        and the newest GPU check in docs/results/
    <!-- BEGIN GENERATED from defaults -->               the recipes' key values, composed from configs/
    <!-- BEGIN GENERATED from configs -->                the config reference: every group, choice and key
    ...
    <!-- END GENERATED -->

The check fails on a stale block, a relative link or ``#anchor`` that leads nowhere, a
``python scripts/...`` or ``make ...`` command the script or Makefile would refuse, and a measured
number (a number with a unit: %, s, ms, MiB, ...) or history (a date, "previous default", "this branch",
"to be done") in prose outside a generated block or code.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from pathlib import Path

from digits_lab import ROOT

BLOCK = re.compile(
    r"^(?P<begin><!-- BEGIN GENERATED from (?P<source>[^ ]+) -->\n)(?P<body>.*?)(?P<end><!-- END GENERATED -->)",
    re.DOTALL | re.MULTILINE,
)
# Filled into the docs' placeholders when their commands are checked, as a user would fill them.
PLACEHOLDERS = {
    "<run>": "2026-01-01_00-00-00-000000",
    "<partition>": "gpu",
    "<time>": "2026-01-01_00-00-00-000000",
    "<folder>": "my_digits",
    "<file>": "digit.png",
}
# A measured number in prose: digits with a unit or a percent sign.
MEASURED = re.compile(
    r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:\s?-\s?\d[\d,]*(?:\.\d+)?)?\s?"
    r"(?:%|ms\b|s\b|seconds?\b|minutes?\b|min\b|hours?\b|GFLOP/s|images/s|MiB\b|MB\b|kB\b|GB\b|GiB\b|pp\b)"
)
# Numbers with units that are settings, rules or definitions, not measurements: the accuracy target and
# the recipe search's bars, the public GPU record, the demo's upload limit, the "feels instant" threshold.
ALLOWED = {"99 %", "99.0 %", "99.1 %", "99.3 %", "0.76 s", "100 ms", "5 MB", "64 MiB"}


# The manual describes the project as it is: no history, no dated runs (those are result files).
HISTORY = re.compile(r"previous default|this branch|to be done|\b20\d\d-\d\d-\d\d\b", re.IGNORECASE)


def pages(root: Path) -> list[Path]:
    """README.md, the manual (docs/*.md) and the results' index; the result files themselves are written
    whole by the scripts and only their links are checked."""
    lab = [root / "lab/README.md"] if (root / "lab/README.md").is_file() else []
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "docs/results/README.md", *lab]


# Result files a block may show: the docs' (docs/results/) and the lab's findings (lab/results/).
RESULT_DIRS = ("docs/results/", "lab/results/")


def is_result(source: str) -> bool:
    return source.startswith(RESULT_DIRS)


# ---------------------------------------------------------------------------------------------
# Generated blocks


def generate(source: str, root: Path, page: Path | None = None) -> str:
    """The body of a block whose ``from`` names ``source``, on ``page``: a result file's contents with its
    relative links rebased from docs/results/ to the page's folder, so that they lead where they did."""
    if is_result(source):
        text = (root / source).read_text()
        if page is None:
            return text

        def rebase(match: re.Match) -> str:
            target = match[1]
            if re.match(r"[a-z]+:|#", target):
                return match[0]
            return "](" + os.path.relpath((root / source).parent / target, page.parent) + ")"

        return LINK.sub(rebase, text)
    if source == "lesson":
        return lesson_code()
    makers = {
        "recipes": recipes_table,
        "defaults": defaults_table,
        "configs": config_reference,
        "results": results_index,
    }
    if source not in makers:
        known = ["lesson", *sorted(makers)]
        where = "a docs/results/ or lab/results/ file"
        raise KeyError(f"unknown generated block source {source!r}: {where} or one of {known}")
    return makers[source](root)


def lesson_code() -> str:
    """digits.losses.cross_entropy_reference as the source file has it, as a Python code block: the lesson the
    docs show is the code the tests hold equal to F.cross_entropy."""
    import inspect

    from digits.losses import cross_entropy_reference

    return f"```python\n{inspect.getsource(cross_entropy_reference).rstrip()}\n```\n"


def block_body(match: re.Match, text: str, root: Path, page: Path | None) -> str:
    """What the block ``match`` of ``text`` holds when current: a result file's headings nested below
    the page's heading before the block, so that its title becomes a section, not a second page title."""
    body = generate(match["source"], root, page).rstrip("\n") + "\n"
    if not is_result(match["source"]):
        return body
    return nest_headings(body, heading_level(text[: match.start()]))


def refresh_text(text: str, root: Path, page: Path | None = None) -> str:
    """``text`` with every block refilled; a block whose source is missing is left as it is (the check
    reports it)."""

    def replace(match: re.Match) -> str:
        try:
            body = block_body(match, text, root, page)
        except (OSError, KeyError):
            return match.group(0)
        return match["begin"] + body + match["end"]

    return BLOCK.sub(replace, text)


HEADING = re.compile(r"^(#{1,6}) ", re.MULTILINE)


def heading_level(text: str) -> int:
    """The level of the last Markdown heading in ``text`` outside code (0: none)."""
    levels = [len(m[1]) for m in HEADING.finditer(_without_code(text))]
    return levels[-1] if levels else 0


def nest_headings(body: str, level: int) -> str:
    """``body``'s headings moved ``level`` levels down."""
    if level == 0:
        return body
    return HEADING.sub(lambda m: "#" * min(6, len(m[1]) + level) + " ", body)


def refresh(root: Path = ROOT) -> list[Path]:
    """Refill every block of every page; the pages that changed."""
    changed = []
    for page in pages(root):
        text = page.read_text()
        new = refresh_text(text, root, page)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "-"


def _where(result: dict) -> str:
    machine = result["machine"]
    what = machine.get("gpu") or f"{machine['cores']}-core {machine['cpu'].split(' ')[0]} CPU"
    return f"{what}, {result['date'][:10]}, `{result['commit']}`"


def recipes_table(root: Path) -> str:
    """The front page's table: the default, experiment=fast (the runs with targets) and the baseline from the
    newest committed benchmark, one row per recipe over its seeds (digits_lab.recipes; without a benchmark,
    the default's runs from the committed spread); experiment=fast_gpu from the newest committed GPU check."""
    from digits.report import markdown_table
    from digits_lab import recipes

    results_dir = root / "docs/results"
    rows, notes = [], []
    if (results_dir / "benchmark.json").is_file():
        bench = json.loads((results_dir / "benchmark.json").read_text())
        results = bench["results"]
        # the shipped recipes: those with targets; a benchmark's other runs (candidates tried) stay in benchmark.md
        summary = recipes.summarise(results)
        shipped = [row for row in summary if row["target"]] or summary
        for row in shipped:
            name = "python scripts/train.py" + (f" {row['recipe']}" if row["recipe"] != recipes.DEFAULT else "")
            rows.append({"recipe": f"`{name}`", **recipes.cells(row), "measured on": _where(bench)})
        baseline = recipes.baseline_cells(results)
        if baseline:
            rows.append({"recipe": "anchor: pytorch/examples' MNIST recipe", **baseline, "measured on": _where(bench)})
        load = " / ".join(str(x) for x in bench["machine"]["load_average"])
        notes.append(
            f"CPU rows from [docs/results/benchmark.md](docs/results/benchmark.md), load average {load} over "
            "1 / 5 / 15 min when written. Accuracy: the seeds' mean (min-max); train: first step to the end of "
            "fit; whole run: command to exit; in brackets, over the anchor (the baseline recipe's seconds per epoch x "
            "6, measured in the same run; [why](docs/performance.md#current-numbers)), and the "
            "recipe's target."
        )
    elif (root / "lab/results/spread.json").is_file():
        spread = json.loads((root / "lab/results/spread.json").read_text())
        for run in spread["results"]["runs"]:
            train = run.get("train_seconds")  # an older spread has the fit's seconds only
            rows.append(
                {
                    "recipe": f"`python scripts/train.py {run['run']}`".replace(" (default)", ""),
                    "test accuracy": recipes.percent(run["test_acc"]),
                    "train (vs anchor)": _seconds(train) if train else _seconds(run["fit_seconds"]) + " (fit)",
                    "whole run (vs anchor)": _seconds(run.get("wall_seconds")),
                    "measured on": _where(spread),
                }
            )
        load = " / ".join(str(x) for x in spread["machine"]["load_average"])
        notes.append(
            "No benchmark result is committed: the default recipe's rows come from "
            f"[lab/results/spread.md](lab/results/spread.md) (load average {load} when written), and "
            "`experiment=fast` and the baseline are not measured; `python scripts/benchmark.py` measures them."
        )
    gpu = newest_gpu_check(root)
    if gpu:
        rows.insert(len([r for r in rows if r["recipe"].startswith("`")]), gpu)
    notes.append(
        "Times on a shared machine move with the load; accuracy moves with threads and CPU: "
        "[how far the numbers hold](docs/performance.md#how-far-the-numbers-hold)."
    )
    return markdown_table(rows) + "\n" + " ".join(notes) + "\n"


def newest_gpu_check(root: Path) -> dict | None:
    """The experiment=fast_gpu row of the newest GPU check report in docs/results/ (its fast_gpu table)."""
    from digits_lab.recipes import percent, seconds

    reports = sorted((root / "docs/results").glob("gpu_check*.md"))
    if not reports:
        return None
    report = reports[-1]
    text = report.read_text()
    gpu = re.search(r"^\| gpu \| (.+?) \|$", text, re.MULTILINE)
    table = re.search(r"^## experiment=fast_gpu.*?\n\n(\|.*?\n)\|[-|]+\|\n(\|.*?\n)", text, re.MULTILINE | re.DOTALL)
    if not (gpu and table):
        return None
    values = dict(zip(_cells(table[1]), _cells(table[2])))
    date = re.search(r"(\d{4}-\d{2}-\d{2})", report.name)
    train = values.get("train_seconds")
    return {
        "recipe": "`python scripts/train.py experiment=fast_gpu`",
        "test accuracy": percent(float(values["test_acc"])) + " (1 seed)",
        "train (vs anchor)": (seconds(float(train)) if train else "-") + " (another machine)",
        "whole run (vs anchor)": seconds(float(values["wall_seconds"])) + " (another machine)",
        "measured on": f"{gpu[1]}, {date[1] if date else '?'}, [dated report](docs/results/{report.name})",
    }


def results_index(root: Path) -> str:
    """One row per result file in docs/results/: its title, and the date and commit its first lines give."""
    from digits.report import markdown_table

    rows = []
    for path in sorted((root / "docs/results").glob("*.md")):
        if path.name == "README.md":
            continue
        text = path.read_text()
        title = text.splitlines()[0].lstrip("# ").strip() if text else path.stem
        date = re.search(r"(\d{4}-\d{2}-\d{2})", path.stem) or re.search(r"Measured (\d{4}-\d{2}-\d{2})", text)
        commit = re.search(r"commit (\S+?)\.? Data", text)
        rows.append(
            {
                "file": f"[{path.name}]({path.name})",
                "what": title,
                "measured": date[1] if date else "-",
                "commit": f"`{commit[1]}`" if commit else "-",
            }
        )
    return markdown_table(rows)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


# The keys the recipes differ in, as the front page and the training page show them.
RECIPE_KEYS = [
    "model.channels",
    "model.downsample",
    "model.dropout",
    "data.batch_size",
    "trainer.max_epochs",
    "trainer.limit_train_batches",
    "optimizer.lr",
    "optimizer.weight_decay",
    "scheduler.pct_start",
    "loss.label_smoothing",
    "trainer.precision",
    "threads",
    "data.device",
    "trainer.accelerator",
]


def defaults_table(root: Path) -> str:
    """The default recipe and the two experiments, composed from configs/ as train.py composes them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from digits.report import markdown_table
    from digits.resolvers import register_resolvers

    register_resolvers()
    columns = {"default": [], "experiment=fast": ["experiment=fast"], "experiment=fast_gpu": ["experiment=fast_gpu"]}
    composed = {}
    with initialize_config_dir(str(root / "configs"), version_base="1.3"):
        for name, overrides in columns.items():
            composed[name] = compose("train", overrides=overrides)
    rows = []
    for key in RECIPE_KEYS:
        row = {"key": f"`{key}`"}
        for name, cfg in composed.items():
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
            value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            row[name] = json.dumps(value) if not isinstance(value, str) else value
        rows.append(row)
    return markdown_table(rows) + "\nComposed from `configs/` (`train.yaml` and `configs/experiment/`).\n"


KEY_LINE = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[\w./@-]+):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")


def yaml_keys(text: str) -> list[dict[str, str]]:
    """Each key of a YAML config with its dotted name, its value as written and its comment (the
    comment lines above it, then the comment at the end of its line). A block list is shown in flow
    style, one row; ``defaults`` lists are skipped."""
    import yaml

    lines = text.splitlines()
    rows, stack, above, number = [], [], [], 0
    while number < len(lines):
        line, number = lines[number], number + 1
        stripped = line.strip()
        if not stripped or stripped.startswith("# @package"):
            above = [] if not stripped else above
            continue
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        indent = len(line) - len(line.lstrip())
        if not match or stripped.startswith("- "):
            above = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = ".".join([k for _, k in stack] + [match["key"]])
        value = match["value"].strip()
        comment = " ".join(above + ([match["comment"]] if match["comment"] else []))
        above = []
        block = []  # a block list under this key: its lines, read whole
        while not value and number < len(lines):
            following = lines[number]
            deeper = len(following) - len(following.lstrip()) > indent
            if not (
                following.lstrip().startswith("- ") or (block and deeper and not following.lstrip().startswith("#"))
            ):
                break
            block.append(following)
            number += 1
        if name == "defaults":
            continue
        if block:
            value = yaml.safe_dump(yaml.safe_load("\n".join(block)), default_flow_style=True, width=10**6).strip()
        if value:
            rows.append({"key": name, "default": value, "comment": comment})
        else:
            stack.append((indent, match["key"]))
            if comment:
                rows.append({"key": name, "default": "", "comment": comment})
    return rows


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def config_reference(root: Path) -> str:
    """Every config group under configs/, its choices (the default marked), and each choice's keys with
    their default and comment; then the scripts' own top-level configs."""
    configs = root / "configs"
    defaults = {}
    for line in (configs / "train.yaml").read_text().split("defaults:", 1)[1].splitlines()[1:]:
        match = re.match(r"\s+- (?:override )?([\w/]+): (\w+)", line)
        if match:
            defaults[match[1]] = match[2]
        elif line and not line.startswith(" "):
            break
    out = []
    groups = sorted({p.parent.relative_to(configs).as_posix() for p in configs.rglob("*/*.yaml")})
    for group in groups:
        choices = sorted(p.stem for p in (configs / group).glob("*.yaml"))
        chosen = defaults.get(group)
        listed = ", ".join(f"**{c}** (default)" if c == chosen else c for c in choices)
        out += [f"### `{group}`", "", f"Choices: {listed}.", ""]
        for choice in choices:
            keys = yaml_keys((configs / group / f"{choice}.yaml").read_text())
            out += [f"`{group}={choice}`:", ""]
            out += _key_table(keys)
    out += ["### The scripts' configs", ""]
    for path in sorted(configs.glob("*.yaml")):
        out += [f"`configs/{path.name}`:", ""]
        out += _key_table(yaml_keys(path.read_text()))
    return "\n".join(out).rstrip("\n") + "\n"


def _key_table(keys: list[dict[str, str]]) -> list[str]:
    if not keys:
        return ["(no keys of its own)", ""]
    lines = ["| key | default | comment |", "|---|---|---|"]
    lines += [f"| `{k['key']}` | `{_escape(k['default'])}` | {_escape(k['comment'])} |" for k in keys]
    return lines + [""]


# ---------------------------------------------------------------------------------------------
# Checks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", _without_code(text), re.MULTILINE):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def _without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


LINK = re.compile(r"\]\(([^)\s]+)\)")


def check_links(page: Path) -> list[str]:
    problems = []
    text = page.read_text()
    for target in LINK.findall(_without_code(text)):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{page.name}: link to {target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            problems.append(f"{page.name}: link to {target}: no heading with that anchor")
    return problems


def commands(text: str) -> list[str]:
    """Each ``python scripts/...`` and ``make ...`` command a page shows: lines of its bash blocks and its
    inline code, without trailing comments."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        block = re.sub(r"\\ *(?:#[^\n]*)?\n", " ", block)  # a command continued on the next line is one command
        found += [line.split("  #")[0].strip() for line in block.splitlines()]
    found += re.findall(r"`((?:python scripts/|python lab/scripts/|make )[^`]+)`", text)
    return sorted({c for c in found if c.startswith(("python scripts/", "python lab/scripts/", "make "))})


def script_config(root: Path, script: str) -> str | None:
    """The config a script composes (``@hydra.main(config_name=...)`` or ``digits.entry.run(main, ...)``);
    None for a script without one."""
    path = root / script if "/" in script else root / "scripts" / script
    if not path.is_file():
        raise FileNotFoundError(script)
    text = path.read_text() if path.suffix == ".py" else ""
    command = re.search(r"from digits\.commands import (\w+)", text)
    if command:  # a thin wrapper over a console entry point: the config that command composes
        commands_py = (root / "src/digits/commands.py").read_text()
        text = re.search(rf"def {command[1]}\(\).*?\n\n", commands_py + "\n\n", re.DOTALL)[0]
        match = re.search(r'run\(\w+, "(\w+)"', text)
        return match[1] if match else None
    match = re.search(r'config_name="(\w+)"|run\(main, "(\w+)"', text)
    return (match[1] or match[2]) if match else None


def check_command(root: Path, command: str) -> str | None:
    """Why the script (or make) would refuse ``command`` as printed, or None."""
    from hydra.errors import HydraException

    from digits.errors import DigitsError
    from digits.overrides import check_overrides

    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    words = shlex.split(command)
    if words[0] == "make":
        targets = set(re.findall(r"^([\w-]+):", (root / "Makefile").read_text(), re.MULTILINE))
        if len(words) < 2 or words[1] not in targets:
            return f"make has no target {words[1:2]}"
        if words[1] != "train":
            return None
        script, overrides = "train.py", shlex.split(next((w[5:] for w in words if w.startswith("ARGS=")), ""))
    else:
        script, overrides = words[1], [w for w in words[2:] if not w.startswith("-")]
        if not script.startswith("lab/"):
            script = Path(script).name
    try:
        config = script_config(root, script)
    except FileNotFoundError:
        return f"no script {script if '/' in script else 'scripts/' + script}"
    if config is None:
        return None
    configs = root / "lab/configs" if script.startswith("lab/") else root / "configs"
    try:
        check_overrides(configs, config, overrides)
    except (DigitsError, HydraException) as error:  # a bad key or choice; an override Hydra cannot parse
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def prose(text: str) -> str:
    """The page without generated blocks, code blocks, inline code, HTML comments and link targets."""
    text = BLOCK.sub("", text)
    text = _without_code(text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def measured_numbers(text: str) -> list[str]:
    return [m.group(0) for m in MEASURED.finditer(prose(text)) if m.group(0) not in ALLOWED]


def check(root: Path = ROOT) -> list[str]:
    """Every problem of README.md and docs/*.md, one line each."""
    problems = []
    for page in pages(root):
        text = page.read_text()
        name = page.relative_to(root).as_posix()
        for match in BLOCK.finditer(text):
            try:
                fresh = block_body(match, text, root, page)
            except (OSError, KeyError) as error:
                problems.append(f"{name}: block from {match['source']}: {error}")
                continue
            if match["body"] != fresh:
                problems.append(f"{name}: block from {match['source']} is stale: make docs")
        problems += [f"{name}: {p.split(': ', 1)[1]}" for p in check_links(page)]
        for command in commands(text):
            why = check_command(root, command)
            if why:
                problems.append(f"{name}: `{command}` is refused: {why}")
        for number in measured_numbers(text):
            problems.append(f"{name}: measured number {number!r} in prose: put it in a generated block")
        for words in HISTORY.findall(prose(text)):
            problems.append(f"{name}: {words!r} in prose: the docs say how things are; dated runs are result files")
    for folder in RESULT_DIRS:
        for result in sorted((root / folder).glob("*.md")):
            problems += [f"{folder}{p}" for p in check_links(result)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on any problem")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this checkout)")
    args = parser.parse_args(argv)
    if not args.check:
        for page in refresh(args.root):
            print(f"updated {page.relative_to(args.root)}")
    problems = check(args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in the docs", file=sys.stderr)
        return 1
    print("the docs hold: blocks current, links resolve, commands accepted, no measured number in prose")
    return 0


if __name__ == "__main__":
    sys.exit(main())
