"""A minimal PNG encoder (numpy + zlib), so quick-look pictures need no Pillow.

8-bit greyscale or RGB, no interlace, filter type 0 on every row: small code,
files that every viewer and browser reads. Used by ``bgsdk run`` (mask and
overlay PNGs) and the HTML report (embedded pictures).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .io import atomic_write

__all__ = ["encode_png", "write_png"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(array: np.ndarray, level: int = 6) -> bytes:
    """``(H,W)`` or ``(H,W,3)`` uint8 -> PNG bytes."""
    a = np.ascontiguousarray(array)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"expected (H,W) or (H,W,3) uint8, got {a.dtype} {a.shape}")
    h, w = a.shape[:2]
    colour = 2 if a.ndim == 3 else 0
    rows = a.reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, level))
        + _chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Atomically write ``array`` (see :func:`encode_png`) as a PNG file."""
    data = encode_png(array)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
