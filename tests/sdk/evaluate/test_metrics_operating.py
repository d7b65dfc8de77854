"""Operating points and per-defect detection against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from bgsdk.evaluate.metrics import (
    best_f1_threshold,
    detect_defects,
    label_components,
    pixel_counts,
    recall_by_bins,
    threshold_for_recall,
)


def _random_maps(seed: int, n: int = 3, shape: tuple[int, int] = (12, 9)):
    rng = np.random.default_rng(seed)
    masks = [rng.random(shape) < 0.15 for _ in range(n)]
    # Quantised scores -> ties across classes; weakly related to the labels.
    maps = [np.round(np.clip(rng.normal(m * 0.35 + 0.3, 0.2), 0, 1) * 20).astype(np.float32) / 20 for m in masks]
    masks[-1] = None  # a good image
    return maps, masks


def _brute_best_f1(maps, masks):
    best = (-1.0, None)
    cands = sorted({float(v) for m in maps for v in m.ravel()} | {-1.0}, reverse=True)
    for t in cands:
        tp = fp = fn = 0
        for h, m in zip(maps, masks):
            a, b, c = pixel_counts(h, m, t)
            tp, fp, fn = tp + a, fp + b, fn + c
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best[0] + 1e-12:
            best = (f1, t)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_best_f1_matches_brute_force_and_threshold_reproduces_counts(seed):
    maps, masks = _random_maps(seed)
    p = best_f1_threshold(maps, masks)
    f1, _ = _brute_best_f1(maps, masks)
    assert p.f1 == pytest.approx(f1, abs=1e-12)
    tp = fp = fn = 0
    for h, m in zip(maps, masks):
        a, b, c = pixel_counts(h, m, p.threshold)
        tp, fp, fn = tp + a, fp + b, fn + c
    assert p.precision == pytest.approx(tp / (tp + fp))
    assert p.recall == pytest.approx(tp / (tp + fn))


def test_best_f1_perfect_separation_and_no_defects():
    h = np.zeros((5, 5), np.float32)
    h[2, 2] = 0.9
    h[0, 0] = 0.2
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    p = best_f1_threshold([h], [m])
    assert (p.precision, p.recall, p.f1) == (1.0, 1.0, 1.0)
    assert 0.2 <= p.threshold < 0.9
    with pytest.raises(ValueError, match="no defect pixels"):
        best_f1_threshold([h], [None])


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9, 1.0])
def test_threshold_for_recall_is_the_highest_reaching_the_target(target):
    maps, masks = _random_maps(3)
    p = threshold_for_recall(maps, masks, target)
    assert p.recall >= target
    # Any higher distinct cut loses the target.
    higher = sorted({float(v) for h in maps for v in h.ravel() if v > p.threshold})
    if len(higher) > 1:
        t = higher[0]
        tp = sum(pixel_counts(h, m, t)[0] for h, m in zip(maps, masks))
        pos = sum(int(np.sum(m)) for m in masks if m is not None)
        assert tp / pos < target


def test_detect_defects_components_peaks_and_contrast():
    h = np.zeros((10, 10), np.float32)
    m = np.zeros((10, 10), bool)
    m[1:3, 1:3] = True  # component A: 4 px
    m[3, 3] = True  # diagonal neighbour -> same component (8-connectivity)
    m[7:9, 6:9] = True  # component B: 6 px
    h[2, 2] = 0.8
    h[8, 8] = 0.4
    img = np.full((3, 10, 10), 100.0, np.float32)
    img[0, 1:4, 1:4] += 50  # target brighter than both refs over A
    img[0, 7:9, 6:9] -= 20  # darker over B
    recs = detect_defects([h], [m], threshold=0.5, images=[img])
    assert [r.area for r in recs] == [5, 6]
    assert [r.detected for r in recs] == [True, False]
    assert recs[0].peak == pytest.approx(0.8) and recs[1].peak == pytest.approx(0.4)
    assert recs[0].contrast == pytest.approx(50) and recs[1].contrast == pytest.approx(20)
    assert recs[0].bbox == (1, 1, 3, 3) and recs[1].bbox == (6, 7, 8, 8)
    assert recs[1].centroid == pytest.approx((7.0, 7.5))
    bins = recall_by_bins(recs, "area", [0, 6, float("inf")])
    assert [(b.n, b.detected, b.recall) for b in bins] == [(1, 1, 1.0), (1, 0, 0.0)]
    assert detect_defects([h], [None], 0.5) == []


def test_label_components_is_8_connected():
    m = np.eye(4, dtype=bool)
    labels, n = label_components(m)
    assert n == 1 and labels.max() == 1
