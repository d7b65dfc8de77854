"""Per-defect detection on box annotations: the FROC curve (recall vs false alarms per image).

Pixel AP answers "how well are defect pixels ranked"; an inspection engineer asks "how
many defects are found at how many false alarms per image". This module answers that on
box annotations (torch-free; scipy for the connected components):

1. **threshold sweep**: the heatmap is thresholded just below each image's highest local
   maxima, where components appear (:func:`sweep_thresholds`; at most 200 thresholds);
2. **components**: 8-connected components of ``heatmap > t`` (``scipy.ndimage.label``)
   with at least ``min_area`` pixels;
3. **matching**: a component *hits* a box when its centroid lies inside the box and its
   area is at most :data:`AREA_FACTOR` (4) times the box's area -- a blob covering half the
   image is not a detection of the defect it happens to be centred on. A box is detected
   when at least one component hits it; a component that hits no box is a **false alarm**
   (several components on one box are one detection and no false alarm);
4. **FROC**: recall (detected boxes / boxes) and false alarms per image at each threshold;
   recall at 0.5 / 1 / 2 false alarms per image is the best recall of a threshold with at
   most that many (:meth:`FrocCurve.recall_at`), overall and per box class.

Boxes use :class:`bgsdk.annotations.Box` (inclusive pixel corners, x = column).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..annotations import Box

__all__ = ["AREA_FACTOR", "FA_POINTS", "FrocCurve", "froc_curve", "sweep_thresholds", "components", "match"]

#: A component larger than this many times the box is no hit for it.
AREA_FACTOR = 4.0
#: False alarms per image at which recall is reported.
FA_POINTS = (0.5, 1.0, 2.0)
#: Thresholds in a default sweep, and the highest local maxima per image they are drawn from.
DEFAULT_STEPS = 200
PEAKS_PER_IMAGE = 64


def components(heatmap: np.ndarray, threshold: float, min_area: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(centroids (n,2) as (x, y), areas (n,))`` of the 8-connected components of ``heatmap > threshold``."""
    from scipy import ndimage

    above = np.asarray(heatmap) > np.float32(threshold)
    if not above.any():
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    labels, n = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
    rows, cols = np.nonzero(labels)  # only the pixels above the threshold: few at the thresholds that matter
    lab = labels[rows, cols]
    areas = np.bincount(lab, minlength=n + 1)[1:]
    cy = np.bincount(lab, weights=rows, minlength=n + 1)[1:] / np.maximum(areas, 1)
    cx = np.bincount(lab, weights=cols, minlength=n + 1)[1:] / np.maximum(areas, 1)
    keep = areas >= min_area
    return np.stack([cx[keep], cy[keep]], axis=1), areas[keep]


def match(centroids: np.ndarray, areas: np.ndarray, boxes: Sequence[Box]) -> tuple[np.ndarray, int]:
    """``(detected per box (bool), false alarms)`` for one image's components and boxes."""
    if not len(boxes):
        return np.zeros(0, dtype=bool), int(len(areas))
    b = np.array([[x.x1 - 0.5, x.y1 - 0.5, x.x2 + 0.5, x.y2 + 0.5, x.area] for x in boxes], dtype=np.float64)
    x, y = centroids[:, :1], centroids[:, 1:2]
    inside = (x >= b[:, 0]) & (x <= b[:, 2]) & (y >= b[:, 1]) & (y <= b[:, 3])
    hits = inside & (areas[:, None] <= AREA_FACTOR * b[:, 4])
    detected: np.ndarray = np.asarray(hits.any(axis=0), dtype=bool)
    return detected, int(np.count_nonzero(~hits.any(axis=1)))


def sweep_thresholds(
    heatmaps: Sequence[np.ndarray], steps: int = DEFAULT_STEPS, per_image: int = PEAKS_PER_IMAGE
) -> np.ndarray:
    """Descending thresholds where the curve can change: just below the highest local maxima of each image.

    A component appears when the threshold drops below its peak, a local maximum (3x3).
    Recall at a few false alarms per image is decided among each image's highest peaks,
    so the candidates are every image's ``per_image`` highest distinct local maxima
    (pooled quantiles would sit in the noise floor, where an image has thousands),
    thinned to ``steps`` by quantiles, plus the top value (nothing above it).
    """
    from scipy import ndimage

    cands = []
    for hm in heatmaps:
        h = np.asarray(hm, dtype=np.float32)
        if h.size:
            peaks = np.unique(h[ndimage.maximum_filter(h, size=3) == h])
            cands.append(peaks[-per_image:])
    values = np.unique(np.concatenate(cands)) if cands else np.zeros(1, np.float32)
    if values.size > steps:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, steps), method="nearest"))
    below = np.nextafter(values.astype(np.float32), np.float32(-np.inf))
    return np.unique(np.concatenate([below, [values.max()]]).astype(np.float32))[::-1]


@dataclass(frozen=True)
class FrocCurve:
    """Recall and false alarms per image at each threshold (descending), overall and per box class."""

    thresholds: np.ndarray
    fa_per_image: np.ndarray
    recall: np.ndarray
    class_recall: Mapping[str, np.ndarray]
    n_images: int
    n_boxes: int
    class_counts: Mapping[str, int]
    min_area: int = 1
    area_factor: float = AREA_FACTOR
    fa_points: tuple[float, ...] = field(default=FA_POINTS)

    def recall_at(self, fa: float, label: str | None = None) -> float | None:
        """Best recall of a threshold with at most ``fa`` false alarms per image (None without boxes)."""
        rec = self.recall if label is None else self.class_recall.get(label)
        if rec is None or (self.n_boxes if label is None else self.class_counts.get(label, 0)) == 0:
            return None
        ok = self.fa_per_image <= fa + 1e-12
        return float(rec[ok].max()) if ok.any() else 0.0

    def threshold_at(self, fa: float) -> float | None:
        """Where :meth:`recall_at` is reached: the highest threshold with that recall and at most ``fa``."""
        ok = np.flatnonzero(self.fa_per_image <= fa + 1e-12)
        if not ok.size or self.n_boxes == 0:
            return None
        best = ok[np.argmax(self.recall[ok])]
        return float(self.thresholds[best])

    def summary(self) -> dict[str, Any]:
        """JSON-ready: recall at each FA point overall and per class, the thresholds, the counts, the rule."""
        key = [f"{f:g}" for f in self.fa_points]
        return {
            "fa_per_image": list(self.fa_points),
            "recall": {k: self.recall_at(f) for k, f in zip(key, self.fa_points)},
            "threshold": {k: self.threshold_at(f) for k, f in zip(key, self.fa_points)},
            "per_class": {
                c: {"n_boxes": n, "recall": {k: self.recall_at(f, c) for k, f in zip(key, self.fa_points)}}
                for c, n in sorted(self.class_counts.items())
            },
            "n_images": self.n_images,
            "n_boxes": self.n_boxes,
            "rule": f"component centroid inside the box and area <= {self.area_factor:g}x the box; "
            f"components of >= {self.min_area} px; other components are false alarms",
            "curve": {
                "threshold": [float(t) for t in self.thresholds],
                "fa_per_image": [float(v) for v in self.fa_per_image],
                "recall": [float(v) for v in self.recall],
            },
        }


def froc_curve(
    heatmaps: Sequence[np.ndarray],
    boxes: Sequence[Sequence[Box]],
    thresholds: np.ndarray | Sequence[float] | None = None,
    min_area: int = 1,
) -> FrocCurve:
    """The FROC curve of ``heatmaps`` (one per image) against their ``boxes`` (``[]`` for a good image)."""
    if len(heatmaps) != len(boxes):
        raise ValueError(f"heatmaps and boxes must have the same length, got {len(heatmaps)} and {len(boxes)}")
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1, got {min_area}")
    ts = sweep_thresholds(heatmaps) if thresholds is None else np.sort(np.asarray(thresholds, np.float32))[::-1]
    labels = [b.label for per in boxes for b in per]
    classes = sorted(set(labels))
    counts = {c: labels.count(c) for c in classes}
    n_img = max(len(heatmaps), 1)
    fa = np.zeros(len(ts))
    found = np.zeros(len(ts))
    by_class = {c: np.zeros(len(ts)) for c in classes}
    for hm, per in zip(heatmaps, boxes):
        h = np.asarray(hm, dtype=np.float32)
        top = float(h.max()) if h.size else 0.0
        for k, t in enumerate(ts):
            if t >= top:  # nothing above: no component, nothing found
                continue
            detected, n_fa = match(*components(h, float(t), min_area), per)
            fa[k] += n_fa
            found[k] += detected.sum()
            for b, d in zip(per, detected):
                by_class[b.label][k] += d
    n_boxes = len(labels)
    recall = found / n_boxes if n_boxes else np.zeros(len(ts))
    class_recall = {c: by_class[c] / counts[c] for c in classes}
    return FrocCurve(ts, fa / n_img, recall, class_recall, len(heatmaps), n_boxes, counts, min_area)
