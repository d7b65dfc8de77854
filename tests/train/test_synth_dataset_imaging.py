"""``synth-dataset --eval-level imaging``: valid/test strips imaged like a real line's (whole-pixel
misregistration, per-die blur and exposure), labels still in the target's frame."""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage

from bgtrain.synth import _footprints
from bgtrain.synth_dataset import BACKGROUNDS, EVAL_LEVELS, IMAGING_LEVELS, make_dataset, make_image

LEVEL = IMAGING_LEVELS["imaging"]


def _strip(seed: int, kinds: tuple[str, ...] = ("grid", "texture")) -> tuple:
    recipe, mis = EVAL_LEVELS["imaging"]
    rng = np.random.default_rng(seed)
    return make_image(rng, 320, 128, True, kinds=kinds, misregistration=mis, recipe=recipe, imaging=LEVEL)


def _whole_pixel_shift(t: np.ndarray, r: np.ndarray, radius: int = 6, margin: int = 8) -> tuple[int, int]:
    """Brute force (numpy): the whole-pixel (sy, sx) minimising mean |t - r(y+sy, x+sx)| of normalised,
    smoothed dies (so exposure and blur differences do not count)."""

    def norm(a: np.ndarray) -> np.ndarray:
        s = ndimage.gaussian_filter(a.astype(np.float64), 1.5)
        return (s - s.mean()) / s.std()

    tn, rn = norm(t), norm(r)
    h, w = t.shape
    tc = tn[margin : h - margin, margin : w - margin]
    best = min(
        (np.abs(tc - rn[margin + sy : h - margin + sy, margin + sx : w - margin + sx]).mean(), sy, sx)
        for sy in range(-radius, radius + 1)
        for sx in range(-radius, radius + 1)
    )
    return best[1], best[2]


def test_references_are_misregistered_by_whole_pixels_within_the_level() -> None:
    shifts = []
    for seed in range(8):
        img = _strip(seed, ("texture",))[0]
        for c in (1, 2):
            shifts.append(_whole_pixel_shift(img[0, 100:228], img[c, 100:228]))
    mags = np.abs(np.array(shifts))
    assert mags.max() <= np.ceil(LEVEL.shift_max + LEVEL.drift)
    assert (mags.max(axis=1) >= 2).sum() >= 6  # most references are off by 2+ whole pixels


def test_dies_differ_in_focus_and_exposure() -> None:
    """The same strips without and with the level's blur and exposure (the draws are the same, so are the
    noise and the shifts): each die's edge sharpness drops by its own factor, and its mean moves by its own
    exposure."""
    from dataclasses import replace

    recipe, mis = EVAL_LEVELS["imaging"]
    plain_level = replace(LEVEL, blur_sigma=0.0, gain=0.0, offset=0.0)

    def sharpness(d: np.ndarray) -> float:
        return float(np.percentile(ndimage.gaussian_gradient_magnitude(d.astype(np.float64), 1.0), 99))

    factors, moved = [], []
    for seed in range(6):
        imgs = [
            make_image(
                np.random.default_rng(seed),
                320,
                128,
                True,
                kinds=("grid",),
                misregistration=mis,
                recipe=recipe,
                imaging=level,
            )[0][:3, 16:-16, 16:-16]
            for level in (plain_level, LEVEL)
        ]
        factors.append([sharpness(b) / sharpness(a) for a, b in zip(*imgs)])
        moved.append(np.abs(imgs[1].mean(axis=(1, 2)) - imgs[0].mean(axis=(1, 2))))
    factors_a, moved_a = np.array(factors), np.array(moved)
    assert factors_a.min() < 0.8 and np.ptp(factors_a, axis=1).max() > 0.15  # per-die focus
    assert moved_a.max() > 5.0 and np.ptp(moved_a, axis=1).max() > 3.0  # per-die exposure


def test_the_mask_is_the_labelled_footprints_in_the_target_frame() -> None:
    for seed in range(4):
        _, mask, defects, _ = _strip(200 + seed)
        labelled = [d for d in defects if d.labelled]
        assert labelled
        np.testing.assert_array_equal(mask, _footprints(mask.shape, labelled, EVAL_LEVELS["imaging"][0].mask_threshold))


def test_defects_move_with_their_die() -> None:
    """After moving ref1 back by its whole-pixel shift (brute force around each defect), a defect in all dies
    is explained by ref1's copy: little of its contrast in the target (core vs the ring around it) is left in
    T - R1. A target-only defect keeps most of it (means over the strips' defects)."""
    left: dict[str, list[float]] = {"all": [], "target": []}
    for seed in range(24):
        img, _, defects, _ = _strip(300 + seed, ("texture",))
        t, r = img[0].astype(np.float64), img[1].astype(np.float64)
        for d in defects:
            if d.kind not in left or abs(d.amplitude) < 30 or not (40 < d.y < 270 and 16 < d.x < 100):
                continue
            sy, sx = _whole_pixel_shift(t[d.y - 40 : d.y + 40], r[d.y - 40 : d.y + 40])
            sign, core = np.sign(d.amplitude), d.kernel > 0.5
            tw = t[d.y - 2 : d.y + d.h + 2, d.x - 2 : d.x + d.w + 2]
            ring = np.ones(tw.shape, bool)
            ring[2:-2, 2:-2] = False
            contrast = np.mean(sign * (tw[2:-2, 2:-2][core] - np.median(tw[ring])))
            rw = r[d.y + sy : d.y + sy + d.h, d.x + sx : d.x + sx + d.w][core]
            left[d.kind].append(float(np.mean(sign * (tw[2:-2, 2:-2][core] - rw)) / contrast))
    assert len(left["all"]) >= 3 and len(left["target"]) >= 3
    # per defect noisy (sub-pixel rest, blur, exposure); had the copies stayed at the target's position, the
    # moved-back reference would miss them by its 2-4 px shift and "all" would read like "target"
    assert np.mean(left["all"]) < 0.4 < 0.6 < np.mean(left["target"]), left


def test_the_level_is_recorded_and_its_data_set_has_the_layout(tmp_path) -> None:
    s = make_dataset(tmp_path, 1, 2, 2, seed=1, progress=False, eval_level="imaging")
    assert (
        s["eval_level"] == "imaging" and json.loads((tmp_path / "dataset.json").read_text())["eval_level"] == "imaging"
    )
    assert sorted(p.name for p in (tmp_path / "test").rglob("*.tiff")) == ["test_0000.tiff", "test_0001.tiff"]
    assert "mixed" in BACKGROUNDS
