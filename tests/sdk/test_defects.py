"""Result.defects / verdict / operating point against independent scipy labelling and raw ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import tifffile
from scipy import ndimage

from bgsdk import ModelError, Segmenter
from bgsdk._operating_point import OPERATING_POINT_KEY, OperatingPoint, calibrate, point_metrics
from tests.helpers.models import SdkEnv, make_full_model, strip_contract_json

EIGHT = np.ones((3, 3), dtype=bool)


def independent_defects(heatmap: np.ndarray, image: np.ndarray, threshold: float, min_area: int) -> list[dict]:
    """Per-component records computed pixel by pixel from scipy.ndimage.label only."""
    labels, n = ndimage.label(heatmap > np.float32(threshold), structure=EIGHT)
    out = []
    for lab in range(1, n + 1):
        ys, xs = np.nonzero(labels == lab)
        if ys.size < min_area:
            continue
        vals = heatmap[ys, xs].astype(np.float64)
        diff = image[0, ys, xs].astype(np.float64) - (image[1, ys, xs].astype(np.float64) + image[2, ys, xs]) / 2
        out.append(
            dict(
                id=len(out) + 1,
                x=xs.mean(),
                y=ys.mean(),
                x0=xs.min(),
                y0=ys.min(),
                x1=xs.max(),
                y1=ys.max(),
                area=ys.size,
                peak=vals.max(),
                mean=vals.mean(),
                polarity="bright" if diff.mean() >= 0 else "dark",
            )
        )
    return out


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for d, e in zip(got, expected):
        r = d.to_dict()
        for k in ("id", "x0", "y0", "x1", "y1", "area", "polarity"):
            assert r[k] == e[k], k
        for k in ("x", "y", "peak", "mean"):
            assert r[k] == pytest.approx(e[k], rel=1e-9, abs=1e-7), k


@pytest.mark.parametrize("few", [0, 10**9], ids=["whole-image-stats", "per-box-stats"])
@pytest.mark.parametrize("threshold,min_area", [(0.4, 1), (0.3, 3), (0.45, 2)])
@pytest.mark.slow
def test_defects_match_independent_scipy_label(sdk_env: SdkEnv, threshold, min_area, few, monkeypatch):
    import bgsdk._defects

    monkeypatch.setattr(bgsdk._defects, "_FEW", few)  # both statistics paths must give the same list
    seg = Segmenter(sdk_env.strip_model)
    sess = ort.InferenceSession(str(sdk_env.strip_model), providers=["CPUExecutionProvider"])
    for path in sdk_env.strips:
        image = tifffile.imread(path)[:3].astype(np.float32)
        heatmap = sess.run(["output"], {"input": image[None] / np.float32(255)})[0][0, 0]
        r = seg.run(path, threshold=threshold, min_area=min_area)
        expected = independent_defects(heatmap, image, threshold, min_area)
        assert len(expected) > 0  # the test model gives components at these thresholds
        _assert_same(r.defects, expected)
        assert (r.threshold, r.min_area) == (threshold, min_area)
        assert r.verdict == "fail"
        np.testing.assert_array_equal(r.mask(), heatmap > np.float32(threshold))


def test_verdict_pass_when_nothing_survives(sdk_env: SdkEnv):
    seg = Segmenter(sdk_env.strip_model)
    r = seg.run(sdk_env.strips[0], threshold=0.99)
    assert r.defects == () and r.verdict == "pass"
    big = seg.run(sdk_env.strips[0], threshold=0.3, min_area=10**6)
    assert big.defects == () and big.verdict == "pass"
    batch = seg.run_batch(sdk_env.strips, threshold=0.35, min_area=2)
    single = [seg.run(p, threshold=0.35, min_area=2) for p in sdk_env.strips]
    assert [b.defects for b in batch] == [s.defects for s in single]


def test_old_model_loads_uncalibrated(sdk_env: SdkEnv):
    seg = Segmenter(sdk_env.strip_model)
    op = seg.operating_point
    assert (op.calibrated, op.threshold, op.min_area) == (False, 0.5, 1)
    r = seg.run(sdk_env.strips[0])
    assert (r.threshold, r.min_area) == (0.5, 1)


def test_model_operating_point_is_used_and_overridable(sdk_env: SdkEnv, tmp_path):
    op = OperatingPoint(threshold=0.3, min_area=4, calibrated=True, rule="best_f1")
    m = make_full_model(
        tmp_path / "cal.onnx", contract_json=strip_contract_json(), extra_metadata={OPERATING_POINT_KEY: op.to_json()}
    )
    seg = Segmenter(m)
    assert seg.operating_point == op
    r = seg.run(sdk_env.strips[1])
    assert (r.threshold, r.min_area) == (0.3, 4)
    assert all(d.area >= 4 and d.peak > 0.3 for d in r.defects)
    r2 = seg.run(sdk_env.strips[1], min_area=1)
    assert (r2.threshold, r2.min_area) == (0.3, 1) and len(r2.defects) >= len(r.defects)
    with pytest.raises(ValueError, match="min_area"):
        seg.run(sdk_env.strips[1], min_area=0)
    with pytest.raises(ValueError, match="threshold"):
        seg.run(sdk_env.strips[1], threshold=float("nan"))


def test_broken_operating_point_is_a_model_error(tmp_path):
    m = make_full_model(
        tmp_path / "bad.onnx",
        contract_json=strip_contract_json(),
        extra_metadata={OPERATING_POINT_KEY: '{"threshold": "x"}'},
    )
    with pytest.raises(ModelError, match="operating_point"):
        Segmenter(m)


# ----------------------------------------------------------------- calibration
def _toy(seed: int, n_bad: int, n_good: int):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n_bad + n_good):
        h = (rng.random((40, 30)) * 0.3).astype(np.float32)
        m = np.zeros((40, 30), bool)
        if i < n_bad:
            m[10:13, 10:13] = True
            h[10:13, 10:13] = 0.6 + 0.3 * rng.random((3, 3))
        h[30, 5] = 0.45  # a one-pixel false alarm in every image
        maps.append(h)
        masks.append(m if i < n_bad else None)
    return maps, masks


def test_calibrate_best_f1_separates_and_picks_min_area():
    maps, masks = _toy(0, 3, 3)
    op = calibrate(maps, masks, data={"source": "toy"})
    assert op.calibrated and op.rule == "best_f1"
    assert np.float32(0.45) <= op.threshold < 0.6
    pm = point_metrics(maps, masks, op.threshold, op.min_area)
    assert pm.pixel_f1 == 1.0 and pm.defect_recall == 1.0 and pm.false_alarms == 0
    assert op.metrics["pixel_f1"] == 1.0 and op.data["n_images"] == 6
    json.loads(op.to_json())


def test_calibrate_max_false_alarms_and_min_area_filter():
    maps, masks = _toy(1, 3, 3)
    op = calibrate(maps, masks, rule="max_false_alarms", target=1.0, min_area=2)
    # One 1-pixel blob per image is filtered by min_area=2, so the threshold can go down to the noise.
    assert op.threshold < 0.45
    assert point_metrics(maps, masks, op.threshold, 2).false_alarms_per_image <= 1.0


def test_calibrate_without_defective_images_falls_back():
    maps, masks = _toy(2, 0, 4)
    op = calibrate(maps, masks)
    assert op.calibrated and op.rule == "fallback_false_alarms" and "no defective" in op.note
    assert op.threshold >= np.float32(0.45)
    assert point_metrics(maps, masks, op.threshold, op.min_area).false_alarms == 0
    assert op.metrics["pixel_f1"] is None
