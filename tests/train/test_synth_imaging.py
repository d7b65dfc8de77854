"""Imaging nuisances of real lines in the training recipe: whole-pixel misregistration fields, focus,
binarisation, JPEG-like compression, vignetting, golden templates -- each one's effect measured, and the
labels still following the odd-die-out rule in the target's frame."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import ndimage
from scipy.fft import dctn

from bgtrain.recipe import WEAK_AMPLITUDE, Recipe, RecipeError, get_recipe
from bgtrain.structural import KINDS as STRUCTURAL_KINDS
from bgtrain.synth import (
    _footprints,
    apply_defects,
    jpeg_like,
    jpeg_table,
    sample_rng,
    shift_field,
    synthesize,
)

ROBUST = get_recipe("robust")
QUIET = {"noise_std": 0.0, "shot_noise": 0.0, "gain": 0.0, "offset": 0.0, "ramp": 0.0, "blur_prob": 0.0}
QUIET |= {"jpeg_prob": 0.0, "vignetting": 0.0, "golden_prob": 0.0, "binarize_prob": 0.0, "swap_refs": False}
QUIET |= {"flips": False, "nuisance_prob": 1.0}


def _recipe(**knobs: object) -> Recipe:
    return Recipe.from_dict({**QUIET, **knobs}, base=ROBUST)


def _die(seed: int = 0, size: int = 128) -> np.ndarray:
    """A textured grey die (0..255) with a grid on it."""
    a = ndimage.gaussian_filter(np.random.default_rng(seed).random((size, size)), 2.0)
    a = (a - a.min()) / (a.max() - a.min())
    y, x = np.mgrid[:size, :size]
    lines = (np.mod(y, 21) < 3) | (np.mod(x, 17) < 3)
    return (40 + 120 * a + 80 * lines).astype(np.float32)


def _crop(seed: int = 0) -> np.ndarray:
    d = _die(seed)
    return np.stack([d, d, d])


def test_shift_field_spans_the_range_and_varies_slowly() -> None:
    r = _recipe(shift_max=4.0, shift_warp=0.75)
    fields = [shift_field(np.random.default_rng(i), 128, 128, r) for i in range(300)]
    flat = np.concatenate([np.ravel(f) for pair in fields for f in pair])
    assert flat.min() >= -4.0 and flat.max() <= 4.0
    assert flat.min() < -3.8 and flat.max() > 3.8  # the whole +-4 px range is drawn
    spread = np.array([np.ptp(f) for pair in fields for f in pair])
    assert spread.max() <= 2 * 0.75 + 1e-5 and np.median(spread) > 0.2  # local variation, <= shift_warp each way
    steps = np.array([np.abs(np.diff(f, axis=a)).max() for pair in fields for f in pair for a in (0, 1)])
    assert steps.max() < 0.05  # slow: a few hundredths of a pixel per pixel
    whole = [pair for pair in fields if np.ptp(pair[0]) < 1e-6 and float(pair[0][0, 0]).is_integer()]
    assert not whole  # with warp on, no field is exactly constant
    r0 = _recipe(shift_max=4.0, shift_warp=0.0)
    globs = [shift_field(np.random.default_rng(i), 8, 8, r0)[1][0, 0] for i in range(300)]
    assert 60 < sum(float(g).is_integer() for g in globs) < 150  # a third whole-pixel, the rest not


def test_references_move_by_their_field_and_the_target_stays_the_frame() -> None:
    """No defects, no photometric nuisance: the target is untouched; each reference equals the clean die
    resampled by *some* smooth field of up to 4(+1) px -- checked by finding, per 32x32 block, the
    whole-pixel shift that best explains it (independent brute force), which spans several pixels."""
    r = _recipe(shift_prob=1.0, shift_max=4.0, shift_warp=0.75, misregistration=0.5, defect_prob=0.0)
    crop = _crop()
    found = []
    for i in range(12):
        out = synthesize(crop, sample_rng(1, 0, i), r)
        np.testing.assert_array_equal(out.image[0], crop[0])
        for c in (1, 2):
            blk = out.image[c, 48:80, 48:80]
            best = min(
                (np.abs(blk - crop[0, 48 + sy : 80 + sy, 48 + sx : 80 + sx]).mean(), sy, sx)
                for sy in range(-6, 7)
                for sx in range(-6, 7)
            )
            assert best[0] < 25.0  # a translation explains the block (bilinear softening aside)
            found.append((best[1], best[2]))
    ys, xs = np.array(found).T
    assert max(np.abs(ys).max(), np.abs(xs).max()) >= 3 and np.abs(found).max() <= 5


def test_masks_stay_correct_under_whole_pixel_misregistration() -> None:
    """Only shifts as nuisance: the mask is exactly the union of the labelled defects' footprints in the target's
    frame, the target differs from the clean die only inside the defects' footprints, and a labelled target
    defect's pixels are not in either reference (which moved, but carries no copy)."""
    r = _recipe(shift_prob=1.0, shift_max=4.0, defect_prob=1.0)
    crop = _crop(2)
    for i in range(20):
        out = synthesize(crop, sample_rng(2, 0, i), r)
        labelled = [d for d in out.defects if d.labelled]
        np.testing.assert_array_equal(out.mask, _footprints(out.mask.shape, labelled, r.mask_threshold))
        in_target = [d for d in out.defects if d.dies[0]]
        changed = out.image[0] != crop[0]
        assert not (changed & ~_footprints(changed.shape, in_target, 0.0)).any()


def test_binarised_crops_have_two_levels_per_die_and_visible_labelled_defects() -> None:
    r = _recipe(binarize_prob=1.0, shift_prob=1.0, shift_max=4.0, defect_prob=1.0, gain=0.1, offset=10.0)
    crop = _crop(3)
    jitter = 0
    for i in range(10):
        out = synthesize(crop, sample_rng(3, 0, i), r)
        levels = [np.unique(out.image[c]) for c in range(3)]
        assert all(len(v) == 2 for v in levels) and len({tuple(v) for v in levels}) == 1
        hi = levels[0][1]
        for d in out.defects:
            inside = min(d.y, d.x) >= 4 and d.y + d.h <= crop.shape[1] - 4 and d.x + d.w <= crop.shape[2] - 4
            if d.kind == "target" and d.shape not in STRUCTURAL_KINDS and inside:
                # a labelled spot flips its core: the target differs from both references there (a structural
                # defect's kernel is its footprint, which may start at the fill level already; within the
                # 4-px misregistration margin of the crop border the resampled edges may decide instead)
                core = (slice(d.y, d.y + d.h), slice(d.x, d.x + d.w))
                k = d.kernel > 0.6
                t = out.image[0][core][k]
                assert np.all(t == (hi if d.amplitude > 0 else levels[0][0]))
        # edges jitter between dies: the references differ from the target along the pattern's edges
        jitter += int((out.image[0] != out.image[1]).sum())
    assert jitter > 0


def test_jpeg_like_quantises_each_8x8_block_dct_to_the_table() -> None:
    """Independent check with scipy's DCT: every 8x8 block of the output (level-shifted) has coefficients
    that are multiples of the quality's table (up to float rounding), and quality 95 changes little."""
    die = _die(4)
    out = jpeg_like(die, 30)
    q = jpeg_table(30)
    blocks = (out.astype(np.float64) - 128.0).reshape(16, 8, 16, 8)
    coef = dctn(blocks, axes=(1, 3), norm="ortho") / q[None, :, None, :]
    assert np.abs(coef - np.round(coef)).max() < 1e-3
    assert np.abs(out - die).mean() > 1.0
    assert np.abs(jpeg_like(die, 95) - die).mean() < 0.5 * np.abs(out - die).mean()
    assert jpeg_table(50)[0, 0] == 16 and jpeg_table(100).max() == 1
    odd = jpeg_like(die[:, :13], 50)
    assert odd.shape == (128, 13)


def test_vignetting_darkens_away_from_its_centre() -> None:
    r = _recipe(vignetting=0.3, defect_prob=0.0, shift_prob=0.0, misregistration=0.0)
    flat = np.full((3, 64, 64), 200.0, np.float32)
    ratios = []
    for i in range(20):
        img = synthesize(flat, sample_rng(5, 0, i), r).image
        ratios += [img[c].min() / img[c].max() for c in range(3)]
    assert min(ratios) < 0.85 and max(ratios) <= 1.0 and min(ratios) >= 0.7 - 1e-6


def test_blur_of_a_die_reaches_the_configured_focus_difference() -> None:
    r = _recipe(blur_prob=1.0, blur_sigma=1.5, defect_prob=0.0, shift_prob=0.0, misregistration=0.0)
    spot = np.zeros((3, 33, 33), np.float32)
    spot[:, 16, 16] = 255.0
    peaks = [synthesize(spot, sample_rng(6, 0, i), r).image[:, 16, 16] for i in range(40)]
    peaks = np.concatenate(peaks)
    # a Gaussian of sigma s keeps 1/(2 pi s^2) of a point: sigma 1.5 -> ~18 of 255; sigma 0.3 -> nearly all
    assert peaks.min() < 30 and peaks.max() > 150


def test_golden_template_crops_use_ref1_twice_and_relabel_one_reference_kinds() -> None:
    r = _recipe(golden_prob=1.0, shift_prob=1.0, shift_max=4.0, noise_std=3.0, defect_prob=1.0)
    r = Recipe.from_dict({"distractor_weights": [1.0, 1.0, 1.0, 1.0, 1.0]}, base=r)
    kinds: Counter[str] = Counter()
    crop = np.stack([_die(7), _die(7), _die(8)])  # ref2 is another die: golden crops must not use it
    for i in range(30):
        out = synthesize(crop, sample_rng(7, 0, i), r)
        np.testing.assert_array_equal(out.image[1], out.image[2])
        kinds.update(d.kind for d in out.defects)
        labelled = [d for d in out.defects if d.labelled]
        np.testing.assert_array_equal(out.mask, _footprints(out.mask.shape, labelled, r.mask_threshold))
    assert set(kinds) <= {"target", "missing", "all"} and kinds["missing"] > 0 and kinds["all"] > 0


def test_robust_keeps_every_odd_die_out_case_weak_defects_and_each_nuisance() -> None:
    """The default recipe's mix over many crops: every defect kind (a reference's own defect, the target
    and one reference, all dies, missing from the target), weak defects, golden and binarised crops."""
    crop = _crop(9)
    kinds: Counter[str] = Counter()
    weak = golden = binary = 0
    for i in range(150):
        out = synthesize(crop, sample_rng(9, 0, i), ROBUST)
        kinds.update(d.kind for d in out.defects)
        weak += sum(d.labelled and abs(d.amplitude) <= WEAK_AMPLITUDE for d in out.defects)
        golden += int(np.array_equal(out.image[1], out.image[2]))
        binary += int(all(len(np.unique(out.image[c])) <= 2 for c in range(3)))
    assert set(kinds) == {"target", "missing", "ref1", "ref2", "target_ref1", "target_ref2", "all"}
    assert weak > 10 and 5 <= golden <= 35 and binary >= 1


@pytest.mark.parametrize(
    ("key", "value"),
    [("shift_max", 9.0), ("shift_warp", -1.0), ("shift_prob", 1.5), ("vignetting", 0.6), ("jpeg_quality_min", 2)],
)
def test_imaging_knobs_are_validated(key: str, value: float) -> None:
    with pytest.raises(RecipeError, match=key):
        Recipe.from_dict({key: value}, base=ROBUST)


def test_seed_recipe_draws_none_of_the_new_nuisances() -> None:
    """The seed preset (the research synthesis) has them all off; its samples are what they were (nuisance-free)."""
    seed = get_recipe("seed")
    assert seed.shift_prob == seed.binarize_prob == seed.jpeg_prob == seed.golden_prob == seed.vignetting == 0.0
    crop = _crop(10)
    out = synthesize(crop, sample_rng(0, 0, 1), seed)
    img, _ = apply_defects(crop.copy(), out.defects, seed.mask_threshold)
    np.testing.assert_array_equal(out.image, img)
