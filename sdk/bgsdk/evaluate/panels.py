"""The 7-panel picture of one strip (the visual check of docs/sdk.md), numpy only.

target, ref1, ref2, |T-R1|, |T-R2|, double detection min(|T-R1|,|T-R2|), model
heatmap -- side by side, with the model's defect boxes (yellow) and the
ground-truth components' boxes (green) on the target and heatmap panels.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from .._defects import Defect
from .._overlay import draw_boxes

__all__ = ["seven_panel", "heat_colours", "PANEL_TITLES"]

PANEL_TITLES = ("target", "ref1", "ref2", "|T-R1|", "|T-R2|", "double detection", "model")
GT_BOX = np.array([0, 220, 0], dtype=np.uint8)
_GAP = 4

# A perceptual dark-to-bright ramp (black -> purple -> orange -> yellow), interpolated linearly.
_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """``values`` in [0,1] -> ``(...,3)`` uint8 colours."""
    v = np.clip(np.asarray(values, np.float32), 0, 1) * (len(_STOPS) - 1)
    i = np.minimum(v.astype(np.int32), len(_STOPS) - 2)
    f = (v - i)[..., None]
    out: np.ndarray = np.rint(_STOPS[i] * (1 - f) + _STOPS[i + 1] * f).astype(np.uint8)
    return out


def _grey(x: np.ndarray, hi: float = 255.0) -> np.ndarray:
    g = np.clip(np.asarray(x, np.float32) / hi * 255.0, 0, 255)
    return np.repeat(np.rint(g).astype(np.uint8)[..., None], 3, axis=2)


def _shrink(d: Defect, step: int) -> Defect:
    x0, y0, x1, y1 = d.bbox
    return replace(d, bbox=(x0 // step, y0 // step, x1 // step, y1 // step))


def seven_panel(
    image: np.ndarray,
    heatmap: np.ndarray,
    defects: Sequence[Defect] = (),
    gt_boxes: Sequence[Defect] = (),
    step: int = 2,
) -> np.ndarray:
    """``(H/step, 7*W/step + gaps, 3)`` uint8; differences scaled to their own maximum for visibility."""
    t, r1, r2 = (np.asarray(image[i], np.float32) for i in range(3))
    d1, d2 = np.abs(t - r1), np.abs(t - r2)
    dd = np.minimum(d1, d2)
    dmax = max(float(d1.max()), float(d2.max()), 1e-6)
    panels = [
        _grey(t),
        _grey(r1),
        _grey(r2),
        _grey(d1, dmax),
        _grey(d2, dmax),
        heat_colours(dd / max(float(dd.max()), 1e-6)),
        heat_colours(heatmap),
    ]
    small = [np.ascontiguousarray(p[::step, ::step]) for p in panels]
    # Boxes after the downsampling, so one-pixel lines cannot fall between the kept rows.
    scaled = [_shrink(d, step) for d in defects]
    scaled_gt = [_shrink(d, step) for d in gt_boxes]
    for k in (0, 6):
        draw_boxes(small[k], scaled_gt, GT_BOX)
        draw_boxes(small[k], scaled)
    h, w = small[0].shape[:2]
    out = np.full((h, 7 * w + 6 * _GAP, 3), 255, np.uint8)
    for k, p in enumerate(small):
        out[:, k * (w + _GAP) : k * (w + _GAP) + w] = p
    return out
