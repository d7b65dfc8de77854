"""Validation metrics: AUROC and average precision without scikit-learn (numpy), operating points, per-defect recall.

Both follow scikit-learn exactly, ties included: scores are sorted once, every
*distinct* score is a threshold, AUROC is the trapezoidal area under the ROC
curve through those thresholds (= the Mann-Whitney statistic with ties counted
1/2) and AP is ``sum_n (R_n - R_{n-1}) * P_n`` over the same thresholds (no
interpolation).

Pixel AP is reported next to pixel AUROC because defects are a few pixels in a
976x176 strip: almost every threshold has a near-zero false-positive *rate*, so
pixel AUROC saturates near 1 and hides differences that AP (precision!) shows.

``evaluate`` is memory-conscious: ~100 strips are ~17 M pixels, so the scores go
into one preallocated float32 array that is sorted once, in place. Both metrics
are then read off it with binary searches for the (few) positive pixels' scores:
AUROC as the Mann-Whitney statistic, AP summed over the thresholds where recall
changes -- no argsort, no per-threshold arrays.

Operating points (:func:`best_f1_threshold`, :func:`threshold_for_recall`) use
the same sorted-scores trick, pooled over all pixels, and return float32
thresholds for the SDK's strict rule ``heatmap > threshold``. Per-defect
recall (:func:`detect_defects`) labels ground-truth masks into 8-connected
components with ``scipy.ndimage.label`` (imported on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "roc_auc",
    "average_precision",
    "double_detection",
    "SegMetrics",
    "evaluate",
    "ThresholdPoint",
    "pixel_pr_curve",
    "best_f1_threshold",
    "threshold_for_recall",
    "pixel_counts",
    "GroundTruthDefect",
    "label_components",
    "detect_defects",
    "RecallBin",
    "recall_by_bins",
]


def _check_inputs(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat bool labels and finite numeric scores of the same shape, or a ValueError that says why."""
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same shape, got {y.shape} and {s.shape}")
    if y.size == 0:
        raise ValueError("labels and scores are empty")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be binary (bool or 0/1)")
        y = y.astype(bool)
    if s.dtype.kind not in "fiub":
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if s.dtype.kind == "f" and not np.isfinite(s).all():
        raise ValueError("scores contain NaN or Inf")
    return y.ravel(), s.ravel()


@dataclass(frozen=True)
class _Ranked:
    """All scores sorted ascending, plus the positives' scores sorted ascending.

    Both metrics only need, for each positive score ``t``, how many scores (all /
    positive) are below or equal to ``t``: binary searches in these two arrays.
    No argsort and no per-threshold arrays, so the memory is the one sorted copy
    of the scores (sorted in place by ``evaluate``) plus the positives.
    """

    all_sorted: np.ndarray
    pos_sorted: np.ndarray

    @property
    def n_pos(self) -> int:
        return int(self.pos_sorted.size)

    @property
    def n_neg(self) -> int:
        return int(self.all_sorted.size - self.pos_sorted.size)

    def auc(self) -> float:
        """Mann-Whitney: P(pos > neg) + P(pos == neg)/2 -- the area of sklearn's ROC curve."""
        t = self.pos_sorted
        all_lt = np.searchsorted(self.all_sorted, t, side="left")
        all_le = np.searchsorted(self.all_sorted, t, side="right")
        pos_lt = np.searchsorted(t, t, side="left")
        pos_le = np.searchsorted(t, t, side="right")
        neg_lt = all_lt - pos_lt
        neg_eq = (all_le - all_lt) - (pos_le - pos_lt)
        twice_u = int(np.sum(2 * neg_lt + neg_eq, dtype=np.int64))  # exact integer
        return twice_u / (2.0 * self.n_pos * self.n_neg)

    def ap(self) -> float:
        """``sum_n (R_n - R_{n-1}) P_n``; only thresholds holding a positive add recall."""
        t, count = np.unique(self.pos_sorted, return_counts=True)
        tp = self.n_pos - np.searchsorted(self.pos_sorted, t, side="left")
        predicted = self.all_sorted.size - np.searchsorted(self.all_sorted, t, side="left")
        return float(np.sum((count / self.n_pos) * (tp / predicted)))


def _ranked(all_sorted: np.ndarray, pos_scores: np.ndarray) -> _Ranked:
    r = _Ranked(all_sorted, np.sort(pos_scores))
    if r.n_pos == 0 or r.n_neg == 0:
        only = "positive" if r.n_neg == 0 else "negative"
        raise ValueError(
            f"only one class present (all {all_sorted.size} labels are {only}): "
            "AUROC/AP need both positive and negative examples"
        )
    return r


def _ranked_from(labels: np.ndarray, scores: np.ndarray) -> _Ranked:
    y, s = _check_inputs(labels, scores)
    return _ranked(np.sort(s), s[y])


def roc_auc(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float]) -> float:
    """Area under the ROC curve (as ``sklearn.metrics.roc_auc_score``); ValueError if one class only."""
    return _ranked_from(np.asarray(labels), np.asarray(scores)).auc()


def average_precision(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float]) -> float:
    """Average precision (as ``sklearn.metrics.average_precision_score``); ValueError if one class only."""
    return _ranked_from(np.asarray(labels), np.asarray(scores)).ap()


def double_detection(image: np.ndarray) -> np.ndarray:
    """Classical baseline ``min(|T-R1|, |T-R2|)``: ``(3,H,W)`` 0..255 -> ``(H,W)`` float32.

    Large only where the target differs from *both* references -- the definition
    of a defect -- so it is the yardstick the learned model has to beat.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"image must be (3,H,W) target/ref1/ref2, got shape {img.shape}")
    img = img.astype(np.float32, copy=False)
    dd: np.ndarray = np.minimum(np.abs(img[0] - img[1]), np.abs(img[0] - img[2])).astype(np.float32, copy=False)
    return dd


@dataclass(frozen=True)
class SegMetrics:
    """Validation numbers; a metric is ``None`` where it is undefined (one class only)."""

    image_auroc: float | None
    pixel_auroc: float | None
    pixel_ap: float | None
    n_images: int
    n_defect_images: int


def _checked_sizes(
    heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], defective: Sequence[bool]
) -> list[int]:
    """Each heatmap's pixel count, after checking that the three lists fit together (``ValueError`` if not)."""
    n = len(heatmaps)
    if not (len(masks) == len(defective) == n):
        raise ValueError(
            f"heatmaps, masks and defective must have the same length, got {n}, {len(masks)}, {len(defective)}"
        )
    if n == 0:
        raise ValueError("no images to evaluate")
    sizes = []
    for i, (hm, m, bad) in enumerate(zip(heatmaps, masks, defective)):
        hm = np.asarray(hm)
        if hm.ndim != 2:
            raise ValueError(f"heatmap {i} must be 2-D (H,W), got shape {hm.shape}")
        if m is None:
            if bad:
                raise ValueError(f"image {i} is marked defective but has no mask")
        elif np.shape(m) != hm.shape:
            raise ValueError(f"mask {i} has shape {np.shape(m)}, heatmap has {hm.shape}")
        sizes.append(hm.size)
    return sizes


def evaluate(
    heatmaps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    defective: Sequence[bool],
) -> SegMetrics:
    """Image AUROC (score = heatmap max), pixel AUROC and pixel AP over all pixels of all images.

    ``masks[i]`` is ``None`` for a good image (all background). A defective image
    must have a mask: scoring it as all background would make the numbers lie.
    """
    n = len(heatmaps)
    sizes = _checked_sizes(heatmaps, masks, defective)
    image_scores = np.array([float(np.max(hm)) for hm in heatmaps], dtype=np.float64)
    image_labels = np.array([bool(b) for b in defective])
    image_auroc = roc_auc(image_labels, image_scores) if 0 < image_labels.sum() < n else None

    # One float32 buffer for all pixels, sorted in place; positives gathered on the way.
    scores = np.empty(int(sum(sizes)), dtype=np.float32)
    positives = []
    pos = 0
    for hm, m, size in zip(heatmaps, masks, sizes):
        hm32 = np.asarray(hm, dtype=np.float32)
        scores[pos : pos + size] = hm32.ravel()
        if m is not None:
            positives.append(hm32[np.asarray(m) > 0])
        pos += size
    if not np.isfinite(scores).all():
        raise ValueError("heatmaps contain NaN or Inf")
    pos_scores = np.concatenate(positives) if positives else np.empty(0, np.float32)
    if 0 < pos_scores.size < scores.size:
        scores.sort()
        ranked = _ranked(scores, pos_scores)
        pixel_auroc: float | None = ranked.auc()
        pixel_ap: float | None = ranked.ap()
    else:
        pixel_auroc = pixel_ap = None
    return SegMetrics(
        image_auroc=image_auroc,
        pixel_auroc=pixel_auroc,
        pixel_ap=pixel_ap,
        n_images=n,
        n_defect_images=int(image_labels.sum()),
    )


# ----------------------------------------------------------------------------------------------------
# Operating points and per-defect detection (used by build-time calibration, `bgsdk evaluate` and
# training validation).


@dataclass(frozen=True)
class ThresholdPoint:
    """A pixel threshold and the pooled pixel precision/recall/F1 of ``heatmap > threshold``."""

    threshold: float
    precision: float
    recall: float
    f1: float


def _pooled(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """(all pixel scores sorted ascending as float32, positive pixel scores) over all images.

    ``masks[i]`` may be ``None`` (a good image: every pixel background).
    """
    if len(heatmaps) != len(masks):
        raise ValueError(f"heatmaps and masks must have the same length, got {len(heatmaps)} and {len(masks)}")
    if len(heatmaps) == 0:
        raise ValueError("no images")
    arrays = [np.asarray(h, dtype=np.float32) for h in heatmaps]
    positives = []
    for i, (hm, m) in enumerate(zip(arrays, masks)):
        if hm.ndim != 2:
            raise ValueError(f"heatmap {i} must be 2-D (H,W), got shape {hm.shape}")
        if m is not None:
            if np.shape(m) != hm.shape:
                raise ValueError(f"mask {i} has shape {np.shape(m)}, heatmap has {hm.shape}")
            positives.append(hm[np.asarray(m) > 0])
    scores = np.concatenate([a.ravel() for a in arrays])
    if not np.isfinite(scores).all():
        raise ValueError("heatmaps contain NaN or Inf")
    scores.sort()
    pos = np.sort(np.concatenate(positives)) if positives else np.empty(0, np.float32)
    return scores, pos


def _strict_threshold(all_sorted: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each cut value ``t``: the float32 threshold ``thr`` with ``{s > thr} == {s >= t}``.

    That is the largest score below ``t`` (exact in float32, so ``heatmap > thr``
    reproduces the counts whatever the comparison precision), or just below ``t``
    when nothing is below it.
    """
    idx = np.searchsorted(all_sorted, t, side="left") - 1
    below = all_sorted[np.maximum(idx, 0)]
    fallback = np.nextafter(t.astype(np.float32), np.float32(-np.inf))
    return np.where(idx >= 0, below, fallback).astype(np.float32)


def pixel_pr_curve(
    heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, precision, recall)`` of ``heatmap > threshold``, pooled over all pixels.

    One entry per distinct score of a defect pixel (the only cuts where recall
    changes), thresholds descending. Raises ``ValueError`` when no pixel is a defect.
    """
    all_sorted, pos = _pooled(heatmaps, masks)
    if pos.size == 0:
        raise ValueError("no defect pixels: precision/recall/F1 need at least one defective image with a mask")
    t = np.unique(pos)[::-1]
    tp = pos.size - np.searchsorted(pos, t, side="left")
    predicted = all_sorted.size - np.searchsorted(all_sorted, t, side="left")
    return _strict_threshold(all_sorted, t), tp / predicted, tp / pos.size


def best_f1_threshold(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> ThresholdPoint:
    """The pixel threshold with the highest pooled pixel F1 (``heatmap > threshold`` is a defect pixel).

    ``heatmaps``: ``(H,W)`` probability maps; ``masks``: matching bool masks or
    ``None`` for good images. Every distinct defect-pixel score is tried (the F1
    optimum always sits at one), exactly; ties go to the higher threshold (fewer
    false alarms). The returned ``threshold`` is a float32 value: ``heatmap >
    threshold`` reproduces the reported precision and recall exactly on these maps.
    Raises ``ValueError`` without any defect pixel (no F1 exists then).
    """
    thr, precision, recall = pixel_pr_curve(heatmaps, masks)
    f1 = 2 * precision * recall / (precision + recall)
    k = int(np.argmax(f1))  # first maximum = highest threshold
    return ThresholdPoint(float(thr[k]), float(precision[k]), float(recall[k]), float(f1[k]))


def threshold_for_recall(
    heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], target_recall: float
) -> ThresholdPoint:
    """The highest pixel threshold whose pooled pixel recall is at least ``target_recall``."""
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
    thr, precision, recall = pixel_pr_curve(heatmaps, masks)
    k = int(np.argmax(recall >= target_recall - 1e-12))  # recall rises as thresholds fall
    f1 = 2 * precision[k] * recall[k] / (precision[k] + recall[k])
    return ThresholdPoint(float(thr[k]), float(precision[k]), float(recall[k]), float(f1))


def pixel_counts(heatmap: np.ndarray, mask: np.ndarray | None, threshold: float) -> tuple[int, int, int]:
    """``(true positive, false positive, false negative)`` pixels of ``heatmap > threshold``."""
    pred = np.asarray(heatmap) > np.float32(threshold)
    if mask is None:
        return 0, int(pred.sum()), 0
    m = np.asarray(mask) > 0
    tp = int(np.count_nonzero(pred & m))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(m)) - tp


@dataclass(frozen=True)
class GroundTruthDefect:
    """One ground-truth defect (an 8-connected component of a mask) and whether the model found it.

    ``peak``: the heatmap maximum inside the component; ``detected``: ``peak >
    threshold`` (the same strict rule as ``Result.mask``). ``contrast``: the
    component's peak double-detection value ``min(|T-R1|,|T-R2|)`` in grey levels
    (0..255), how visible the defect is against both references; ``None`` when no
    image was given. ``bbox`` is ``(x0, y0, x1, y1)``, inclusive.
    """

    image_index: int
    area: int
    peak: float
    detected: bool
    contrast: float | None
    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a 2-D bool mask: ``(labels int32, count)`` (scipy.ndimage.label)."""
    from scipy import ndimage

    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    return labels.astype(np.int32, copy=False), int(n)


def detect_defects(
    heatmaps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    threshold: float,
    images: Sequence[np.ndarray] | None = None,
) -> list[GroundTruthDefect]:
    """Per-defect recall data: one record per ground-truth component, images in order, components by label.

    ``masks[i]`` may be ``None`` (no defects). ``images`` (optional, ``(3,H,W)``
    0..255 each) adds each defect's contrast. Recall = mean of ``detected``; bin it
    by ``area`` or ``contrast`` with :func:`recall_by_bins`.
    """
    if images is not None and len(images) != len(heatmaps):
        raise ValueError(f"images and heatmaps must have the same length, got {len(images)} and {len(heatmaps)}")
    if len(masks) != len(heatmaps):
        raise ValueError(f"heatmaps and masks must have the same length, got {len(heatmaps)} and {len(masks)}")
    from scipy import ndimage

    out: list[GroundTruthDefect] = []
    for i, (hm, m) in enumerate(zip(heatmaps, masks)):
        if m is None:
            continue
        hm = np.asarray(hm, dtype=np.float32)
        if np.shape(m) != hm.shape:
            raise ValueError(f"mask {i} has shape {np.shape(m)}, heatmap has {hm.shape}")
        labels, n = label_components(np.asarray(m) > 0)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        peaks = ndimage.maximum(hm, labels, index)
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        centres = ndimage.center_of_mass(np.ones_like(hm), labels, index)
        dd = double_detection(images[i]) if images is not None else None
        contrasts = ndimage.maximum(dd, labels, index) if dd is not None else [None] * n
        for k, sl in enumerate(ndimage.find_objects(labels)):
            assert sl is not None
            out.append(
                GroundTruthDefect(
                    image_index=i,
                    area=int(areas[k]),
                    peak=float(peaks[k]),
                    detected=bool(peaks[k] > np.float32(threshold)),
                    contrast=None if (c := contrasts[k]) is None else float(c),
                    centroid=(float(centres[k][1]), float(centres[k][0])),
                    bbox=(sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1),
                )
            )
    return out


@dataclass(frozen=True)
class RecallBin:
    """Recall of the defects whose value lies in ``[low, high)``."""

    low: float
    high: float
    n: int
    detected: int

    @property
    def recall(self) -> float | None:
        return self.detected / self.n if self.n else None


def recall_by_bins(defects: Sequence[GroundTruthDefect], key: str, edges: Sequence[float]) -> list[RecallBin]:
    """Recall per bin of ``key`` (``"area"`` or ``"contrast"``): bins ``[edges[j], edges[j+1])``.

    Use ``float("inf")`` as the last edge to catch everything above; defects
    outside all bins (or without the value) are not counted.
    """
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [d for d in defects if getattr(d, key) is not None and lo <= getattr(d, key) < hi]
        bins.append(RecallBin(float(lo), float(hi), len(sel), sum(d.detected for d in sel)))
    return bins
