"""Fuzz targets shared by the atheris harness (``make fuzz``) and the hypothesis runs in ``make test``.

Each target takes raw bytes, turns them into an input (a file of some image type,
an array of some dtype/shape/layout, a Segmenter call) and checks the one
property that matters: the outcome is a result or a ``bgsdk`` error -- never
another exception. Targets return the outcome's name so runners can count them.
Hangs and memory are bounded by the runner (atheris ``-timeout``/``-rss_limit_mb``,
or the hypothesis runner's alarm and RSS check).

The byte decoding is this module's own (:class:`Bytes`), so the same target runs
under atheris and under hypothesis, and a crashing input can be replayed with
plain Python: ``python tests/fuzz/run.py --replay FILE``.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from bgsdk.errors import BgsdkError, InputError, InputWarning, ModelError
from bgsdk.io import read_image, to_chw

SUFFIXES = (".tiff", ".tif", ".png", ".jpg", ".bmp", ".npy", ".txt")
DTYPES = (
    "uint8",
    "uint16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint32",
    "float16",
    "float32",
    "float64",
    ">f4",
    ">u2",
    "bool",
    "complex64",
    "datetime64[s]",
    "V4",
    "S3",
    "U2",
)
SPECIALS = (np.nan, np.inf, -np.inf, -1.0, 0.0, 255.0, 256.0, 1e30, -1e30, 65535.0, 5e-324, 3.4e38)
MODEL_SIZE = (32, 32)


class Bytes:
    """Consume fuzz bytes as small decisions; past the end every decision is 0."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def int(self, n: int) -> int:
        """0 <= value < n."""
        return (self.byte() | self.byte() << 8) % n if n > 1 else 0

    def pick(self, options: tuple[object, ...]) -> object:
        return options[self.int(len(options))]

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


# ----------------------------------------------------------------------------- valid seeds
def _seed_array(b: Bytes) -> np.ndarray:
    shape = [(3, 8, 8), (8, 8, 3), (4, 8, 8), (8, 8, 4), (3, 5, 7)][b.int(5)]
    dtype = ("uint8", "uint16", "float32", "float64", "float16")[b.int(5)]
    rng = np.random.default_rng(b.int(1000))
    return (rng.uniform(0, 255, shape)).astype(dtype)


def encode(kind: str, arr: np.ndarray) -> bytes:
    """A valid file of ``kind`` ('.tiff', '.png', '.npy', ...) holding ``arr``."""
    buf = io.BytesIO()
    if kind in (".tiff", ".tif"):
        import tifffile

        tifffile.imwrite(buf, arr, photometric="minisblack")
    elif kind == ".npy":
        np.save(buf, arr, allow_pickle=False)
    elif kind in (".png", ".jpg", ".bmp"):
        from PIL import Image

        rgb = np.clip(arr[:, :, :3] if arr.shape[-1] in (3, 4) else np.moveaxis(arr[:3], 0, -1), 0, 255).astype(
            np.uint8
        )
        Image.fromarray(np.ascontiguousarray(rgb)).save(
            buf, format={".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP"}[kind]
        )
    else:
        buf.write(arr.tobytes())
    return buf.getvalue()


def _mutate(b: Bytes, data: bytes) -> bytes:
    mode = b.int(5)
    buf = bytearray(data)
    if mode == 0 and buf:  # truncate
        return bytes(buf[: b.int(len(buf))])
    if mode == 1 and buf:  # overwrite a few bytes
        for _ in range(1 + b.int(8)):
            buf[b.int(len(buf))] = b.byte()
        return bytes(buf)
    if mode == 2:  # insert fuzz bytes
        at = b.int(len(buf) + 1)
        return bytes(buf[:at]) + b.data[b.pos : b.pos + 64] + bytes(buf[at:])
    if mode == 3 and len(buf) > 8:  # overwrite a header word (sizes, offsets, counts live there)
        at = b.int(min(len(buf) - 4, 256))
        buf[at : at + 4] = bytes(b.byte() for _ in range(4))
        return bytes(buf)
    return data


# ----------------------------------------------------------------------------- targets
def target_read_image(data: bytes, folder: Path) -> str:
    """A file of a fuzzed type and content -> ``read_image``: an image or an ``InputError``."""
    b = Bytes(data)
    suffix = str(b.pick(SUFFIXES))
    if b.int(4) == 0:
        content = b.rest()  # raw bytes
    else:
        seed_kind = suffix if suffix in (".tiff", ".tif", ".npy", ".png", ".bmp", ".jpg") else ".npy"
        content = _mutate(b, encode(seed_kind, _seed_array(b)))
    fd, name = tempfile.mkstemp(suffix=suffix, dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    try:
        img = read_image(name)
    except InputError:
        return "InputError"
    finally:
        os.unlink(name)
    _check_image(img)
    return "image"


def _fuzz_array(b: Bytes) -> object:
    kind = b.int(10)
    if kind == 0:  # not an array at all
        return b.pick((None, "strip.tiff", 3.0, [[1, 2], [3]], [[[1] * 3] * 2] * 3, {"a": 1}, b"abc", ()))
    dtype = np.dtype(str(b.pick(DTYPES)))
    ndim = b.int(6)
    shape = tuple(int(b.pick((0, 1, 2, 3, 4, 5, 8, 32, 33))) for _ in range(ndim))
    n = int(np.prod(shape)) if shape else 1
    if n > 1 << 16:
        shape, n = (3, 8, 8), 192
    raw = b.rest()
    need = n * dtype.itemsize
    raw = (raw * (need // max(len(raw), 1) + 1))[:need] if raw else bytes(need)
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape).copy() if need else np.zeros(shape, dtype)
    if arr.dtype.kind == "f" and arr.size:
        flat = arr.reshape(-1)
        flat[:: max(1, arr.size // 3)] = SPECIALS[kind % len(SPECIALS)]
    layout = kind % 4
    if layout == 1 and arr.ndim:
        arr = np.asfortranarray(arr)
    elif layout == 2 and arr.ndim:
        arr = arr[::-1]
    elif layout == 3 and arr.ndim:
        arr = arr.view(arr.dtype.newbyteorder()) if arr.dtype.isnative and arr.dtype.kind in "uif" else arr
    return arr


def target_to_chw(data: bytes) -> str:
    """Any object/array -> ``to_chw``: a (3,H,W) float32 image or an ``InputError``."""
    try:
        img = to_chw(_fuzz_array(Bytes(data)))
    except InputError:
        return "InputError"
    _check_image(img)
    return "image"


def target_segmenter(data: bytes, seg: object) -> str:
    """Arrays of the model's size (and near it) in any dtype/layout/values -> ``Segmenter.run``."""
    b = Bytes(data)
    h, w = MODEL_SIZE
    shape = [(3, h, w), (h, w, 3), (4, h, w), (h, w, 4), (3, h, w + 1), (3, h - 1, w), (2, h, w)][b.int(7)]
    dtype = np.dtype(str(b.pick(("float32", "float64", "float16", "uint8", "uint16", ">f4", "int16", "bool"))))
    rng = np.random.default_rng(b.int(1 << 16))
    arr = (rng.uniform(-10, 300, shape) * (1 + b.int(4))).astype(dtype)
    if arr.dtype.kind == "f":
        flat = arr.reshape(-1)
        for _ in range(b.int(4)):
            flat[b.int(flat.size)] = SPECIALS[b.int(len(SPECIALS))]
    if b.int(2):
        arr = np.asfortranarray(arr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        try:
            r = seg.run(arr)  # type: ignore[attr-defined]
        except InputError:
            return "InputError"
        except ModelError:
            return "ModelError"
    assert r.ok and r.heatmap.shape == MODEL_SIZE and np.isfinite(r.raw).all()
    return "Result"


def _check_image(img: np.ndarray) -> None:
    assert isinstance(img, np.ndarray) and img.dtype == np.float32 and img.ndim == 3 and img.shape[0] == 3
    assert img.shape[1] > 0 and img.shape[2] > 0 and img.flags.c_contiguous
    assert np.isfinite(img).all()


def small_model(path: Path) -> Path:
    """A plain fixed-size model (no metadata) for :func:`target_segmenter` (built with onnx, once)."""
    from tests.helpers.models import make_full_model

    return make_full_model(path, *MODEL_SIZE)


TARGETS: dict[str, Callable[..., str]] = {
    "read_image": target_read_image,
    "to_chw": target_to_chw,
    "segmenter": target_segmenter,
}
ALLOWED = {"image", "Result", "InputError", "ModelError"}
__all__ = ["TARGETS", "ALLOWED", "Bytes", "encode", "small_model", "BgsdkError"]
