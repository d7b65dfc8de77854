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
into one preallocated float32 array, are sorted once, and the ROC and PR curves
are both read off that single sort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["roc_auc", "average_precision", "double_detection", "SegMetrics", "evaluate"]


@dataclass(frozen=True)
class _Curve:
    """Cumulative counts at each distinct threshold, from the highest score down."""

    tps: np.ndarray  # true positives with score >= threshold
    fps: np.ndarray  # false positives with score >= threshold

    @property
    def n_pos(self) -> int:
        return int(self.tps[-1])

    @property
    def n_neg(self) -> int:
        return int(self.fps[-1])


def _check_inputs(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _curve(labels: np.ndarray, scores: np.ndarray) -> _Curve:
    """One descending sort -> cumulative TP/FP counts at every distinct score."""
    y, s = _check_inputs(labels, scores)
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    del order
    # Last index of each run of equal scores: the counts "score >= that value".
    distinct = np.flatnonzero(s_sorted[1:] != s_sorted[:-1])
    ends = np.concatenate([distinct, [s_sorted.size - 1]])
    del s_sorted
    count_dtype = np.int32 if y_sorted.size < 2**31 - 1 else np.int64
    tps = np.cumsum(y_sorted, dtype=count_dtype)[ends].astype(np.int64)
    fps = (ends + 1).astype(np.int64) - tps
    curve = _Curve(tps, fps)
    if curve.n_pos == 0 or curve.n_neg == 0:
        only = "positive" if curve.n_neg == 0 else "negative"
        raise ValueError(
            f"only one class present (all {y.size} labels are {only}): "
            "AUROC/AP need both positive and negative examples"
        )
    return curve


def _auc(curve: _Curve) -> float:
    """Trapezoidal area under the ROC curve, starting at (0, 0)."""
    fpr = np.concatenate([[0.0], curve.fps / curve.n_neg])
    tpr = np.concatenate([[0.0], curve.tps / curve.n_pos])
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _ap(curve: _Curve) -> float:
    """``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds, ``R_{-1} = 0``."""
    precision = curve.tps / (curve.tps + curve.fps)  # tps+fps >= 1 at every threshold
    recall = curve.tps / curve.n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def roc_auc(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float]) -> float:
    """Area under the ROC curve (as ``sklearn.metrics.roc_auc_score``); ValueError if one class only."""
    return _auc(_curve(np.asarray(labels), np.asarray(scores)))


def average_precision(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float]) -> float:
    """Average precision (as ``sklearn.metrics.average_precision_score``); ValueError if one class only."""
    return _ap(_curve(np.asarray(labels), np.asarray(scores)))


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

    total = int(sum(sizes))
    scores = np.empty(total, dtype=np.float32)
    labels = np.zeros(total, dtype=bool)
    pos = 0
    for hm, m, size in zip(heatmaps, masks, sizes):
        scores[pos : pos + size] = np.asarray(hm, dtype=np.float32).ravel()
        if m is not None:
            labels[pos : pos + size] = np.asarray(m).ravel() > 0
        pos += size

    n_pos = int(labels.sum())
    if 0 < n_pos < total:
        curve = _curve(labels, scores)
        pixel_auroc: float | None = _auc(curve)
        pixel_ap: float | None = _ap(curve)
    else:
        pixel_auroc = pixel_ap = None
    return SegMetrics(
        image_auroc=image_auroc,
        pixel_auroc=pixel_auroc,
        pixel_ap=pixel_ap,
        n_images=n,
        n_defect_images=int(image_labels.sum()),
    )
