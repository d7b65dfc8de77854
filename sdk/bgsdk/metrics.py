"""Validation metrics: AUROC and average precision without scikit-learn (numpy only).

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["roc_auc", "average_precision", "double_detection", "SegMetrics", "evaluate"]


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
    return np.minimum(np.abs(img[0] - img[1]), np.abs(img[0] - img[2])).astype(np.float32, copy=False)


@dataclass(frozen=True)
class SegMetrics:
    """Validation numbers; a metric is ``None`` where it is undefined (one class only)."""

    image_auroc: float | None
    pixel_auroc: float | None
    pixel_ap: float | None
    n_images: int
    n_defect_images: int


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
