"""Per-defect rates at a threshold: which defects count as found, by kind and |amplitude| band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bgsdk._dataset_layout import Sample
from bgtrain.recipe import FAINT_AMPLITUDE, WEAK_AMPLITUDE
from bgtrain.validate import EvalImage, EvalSet, defect_rates, score_maps

H, W = 32, 64


def _set(defects: list[tuple[str, float, float]]) -> tuple[EvalSet, list[np.ndarray]]:
    """One image with each defect in its own 4x4 box at x = 8*i; its heatmap peak there is the given score."""
    hm = np.zeros((H, W), np.float32)
    mask = np.zeros((H, W), bool)
    ann = []
    for i, (kind, amp, peak) in enumerate(defects):
        x0 = 8 * i
        hm[10:14, x0 : x0 + 4] = peak * 0.5
        hm[12, x0 + 2] = peak
        if kind in ("target", "missing"):
            mask[11:13, x0 + 1 : x0 + 3] = True
        ann.append({"kind": kind, "amplitude": amp, "box": [10, x0, 14, x0 + 4]})
    img = EvalImage(Sample(Path("strip_000"), bool(mask.any()), None), np.zeros((3, H, W), np.float32), mask, ann)
    return EvalSet("test", [img], annotated=True), [hm]


def test_amplitude_bands_split_weak_faint_and_strong_at_their_edges() -> None:
    es, maps = _set(
        [
            ("target", -(FAINT_AMPLITUDE - 0.5), 0.9),  # faint: weak, not weak12
            ("target", FAINT_AMPLITUDE, 0.1),  # weak12 edge, missed
            ("missing", -WEAK_AMPLITUDE, 0.9),  # weak12 edge, found
            ("target", WEAK_AMPLITUDE + 0.01, 0.2),  # strong, missed
            ("target", 90.0, 0.8),  # strong, found
            ("ref1", 30.0, 0.7),  # flagged
            ("ref2", 30.0, 0.3),
            ("all", 60.0, 0.1),
        ]
    )
    r = defect_rates(maps, es, threshold=0.5)
    assert (r["n_recall_weak"], r["recall_weak"]) == (3, pytest.approx(2 / 3))
    assert (r["n_recall_weak12"], r["recall_weak12"]) == (2, 0.5)
    assert (r["n_recall_strong"], r["recall_strong"]) == (2, 0.5)
    assert (r["n_recall"], r["recall"]) == (5, pytest.approx(3 / 5))
    assert (r["n_recall_missing"], r["recall_missing"]) == (1, 1.0)
    assert (r["n_fa_one_ref"], r["fa_one_ref"]) == (2, 0.5)
    assert (r["n_fa_all"], r["fa_all"]) == (1, 0.0)
    assert r["n_fa_target_ref"] == 0 and r["fa_target_ref"] is None


def test_score_maps_reports_the_bands_at_the_best_f1_threshold() -> None:
    es, maps = _set([("target", 20.0, 0.9), ("target", 8.0, 0.05), ("ref1", 50.0, 0.2)])
    s = score_maps(maps, es)
    thr = float(s["best_f1_threshold"])  # type: ignore[arg-type]
    assert 0.05 < thr <= 0.9
    assert s["recall_weak12"] == 1.0 and s["n_recall_weak12"] == 1
    assert s["recall_weak"] == 0.5 and s["fa_one_ref"] == 0.0


def _strip(name: str, defects: list[tuple[str, float]], peak: float) -> tuple[EvalImage, np.ndarray]:
    """A strip whose heatmap maximum is ``peak``; defective if any defect is labelled (target/missing)."""
    defective = any(k in ("target", "missing") for k, _ in defects)
    ann = [{"kind": k, "amplitude": a, "box": [0, 0, 4, 4]} for k, a in defects]
    mask = np.zeros((H, W), bool)
    mask[1:3, 1:3] = defective
    hm = np.full((H, W), peak / 2, np.float32)
    hm[5, 5] = peak
    return EvalImage(Sample(Path(name), defective, None), np.zeros((3, H, W), np.float32), mask, ann), hm


def test_image_auroc12_leaves_out_only_strips_whose_labelled_defects_are_all_faint() -> None:
    rows = [
        _strip("good_high", [("ref1", 80.0)], 0.7),  # a good strip with a reference's own defect
        _strip("good_low", [], 0.2),
        _strip("faint_only", [("target", -(FAINT_AMPLITUDE - 1)), ("all", 90.0)], 0.1),  # left out
        _strip("faint_and_weak", [("target", 9.0), ("missing", FAINT_AMPLITUDE)], 0.6),  # kept: |a| = 12
        _strip("strong", [("target", 60.0)], 0.9),
    ]
    es = EvalSet("test", [r[0] for r in rows], annotated=True)
    s = score_maps([r[1] for r in rows], es)
    # all five: the faint-only strip (0.1) ranks below both good strips, faint_and_weak (0.6) below good_high
    assert s["image_auroc"] == pytest.approx(3 / 6)
    # without it: 2 defective x 2 good pairs, 3 ranked right
    assert s["image_auroc12"] == pytest.approx(3 / 4) and s["n_faint_only"] == 1
