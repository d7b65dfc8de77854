"""Reading images from disk or memory into one canonical array.

Everything downstream (training, verification, the SDK) works on ``(3, H, W)``
float32 in 0..255 -- target, ref1, ref2 -- so every layout rule lives here.

Accepted input (documented rule, docs/sdk.md "Input images"):

* TIFF, ``.npy``, or an array, with 1 to 4 channels, channel-first ``(C,H,W)``
  or channel-last ``(H,W,C)``; a 2-D array is one channel. The first axis wins
  when both ends could be channels (``(3,H,4)`` is channel-first, the production layout).
  - 3 channels: target, ref1, ref2; a 4th (the production mask) is dropped;
  - 2 channels: a (test, template) pair -> target, template, template;
  - 1 channel: a die on its own. It needs its reference(s) (:func:`combine`), except
    where a clean image is all that is wanted (training, build checks:
    ``single="replicate"`` -> the image as target and both references).
* dtype float16/32/64: values taken as they are (expected 0..255, not rescaled);
  uint8: as is; uint16: divided by 257, so 0..65535 maps onto 0..255 exactly.
  Anything else (signed ints, bool, complex) is rejected.
* PNG/JPG/BMP (older data sets, needs Pillow): 3 colour channels stored as
  B,G,R = target, ref1, ref2 (the OpenCV convention of the research code);
  an alpha channel is ignored; a grey file (8 or 16 bit) is one channel.
* Colour order of a 3-channel **array** (:data:`CHANNEL_ORDERS`): ``"trr"`` (the
  default) and ``"bgr"`` both take channel 0 as the target (``cv2.imread`` of a data-set
  PNG gives exactly that); ``"rgb"`` reverses the channels (PIL, imageio and matplotlib
  decode a data-set PNG as R,G,B = ref2, ref1, target).
* NaN/Inf anywhere is rejected: it would silently poison every patch it touches.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InputError, check_file

__all__ = [
    "CHANNEL_ORDERS",
    "SINGLE_CHANNEL_RULES",
    "MAX_DECODED_BYTES",
    "TIFF_SUFFIXES",
    "PIL_SUFFIXES",
    "IMAGE_SUFFIXES",
    "read_image",
    "read_planes",
    "read_mask",
    "image_shape",
    "to_chw",
    "to_planes",
    "expand_views",
    "combine",
    "is_ambiguous_colour",
    "write_tiff",
    "atomic_write",
    "atomic_write_many",
    "remove_stale_temps",
    "list_images",
]

# A file declaring more pixels than this is refused before anything is decoded (a decompression bomb:
# a few bytes claiming gigapixels). 256 MiB is ~90x a production strip (4x976x176 float32, 2.7 MB).
MAX_DECODED_BYTES = 1 << 28
# More pages than this is not a strip file (production TIFFs have 1-4).
MAX_TIFF_PAGES = 4096
# Nor this many strips/tiles (a 976-row strip, one row per strip, 4 planes: 3,904). A 700-byte file
# declaring 734,005 one-row strips kept tifffile busy for seconds (found by make fuzz).
MAX_TIFF_SEGMENTS = 1 << 16

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES + (".npy",)

#: Colour orders of a 3-channel array (see the module docstring).
CHANNEL_ORDERS = ("trr", "bgr", "rgb")
#: What a single-channel image becomes without references: an error, or (a clean image) all three views.
SINGLE_CHANNEL_RULES = ("error", "replicate")


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


def _channel_layout(shape: tuple[int, ...], source: str | Path | None) -> tuple[str, int]:
    """``(layout, channels)`` of an image shape: ``"2d"``, ``"first"`` or ``"last"`` (the documented rule)."""
    if len(shape) == 2:
        return "2d", 1
    if len(shape) != 3:
        raise InputError(
            source,
            f"expected a 3-D image (C,H,W) or (H,W,C) with 1 to 4 channels, or a 2-D single-channel image, "
            f"got shape {tuple(shape)}",
        )
    if 1 <= shape[0] <= 4:
        return "first", shape[0]
    if 1 <= shape[-1] <= 4:
        return "last", shape[-1]
    raise InputError(
        source,
        f"expected 1 to 4 channels (target, ref1, ref2[, mask]) first or last, got shape {tuple(shape)}",
    )


def _as_array(array: Any, source: str | Path | None) -> np.ndarray:
    try:
        arr = np.asarray(array)
    except Exception as exc:  # e.g. ragged nested lists
        raise InputError(source, f"cannot be read as an array ({exc})") from None
    if arr.dtype == object:
        raise InputError(source, "is not a numeric array")
    return arr


def to_planes(array: Any, source: str | Path | None = None) -> np.ndarray:
    """Any accepted array layout -> contiguous ``(C,H,W)`` float32 with C = 1, 2 or 3 (a 4th channel dropped)."""
    arr = _as_array(array, source)
    layout, channels = _channel_layout(arr.shape, source)
    if layout == "2d":
        chw = arr[None]
    elif layout == "first":
        chw = arr[:3]
    else:
        chw = np.moveaxis(arr[..., :3], -1, 0)
    if chw.shape[1] == 0 or chw.shape[2] == 0:
        raise InputError(source, f"image is empty (shape {tuple(arr.shape)})")
    return np.ascontiguousarray(_to_float(chw, source))


def expand_views(planes: np.ndarray, source: str | Path | None = None, single: str = "error") -> np.ndarray:
    """``(C,H,W)`` planes -> ``(3,H,W)`` target, ref1, ref2: 2 -> (t, r, r); 1 -> see ``single``."""
    if single not in SINGLE_CHANNEL_RULES:
        raise ValueError(f"single must be one of {SINGLE_CHANNEL_RULES}, got {single!r}")
    c = planes.shape[0]
    if c == 3:
        return planes
    if c == 2:
        return np.ascontiguousarray(planes[[0, 1, 1]])
    if single == "replicate":
        return np.ascontiguousarray(np.repeat(planes, 3, axis=0))
    raise InputError(
        source,
        "is a single-channel image: give its reference image(s) too (refs=[...] in Python, --refs DIR on the "
        "command line), or store target and references as channels of one image",
    )


def _ordered(planes: np.ndarray, channel_order: str | None) -> np.ndarray:
    if channel_order is None or channel_order in ("trr", "bgr") or planes.shape[0] != 3:
        return planes
    if channel_order == "rgb":
        return np.ascontiguousarray(planes[::-1])
    raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")


def to_chw(
    array: Any, source: str | Path | None = None, *, channel_order: str | None = None, single: str = "error"
) -> np.ndarray:
    """Any accepted array layout -> contiguous ``(3,H,W)`` float32 (target, ref1, ref2).

    ``channel_order`` (3-channel arrays; :data:`CHANNEL_ORDERS`): ``None``/``"trr"``/``"bgr"``
    keep channel 0 as the target, ``"rgb"`` reverses the three. ``single``: what a
    1-channel image becomes (:data:`SINGLE_CHANNEL_RULES`).
    """
    if channel_order is not None and channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    return expand_views(_ordered(to_planes(array, source), channel_order), source, single)


def is_ambiguous_colour(array: Any) -> bool:
    """A channel-last uint8 3-channel array: it may come from OpenCV (B,G,R) or from PIL/imageio (R,G,B)."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3:
        return False
    layout, channels = ("first", 0) if 1 <= array.shape[0] <= 4 else ("last", array.shape[-1])
    return layout == "last" and channels == 3


def _grey(array: Any, source: str | Path | None) -> np.ndarray:
    """One die as ``(H,W)`` float32: a 1-channel image, or a colour one whose channels are all equal."""
    planes = to_planes(array, source)
    if planes.shape[0] == 1 or all(np.array_equal(planes[0], planes[c]) for c in range(1, planes.shape[0])):
        die: np.ndarray = planes[0]
        return die
    raise InputError(
        source,
        f"expected a single-channel image (one die) next to references, got {planes.shape[0]} different channels",
    )


def _die(x: Any, label: str) -> tuple[str | None, np.ndarray]:
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        return os.fspath(p), _grey(read_planes(p), p)
    return None, _grey(x, label)


def combine(target: Any, refs: Sequence[Any], source: str | None = None) -> np.ndarray:
    """Separate die images -> ``(3,H,W)`` float32: (target, ref1, ref2), or (target, ref, ref) for one reference.

    Each is a path or an array holding one die (1 channel, or a colour file whose
    channels are equal, as grey JPEGs often are). Sizes must agree: an error names
    both files and both sizes.
    """
    if isinstance(refs, (str, os.PathLike, np.ndarray)) or len(refs) not in (1, 2):
        n = "a single path/array" if isinstance(refs, (str, os.PathLike, np.ndarray)) else f"{len(refs)} item(s)"
        raise InputError(source or "refs", f"refs must be a list of 1 or 2 reference images, got {n}")
    t_src, t = _die(target, source or "target")
    dies = [t]
    for k, r in enumerate(refs):
        r_src, d = _die(r, f"refs[{k}]")
        if d.shape != t.shape:
            raise InputError(
                r_src or f"refs[{k}]",
                f"reference is {d.shape[0]}x{d.shape[1]}, its target {t_src or source or 'array'} is "
                f"{t.shape[0]}x{t.shape[1]}",
            )
        dies.append(d)
    if len(dies) == 2:
        dies.append(dies[1])
    return np.ascontiguousarray(np.stack(dies))


def _check_decoded_size(path: Path, shape: tuple[int, ...], itemsize: int, what: str) -> None:
    """Refuse, before decoding, a file that declares more than :data:`MAX_DECODED_BYTES` of pixels."""
    nbytes = math.prod(int(d) for d in shape) * int(itemsize)
    if nbytes > MAX_DECODED_BYTES:
        raise InputError(
            path,
            f"{what} declares {'x'.join(str(int(d)) for d in shape)} pixels ({nbytes} bytes decoded), over the "
            f"{MAX_DECODED_BYTES >> 20} MiB limit for one image (a decompression bomb?)",
        )


def _tiff_chain_problem(path: Path, max_pages: int = MAX_TIFF_PAGES) -> str | None:
    """Walk the TIFF's chain of image directories (IFDs) by offsets only: None if it ends, else why not.

    tifffile follows this chain itself and only looks for a loop at its 100th page, so a
    corrupt file whose chain loops back later makes it spin forever. Checked here first:
    every IFD offset inside the file, no offset twice, at most ``max_pages`` pages.
    """
    with open(path, "rb") as f:
        head = f.read(16)
        size = path.stat().st_size
        if head[:2] not in (b"II", b"MM") or len(head) < 8:
            return None  # not TIFF-shaped: tifffile reports it
        e = "<" if head[:2] == b"II" else ">"
        version = struct.unpack(e + "H", head[2:4])[0]
        if version == 42:
            offset = struct.unpack(e + "I", head[4:8])[0]
            count_fmt, count_size, entry_size, next_fmt = e + "H", 2, 12, e + "I"
        elif version == 43 and len(head) >= 16:
            offset = struct.unpack(e + "Q", head[8:16])[0]
            count_fmt, count_size, entry_size, next_fmt = e + "Q", 8, 20, e + "Q"
        else:
            return None
        seen: set[int] = set()
        while offset:
            if offset in seen:
                return f"TIFF page chain loops back to byte {offset} (corrupt file)"
            if len(seen) >= max_pages:
                return f"TIFF has more than {max_pages} pages"
            if offset + count_size > size:
                return None  # dangling offset: tifffile stops there and reports it
            seen.add(offset)
            f.seek(offset)
            (count,) = struct.unpack(count_fmt, f.read(count_size))
            at = offset + count_size + count * entry_size
            if at + struct.calcsize(next_fmt) > size:
                return None
            f.seek(at)
            (offset,) = struct.unpack(next_fmt, f.read(struct.calcsize(next_fmt)))
    return None


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        problem = _tiff_chain_problem(path)
        if problem is not None:
            raise InputError(path, problem)
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise InputError(path, "TIFF holds no image")
            series = tf.series[0]
            _check_decoded_size(path, tuple(series.shape), np.dtype(series.dtype).itemsize, "TIFF")
            segments = math.prod(tf.pages.first.chunked) * max(1, len(series.pages))
            if segments > MAX_TIFF_SEGMENTS:  # tifffile walks every strip/tile in Python, present or not
                raise InputError(
                    path, f"TIFF declares {segments} strips/tiles (over {MAX_TIFF_SEGMENTS}; corrupt file?)"
                )
            arr: np.ndarray = series.asarray()
            return arr
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from None


_GREY_MODES = ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I", "F")


def _pil_grey(im: Any, path: Path) -> np.ndarray:
    """A grey image's single channel: 8/16-bit as uint8/uint16, 32-bit int (PNG 16-bit) as uint16, float as is."""
    mode = im.mode
    if mode in ("L", "LA", "1"):
        return np.asarray(im.convert("L"))
    arr = np.asarray(im)
    if arr.dtype.kind in "iu":
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise InputError(path, f"grey image values outside 0..65535 (mode {mode!r})")
        return arr.astype(np.uint16)
    return arr


def _read_pil(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise InputError(path, "reading PNG/JPG needs Pillow: pip install 'bgsdk[images]'") from None
    try:
        with Image.open(path) as im:
            # RGB decoded, then float32: 12 bytes per pixel by the time it is an image here.
            _check_decoded_size(path, (im.size[1], im.size[0], 3), 4, "image")
            im.load()
            if im.mode in _GREY_MODES:
                return _pil_grey(im, path)  # one channel: (H,W)
            rgb = np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable image ({type(exc).__name__}: {exc})") from None
    # File order B,G,R = target, ref1, ref2; Pillow gives R,G,B.
    bgr: np.ndarray = rgb[..., ::-1]
    return bgr


def _npy_header(path: Path) -> None:
    """Check the header's shape against the file size and the decode limit before numpy allocates."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(f)
        data_bytes = path.stat().st_size - f.tell()
    if dtype.hasobject:
        raise InputError(path, "holds Python objects (a pickled .npy); only numeric arrays are read")
    _check_decoded_size(path, tuple(shape), dtype.itemsize, ".npy")
    declared = math.prod(shape) * dtype.itemsize
    if declared > data_bytes:
        raise InputError(
            path, f"truncated .npy: the header declares {declared} bytes of data, the file has {data_bytes}"
        )


def _read_npy(path: Path) -> np.ndarray:
    try:
        _npy_header(path)
        arr: np.ndarray = np.load(path, allow_pickle=False)
        return arr
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable .npy array ({type(exc).__name__}: {exc})") from None


def _check_file(path: Path) -> None:
    check_file(path, InputError, "an image file")


_READERS: dict[str, Callable[[Path], np.ndarray]] = {
    **{s: _read_tiff for s in TIFF_SUFFIXES},
    **{s: _read_pil for s in PIL_SUFFIXES},
    ".npy": _read_npy,
}


def _read_raw(path: str | os.PathLike[str]) -> tuple[Path, np.ndarray]:
    p = Path(path)
    _check_file(p)
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise InputError(p, f"unsupported file type {p.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    return p, reader(p)


def read_planes(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file into ``(C,H,W)`` float32, 0..255, C = 1, 2 or 3 (as stored; a 4th channel dropped)."""
    p, raw = _read_raw(path)
    return to_planes(raw, p)


def read_image(path: str | os.PathLike[str], *, single: str = "error") -> np.ndarray:
    """Read an image file into ``(3,H,W)`` float32, 0..255 (target, ref1, ref2).

    A 2-channel file is a (test, template) pair; a 1-channel file follows ``single``
    (:data:`SINGLE_CHANNEL_RULES`): an error by default, ``"replicate"`` for a clean image.
    """
    p, raw = _read_raw(path)
    return expand_views(to_planes(raw, p), p, single)


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header where the format allows (no pixel decoding)."""
    p = Path(path)
    _check_file(p)
    suffix = p.suffix.lower()
    try:
        if suffix in PIL_SUFFIXES:
            from PIL import Image

            with Image.open(p) as im:
                return int(im.size[1]), int(im.size[0])
        if suffix == ".npy":
            _npy_header(p)
            with open(p, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = tuple(read(f)[0])
            return _hw(shape, p)
        if suffix in TIFF_SUFFIXES:
            import tifffile

            problem = _tiff_chain_problem(p)
            if problem is not None:
                raise InputError(p, problem)
            with tifffile.TiffFile(p) as tf:
                if tf.series:
                    return _hw(tuple(tf.series[0].shape), p)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(p, f"not a readable image ({type(exc).__name__}: {exc})") from None
    return _hw(read_planes(p).shape, p)  # anything else: decode, and let the reader name the problem


def _hw(shape: tuple[int, ...], source: Path) -> tuple[int, int]:
    layout, _ = _channel_layout(shape, source)
    h, w = (shape[0], shape[1]) if layout in ("2d", "last") else (shape[1], shape[2])
    return int(h), int(w)


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


def _temp_prefix(final: Path) -> str:
    return f".{final.name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists (someone else's) or not a pid we can judge: leave its file alone
    return True


def remove_stale_temps(final: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files of ``final`` left by a writer that died (SIGKILL, power loss).

    Temp names are ``.<name>.<pid>.<random>.tmp``; one whose pid is no longer a
    running process on this machine is stale. Files of live processes, and files
    this naming does not describe, are kept. Returns what was removed.
    """
    final = Path(final)
    prefix = _temp_prefix(final)
    removed: list[Path] = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        name = p.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            try:
                if p.is_file() and not p.is_symlink():
                    p.unlink()
                    removed.append(p)
            except OSError:
                pass
    return removed


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems cannot fsync a directory; the file itself must be synced
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object], *, durable: bool = False) -> Path:
    """Write through a temp file in the same folder, then rename.

    A crash (or a failed verification) never leaves a half-written artifact
    under the final name; ``os.replace`` is atomic on POSIX and Windows. Temp
    files of writers that died are removed first (:func:`remove_stale_temps`).
    ``durable=True`` also fsyncs the file before the rename and the folder after
    it, so the new content survives a power loss (release artifacts, checkpoints);
    a process crash alone never needs it.
    """
    return atomic_write_many([(path, write)], durable=durable)[0]


def atomic_write_many(
    files: Sequence[tuple[str | os.PathLike[str], Callable[[Path], object]]], *, durable: bool = False
) -> list[Path]:
    """:func:`atomic_write` for files that belong together (a model and its manifest).

    Every temp file is written (and, if ``durable``, synced) before the first
    rename; the renames then follow back to back, in the order given. A failure
    while writing leaves every final name untouched; a crash can only fall in the
    microseconds between two renames.
    """
    finals = [Path(p) for p, _ in files]
    temps: list[Path] = []
    try:
        for final, (_, write) in zip(finals, files):
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(final)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f"{_temp_prefix(final)}{os.getpid()}.", suffix=".tmp", dir=final.parent
            )
            os.close(fd)
            tmp = Path(tmp_name)
            temps.append(tmp)
            # mkstemp creates 0600; give the file the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            write(tmp)
            if durable:
                _fsync_path(tmp)
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    if durable:
        for folder in dict.fromkeys(f.parent for f in finals):
            _fsync_path(folder, directory=True)
    return finals


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
