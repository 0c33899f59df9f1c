"""The demo's peak memory under a picture that decodes large: a 10,000 x 9,999 RGBA PNG (400 MB
decoded, about 400 kB as a file), sent alone and ten at once to ``scripts/demo.py`` started as a
process. The server's peak resident memory is read from Linux's ``VmHWM`` and reset in between.

    python -m digits_lab.demo_memory <checkpoint or run folder> [--compare <other checkout>]

``--compare`` measures another checkout's demo the same way (its ``scripts/demo.py`` with its
``src`` first on the path), e.g. the code before a change. Writes demo_limits.json and demo_limits.md into
outputs/demo_memory/<time>, or into ``--results-dir`` (lab/results to publish).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import struct
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from digits_lab import ROOT

BIG = (10_000, 9_999)


def sparse_rgba_png(width: int, height: int) -> bytes:
    """A transparent RGBA PNG of ``width`` x ``height`` with one broad black stroke: 4 bytes a pixel
    once decoded, about 1/1000 of that as a file. Each kind of row is compressed once (a block that
    ends in a full flush can be repeated), not all ``width * height * 4`` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    blank = b"\0" * (4 * width + 1)  # filter byte 0, then transparent pixels
    left, right = width // 2 - width // 40, width // 2 + width // 40
    ink = b"\0" * (4 * left + 1) + b"\0\0\0\xff" * (right - left) + b"\0" * (4 * (width - right))
    top, bottom = height // 10, height - height // 10
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream, adler = [b"\x78\xda"], 1
    for row, count in ((blank, top), (ink, bottom - top), (blank, height - bottom)):
        whole, rest = divmod(count, 100)
        for rows, times in ((row * 100, whole), (row * rest, 1)):
            stream.append((deflate.compress(rows) + deflate.flush(zlib.Z_FULL_FLUSH)) * times)
            for _ in range(times):
                adler = zlib.adler32(rows, adler)
    stream.append(deflate.flush() + struct.pack(">I", adler))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(stream)) + chunk(b"IEND", b"")


def peak_mb(pid: int) -> float:
    """The process's peak resident memory (MiB) since its start or the last ``reset_peak``."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: the peak restarts from the current size


def post(url: str, data: bytes) -> int:
    request = urllib.request.Request(url + "api/analyse", data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def peaks(url: str, pid: int, picture: bytes, clients: int) -> dict[str, Any]:
    """Peak memory while ``clients`` send ``picture`` at once: above the idle server, and in all."""
    reset_peak(pid)
    idle = peak_mb(pid)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(post(url, picture))) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = peak_mb(pid)
    return {"clients": clients, "idle_mb": round(idle), "peak_mb": round(peak), "above_idle_mb": round(peak - idle),
            "statuses": sorted(statuses)}  # fmt: skip


def measure(checkout: Path, checkpoint: str, overrides: list[str], clients: tuple[int, ...]) -> list[dict[str, Any]]:
    """Start ``checkout``'s demo, send the picture to each number of ``clients`` at once in turn, stop it."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
        process = subprocess.Popen(
            [sys.executable, str(checkout / "scripts" / "demo.py"), f"ckpt_path={checkpoint}", "port=0",
             f"hydra.run.dir={folder}", *overrides],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        try:
            for line in process.stdout:
                match = re.search(r"demo: open (http://\S+/)", line)
                if match:
                    break
            else:
                raise RuntimeError(f"{checkout}'s demo exited with code {process.wait()} without serving")
            picture = sparse_rgba_png(*BIG)
            return [peaks(match.group(1), process.pid, picture, count) for count in clients]
        finally:
            process.terminate()
            process.wait(timeout=60)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Demo memory under a 10,000 x 9,999 RGBA picture",
        "",
        f"{results['date']}, {results['machine']}, commit {results['commit']}, "
        + ", ".join(f"{name} {version}" for name, version in results["versions"].items())
        + f"; the picture is "
        f"{results['picture_bytes']:,} bytes, {results['decoded_mb']} MB decoded. Peak resident memory "
        "of the server process (VmHWM), reset before each row.",
        "",
        "| code | settings | clients at once | idle MB | peak MB | above idle MB | answers |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        for row in run["rows"]:
            answers = ", ".join(f"{status} x{count}" for status, count in _counts(row["statuses"]).items())
            lines.append(
                f"| {run['code']} | {' '.join(run['overrides']) or 'defaults'} | {row['clients']} | {row['idle_mb']} "
                f"| {row['peak_mb']} | {row['above_idle_mb']} | {answers} |"
            )
    return "\n".join(lines) + "\n"


def _counts(statuses: list[int]) -> dict[int, int]:
    return {status: statuses.count(status) for status in sorted(set(statuses))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--compare", type=Path, help="another checkout measured the same way (e.g. before a change)")
    parser.add_argument(
        "--results-dir",
        type=Path,
        help="where demo_limits.json and .md go (publishing: lab/results); default outputs/demo_memory/<time>",
    )
    args = parser.parse_args()
    # this checkout decodes the picture (max_pixels raised above its 10,000 x 9,999), and with its defaults
    runs = [("this checkout", ROOT, [f"max_pixels={BIG[0] * BIG[1]}"], (1, 10)), ("this checkout", ROOT, [], (1, 10))]
    if args.compare:  # alone only: code without the bound could need some 20 GB for ten
        runs.insert(0, (f"{args.compare}", args.compare, [], (1,)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "versions": {name: metadata.version(name) for name in ("torch", "pillow", "starlette", "uvicorn")}
        | {"python": platform.python_version()},
        "commit": commit.stdout.strip(),
        "picture": list(BIG),
        "picture_bytes": len(sparse_rgba_png(*BIG)),
        "decoded_mb": round(4 * BIG[0] * BIG[1] / 2**20),
        "runs": [
            {"code": code, "overrides": overrides, "rows": measure(checkout, args.checkpoint, overrides, clients)}
            for code, checkout, overrides, clients in runs
        ],
    }
    out = args.results_dir or Path("outputs") / "demo_memory" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_limits.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "demo_limits.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
