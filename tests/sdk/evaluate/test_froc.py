"""FROC on boxes: a hand-computed example and a brute-force reference (own flood fill, plain loops)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from bgsdk.annotations import Box
from bgsdk.evaluate.froc import AREA_FACTOR, froc_curve, sweep_thresholds


def _hand_example() -> tuple[list[np.ndarray], list[list[Box]]]:
    a = np.zeros((12, 12), np.float32)
    a[2:5, 2:5] = 0.9  # hits box (2,2)-(4,4) "open" below 0.9
    a[0, 11] = 0.6  # a false alarm below 0.6
    a[8, 8] = 0.4  # hits box (8,8)-(9,9) "short" below 0.4
    b = np.zeros((12, 12), np.float32)
    b[5, 5:7] = 0.7  # a good image's false alarm below 0.7
    c = np.zeros((12, 12), np.float32)
    c[0:6, 0:6] = 0.5  # below 0.5 the core grows to 36 px > 4 x 4: centred in the box, but no hit
    c[2:4, 2:4] = 0.95  # the core: 4 px, hits box (2,2)-(3,3) "open"
    boxes = [[Box(2, 2, 4, 4, "open"), Box(8, 8, 9, 9, "short")], [], [Box(2, 2, 3, 3, "open")]]
    return [a, b, c], boxes


def test_hand_computed_example():
    maps, boxes = _hand_example()
    f = froc_curve(maps, boxes, thresholds=[0.3, 0.45, 0.55, 0.65, 0.85, 0.92])
    assert f.thresholds.tolist() == pytest.approx([0.92, 0.85, 0.65, 0.55, 0.45, 0.3])
    # found: core of c; + a's blob; + b's FA; + a's pixel FA; c merges (FA, b3 lost); a's 1 px hits "short"
    np.testing.assert_allclose(f.recall, [1 / 3, 2 / 3, 2 / 3, 2 / 3, 1 / 3, 2 / 3])
    np.testing.assert_allclose(f.fa_per_image, [0, 0, 1 / 3, 2 / 3, 1, 1])
    assert f.recall_at(0.5) == pytest.approx(2 / 3) and f.recall_at(0.0) == pytest.approx(2 / 3)
    assert f.threshold_at(0.5) == pytest.approx(0.85)  # the highest threshold reaching that recall
    assert f.recall_at(0.5, "open") == 1.0 and f.recall_at(0.5, "short") == 0.0 and f.recall_at(1, "short") == 1.0
    s = f.summary()
    assert s["recall"] == {"0.5": pytest.approx(2 / 3), "1": pytest.approx(2 / 3), "2": pytest.approx(2 / 3)}
    assert s["per_class"]["short"] == {"n_boxes": 1, "recall": {"0.5": 0.0, "1": 1.0, "2": 1.0}}
    assert (s["n_images"], s["n_boxes"]) == (3, 3)
    # min_area 2 drops the two 1-px components: "short" is never found, a's pixel is no false alarm
    f2 = froc_curve(maps, boxes, thresholds=[0.3, 0.55], min_area=2)
    np.testing.assert_allclose(f2.fa_per_image, [1 / 3, 2 / 3])
    np.testing.assert_allclose(f2.recall, [2 / 3, 1 / 3])


def test_no_boxes_gives_none_and_good_images_only_count_false_alarms():
    maps, _ = _hand_example()
    f = froc_curve(maps, [[], [], []])
    assert f.recall_at(1.0) is None and f.threshold_at(1.0) is None and f.n_boxes == 0
    assert f.fa_per_image[0] == 0.0  # the top threshold: nothing above it
    assert f.fa_per_image[-1] > 0


def _flood_components(above: np.ndarray) -> list[list[tuple[int, int]]]:
    seen = np.zeros_like(above, dtype=bool)
    out = []
    h, w = above.shape
    for r in range(h):
        for c in range(w):
            if above[r, c] and not seen[r, c]:
                comp, queue = [], deque([(r, c)])
                seen[r, c] = True
                while queue:
                    y, x = queue.popleft()
                    comp.append((y, x))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            yy, xx = y + dy, x + dx
                            if 0 <= yy < h and 0 <= xx < w and above[yy, xx] and not seen[yy, xx]:
                                seen[yy, xx] = True
                                queue.append((yy, xx))
                out.append(comp)
    return out


def _brute_force(maps, boxes, thresholds, min_area):
    fa_rate, recall = [], []
    n_boxes = sum(len(b) for b in boxes)
    for t in thresholds:
        fa = found = 0
        for hm, per in zip(maps, boxes):
            comps = [c for c in _flood_components(hm > np.float32(t)) if len(c) >= min_area]
            hit_box = [False] * len(per)
            for comp in comps:
                cy = sum(p[0] for p in comp) / len(comp)
                cx = sum(p[1] for p in comp) / len(comp)
                hits = [
                    b.x1 - 0.5 <= cx <= b.x2 + 0.5
                    and b.y1 - 0.5 <= cy <= b.y2 + 0.5
                    and len(comp) <= AREA_FACTOR * (b.x2 - b.x1 + 1) * (b.y2 - b.y1 + 1)
                    for b in per
                ]
                fa += not any(hits)
                hit_box = [a or b for a, b in zip(hit_box, hits)]
            found += sum(hit_box)
        fa_rate.append(fa / len(maps))
        recall.append(found / n_boxes)
    return np.array(fa_rate), np.array(recall)


@pytest.mark.parametrize("seed", range(4))
def test_matches_a_brute_force_reference(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    maps, boxes = [], []
    for _ in range(3):
        hm = ndimage.gaussian_filter(rng.random((20, 24)), 1.2).astype(np.float32)
        hm = (hm - hm.min()) / np.ptp(hm)
        per = []
        for _ in range(rng.integers(0, 4)):
            x1, y1 = int(rng.integers(0, 20)), int(rng.integers(0, 16))
            per.append(Box(x1, y1, x1 + int(rng.integers(0, 5)), y1 + int(rng.integers(0, 5)), str(rng.integers(2))))
        maps.append(hm)
        boxes.append(per)
    if not any(boxes):
        boxes[0].append(Box(3, 3, 6, 6, "0"))
    ts = sweep_thresholds(maps, steps=25)
    assert np.all(np.diff(ts) < 0) and ts[0] == max(float(m.max()) for m in maps)
    min_area = 1 + seed % 2
    f = froc_curve(maps, boxes, ts, min_area=min_area)
    fa, rec = _brute_force(maps, boxes, ts, min_area)
    np.testing.assert_allclose(f.fa_per_image, fa)
    np.testing.assert_allclose(f.recall, rec)
    for fa_point in (0.5, 1.0, 2.0):
        ok = fa <= fa_point
        assert f.recall_at(fa_point) == pytest.approx(rec[ok].max() if ok.any() else 0.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        froc_curve([np.zeros((4, 4))], [])
    with pytest.raises(ValueError, match="min_area"):
        froc_curve([np.zeros((4, 4))], [[]], min_area=0)


def test_the_sweep_reaches_defects_above_a_noise_floor():
    """Thousands of noise maxima per image must not crowd out the thresholds between noise and defects."""
    rng = np.random.default_rng(0)
    maps = [rng.uniform(0, 0.05, (200, 200)).astype(np.float32) for _ in range(3)]
    maps[0][50:55, 60:66] = 0.3
    maps[2][10:12, 10:14] = 0.2
    boxes = [[Box(60, 50, 65, 54, "d")], [], [Box(10, 10, 13, 11, "d")]]
    f = froc_curve(maps, boxes)
    assert f.recall_at(0.0) == 1.0 and 0.2 > f.threshold_at(0.0) > 0.199  # just below the weaker defect
    assert len(f.thresholds) <= 201
