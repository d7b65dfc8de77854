"""A quick-look PNG: the target view in grey with defect pixels tinted red.

For people, not for machines -- the float32 heatmap TIFF is the product output.
The colour maths is numpy only; writing the PNG needs Pillow (extra ``images``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import atomic_write

__all__ = ["RED", "ALPHA", "overlay_rgb", "pillow_available", "write_png"]

RED = np.array([255.0, 0.0, 0.0], dtype=np.float32)
#: Weight of the red tint on defect pixels; the target stays visible under it.
ALPHA = 0.6


def overlay_rgb(image: np.ndarray, heatmap: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``(H,W,3)`` uint8: grey target (``image[0]``, 0..255), ``heatmap > threshold`` tinted red."""
    if image.ndim != 3 or image.shape[1:] != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} do not match")
    grey = np.clip(image[0].astype(np.float32), 0.0, 255.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    m = heatmap > threshold
    rgb[m] = (1.0 - ALPHA) * rgb[m] + ALPHA * RED
    out: np.ndarray = np.rint(rgb).astype(np.uint8)
    return out


def pillow_available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Atomically write an ``(H,W,3)`` uint8 array as PNG (needs Pillow)."""
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(rgb, mode=None).save(tmp, format="PNG"))
