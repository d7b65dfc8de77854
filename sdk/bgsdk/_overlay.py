"""Quick-look pictures: the target view in grey, defect pixels tinted red, defect boxes in yellow.

For people, not for machines -- the float32 heatmap TIFF and the defect list are
the product output. numpy only; PNGs are written by :mod:`bgsdk._png` (no Pillow).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ._defects import Defect
from ._png import write_png as _write_png

__all__ = ["RED", "BOX", "ALPHA", "overlay_rgb", "draw_boxes", "mask_png", "pillow_available", "write_png"]

RED = np.array([255.0, 0.0, 0.0], dtype=np.float32)
#: Box colour (yellow: visible on grey and on red).
BOX = np.array([255, 255, 0], dtype=np.uint8)
#: Weight of the red tint on defect pixels; the target stays visible under it.
ALPHA = 0.6


def draw_boxes(rgb: np.ndarray, defects: Sequence[Defect], colour: np.ndarray = BOX) -> np.ndarray:
    """Draw each defect's bounding box, one pixel outside it (clipped), on ``rgb`` in place."""
    h, w = rgb.shape[:2]
    for d in defects:
        x0, y0, x1, y1 = d.bbox
        x0, y0, x1, y1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, w - 1), min(y1 + 1, h - 1)
        rgb[y0, x0 : x1 + 1] = colour
        rgb[y1, x0 : x1 + 1] = colour
        rgb[y0 : y1 + 1, x0] = colour
        rgb[y0 : y1 + 1, x1] = colour
    return rgb


def overlay_rgb(
    image: np.ndarray, heatmap: np.ndarray, threshold: float = 0.5, defects: Sequence[Defect] = ()
) -> np.ndarray:
    """``(H,W,3)`` uint8: grey target (``image[0]``, 0..255), ``heatmap > threshold`` tinted red, boxes."""
    if image.ndim != 3 or image.shape[1:] != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} do not match")
    grey = np.clip(image[0].astype(np.float32), 0.0, 255.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    m = heatmap > np.float32(threshold)
    rgb[m] = (1.0 - ALPHA) * rgb[m] + ALPHA * RED
    return draw_boxes(np.rint(rgb).astype(np.uint8), defects)


def mask_png(heatmap: np.ndarray, threshold: float) -> np.ndarray:
    """``(H,W)`` uint8: 255 where ``heatmap > threshold``, else 0."""
    out: np.ndarray = np.where(np.asarray(heatmap) > np.float32(threshold), np.uint8(255), np.uint8(0))
    return out


def pillow_available() -> bool:
    """Kept for callers of the old API; PNG writing no longer needs Pillow."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Atomically write an ``(H,W,3)`` or ``(H,W)`` uint8 array as PNG."""
    return _write_png(path, rgb)
