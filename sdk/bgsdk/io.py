"""Reading strips from disk or memory into one canonical array.

Everything downstream (training, verification, the SDK) works on ``(3, H, W)``
float32 in 0..255 -- target, ref1, ref2 -- so every layout rule lives here.

Accepted input (documented rule):

* TIFF, ``.npy``, or an array, with 3 or 4 channels, channel-first ``(C,H,W)``
  or channel-last ``(H,W,C)``. Channel 3 (the production mask) is dropped.
  A shape with 3/4 at both ends, e.g. ``(3,H,4)``, is read channel-first (the production layout).
* dtype float16/32/64: values taken as they are (expected 0..255, not rescaled);
  uint8: as is; uint16: divided by 257, so 0..65535 maps onto 0..255 exactly.
  Anything else (signed ints, bool, complex) is rejected.
* PNG/JPG/BMP (older data sets, needs Pillow): 3 colour channels stored as
  B,G,R = target, ref1, ref2 (the OpenCV convention of the research code);
  an alpha channel is ignored.
* NaN/Inf anywhere is rejected: it would silently poison every patch it touches.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InputError

__all__ = [
    "TIFF_SUFFIXES",
    "PIL_SUFFIXES",
    "IMAGE_SUFFIXES",
    "read_image",
    "read_mask",
    "to_chw",
    "write_tiff",
    "atomic_write",
    "list_images",
]

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES + (".npy",)


def _to_float(arr: np.ndarray, source: str | Path | None) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    if arr.dtype == np.uint16:
        scaled: np.ndarray = arr.astype(np.float32) / np.float32(257.0)
        return scaled
    if arr.dtype.kind == "f":
        out = arr.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).sum())
            raise InputError(source, f"contains {bad} NaN/Inf value(s)")
        return out
    raise InputError(
        source,
        f"unsupported pixel type {arr.dtype}: use float32 (0..255), uint8 or uint16",
    )


def to_chw(array: Any, source: str | Path | None = None) -> np.ndarray:
    """Any accepted array layout -> contiguous ``(3,H,W)`` float32 (target, ref1, ref2)."""
    try:
        arr = np.asarray(array)
    except Exception as exc:  # e.g. ragged nested lists
        raise InputError(source, f"cannot be read as an array ({exc})") from None
    if arr.dtype == object:
        raise InputError(source, "is not a numeric array")
    if arr.ndim != 3:
        raise InputError(
            source,
            f"expected a 3-D image (C,H,W) or (H,W,C) with 3 or 4 channels, got shape {tuple(arr.shape)}",
        )
    if arr.shape[0] in (3, 4):
        chw = arr[:3]
    elif arr.shape[-1] in (3, 4):
        chw = np.moveaxis(arr[..., :3], -1, 0)
    else:
        raise InputError(
            source,
            f"expected 3 or 4 channels (target, ref1, ref2[, mask]) first or last, got shape {tuple(arr.shape)}",
        )
    if chw.shape[1] == 0 or chw.shape[2] == 0:
        raise InputError(source, f"image is empty (shape {tuple(arr.shape)})")
    return np.ascontiguousarray(_to_float(chw, source))


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        return tifffile.imread(path)
    except Exception as exc:
        raise InputError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from None


def _read_pil(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise InputError(path, "reading PNG/JPG needs Pillow: pip install 'bgsdk[images]'") from None
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB"))
            elif mode in ("I;16", "I;16B", "I;16L", "L", "LA", "P", "1", "I", "F"):
                raise InputError(path, f"expected a 3-channel colour image, got mode {mode!r} (1 channel)")
            else:
                rgb = np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable image ({type(exc).__name__}: {exc})") from None
    # File order B,G,R = target, ref1, ref2; Pillow gives R,G,B.
    bgr: np.ndarray = rgb[..., ::-1]
    return bgr


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr: np.ndarray = np.load(path, allow_pickle=False)
        return arr
    except Exception as exc:
        raise InputError(path, f"not a readable .npy array ({type(exc).__name__}: {exc})") from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, not an image file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")


_READERS: dict[str, Callable[[Path], np.ndarray]] = {
    **{s: _read_tiff for s in TIFF_SUFFIXES},
    **{s: _read_pil for s in PIL_SUFFIXES},
    ".npy": _read_npy,
}


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a strip file into ``(3,H,W)`` float32, 0..255 (target, ref1, ref2)."""
    p = Path(path)
    _check_file(p)
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise InputError(p, f"unsupported file type {p.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    return to_chw(reader(p), p)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a ground-truth mask (any single-channel image; > 0 is defect) as ``(H,W)`` bool."""
    p = Path(path)
    _check_file(p)
    suffix = p.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        arr = _read_tiff(p)
    elif suffix in PIL_SUFFIXES:
        try:
            from PIL import Image

            with Image.open(p) as im:
                arr = np.asarray(im.convert("L"))
        except ImportError:
            raise InputError(p, "reading PNG masks needs Pillow: pip install 'bgsdk[images]'") from None
        except Exception as exc:
            raise InputError(p, f"not a readable mask image ({type(exc).__name__}: {exc})") from None
    elif suffix == ".npy":
        arr = _read_npy(p)
    else:
        raise InputError(p, f"unsupported mask file type {p.suffix!r}")
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise InputError(p, f"expected a 2-D mask, got shape {tuple(arr.shape)}")
    return arr > 0


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Write through a temp file in the same folder, then rename.

    A crash (or a failed verification) never leaves a half-written artifact
    under the final name; ``os.replace`` is atomic on POSIX and Windows.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the artifact the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def write_tiff(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Atomically write an array as an (uncompressed) TIFF."""
    import tifffile

    return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array, photometric="minisblack"))


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(d, "folder not found")
    return sorted(
        p for p in d.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
