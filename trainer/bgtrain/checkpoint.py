"""Checkpoints: plain dicts of tensors and primitives, safe to load.

They load with ``torch.load(path, weights_only=True)`` -- no pickled objects --
so a checkpoint from an untrusted source cannot run code. Besides the research
fields (``model_state_dict``, ``img_height``, ``img_width`` = patch size,
``image_type``, ``epoch``, ``seed``) they carry what the build needs: the base
``width``, the full ``image_size`` and its ``tiling``, validation ``metrics``,
the producing ``version`` and the training configuration. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch

from bgsdk import __version__
from bgsdk.errors import SourceError, check_file
from bgsdk.io import atomic_write
from bgsdk.tiling import CUSTOM, IMAGE_TYPES, Tiling, tiling_for

from .model import UNet

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "FORMAT",
    "cpu_state_dict",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "file_sha256",
]

FORMAT = "bgsdk.checkpoint/1"
# A base width above this is not a UNet anyone trains (64 = production); refusing it
# keeps a hostile header from asking for absurd shapes.
MAX_WIDTH = 1024
_FIRST_CONV = "encoder.blocks.0.0.weight"  # (width, C, 3, 3): tells the width the weights really have
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model_state_dict": dict,
    "img_height": int,
    "img_width": int,
    "image_type": str,
    "epoch": int,
    "seed": int,
    "width": int,
}


class CheckpointError(SourceError):
    """A file that is not a usable bgsdk checkpoint."""

    default_source = "checkpoint"


@dataclass(frozen=True)
class CheckpointInfo:
    """Everything about a checkpoint except its weights and optimiser state."""

    path: Path
    width: int
    image_type: str
    patch: int
    image_size: tuple[int, int]
    epoch: int
    seed: int
    version: str
    stem: str = "plain"
    recipe: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    train_config: Mapping[str, Any] = field(default_factory=dict)
    # > 0: the weights are train-model's moving average with this decay; 0: raw weights (also every
    # checkpoint from before the average existed).
    ema_decay: float = 0.0

    def tiling(self, image_size: tuple[int, int] | None = None) -> Tiling:
        """The deployed tiling at the training size, or at another ``image_size`` with the same patch."""
        h, w = image_size or self.image_size
        return tiling_for(self.image_type, h, w, self.patch if self.image_type == CUSTOM else None)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights and buffers as detached CPU tensors: what a checkpoint stores."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    *,
    image_type: str,
    image_size: tuple[int, int],
    epoch: int,
    seed: int,
    metrics: Mapping[str, Any] | None = None,
    train_config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    patch: int | None = None,
) -> Path:
    """Atomically write a checkpoint. ``extra`` holds resume state (optimizer, scheduler, RNG).

    ``image_type`` is a named type or ``custom`` (any other size: ``patch`` defaults to
    :func:`bgsdk.tiling.default_patch`); the tiling of ``image_size`` is recorded with it.
    """
    module: UNet = model.module if hasattr(model, "module") else model  # type: ignore[assignment]  # DDP wrapper
    width = module.base_width
    tiling = tiling_for(image_type, *image_size, patch=patch)
    state = cpu_state_dict(module)
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "model_state_dict": state,
        "img_height": tiling.patch,
        "img_width": tiling.patch,
        "image_type": image_type,
        "image_size": [int(image_size[0]), int(image_size[1])],
        "tiling": tiling.as_dict(),
        "epoch": int(epoch),
        "seed": int(seed),
        "width": width,
        "stem": str(getattr(module, "stem_name", "plain")),
        "version": __version__,
        "metrics": dict(metrics or {}),
        "train_config": dict(train_config or {}),
    }
    if extra:
        ckpt.update(extra)
    return atomic_write(path, lambda tmp: torch.save(ckpt, tmp), durable=True)


def _check_archive(p: Path) -> None:
    """Refuse a zip whose entries would inflate far beyond the file (a zip bomb) before torch reads it.

    ``torch.save`` stores its records uncompressed, so their sizes add up to
    about the file size; a hostile archive can declare gigabytes of deflated zeros.
    """
    try:
        with zipfile.ZipFile(p) as zf:
            declared = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CheckpointError(p, f"not a PyTorch checkpoint (damaged zip archive: {exc})") from None
    limit = 2 * p.stat().st_size + (1 << 20)
    if declared > limit:
        raise CheckpointError(
            p,
            f"refused: its zip records declare {declared} bytes, far more than the {p.stat().st_size}-byte file "
            "(torch.save never compresses; a zip bomb?)",
        )


@lru_cache(maxsize=8)
def _expected_state(width: int, stem: str = "plain") -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of a width-``width`` UNet's state dict (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = UNet(base_width=width, stem=stem)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def _weights_width(state: Mapping[str, Any]) -> int | None:
    first = state.get(_FIRST_CONV)
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() == 4 else None


def _check_state_dict(
    p: Path, state: Mapping[Any, Any], width: int, stem: str = "plain", name: str = "model_state_dict"
) -> None:
    """Every tensor a width-``width`` UNet needs, with its shape and dtype, finite; nothing else.

    ``load_state_dict`` would cast a float64 or int tensor silently and report a
    shape mismatch as a multi-line RuntimeError; checked here, every problem is one
    line that names the checkpoint.
    """
    expected = _expected_state(width, stem)
    missing = [k for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    actual = _weights_width(state)
    if actual is not None and actual != width:
        raise CheckpointError(
            p,
            f"weights do not fit a width-{width} UNet: they are those of a width-{actual} UNet "
            "(the checkpoint's 'width' contradicts its weights)",
        )
    if missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        raise CheckpointError(p, f"weights do not fit a width-{width} UNet: {', '.join(parts)} key(s) in {name}")
    for key, (shape, dtype) in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(p, f"{name}[{key!r}] is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != shape:
            raise CheckpointError(
                p,
                f"weights do not fit a width-{width} UNet: {name}[{key!r}] has shape {list(value.shape)}, "
                f"needs {list(shape)}",
            )
        if value.dtype != dtype:
            raise CheckpointError(p, f"{name}[{key!r}] has dtype {value.dtype}, expected {dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(p, f"{name}[{key!r}] contains NaN/Inf: the training diverged or the file is damaged")


def _check_resume_state(p: Path, ckpt: Mapping[str, Any], width: int, stem: str = "plain") -> None:
    """The optimizer and scheduler state ``--resume`` loads: Adam moments shaped like the weights."""
    opt, sched = ckpt.get("optimizer_state_dict"), ckpt.get("scheduler_state_dict")
    if (
        not isinstance(opt, dict)
        or not isinstance(opt.get("state"), dict)
        or not isinstance(opt.get("param_groups"), list)
    ):
        raise CheckpointError(p, "optimizer_state_dict is not an optimizer state (needs 'state' and 'param_groups')")
    if not isinstance(sched, dict) or not isinstance(sched.get("last_epoch"), int):
        raise CheckpointError(p, "scheduler_state_dict is missing or has no integer 'last_epoch'")
    if "raw_model_state_dict" in ckpt:  # a weight-averaged run keeps the raw weights it trains on
        if not isinstance(ckpt["raw_model_state_dict"], Mapping):
            raise CheckpointError(p, "raw_model_state_dict is not a state dict")
        _check_state_dict(p, ckpt["raw_model_state_dict"], width, stem, "raw_model_state_dict")
        if not isinstance(ckpt.get("ema_n_averaged"), int) or ckpt["ema_n_averaged"] < 0:
            raise CheckpointError(p, "ema_n_averaged is missing or not a count (needed beside raw_model_state_dict)")
    shapes = [
        shape
        for key, (shape, dtype) in _expected_state(width, stem).items()
        if dtype.is_floating_point and not key.endswith(("running_mean", "running_var"))
    ]
    groups = opt["param_groups"]
    if not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise CheckpointError(p, "optimizer_state_dict has a parameter group without a 'params' list")
    ids = [i for g in groups for i in g["params"]]
    if sorted(ids) != list(range(len(shapes))):
        raise CheckpointError(
            p, f"optimizer_state_dict covers {len(ids)} parameters, a width-{width} UNet has {len(shapes)}"
        )
    for i, st in opt["state"].items():
        if not isinstance(i, int) or not 0 <= i < len(shapes) or not isinstance(st, dict):
            raise CheckpointError(p, f"optimizer_state_dict has a bad state entry {i!r}")
        for name, value in st.items():
            if name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if not isinstance(value, torch.Tensor) or tuple(value.shape) != shapes[i]:
                    got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise CheckpointError(
                        p, f"optimizer state {name} of parameter {i} is {got}, expected {list(shapes[i])}"
                    )
                if not bool(torch.isfinite(value).all()):
                    raise CheckpointError(p, f"optimizer state {name} of parameter {i} contains NaN/Inf")


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], CheckpointInfo]:
    """Load and validate; raise :class:`CheckpointError` naming the file and the problem."""
    p = Path(path)
    ckpt = _read_archive(p, map_location)
    _check_contents(p, ckpt)
    image_type = ckpt["image_type"]
    size = _image_size(p, ckpt)
    info = CheckpointInfo(
        path=p,
        width=int(ckpt["width"]),
        image_type=image_type,
        patch=int(ckpt["img_height"]),
        image_size=size,
        epoch=int(ckpt["epoch"]),
        seed=int(ckpt["seed"]),
        version=str(ckpt.get("version", "unknown")),
        stem=str(ckpt.get("stem", "plain")),
        recipe=dict(ckpt.get("train_config", {}).get("recipe") or {})
        if isinstance(ckpt.get("train_config"), dict)
        else {},
        metrics=dict(ckpt.get("metrics") or {}),
        train_config=dict(ckpt.get("train_config") or {}),
        ema_decay=_ema_decay(ckpt.get("train_config")),
    )
    return ckpt, info


def _image_size(p: Path, ckpt: Mapping[str, Any]) -> tuple[int, int]:
    """The training image size, checked against the image type and its patch (the tiling must plan)."""
    image_type, patch = ckpt["image_type"], ckpt["img_height"]
    if image_type != CUSTOM and image_type not in IMAGE_TYPES:
        raise CheckpointError(p, f"unknown image_type {image_type!r}")
    size = ckpt.get("image_size")
    if size is None and image_type == CUSTOM:
        raise CheckpointError(p, "a 'custom' image type needs its 'image_size' [height, width]")
    if size is None:
        size = [IMAGE_TYPES[image_type].height, IMAGE_TYPES[image_type].width]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise CheckpointError(p, f"image_size {size!r} is not [height, width]")
    expected = IMAGE_TYPES[image_type].patch if image_type != CUSTOM else patch
    if patch != expected or ckpt["img_width"] != patch:
        raise CheckpointError(
            p, f"patch size {patch}x{ckpt['img_width']} does not match image type {image_type!r} ({expected})"
        )
    try:
        tiling_for(image_type, int(size[0]), int(size[1]), patch if image_type == CUSTOM else None)
    except ValueError as exc:
        raise CheckpointError(p, f"image_size {list(size)} with patch {patch}: {exc}") from None
    return int(size[0]), int(size[1])


def _ema_decay(train_config: Any) -> float:
    value = train_config.get("ema_decay", 0.0) if isinstance(train_config, dict) else 0.0
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _read_archive(p: Path, map_location: str | torch.device) -> dict[str, Any]:
    """The checkpoint's dict, read with ``weights_only=True`` after the zip archive itself was checked."""
    check_file(p, CheckpointError, "a checkpoint file")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(p, "not a PyTorch checkpoint (not a torch.save zip archive)")
    _check_archive(p)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        detail = f" ({lines[0]})" if lines else ""
        raise CheckpointError(
            p, f"refused to load: it contains pickled objects that safe (weights_only) loading does not allow{detail}"
        ) from None
    except Exception as exc:
        raise CheckpointError(p, f"not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(p, f"expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def _check_contents(p: Path, ckpt: dict[str, Any]) -> None:
    """Required keys and their types, a plausible width and stem, weights (and resume state) of the right shapes."""
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(p, f"missing key(s) {', '.join(missing)} -- not a bgsdk training checkpoint")
    for key, typ in REQUIRED.items():
        if not isinstance(ckpt[key], typ):
            raise CheckpointError(p, f"key {key!r} has type {type(ckpt[key]).__name__}, expected {typ}")
    if not 1 <= ckpt["width"] <= MAX_WIDTH:
        raise CheckpointError(p, f"width {ckpt['width']} is not a plausible UNet base width (1..{MAX_WIDTH})")
    stem = ckpt.get("stem", "plain")
    if not isinstance(stem, str):
        raise CheckpointError(p, f"key 'stem' has type {type(stem).__name__}, expected str")
    try:
        _expected_state(ckpt["width"], stem)
    except ValueError as exc:  # an unknown stem
        raise CheckpointError(p, str(exc)) from None
    _check_state_dict(p, ckpt["model_state_dict"], ckpt["width"], stem)
    if "optimizer_state_dict" in ckpt or "scheduler_state_dict" in ckpt:
        _check_resume_state(p, ckpt, ckpt["width"], stem)


def model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[UNet, CheckpointInfo]:
    """The UNet of a checkpoint, in eval mode."""
    ckpt, info = load_checkpoint(path, map_location)
    try:
        model = UNet(base_width=info.width, stem=info.stem)
    except ValueError as exc:
        raise CheckpointError(path, str(exc)) from None
    try:
        model.load_state_dict(ckpt["model_state_dict"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(path, f"weights do not fit a width-{info.width} UNet: {detail}") from None
    return model.eval(), info
