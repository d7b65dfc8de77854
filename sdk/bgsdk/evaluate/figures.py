"""The 7-panel figures of ``bgsdk evaluate --figures`` (and of the HTML report): one style, numpy only.

Per image: target, ref1, ref2, |T-R1|, |T-R2|, double detection and the model's
heatmap side by side (:func:`bgsdk.evaluate.panels.seven_panel`), with the defects
the model reports at its operating point in yellow and the ground-truth defects in
green, on the target and heatmap panels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._dataset_layout import sample_image
from .._defects import Defect, find_defects
from .._png import write_png
from .evaluation import Evaluation, MethodResult
from .panels import seven_panel

__all__ = ["FIGURE_SUFFIX", "method_panel", "write_figures"]

FIGURE_SUFFIX = ".panels.png"


def _gt_boxes(m: MethodResult, index: int) -> list[Defect]:
    """The ground-truth components of image ``index`` as boxes (drawn in green)."""
    return [
        Defect(k + 1, g.centroid[0], g.centroid[1], g.bbox, g.area, g.peak, g.peak, None)
        for k, g in enumerate(x for x in m.gt if x.image_index == index)
    ]


def method_panel(m: MethodResult, sample: Any, index: int, step: int = 2) -> tuple[np.ndarray, tuple[Defect, ...]]:
    """``(7-panel RGB, defects found)`` of image ``index`` (``sample``: an evaluation sample, with its template(s)
    when they are separate files) under method ``m``'s operating point."""
    img = sample_image(sample)
    heat = m.heatmaps[index]
    found = find_defects(heat, m.point.threshold, m.point.min_area, img)
    return seven_panel(img, heat, found, _gt_boxes(m, index), step=step), found


def write_figures(ev: Evaluation, folder: Path) -> list[Path]:
    """One full-resolution 7-panel PNG per image and model: ``folder/<stem>.panels.png`` (one model) or
    ``folder/<model stem>/<stem>.panels.png`` (several); returns the files written."""
    models = [m for m in ev.methods if m.kind == "model"]
    written = []
    for m in models:
        where = folder if len(models) == 1 else folder / Path(m.name).stem
        where.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(ev.dataset.samples):
            rgb, _ = method_panel(m, s, i, step=1)
            written.append(write_png(where / f"{s.path.stem}{FIGURE_SUFFIX}", rgb))
    return written
