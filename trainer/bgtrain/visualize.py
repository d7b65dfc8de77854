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
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bgsdk.evaluate.metrics import double_detection
from bgsdk.io import atomic_write, to_chw

__all__ = ["seven_panel", "PANEL_TITLES"]

PANEL_TITLES = ("target", "ref1", "ref2", "|T-R1|", "|T-R2|", "double det.", "model")


# Layout in inches: margins, gap between panels, room for panel titles, the
# figure title and the colour bars under the panels.
_MARGIN_IN, _GAP_IN, _PANEL_TITLE_IN, _TITLE_IN, _CBAR_IN = 0.1, 0.12, 0.3, 0.35, 0.6
# Panels whose colour bar is drawn (|T-R1|, |T-R2| and double det. share one scale).
_CBAR_PANELS = (3, 6)


def _panel_size(h: int, w: int, dpi: int) -> tuple[float, float]:
    """Panel size in inches: about one screen pixel per image pixel for a strip
    (a 3x3 defect stays visible), bounded so square/mvtec figures stay reasonable."""
    ph = min(max(h / dpi, 2.5), 10.0)
    pw = ph * w / h
    if pw > 3.0:
        pw, ph = 3.0, 3.0 * h / w
    return max(pw, 0.6), max(ph, 0.6)


def _layout(h: int, w: int, dpi: int, has_title: bool) -> tuple[Figure, list[Axes], list[Axes | None]]:
    """Figure with seven equal image axes in a row, placed explicitly (layout engines
    leave big gaps around tall fixed-aspect panels), and colour-bar axes under the
    panels in ``_CBAR_PANELS``."""
    pw, ph = _panel_size(h, w, dpi)
    fw = 2 * _MARGIN_IN + 7 * pw + 6 * _GAP_IN
    fh = _CBAR_IN + ph + _PANEL_TITLE_IN + (_TITLE_IN if has_title else 0.0) + _MARGIN_IN
    fig = Figure(figsize=(fw, fh), dpi=dpi)
    FigureCanvasAgg(fig)
    axes: list[Axes] = []
    caxes: list[Axes | None] = []
    for i in range(7):
        x = (_MARGIN_IN + i * (pw + _GAP_IN)) / fw
        axes.append(fig.add_axes((x, _CBAR_IN / fh, pw / fw, ph / fh)))
        caxes.append(fig.add_axes((x, 0.3 / fh, pw / fw, 0.12 / fh)) if i in _CBAR_PANELS else None)
    return fig, axes, caxes


def seven_panel(
    image: np.ndarray,
    heatmap: np.ndarray,
    path: str | os.PathLike[str],
    mask: np.ndarray | None = None,
    title: str | None = None,
    dpi: int = 120,
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

    fig, axes, caxes = _layout(h, w, dpi, bool(title))
    for ax, cax, name, (arr, cmap, vmin, vmax) in zip(axes, caxes, PANEL_TITLES, panels):
        im = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if cax is not None:
            cb = fig.colorbar(im, cax=cax, orientation="horizontal")
            cb.ax.tick_params(labelsize=7)
    if m is not None and m.any():
        axes[-1].contour(m.astype(np.float32), levels=[0.5], colors="cyan", linewidths=0.8)
    if title:
        fig.suptitle(title, fontsize=10, y=1.0 - _TITLE_IN / 2 / fig.get_figheight(), va="center")

    def _write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=dpi)

    try:
        return atomic_write(path, _write)
    finally:
        fig.clear()
