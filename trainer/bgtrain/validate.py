"""Validation on full images, tiled and stitched exactly as the deployed graph does.

Patch-level numbers would flatter the model (no borders, no stitching); the
product runs on whole strips, so validation does too. The classical
double-detection baseline is scored on the same images so every report says
whether the model earns its keep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bgsdk.io import read_image, read_mask
from bgsdk.tiling import Tiling

from .infer import sliding_window
from .layout import Sample, labelled_split
from bgsdk.metrics import SegMetrics, double_detection, evaluate

__all__ = ["EvalImage", "EvalSet", "load_eval_set", "validate", "baseline", "metrics_dict"]


@dataclass(frozen=True)
class EvalImage:
    sample: Sample
    image: np.ndarray  # (3,H,W) float32 0..255
    mask: np.ndarray | None  # (H,W) bool


@dataclass(frozen=True)
class EvalSet:
    split: str
    images: list[EvalImage]

    def __len__(self) -> int:
        return len(self.images)


def load_eval_set(root: str | Path, split: str | None = None) -> EvalSet | None:
    """``valid`` if present, else ``test``; None if neither has images."""
    for name in [split] if split else ["valid", "test"]:
        samples = labelled_split(root, name)
        if samples:
            imgs = [
                EvalImage(s, read_image(s.path), read_mask(s.mask_path) if s.mask_path else None) for s in samples
            ]
            return EvalSet(name, imgs)
    return None


def heatmaps(model: nn.Module, eval_set: EvalSet, tiling: Tiling, device: torch.device, batch: int = 4) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for i in range(0, len(eval_set), batch):
        chunk = eval_set.images[i : i + batch]
        x = torch.from_numpy(np.stack([e.image for e in chunk]) / np.float32(255.0)).to(device)
        out += list(sliding_window(model, x, tiling).cpu().numpy())
    return out


def validate(model: nn.Module, eval_set: EvalSet, tiling: Tiling, device: torch.device) -> SegMetrics:
    hms = heatmaps(model, eval_set, tiling, device)
    return evaluate(hms, [e.mask for e in eval_set.images], [e.sample.defective for e in eval_set.images])


def baseline(eval_set: EvalSet) -> SegMetrics:
    """Double detection min(|T-R1|,|T-R2|)/255 scored like the model."""
    hms = [double_detection(e.image) / np.float32(255.0) for e in eval_set.images]
    return evaluate(hms, [e.mask for e in eval_set.images], [e.sample.defective for e in eval_set.images])


def metrics_dict(m: SegMetrics, prefix: str = "") -> dict[str, float | int | None]:
    return {f"{prefix}{k}": v for k, v in asdict(m).items()}
