"""Statistics of the defect synthesiser over many samples (SPEC section 2)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bgtrain.synth import (
    BOTH,
    REF1,
    REF2,
    SHAPES,
    SynthConfig,
    gaussian_kernel,
    sample_rng,
    synthesize,
)

P = 128
N = 2000


def _background(rng) -> np.ndarray:
    base = rng.uniform(90, 160)
    return (base + rng.normal(0, 3, size=(3, P, P))).astype(np.float32)


@pytest.fixture(scope="module")
def samples():
    cfg = SynthConfig()
    out = []
    for i in range(N):
        rng = sample_rng(7, 0, i)
        bg = _background(rng)
        out.append((bg, synthesize(bg, rng, cfg)))
    return out


def test_kernels_are_the_given_ones():
    k33 = gaussian_kernel(SHAPES[0])
    k35 = gaussian_kernel(SHAPES[1])
    assert k33.shape == (3, 3) and k35.shape == (3, 5)
    assert k33.max() == 1.0 and k35.max() == 1.0 and k33[1, 1] == 1.0 and k35[1, 2] == 1.0
    y, x = np.mgrid[-1:2, -1:2]
    np.testing.assert_allclose(k33, np.exp(-(y**2 + x**2) / (2 * 1.3**2)), rtol=1e-6)
    y, x = np.mgrid[-1:2, -2:3]
    np.testing.assert_allclose(k35, np.exp(-(y**2) / 2.0 - x**2 / (2 * 1.5**2)), rtol=1e-6)
    # Every kernel pixel is above the mask threshold for these sigmas: the GT is the whole footprint.
    assert (k33 > 0.1).all() and (k35 > 0.1).sum() == 15


def test_defective_patch_rate(samples):
    rate = np.mean([len(r.defects) > 0 for _, r in samples])
    assert 0.46 < rate < 0.54


def test_number_of_defects_and_targets(samples):
    counts = Counter()
    for _, r in samples:
        if r.defects:
            n = len(r.defects)
            assert 3 <= n <= 8
            counts[n] += 1
            n_t = sum(d.target_only for d in r.defects)
            assert 1 <= n_t <= 2
    # Uniform over 3..8: every count shows up.
    assert set(counts) == set(range(3, 9))


def test_shape_amplitude_and_ref_allocation(samples):
    shapes, amps, refs = Counter(), Counter(), Counter()
    for _, r in samples:
        for d in r.defects:
            shapes[(d.shape.h, d.shape.w)] += 1
            amps[d.amplitude] += 1
            if not d.target_only:
                refs[d.refs] += 1
            else:
                assert d.refs == 0
    total = sum(shapes.values())
    assert abs(shapes[(3, 3)] / total - 0.5) < 0.03
    assert set(amps) == {-80.0, -60.0, 60.0, 80.0}
    for a in amps:
        assert abs(amps[a] / total - 0.25) < 0.03
    nref = sum(refs.values())
    for k in (REF1, REF2, BOTH):
        assert abs(refs[k] / nref - 1 / 3) < 0.03


def test_gt_only_where_target_differs_from_both_refs(samples):
    for bg, r in samples:
        img, mask = r.image, r.mask
        assert mask.dtype == bool and mask.shape == (P, P)
        if mask.any():
            # The target moved by at least 0.1 * 60 (kernel > 0.1, |amplitude| >= 60) at every GT pixel ...
            assert (np.abs(img[0] - bg[0])[mask] >= 6.0 - 1e-4).all()
        # Refs never contain a GT (target-only) defect: refs are unchanged where the GT is.
        np.testing.assert_array_equal(img[1][mask], bg[1][mask])
        np.testing.assert_array_equal(img[2][mask], bg[2][mask])


def test_gt_differs_from_both_refs_on_a_flat_background():
    cfg = SynthConfig(defect_prob=1.0)
    for i in range(300):
        bg = np.full((3, P, P), 128.0, np.float32)
        r = synthesize(bg, sample_rng(3, 0, i), cfg)
        dd = np.minimum(np.abs(r.image[0] - r.image[1]), np.abs(r.image[0] - r.image[2]))
        assert r.mask.any()
        assert (dd[r.mask] >= 6.0 - 1e-4).all()
        # ... and shared (distractor) defects leave no double-detection response outside the GT.
        assert (dd[~r.mask] == 0).all()


def test_refs_only_change_where_a_shared_defect_is(samples):
    for bg, r in samples:
        if not r.defects:
            np.testing.assert_array_equal(r.image, bg)
            assert not r.mask.any()
            continue
        expected_changed = np.zeros((3, P, P), bool)
        for d in r.defects:
            sl = (slice(d.y, d.y + d.shape.h), slice(d.x, d.x + d.shape.w))
            expected_changed[0][sl] = True
            if d.refs in (REF1, BOTH):
                expected_changed[1][sl] = True
            if d.refs in (REF2, BOTH):
                expected_changed[2][sl] = True
        changed = r.image != bg
        assert not (changed & ~expected_changed).any(), "pixels changed outside defect footprints"


def test_amplitude_is_added_and_clipped():
    bg = np.full((3, 16, 16), 250.0, np.float32)
    cfg = SynthConfig(defect_prob=1.0, num_defects_range=(1, 1), amplitudes=(80.0,))
    r = synthesize(bg, np.random.default_rng(0), cfg)
    assert r.image.max() == 255.0 and r.image.min() == 250.0
    bg2 = np.full((3, 16, 16), 100.0, np.float32)
    r2 = synthesize(bg2, np.random.default_rng(0), cfg)
    d = r2.defects[0]
    k = gaussian_kernel(d.shape)
    np.testing.assert_allclose(r2.image[0, d.y : d.y + d.shape.h, d.x : d.x + d.shape.w], 100 + 80 * k, rtol=1e-6)
    np.testing.assert_array_equal(r2.mask[d.y : d.y + d.shape.h, d.x : d.x + d.shape.w], k > 0.1)


def test_reproducible_per_seed_epoch_index():
    bg = np.full((3, P, P), 120.0, np.float32)

    def img(seed, epoch, index):
        return synthesize(bg, sample_rng(seed, epoch, index), SynthConfig(defect_prob=1.0)).image

    np.testing.assert_array_equal(img(1, 2, 3), img(1, 2, 3))
    assert not np.array_equal(img(1, 2, 3), img(1, 3, 3))
    assert not np.array_equal(img(1, 2, 3), img(2, 2, 3))
    assert not np.array_equal(img(1, 2, 3), img(1, 2, 4))


def test_config_validation():
    with pytest.raises(ValueError):
        SynthConfig(num_defects_range=(5, 2))
    with pytest.raises(ValueError):
        SynthConfig(defect_prob=1.5)
