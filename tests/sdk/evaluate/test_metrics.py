"""AUROC / AP against brute-force references (ties included), double detection, evaluate()."""

from __future__ import annotations

import numpy as np
import pytest

from bgsdk.evaluate.metrics import SegMetrics, average_precision, double_detection, evaluate, roc_auc


def auroc_mann_whitney(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score_pos > score_neg) + 1/2 P(equal), by counting every pair."""
    pos = scores[labels.astype(bool)].astype(np.float64)
    neg = scores[~labels.astype(bool)].astype(np.float64)
    greater = (pos[:, None] > neg[None, :]).sum()
    equal = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * equal) / (pos.size * neg.size))


def ap_threshold_loop(labels: np.ndarray, scores: np.ndarray) -> float:
    """sum (R_n - R_{n-1}) P_n, one threshold per distinct score, highest first."""
    y = labels.astype(bool)
    total_pos = y.sum()
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        predicted = scores >= t
        tp = (predicted & y).sum()
        precision = tp / predicted.sum()
        recall = tp / total_pos
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return float(ap)


def _random_with_ties(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < rng.uniform(0.1, 0.6)
    labels[0], labels[1] = True, False  # both classes present
    # Few distinct values -> many ties, some across classes; scores weakly related to labels.
    scores = np.round(rng.normal(labels * 0.7, 1.0) * 3) / 3
    return labels, scores.astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [2, 7, 60, 400])
def test_against_brute_force_with_ties(seed: int, n: int) -> None:
    labels, scores = _random_with_ties(seed, n)
    assert roc_auc(labels, scores) == pytest.approx(auroc_mann_whitney(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(ap_threshold_loop(labels, scores), abs=1e-12)


def test_continuous_scores_and_int_labels() -> None:
    rng = np.random.default_rng(42)
    labels = (rng.random(300) < 0.2).astype(np.int64)
    scores = rng.random(300) + 0.3 * labels
    assert roc_auc(labels, scores) == pytest.approx(auroc_mann_whitney(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(ap_threshold_loop(labels, scores), abs=1e-12)


def test_known_values() -> None:
    # The scikit-learn documentation examples.
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.8333333333)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # All tied: AUROC 0.5, AP = prevalence.
    assert roc_auc([0, 1, 1, 0, 0], [3, 3, 3, 3, 3]) == pytest.approx(0.5)
    assert average_precision([0, 1, 1, 0, 0], [3, 3, 3, 3, 3]) == pytest.approx(0.4)


def test_perfect_and_inverted() -> None:
    labels = np.array([0, 0, 1, 0, 1, 1, 0], dtype=bool)
    perfect = labels.astype(np.float32) + 0.01 * np.arange(7)
    assert roc_auc(labels, perfect) == 1.0
    assert average_precision(labels, perfect) == 1.0
    assert roc_auc(labels, -perfect) == 0.0
    # Inverted: positives come last; AP = mean over positives of k / rank.
    n_neg = 4
    expected = np.mean([k / (n_neg + k) for k in (1, 2, 3)])
    assert average_precision(labels, -perfect) == pytest.approx(expected)


@pytest.mark.parametrize("fn", [roc_auc, average_precision])
def test_single_class_and_bad_input(fn) -> None:
    with pytest.raises(ValueError, match="one class"):
        fn([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="one class"):
        fn(np.ones(4, dtype=bool), [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="same shape"):
        fn([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="binary"):
        fn([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        fn([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])


def test_double_detection() -> None:
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, size=(3, 5, 4)).astype(np.float32)
    dd = double_detection(img)
    assert dd.dtype == np.float32 and dd.shape == (5, 4)
    for y in range(5):
        for x in range(4):
            t, r1, r2 = (float(img[c, y, x]) for c in range(3))
            assert dd[y, x] == pytest.approx(min(abs(t - r1), abs(t - r2)), abs=1e-4)
    # A defect in the target only survives; one copied into a reference is suppressed.
    flat = np.full((3, 4, 4), 100.0, dtype=np.float32)
    flat[0, 1, 1] = 180.0
    flat[0, 2, 2] = flat[1, 2, 2] = 180.0
    dd = double_detection(flat)
    assert dd[1, 1] == 80.0 and dd[2, 2] == 0.0 and dd.sum() == 80.0
    # uint8 input must not wrap around.
    u8 = np.zeros((3, 1, 1), dtype=np.uint8)
    u8[1] = 200
    u8[2] = 250
    assert double_detection(u8)[0, 0] == 200.0
    with pytest.raises(ValueError, match=r"\(3,H,W\)"):
        double_detection(np.zeros((4, 3, 3)))


def test_evaluate_against_direct_computation() -> None:
    rng = np.random.default_rng(1)
    h, w = 12, 9
    heatmaps, masks, defective = [], [], []
    for i in range(6):
        bad = i % 2 == 1
        hm = np.round(rng.random((h, w)), 2).astype(np.float32)  # ties
        mask = None
        if bad:
            mask = np.zeros((h, w), dtype=bool)
            mask[rng.integers(h), rng.integers(w)] = True
            mask[rng.integers(h), rng.integers(w)] = True
            hm[mask] = np.maximum(hm[mask], 0.8)
        heatmaps.append(hm)
        masks.append(mask)
        defective.append(bad)
    m = evaluate(heatmaps, masks, defective)
    assert isinstance(m, SegMetrics)
    assert (m.n_images, m.n_defect_images) == (6, 3)
    img_scores = np.array([hm.max() for hm in heatmaps])
    assert m.image_auroc == pytest.approx(auroc_mann_whitney(np.array(defective), img_scores), abs=1e-12)
    all_scores = np.concatenate([hm.ravel() for hm in heatmaps])
    all_labels = np.concatenate([(mk if mk is not None else np.zeros((h, w), bool)).ravel() for mk in masks])
    assert m.pixel_auroc == pytest.approx(auroc_mann_whitney(all_labels, all_scores), abs=1e-12)
    assert m.pixel_ap == pytest.approx(ap_threshold_loop(all_labels, all_scores), abs=1e-12)


def test_evaluate_undefined_metrics_are_none() -> None:
    hm = [np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)]
    m = evaluate(hm, [None, None], [False, False])
    assert m == SegMetrics(None, None, None, 2, 0)
    # A defect image whose mask is empty: image AUROC defined, pixel metrics not.
    m = evaluate(hm, [None, np.zeros((4, 4), bool)], [False, True])
    assert m.image_auroc == 1.0 and m.pixel_auroc is None and m.pixel_ap is None
    # Only defect images: no image AUROC, but pixel metrics.
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    m = evaluate([hm[1]], [mask], [True])
    assert m.image_auroc is None and m.pixel_auroc == 0.5 and m.n_defect_images == 1


def test_evaluate_errors() -> None:
    hm = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="no mask"):
        evaluate([hm], [None], [True])
    with pytest.raises(ValueError, match="shape"):
        evaluate([hm], [np.zeros((4, 5), bool)], [True])
    with pytest.raises(ValueError, match="same length"):
        evaluate([hm, hm], [None], [False])
    with pytest.raises(ValueError, match="no images"):
        evaluate([], [], [])
