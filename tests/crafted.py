"""Crafted files for the safety tests: a PNG that is small as a file and huge once decoded, and the
server's peak memory read from Linux's ``/proc`` (the lab's demo_memory study measures the same way)."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

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
