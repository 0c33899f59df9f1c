"""Writing results where people look: JSON for programs, Markdown tables for people, PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")


def measurement_metadata(root: Path) -> dict[str, str]:
    """Where and when a result was measured: date (UTC), machine, Python, the checkout's commit."""
    import os
    import platform
    import subprocess
    from datetime import datetime, timezone

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        "commit": commit.stdout.strip() or "unknown",
    }
