"""Crafted files that tests feed to emocam: tiny PNGs that decode to absurd sizes, and MPEG-TS made from a clip."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def png(path: Path, width: int, height: int) -> Path:
    """A black 8-bit grey PNG of width x height, compressed row by row: a few hundred bytes for a 1x100000 image, a
    few hundred kilobytes for 12000x12000, as an attacker would send."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte 0, then the row's pixels
    rows = max((1 << 20) // len(row), 1)  # rows per call: about a megabyte at a time
    body = []
    for start in range(0, height, rows):
        body.append(packer.compress(row * min(rows, height - start)))
    body.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(body))
                     + chunk(b"IEND", b""))
    return path
