"""Decompression bombs: a small file that declares gigapixels is refused before anything is decoded.

TIFF (patched ImageWidth/ImageLength), PNG (patched IHDR, valid CRC) and .npy (header
claiming a huge shape, or more data than the file holds) each give one ``InputError``
naming the file, quickly and without the process's memory growing by the declared size.
"""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import psutil
import pytest
import tifffile
from PIL import Image

from bgsdk import InputError
from bgsdk.io import MAX_DECODED_BYTES, read_image


def _tiff_claiming(path: Path, width: int, height: int) -> Path:
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8, 8), np.float32), metadata=None)
    data = bytearray(buf.getvalue())
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", data, 4)[0]
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, typ = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = width if tag == 256 else height
            struct.pack_into("<I" if typ == 4 else "<H", data, at + 8, value)
    path.write_bytes(bytes(data))
    return path


def _png_claiming(path: Path, width: int, height: int) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _npy_claiming(path: Path, shape: tuple[int, ...], data_bytes: int = 64) -> Path:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    path.write_bytes(buf.getvalue() + b"\0" * data_bytes)
    return path


CASES = {
    "tiff 60000x60000": (lambda d: _tiff_claiming(d / "bomb.tiff", 60000, 60000), "decompression bomb"),
    "png 9000x9000": (lambda d: _png_claiming(d / "bomb.png", 9000, 9000), "decompression bomb"),
    "png 40000x40000": (lambda d: _png_claiming(d / "huge.png", 40000, 40000), "decompression bomb"),
    "npy (3, 50000, 50000)": (lambda d: _npy_claiming(d / "bomb.npy", (3, 50000, 50000)), "decompression bomb"),
    "npy data missing": (lambda d: _npy_claiming(d / "short.npy", (3, 100, 100)), "truncated .npy"),
}


@pytest.mark.parametrize("name", CASES)
def test_bomb_is_refused_before_decoding(tmp_path: Path, name: str) -> None:
    make, fragment = CASES[name]
    path = make(tmp_path)
    assert path.stat().st_size < 4096
    rss0 = psutil.Process().memory_info().rss
    with pytest.raises(InputError) as info:
        read_image(path)
    grew = psutil.Process().memory_info().rss - rss0
    assert str(path) in str(info.value) and fragment in str(info.value), info.value
    assert grew < 64 * 2**20, f"RSS grew by {grew / 2**20:.0f} MB"


def test_limit_leaves_real_images_alone(tmp_path: Path) -> None:
    big = np.random.default_rng(0).uniform(0, 255, (4, 1024, 1024)).astype(np.float32)  # mvtec size, 4 channels
    tifffile.imwrite(tmp_path / "mvtec.tiff", big)
    np.save(tmp_path / "mvtec.npy", big)
    assert big.nbytes < MAX_DECODED_BYTES
    for p in (tmp_path / "mvtec.tiff", tmp_path / "mvtec.npy"):
        np.testing.assert_array_equal(read_image(p), big[:3])


def _tiff_with_ifd_loop(path: Path, pages: int = 150, back_to: int = 120) -> Path:
    """Classic little-endian TIFF of ``pages`` empty IFDs; the last points back to IFD ``back_to``.

    tifffile (2026.3) looks for a loop only at its 100th page, so this chain made it spin forever
    (found by ``make fuzz``: a mutated TIFF; this is the same shape, built by hand).
    """
    ifd = lambda i: 8 + 6 * i  # noqa: E731  each IFD: 2-byte count (0) + 4-byte next offset
    data = bytearray(b"II*\x00" + struct.pack("<I", ifd(0)))
    for i in range(pages):
        nxt = ifd(i + 1) if i + 1 < pages else ifd(back_to)
        data += struct.pack("<HI", 0, nxt)
    path.write_bytes(bytes(data))
    return path


def test_tiff_page_chain_loop_is_refused_not_a_hang(tmp_path: Path) -> None:
    path = _tiff_with_ifd_loop(tmp_path / "loop.tiff")
    code = f"import bgsdk\ntry:\n    bgsdk.read_image({str(path)!r})\nexcept bgsdk.InputError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "TIFF page chain loops back to byte 728 (corrupt file)" in out.stdout, out


# A 694-byte TIFF found by make fuzz (a mutated 8x8 image): it declares a 3670021x7 bool image in
# 734,005 one-strip-of-5-rows segments; tifffile walked them all in Python (2.5 s here, > 30 s under
# the fuzzer's instrumentation) before failing.
MANY_STRIPS = (
    "SUkqAAgAAAAOAAABBAABAAAABwAAAAEBBAABAAAABQA4ADSAAwABAAAACAAAAAMBAwABAAAAAQAAAAYBAwABAAAAAQAAAA4BAgAV"
    "AAAAtgAAABEBBAABAAAAAAEAABUBAwABAAAAAQAAABYBBAABAAAABQAAABcBBAABAAAAIwAAABoBBQABAAAA2gAAABsBBQABAAAA"
    "4gAAACgBAwABAAAAAQAAADEBAgAMAAAA6gAAAGoBAAB7InNoYXBlIjogWzMsIDUsIDddfQAAAAAAAAAAAAAAAAAAAAABAAAAAQAA"
    "AAEAAAABAAAAdGlmZmZpbGUucHkAAAAAAAAAAAAAAO61zLYFuDCTaPoW+ilSfd19hlBrtqv16xBlCttuyCSc2rtCtpl3wzSNPGOg"
    "o+yRDh1jAHEbDhdypbFO+AIPQj8beOn4JKym5gUTI2Zo+FiW15C0K6iLhsbNn6gJIJgINFNm/mpirWorsAAMAAABBAABAAAABwAA"
    "AAEBBAABAAAABQAAAAIBAwABAAAACAAAAAMBAwABAAAAAQAAAAYBAwABAAAAAQAAABEBBAABAAAAIwEAABUBAwABAAAAAQAAABYB"
    "BAABAAAABQAAABcBBAABAAAAIwAAABoBBQABAAAAAAIAABsBBQABAAAACAIAACgBAwABAAAAAQAAABACAAABAAAAAQAAAAEAAAAB"
    "AAAADAAAAQQAAQAAAAcAAAABAQQAAQAAAAUAAAACAQMAAQAAAAgAAAADAQMAAQAAAAEAAAAGAQMAAQAAAAEAAAARAQQAAQAAAEYB"
    "AAAVAQMAAQAAAAEAAAAWAQQAAQAAAAUAAAAXAQQAAQAAACMAAAAaAQUAAQAAAAACAAAbAQUAAQAAAAgCAAAoAQMAAQAAAAEAAAAA"
    "AAAAAQAAAAEAAAABAAAAAQAAAA=="
)


def test_tiff_declaring_too_many_strips_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "strips.tiff"
    path.write_bytes(base64.b64decode("".join(MANY_STRIPS)))
    with pytest.raises(InputError, match="TIFF declares 734005 strips/tiles"):
        read_image(path)
