"""Writing results where people look: JSON for programs, Markdown tables for people, PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from digits.writing import write_json


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "(no rows)\n"
    columns = columns or list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if value != 0 else "0"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def provenance() -> dict[str, Any]:
    """Where and when a result was measured (UTC date, machine, load, versions, commit): seeded results move
    with the thread count and the CPU, times with the load."""
    import os
    import platform
    import subprocess
    from datetime import datetime, timezone
    from importlib import metadata

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("lightning", "hydra-core", "torchvision"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None

    def git(*args: str) -> str:
        root = Path(__file__).resolve().parents[2]
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "src", "scripts", "configs"):
        commit += "+changes"  # measured with uncommitted code changes
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions,
        "commit": commit,
    }


def provenance_line(info: dict[str, Any]) -> str:
    """One sentence of ``provenance()`` for the top of a result's Markdown."""
    machine = info["machine"]
    gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
    load = " / ".join(str(x) for x in machine["load_average"])
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    return (
        f"Measured {info['date']} on {machine['cpu']} ({machine['cores']} cores, {machine['torch_threads']} torch "
        f"threads{gpu}; load average {load} over 1 / 5 / 15 min when written), {versions}, commit {info['commit']}."
    )


def write_result(results_dir: str | Path, name: str, title: str, data: dict[str, Any], markdown: str) -> Path:
    """``<name>.json`` (``provenance()`` plus ``data``) and ``<name>.md`` (title, provenance line, ``markdown``)
    in ``results_dir``: the only place docs take numbers from."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    info = provenance()
    write_json(results_dir / f"{name}.json", {"name": name, **info, "results": data})
    text = f"# {title}\n\n{provenance_line(info)} Data: [{name}.json]({name}.json).\n\n{markdown.strip()}\n"
    path = results_dir / f"{name}.md"
    path.write_text(text)
    return path
