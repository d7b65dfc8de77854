"""The defect synthesiser: the ``seed`` recipe's statistics (the research code's given numbers) over many samples,
and the ``robust`` recipe's cases, shapes, nuisances and symmetries."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bgtrain.recipe import DIE_KINDS, Recipe, get_recipe
from bgtrain.synth import SHAPES, gaussian_kernel, sample_rng, synthesize

SEED = get_recipe("seed")

P = 128
N = 2000


def _background(rng) -> np.ndarray:
    base = rng.uniform(90, 160)
    return (base + rng.normal(0, 3, size=(3, P, P))).astype(np.float32)


@pytest.fixture(scope="module")
def samples():
    cfg = SEED
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
            n_t = sum(d.labelled for d in r.defects)
            assert 1 <= n_t <= 2
    # Uniform over 3..8: every count shows up.
    assert set(counts) == set(range(3, 9))


def test_shape_amplitude_and_ref_allocation(samples):
    shapes, amps, refs = Counter(), Counter(), Counter()
    for _, r in samples:
        for d in r.defects:
            shapes[(d.h, d.w)] += 1
            amps[d.amplitude] += 1
            if not d.labelled:
                refs[d.kind] += 1
            else:
                assert d.kind == "target"
    total = sum(shapes.values())
    assert abs(shapes[(3, 3)] / total - 0.5) < 0.03
    assert set(amps) == {-80.0, -60.0, 60.0, 80.0}
    for a in amps:
        assert abs(amps[a] / total - 0.25) < 0.03
    nref = sum(refs.values())
    # The seed recipe's distractors are always in the target too: T+R1, T+R2, all three, 1/3 each.
    assert set(refs) == {"target_ref1", "target_ref2", "all"}
    for k in refs:
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
    cfg = Recipe(defect_prob=1.0)
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
            sl = (slice(d.y, d.y + d.h), slice(d.x, d.x + d.w))
            for c, present in enumerate(d.dies):
                expected_changed[c][sl] |= present
        changed = r.image != bg
        assert not (changed & ~expected_changed).any(), "pixels changed outside defect footprints"


def test_amplitude_is_added_and_clipped():
    bg = np.full((3, 16, 16), 250.0, np.float32)
    cfg = Recipe(defect_prob=1.0, num_defects_range=(1, 1), target_range=(1, 1), amplitudes=(80.0,))
    r = synthesize(bg, np.random.default_rng(0), cfg)
    assert r.image.max() == 255.0 and r.image.min() == 250.0
    bg2 = np.full((3, 16, 16), 100.0, np.float32)
    r2 = synthesize(bg2, np.random.default_rng(0), cfg)
    d = r2.defects[0]
    k = d.kernel
    assert any(np.array_equal(k, gaussian_kernel(s)) for s in SHAPES)
    np.testing.assert_allclose(r2.image[0, d.y : d.y + d.h, d.x : d.x + d.w], 100 + 80 * k, rtol=1e-6)
    np.testing.assert_array_equal(r2.mask[d.y : d.y + d.h, d.x : d.x + d.w], k > 0.1)


def test_reproducible_per_seed_epoch_index():
    bg = np.full((3, P, P), 120.0, np.float32)

    def img(seed, epoch, index):
        return synthesize(bg, sample_rng(seed, epoch, index), get_recipe("robust")).image

    np.testing.assert_array_equal(img(1, 2, 3), img(1, 2, 3))
    assert not np.array_equal(img(1, 2, 3), img(1, 3, 3))
    assert not np.array_equal(img(1, 2, 3), img(2, 2, 3))
    assert not np.array_equal(img(1, 2, 3), img(1, 2, 4))


# ------------------------------------------------------------------------------ robust recipe

ROBUST = get_recipe("robust")


def _flat(value: float = 120.0) -> np.ndarray:
    return np.full((3, P, P), value, np.float32)


@pytest.fixture(scope="module")
def robust_plans():
    """Robust samples without nuisances/symmetries: every defect is where its record says."""
    r = Recipe.from_dict({"nuisance_prob": 0.0, "swap_refs": False, "flips": False, "defect_prob": 1.0}, base=ROBUST)
    return [synthesize(_flat(), sample_rng(11, 0, i), r) for i in range(600)]


def test_robust_shows_every_odd_die_out_case(robust_plans):
    kinds = Counter(d.kind for s in robust_plans for d in s.defects)
    assert set(kinds) == set(DIE_KINDS)
    # Single-reference defects are the hardest not-defects: the recipe shows them most.
    assert kinds["ref1"] > kinds["target_ref1"] and kinds["ref2"] > kinds["target_ref2"]
    assert 0.15 < kinds["missing"] / (kinds["missing"] + kinds["target"]) < 0.35
    # Some defective patches hold only not-labelled defects (no GT at all).
    assert any(s.defects and not s.mask.any() for s in robust_plans)


def test_label_follows_the_odd_die_out_rule(robust_plans):
    for s in robust_plans:
        for d in s.defects:
            t, r1, r2 = d.dies
            assert d.labelled == (r1 == r2 != t)
            box = (slice(d.y, d.y + d.h), slice(d.x, d.x + d.w))
            core = d.kernel > 0.5
            assert s.mask[box][core].all() == d.labelled
            if d.kind == "missing":  # the target lacks it, both references show it
                assert (s.image[0][box] == 120.0).all()
                assert (np.abs(s.image[1][box][core] - 120.0) > 0).all()


FAMILY = ("gaussian", "line", "cluster")  # the additive shapes; structural ones: tests/train/test_structural.py


def test_amplitudes_are_continuous_weak_ones_common(robust_plans):
    amps = np.array([d.amplitude for s in robust_plans for d in s.defects if d.shape in FAMILY])
    mags = np.abs(amps)
    assert mags.min() >= 20.0 - 1e-6 and mags.max() <= 100.0 + 1e-6
    assert 0.36 < np.mean(mags <= 40) < 0.50  # log-uniform over 20..100: ln 2 / ln 5 = 43%
    assert 0.4 < np.mean(amps > 0) < 0.6
    assert len(np.unique(mags)) > 0.9 * len(mags)


def test_shape_family(robust_plans):
    defects = [d for s in robust_plans for d in s.defects if d.shape in FAMILY]
    shapes = Counter(d.shape for d in defects)
    assert abs(shapes["line"] / len(defects) - 0.15) < 0.04 and abs(shapes["cluster"] / len(defects) - 0.15) < 0.04
    assert max(max(d.h, d.w) for d in defects) <= 9
    assert all(d.kernel.max() == pytest.approx(1.0) for d in defects)
    aspects = [max(d.h, d.w) / min(d.h, d.w) for d in defects if d.shape == "gaussian"]
    assert max(aspects) >= 2.0  # anisotropic ones exist


def test_edge_placement_prefers_pattern_edges():
    img = _flat(60.0)
    img[:, :, 64:] = 200.0  # one vertical edge at x = 64
    r = Recipe.from_dict({"edge_prob": 1.0, "defect_prob": 1.0, "num_defects_range": [2, 2]}, base=ROBUST)
    near = [abs(d.x + d.w / 2 - 64) < 6 for i in range(200) for d in synthesize(img, sample_rng(5, 0, i), r).defects]
    assert np.mean(near) > 0.8  # uniform placement would give < 0.1


def test_nuisances_leave_the_target_frame_and_differ_per_die():
    bg = _flat()
    bg[:, :, ::8] = 200.0  # a stripe pattern
    only_shift = Recipe(nuisance_prob=1.0, misregistration=0.5, defect_prob=0.0)
    out = synthesize(bg, sample_rng(2, 0, 0), only_shift).image
    np.testing.assert_array_equal(out[0], bg[0])  # the target is the reference frame
    assert not np.array_equal(out[1], bg[1]) and not np.array_equal(out[1], out[2])
    noisy = synthesize(
        bg, sample_rng(2, 0, 1), Recipe(nuisance_prob=1.0, noise_std=3.0, gain=0.1, offset=10.0, defect_prob=0.0)
    ).image
    assert noisy.min() >= 0 and noisy.max() <= 255
    assert all(not np.array_equal(noisy[c], bg[c]) for c in range(3))


def test_symmetries_move_image_and_mask_together():
    plain = Recipe.from_dict(
        {"nuisance_prob": 0.0, "defect_prob": 1.0, "swap_refs": False, "flips": False}, base=ROBUST
    )
    sym = Recipe.from_dict({"swap_refs": True, "flips": True}, base=plain)
    seen = set()
    for i in range(40):
        a = synthesize(_flat(), sample_rng(9, 0, i), plain)  # the same draws up to the symmetries
        b = synthesize(_flat(), sample_rng(9, 0, i), sym)
        found = False
        for swap in (False, True):
            img = a.image[[0, 2, 1]] if swap else a.image
            for k in range(4):
                for flip in (False, True):
                    ti = np.rot90(img, k, axes=(1, 2))
                    tm = np.rot90(a.mask, k)
                    if flip:
                        ti, tm = ti[:, ::-1], tm[::-1]
                    if np.array_equal(ti, b.image) and np.array_equal(tm, b.mask):
                        found = True
                        seen.add((swap, k, flip))
        assert found, "image and mask were not transformed alike"
    assert len(seen) >= 8  # the symmetries really vary


def test_kernels_of_the_seed_recipe_only():
    r = synthesize(_flat(), sample_rng(0, 0, 0), Recipe(defect_prob=1.0))
    assert all(any(np.array_equal(d.kernel, gaussian_kernel(s)) for s in SHAPES) for d in r.defects)
