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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from bgsdk import __version__
from bgsdk.errors import BgsdkError
from bgsdk.io import atomic_write
from bgsdk.tiling import IMAGE_TYPES, Tiling, tiling_for

from .model import UNet

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "file_sha256",
]

FORMAT = "bgsdk.checkpoint/1"
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model_state_dict": dict,
    "img_height": int,
    "img_width": int,
    "image_type": str,
    "epoch": int,
    "seed": int,
    "width": int,
}


class CheckpointError(BgsdkError):
    """A file that is not a usable bgsdk checkpoint."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")


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

    def tiling(self, image_size: tuple[int, int] | None = None) -> Tiling:
        h, w = image_size or self.image_size
        return tiling_for(self.image_type, h, w)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
) -> Path:
    """Atomically write a checkpoint. ``extra`` holds resume state (optimizer, scheduler, RNG)."""
    module: UNet = model.module if hasattr(model, "module") else model  # type: ignore[assignment]  # DDP wrapper
    width = module.base_width
    tiling = tiling_for(image_type, *image_size)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
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
    return atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], CheckpointInfo]:
    """Load and validate; raise :class:`CheckpointError` naming the file and the problem."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(p, "file not found")
    if p.is_dir():
        raise CheckpointError(p, "is a directory, not a checkpoint file")
    if p.stat().st_size == 0:
        raise CheckpointError(p, "file is empty")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(p, "not a PyTorch checkpoint (not a torch.save zip archive)")
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
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(p, f"missing key(s) {', '.join(missing)} -- not a bgsdk training checkpoint")
    for key, typ in REQUIRED.items():
        if not isinstance(ckpt[key], typ):
            raise CheckpointError(p, f"key {key!r} has type {type(ckpt[key]).__name__}, expected {typ}")
    image_type = ckpt["image_type"]
    if image_type not in IMAGE_TYPES:
        raise CheckpointError(p, f"unknown image_type {image_type!r}")
    default = IMAGE_TYPES[image_type]
    size = ckpt.get("image_size") or [default.height, default.width]
    if ckpt["img_height"] != default.patch or ckpt["img_width"] != default.patch:
        raise CheckpointError(
            p, f"patch size {ckpt['img_height']}x{ckpt['img_width']} does not match image type {image_type!r} ({default.patch})"
        )
    info = CheckpointInfo(
        path=p,
        width=int(ckpt["width"]),
        image_type=image_type,
        patch=int(ckpt["img_height"]),
        image_size=(int(size[0]), int(size[1])),
        epoch=int(ckpt["epoch"]),
        seed=int(ckpt["seed"]),
        version=str(ckpt.get("version", "unknown")),
        stem=str(ckpt.get("stem", "plain")),
        recipe=dict(ckpt.get("train_config", {}).get("recipe") or {}) if isinstance(ckpt.get("train_config"), dict) else {},
        metrics=dict(ckpt.get("metrics") or {}),
        train_config=dict(ckpt.get("train_config") or {}),
    )
    return ckpt, info


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
