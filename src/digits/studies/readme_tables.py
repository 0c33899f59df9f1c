"""The README's result tables come from the scripts, never by hand.

A script writes each table a README shows to ``<its run folder>/tables/<name>.md``
(``write_table``); the README holds it between ``<!-- begin: <script>/<name> -->`` and
``<!-- end -->``; ``python scripts/update_readme.py`` copies the newest run's tables in.
"""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"(<!-- begin: (?P<key>[\w.-]+/[\w.-]+) -->\n)(?P<body>.*?)(<!-- end -->)", re.DOTALL)


def write_table(output_dir: str | Path, name: str, markdown: str) -> Path:
    """Write one table for the README: ``<output_dir>/tables/<name>.md``."""
    path = Path(output_dir) / "tables" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown.rstrip("\n") + "\n")
    return path


def readme_blocks(readme: str) -> dict[str, str]:
    """``{"<script>/<name>": the text between the markers}``."""
    return {match["key"]: match["body"] for match in BLOCK.finditer(readme)}


def newest_table(outputs: Path, key: str) -> Path | None:
    """The newest ``outputs/<script>/<run>/tables/<name>.md`` (run folders start with their time)."""
    script, name = key.split("/")
    found = sorted((outputs / script).glob(f"*/tables/{name}.md"), key=lambda p: p.parent.parent.name)
    return found[-1] if found else None


def refresh(readme: str, tables: dict[str, str]) -> str:
    """The README with each block whose key is in ``tables`` replaced by that table."""

    def replace(match: re.Match) -> str:
        body = tables.get(match["key"], match["body"])
        return match.group(1) + body.rstrip("\n") + "\n" + match.group(4)

    return BLOCK.sub(replace, readme)
