"""Structural defects (opens, shorts, bites, spurs, blobs, holes) on a binary trace pattern and on grey
textures: they change the pattern's topology as claimed, at the pattern's own levels, and the GT is
exactly what changed. Plus the recipe knobs and the ``seed`` preset's unchanged stream."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from bgtrain.background import random_pattern, render_views
from bgtrain.recipe import Recipe, RecipeError, get_recipe
from bgtrain.structural import KINDS, StructuralDefect, structural_defect
from bgtrain.synth import sample_rng, synthesize

LO, HI = 40.0, 200.0
MID = (LO + HI) / 2


def _traces(h: int = 128, w: int = 128, vertical: bool = True) -> np.ndarray:
    """Horizontal traces 6 px wide every 14 px (rows 4-9, 18-23, ...; gaps of 8), and a vertical trace
    across them at columns 60-65."""
    img = np.full((h, w), LO, np.float32)
    for y in range(4, h, 14):
        img[y : y + 6, :] = HI
    if vertical:
        img[:, 60:66] = HI
    return img


def _apply(die: np.ndarray, d: StructuralDefect) -> np.ndarray:
    out = die.copy()
    out[d.top : d.top + d.delta.shape[0], d.left : d.left + d.delta.shape[1]] += d.delta
    return out


def _full(die: np.ndarray, d: StructuralDefect, box: np.ndarray) -> np.ndarray:
    out = np.zeros(die.shape, dtype=box.dtype)
    out[d.top : d.top + box.shape[0], d.left : d.left + box.shape[1]] = box
    return out


def _parts(img: np.ndarray, bright: bool) -> int:
    return int(ndimage.label((img >= MID) == bright)[1])


@pytest.mark.parametrize("soft", [0.0, 0.8])
def test_a_band_across_a_trace_cuts_it(soft):
    die = _traces(vertical=False)
    for i in range(20):
        rng = np.random.default_rng(i)
        cy, cx = 18 + 14 * int(rng.integers(0, 6)) + int(rng.integers(0, 6)), int(rng.integers(8, 120))  # on a trace
        d = structural_defect(die, rng, cy, cx, "band", soft=soft)
        assert d is not None and d.amplitude < 0
        if soft == 0:
            assert d.amplitude == LO - HI  # full contrast
        # an open: the trace falls in two, and the gaps on either side of it join through the cut
        assert _parts(_apply(die, d), bright=True) == _parts(die, bright=True) + 1
        assert _parts(_apply(die, d), bright=False) == _parts(die, bright=False) - 1
        # across the trace (its narrowest run), not along it: at most 6 px wide (+ tilt, + soft edge)
        cols = np.flatnonzero(d.mask.any(axis=0))
        assert cols[-1] - cols[0] + 1 <= 10


@pytest.mark.parametrize("soft", [0.0, 0.8])
def test_a_band_across_a_gap_bridges_two_traces(soft):
    die = _traces(vertical=False)
    labels, n = ndimage.label(die >= MID)
    for i in range(20):
        rng = np.random.default_rng(100 + i)
        cy, cx = 10 + 14 * int(rng.integers(0, 7)) + int(rng.integers(0, 8)), int(rng.integers(8, 120))  # in a gap
        d = structural_defect(die, rng, cy, cx, "band", soft=soft)
        assert d is not None and d.amplitude > 0
        after = _apply(die, d)
        # a short: two traces become one conductor, and the gap between them falls in two
        assert _parts(after, bright=True) == n - 1
        assert _parts(after, bright=False) == _parts(die, bright=False) + 1
        bridge = _full(die, d, d.mask)
        assert len(np.unique(labels[ndimage.binary_dilation(bridge) & (labels > 0)])) == 2


def test_a_blob_takes_the_other_level():
    die = np.full((96, 96), LO, np.float32)
    die[:, 48:] = HI  # a wide copper area right of x = 48
    for i in range(30):
        rng = np.random.default_rng(200 + i)
        on_copper = i % 2 == 1  # and within LEVEL_MARGIN of the other level, which it takes
        cx = int(rng.integers(52, 70)) if on_copper else int(rng.integers(26, 44))
        d = structural_defect(die, rng, int(rng.integers(10, 86)), cx, "blob", soft=0.0)
        assert d is not None
        after, mask = _apply(die, d), _full(die, d, d.mask)
        # spurious copper on the background, a pin hole in copper: the footprint is the other level, exactly
        assert (after[mask] == (LO if on_copper else HI)).all()
        assert (die[mask] == (HI if on_copper else LO)).all()
        np.testing.assert_array_equal(after != die, mask)


def test_an_edge_defect_bites_or_grows_at_the_edge_only():
    die = np.full((96, 96), LO, np.float32)
    die[48:, :] = HI  # one edge, between rows 47 and 48
    size = (3, 11)
    reach = size[1] + 3  # the half box of the largest blob
    seen = set()
    for i in range(40):
        rng = np.random.default_rng(300 + i)
        d = structural_defect(die, rng, int(rng.integers(38, 58)), int(rng.integers(10, 86)), "edge", size=size)
        assert d is not None
        rows = np.flatnonzero((_apply(die, d) != die).any(axis=1))
        spur = d.amplitude > 0  # the bright side grows into the dark one; else a bite out of it
        # one side only, touching the edge, within the blob's reach of it
        if spur:
            assert rows.max() == 47 and rows.min() >= 47 - reach
        else:
            assert rows.min() == 48 and rows.max() <= 48 + reach
        seen.add(spur)
    assert seen == {True, False}


@pytest.mark.parametrize("kind", KINDS)
def test_mask_is_the_real_change_and_the_die_stays_in_range(kind):
    rng = np.random.default_rng(7)
    die = _traces()
    die[:, 100:] = np.where(die[:, 100:] > MID, 255.0, 0.0)  # full-range levels too
    for _ in range(40):
        d = structural_defect(die, rng, int(rng.integers(0, 128)), int(rng.integers(0, 128)), kind)
        if d is None:
            continue
        after = _apply(die, d)
        assert after.min() >= -1e-3 and after.max() <= 255 + 1e-3
        change, mask, a = np.abs(after - die), _full(die, d, d.mask), abs(d.amplitude)
        assert (change[mask] > 0.1 * a - 1e-3).all() and (change[~mask] <= 0.1 * a + 1e-3).all()
        assert change.max() == pytest.approx(a, abs=1e-3)
        assert (np.sign(d.delta[d.delta != 0]) == np.sign(d.amplitude)).all()  # one sign: towards the fill level
        assert d.kernel.max() == 1.0 and d.kind == kind


def test_reproducible_with_a_seed():
    die = _traces()

    def make(seed, kind):
        d = structural_defect(die, np.random.default_rng(seed), 20, 30, kind)
        assert d is not None
        return d

    for kind in KINDS:
        a, b = make(5, kind), make(5, kind)
        assert (a.top, a.left) == (b.top, b.left)
        np.testing.assert_array_equal(a.delta, b.delta)
    assert not any(np.array_equal(make(5, k).delta, make(6, k).delta) for k in ("blob", "edge"))


def test_visible_on_grey_textures():
    rng = np.random.default_rng(11)
    for kinds in (("texture",), ("leaves",)):
        die = render_views(random_pattern(rng, kinds), 128, 128, rng)[0]
        for kind in KINDS:
            found = [structural_defect(die, rng, int(y), int(x), kind) for y, x in rng.integers(8, 120, (30, 2))]
            found = [d for d in found if d is not None]
            assert len(found) >= 5, (kinds, kind)
            # at least the neighbourhood's contrast (>= MIN_CONTRAST) somewhere, over several pixels
            assert np.median([abs(d.amplitude) for d in found]) >= 20.0
            assert np.median([d.mask.sum() for d in found]) >= 4
            # one sign per defect (towards its fill level), so the kernel is >= 0 with peak 1
            assert all((np.sign(d.delta[d.delta != 0]) == np.sign(d.amplitude)).all() for d in found)


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown structural defect kind 'crack'"):
        structural_defect(_traces(), np.random.default_rng(0), 10, 10, "crack")


# ------------------------------------------------------------------------------ in the synthesiser


def _plain(**knobs):
    base = {"nuisance_prob": 0.0, "swap_refs": False, "flips": False, "defect_prob": 1.0, "structural_prob": 1.0}
    return Recipe.from_dict(base | knobs, base=get_recipe("robust"))


def test_synthesised_structural_defects_follow_the_odd_die_out_rule():
    bg = np.stack([_traces()] * 3)
    r = _plain()
    shapes, kinds = set(), set()
    for i in range(60):
        s = synthesize(bg, sample_rng(4, 0, i), r)
        expected = np.zeros_like(s.mask)
        for d in s.defects:
            box = np.s_[d.y : d.y + d.h, d.x : d.x + d.w]
            shapes.add(d.shape)
            kinds.add(d.kind)
            for c, present in enumerate(d.dies):
                change = s.image[c][box] - bg[c][box]
                if present:  # the same delta in every die it is in (a reference's copy with its gain)
                    np.testing.assert_allclose(change, d.amplitude * d.copy_gain[c] * d.kernel, atol=1e-3)
                else:
                    assert not change.any()
            if d.labelled:
                expected[box] |= d.kernel > r.mask_threshold
        np.testing.assert_array_equal(s.mask, expected)
        assert s.image.min() >= 0 and s.image.max() <= 255
    assert shapes == set(KINDS) and {"target", "missing", "ref1", "all"} <= kinds


def test_structural_share_follows_the_knob():
    bg = np.stack([_traces()] * 3)
    r = _plain(structural_prob=0.4)
    shapes = [d.shape for i in range(150) for d in synthesize(bg, sample_rng(8, 0, i), r).defects]
    share = np.mean([s in KINDS for s in shapes])
    assert 0.3 < share < 0.5


def test_recipe_knobs():
    assert get_recipe("seed").structural_prob == 0.0
    assert 0.3 <= get_recipe("robust").structural_prob <= 0.4
    with pytest.raises(RecipeError, match="'structural_prob'"):
        Recipe.from_dict({"structural_prob": 1.5})
    for bad in ([2, 9], [9, 3], [3, 60], [3, 5, 7]):
        with pytest.raises(RecipeError, match="'structural_size'"):
            Recipe.from_dict({"structural_size": bad})


# Of 24 patches of _traces() through the seed preset (sample_rng(2026, 0, i)): the images and masks
# as the synthesiser gave them before structural defects existed. The seed preset must not change.
SEED_STREAM_SHA256 = "3fce6c2cc2958244c3e158ee91440d9fb7218d5a44c2f5e81fafb941b1a29e33"


def test_the_seed_preset_stream_is_unchanged():
    bg = np.stack([_traces()] * 3)
    digest = hashlib.sha256()
    n = 0
    for i in range(24):
        r = synthesize(bg, sample_rng(2026, 0, i), get_recipe("seed"))
        n += len(r.defects)
        digest.update(r.image.tobytes())
        digest.update(r.mask.tobytes())
    assert n == 56
    assert digest.hexdigest() == SEED_STREAM_SHA256
