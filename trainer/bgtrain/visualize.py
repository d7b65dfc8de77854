"""The 7-panel visual check (SPEC section 2): what the model sees next to what it says.

Panels, left to right: target, ref1, ref2, |T-R1|, |T-R2|, double detection
``min(|T-R1|,|T-R2|)`` and the model heatmap. The three difference panels share
one colour scale, so a pattern residue that shows in one difference but not in
the double detection is visibly suppressed; the heatmap is on a fixed 0..1 scale
so figures of different images and runs compare directly.

Uses matplotlib's object API with the Agg canvas (no pyplot): nothing is
registered in pyplot's global figure list, so a training run that draws
hundreds of figures leaks none, and it works headless.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bgsdk.io import atomic_write, to_chw

from .metrics import double_detection

__all__ = ["seven_panel", "PANEL_TITLES"]

PANEL_TITLES = ("target", "ref1", "ref2", "|T-R1|", "|T-R2|", "double det.", "model")


def seven_panel(
    image: np.ndarray,
    heatmap: np.ndarray,
    path: str | os.PathLike[str],
    mask: np.ndarray | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save the 7-panel PNG for one ``(3,H,W)`` 0..255 image and its ``(H,W)`` heatmap; returns the path.

    If ``mask`` (H,W) is given its outline is drawn on the heatmap panel.
    """
    img = to_chw(image, "image")
    h, w = img.shape[1:]
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.shape != (h, w):
        raise ValueError(f"heatmap shape {hm.shape} does not match the image ({h}, {w})")
    m = None
    if mask is not None:
        m = np.asarray(mask) > 0
        if m.shape != (h, w):
            raise ValueError(f"mask shape {m.shape} does not match the image ({h}, {w})")

    d1 = np.abs(img[0] - img[1])
    d2 = np.abs(img[0] - img[2])
    dd = double_detection(img)
    diff_max = max(float(d1.max()), float(d2.max()), 1.0)

    panels: list[tuple[np.ndarray, str, float, float]] = [
        (img[0], "gray", 0.0, 255.0),
        (img[1], "gray", 0.0, 255.0),
        (img[2], "gray", 0.0, 255.0),
        (d1, "magma", 0.0, diff_max),
        (d2, "magma", 0.0, diff_max),
        (dd, "magma", 0.0, diff_max),
        (hm, "inferno", 0.0, 1.0),
    ]

    # Panel size follows the image aspect: a 976x176 strip gives tall, narrow panels.
    panel_h = 8.0 if h >= w else 2.6
    panel_w = max(1.2, panel_h * w / h)
    fig = Figure(figsize=(7 * panel_w + 1.0, panel_h + (0.9 if title else 0.6)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 7)
    for ax, name, (arr, cmap, vmin, vmax) in zip(axes, PANEL_TITLES, panels):
        im = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if name in ("double det.", "model"):
            fig.colorbar(im, ax=ax, fraction=0.08, pad=0.02)
    if m is not None and m.any():
        axes[-1].contour(m.astype(np.float32), levels=[0.5], colors="cyan", linewidths=0.8)
    if title:
        fig.suptitle(title, fontsize=10)

    def _write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")

    try:
        return atomic_write(path, _write)
    finally:
        fig.clear()
