"""The operating point that travels with a model: pixel threshold + minimum defect area.

``build-model`` calibrates it on labelled images and stores it in the model's
``metadata_props`` under :data:`OPERATING_POINT_KEY`; the SDK reads it so that
every integrator gets the same defects and verdicts from the same model,
without choosing a threshold of their own. A strip **fails** when at least one
defect (8-connected component of ``heatmap > threshold`` with ``area >=
min_area``) remains.

Calibration rules (:func:`calibrate`):

* ``best_f1`` (default): the pixel threshold with the best pooled pixel F1;
* ``target_recall``: the highest threshold reaching a pixel recall;
* ``max_false_alarms``: the lowest threshold with at most F false alarms per
  image (a false alarm = a defect that touches no ground-truth pixel).

Without defective images none of the labelled rules exist; calibration then
falls back to the false-alarm rule on the good images (``fallback``, with a
``note`` saying so) -- never a crash, never a silent 0.5. A model without the
key (built before this existed) loads with :data:`UNCALIBRATED`: threshold 0.5,
min area 1, ``calibrated=False``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from ._defects import check_operating_point
from .evaluate.metrics import best_f1_threshold, pixel_counts, threshold_for_recall

__all__ = [
    "OPERATING_POINT_KEY",
    "RULES",
    "OperatingPoint",
    "UNCALIBRATED",
    "PointMetrics",
    "point_metrics",
    "calibrate",
    "MIN_AREA_CANDIDATES",
    "with_override",
]

log = logging.getLogger(__name__)

OPERATING_POINT_KEY = "bgsdk.operating_point"
RULES = ("best_f1", "target_recall", "max_false_alarms")
#: Minimum areas tried when ``min_area`` is calibrated (pixels).
MIN_AREA_CANDIDATES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32)


@dataclass(frozen=True)
class OperatingPoint:
    """Threshold, minimum area and where they came from.

    ``rule``: one of :data:`RULES`, ``"fallback_false_alarms"`` (no defective
    calibration images) or ``"default"`` (uncalibrated); ``target``: the rule's
    parameter (recall or false alarms per image); ``data``: the calibration data
    (path, split, image counts); ``metrics``: :class:`PointMetrics` at this point.
    """

    threshold: float
    min_area: int
    calibrated: bool
    rule: str
    target: float | None = None
    note: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["data"], d["metrics"] = dict(self.data), dict(self.metrics)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> OperatingPoint:
        """The model's operating point, or :data:`UNCALIBRATED` when it has none.

        A present but unreadable entry is a ``ValueError`` (the model is broken;
        silently using 0.5 would change every verdict).
        """
        text = metadata.get(OPERATING_POINT_KEY)
        if text is None:
            return UNCALIBRATED
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("operating point is not a JSON object")
        known = set(cls.__dataclass_fields__)
        d = {k: v for k, v in d.items() if k in known}
        op = cls(**d)
        check_operating_point(op.threshold, op.min_area)
        return op

    def summary(self) -> str:
        """One human line, e.g. for ``bgsdk inspect`` and logs."""
        if not self.calibrated:
            return f"uncalibrated (default threshold {self.threshold:g}, min area {self.min_area})"
        d = self.data
        what = f"{self.rule}" + (f" {self.target:g}" if self.target is not None else "")
        n = f"{d.get('n_images', '?')} image(s), {d.get('n_defect_images', '?')} defective"
        line = f"threshold {self.threshold:.6g}, min area {self.min_area} ({what}; {n} from {d.get('source', '?')})"
        return line + (f"; {self.note}" if self.note else "")


UNCALIBRATED = OperatingPoint(
    threshold=0.5,
    min_area=1,
    calibrated=False,
    rule="default",
    note="model has no operating point metadata (built before calibration existed)",
)


@dataclass(frozen=True)
class PointMetrics:
    """What a threshold/min-area pair does on labelled images.

    Pixel numbers pool all pixels; ``defect_recall`` is the fraction of
    ground-truth components touched by a reported defect; ``false_alarms`` counts
    reported defects touching no ground-truth pixel; an image is flagged when it
    has at least one defect. ``None`` where undefined (no defective / good images).
    """

    n_images: int
    n_defect_images: int
    pixel_precision: float | None
    pixel_recall: float | None
    pixel_f1: float | None
    defect_recall: float | None
    defect_precision: float | None
    false_alarms: int
    false_alarms_per_image: float
    images_flagged_good: int
    images_flagged_defective: int

    @property
    def image_recall(self) -> float | None:
        return self.images_flagged_defective / self.n_defect_images if self.n_defect_images else None

    @property
    def false_reject_rate(self) -> float | None:
        n_good = self.n_images - self.n_defect_images
        return self.images_flagged_good / n_good if n_good else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(image_recall=self.image_recall, false_reject_rate=self.false_reject_rate)
        return d


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _kept_components(hm: np.ndarray, threshold: float, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, kept label ids)``: 8-connected components of ``hm > threshold`` with area >= min_area."""
    from .evaluate.metrics import label_components

    labels, n = label_components(np.asarray(hm) > np.float32(threshold))
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    ids = np.arange(n + 1)
    return labels, ids[(areas >= min_area) & (ids > 0)]


def point_metrics(
    heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], threshold: float, min_area: int
) -> PointMetrics:
    """:class:`PointMetrics` of ``(threshold, min_area)``; ``masks[i]`` is ``None`` for a good image."""
    from .evaluate.metrics import label_components

    tp = fp = fn = 0
    gt_total = gt_hit = fa = kept_total = 0
    flagged_good = flagged_bad = n_def = 0
    for hm, m in zip(heatmaps, masks):
        a, b, c = pixel_counts(hm, m, threshold)
        tp, fp, fn = tp + a, fp + b, fn + c
        labels, kept = _kept_components(hm, threshold, min_area)
        kept_total += kept.size
        gt = None if m is None else np.asarray(m) > 0
        if gt is None or not gt.any():
            flagged_good += bool(kept.size)
            fa += kept.size
            continue
        n_def += 1
        flagged_bad += bool(kept.size)
        gt_labels, n_gt = label_components(gt)
        gt_total += n_gt
        if kept.size:
            on_kept = np.isin(labels, kept)
            gt_hit += np.unique(gt_labels[on_kept & gt]).size
            touching = np.unique(labels[on_kept & gt])
            fa += kept.size - touching.size
    pixels_pos = tp + fn
    return PointMetrics(
        n_images=len(heatmaps),
        n_defect_images=n_def,
        pixel_precision=_ratio(tp, tp + fp) if pixels_pos else None,
        pixel_recall=_ratio(tp, pixels_pos),
        pixel_f1=_ratio(2 * tp, 2 * tp + fp + fn) if pixels_pos else None,
        defect_recall=_ratio(gt_hit, gt_total),
        defect_precision=_ratio(kept_total - fa, kept_total) if gt_total else None,
        false_alarms=fa,
        false_alarms_per_image=fa / max(len(heatmaps), 1),
        images_flagged_good=flagged_good,
        images_flagged_defective=flagged_bad,
    )


def _choose_min_area(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], threshold: float) -> int:
    """The candidate min area with the best defect-level F1 (ties: the smallest)."""
    best, best_f1 = 1, -1.0
    for a in MIN_AREA_CANDIDATES:
        m = point_metrics(heatmaps, masks, threshold, a)
        r, p = m.defect_recall or 0.0, m.defect_precision or 0.0
        f1 = 2 * r * p / (r + p) if (r + p) else 0.0
        if f1 > best_f1 + 1e-12:
            best, best_f1 = a, f1
    return best


def _false_alarm_threshold(
    heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], min_area: int, max_per_image: float
) -> float:
    """The lowest threshold with at most ``max_per_image`` false alarms per image (bisection, 1e-6)."""

    def ok(t: float) -> bool:
        return point_metrics(heatmaps, masks, t, min_area).false_alarms_per_image <= max_per_image + 1e-12

    hi = float(max(float(np.max(h)) for h in heatmaps))
    lo = float(min(float(np.min(h)) for h in heatmaps))
    if ok(lo):
        return lo
    for _ in range(40):
        if hi - lo < 1e-7:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return float(np.float32(hi))


def calibrate(
    heatmaps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    rule: str = "best_f1",
    target: float | None = None,
    min_area: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> OperatingPoint:
    """Choose the operating point on labelled heatmaps (see the module docstring).

    ``min_area=None`` calibrates it too (best defect-level F1 over
    :data:`MIN_AREA_CANDIDATES`; 1 without defective images). ``data`` is
    recorded as is (where the images came from).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if len(heatmaps) == 0 or len(heatmaps) != len(masks):
        raise ValueError("calibration needs at least one heatmap and one mask entry per heatmap")
    has_defects = any(m is not None and bool(np.any(m)) for m in masks)
    note = ""
    used_target: float | None
    if not has_defects:
        fa = float(target) if rule == "max_false_alarms" and target is not None else 0.0
        area = 1 if min_area is None else int(min_area)
        thr = _false_alarm_threshold(heatmaps, masks, area, fa)
        note = (
            f"no defective calibration images: threshold set so that at most {fa:g} false alarm(s) per good "
            "image remain; precision/recall could not be computed"
        )
        log.warning("operating point: %s", note)
        used_rule, used_target = "fallback_false_alarms", fa
    else:
        thr, area = _point_by_rule(heatmaps, masks, rule, target, min_area)
        used_rule = rule
        used_target = None if rule == "best_f1" or target is None else float(target)
    thr, area = check_operating_point(thr, area)
    pm = point_metrics(heatmaps, masks, thr, area)
    d = dict(data or {})
    d.setdefault("n_images", pm.n_images)
    d.setdefault("n_defect_images", pm.n_defect_images)
    return OperatingPoint(
        threshold=thr,
        min_area=area,
        calibrated=True,
        rule=used_rule,
        target=used_target,
        note=note,
        data=d,
        metrics=pm.to_dict(),
    )


def _point_by_rule(
    heatmaps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    rule: str,
    target: float | None,
    min_area: int | None,
) -> tuple[float, int]:
    """``(threshold, min_area)`` by ``rule`` on calibration data that has defective images."""
    if rule == "max_false_alarms":
        if target is None or target < 0:
            raise ValueError("max_false_alarms needs a target >= 0 (false alarms per image)")
        area = (
            min_area
            if min_area is not None
            else _choose_min_area(heatmaps, masks, best_f1_threshold(heatmaps, masks).threshold)
        )
        return _false_alarm_threshold(heatmaps, masks, area, float(target)), area
    if rule == "target_recall":
        if target is None:
            raise ValueError("target_recall needs a target recall in (0, 1]")
        thr = threshold_for_recall(heatmaps, masks, float(target)).threshold
    else:
        thr = best_f1_threshold(heatmaps, masks).threshold
    return thr, min_area if min_area is not None else _choose_min_area(heatmaps, masks, thr)


def with_override(op: OperatingPoint, threshold: float | None, min_area: int | None) -> OperatingPoint:
    """``op`` with a per-call threshold and/or min area (metrics dropped: they no longer apply)."""
    if threshold is None and min_area is None:
        return op
    t, a = check_operating_point(
        op.threshold if threshold is None else threshold, op.min_area if min_area is None else min_area
    )
    return replace(op, threshold=t, min_area=a, rule="override", metrics={})
