from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgsdk.contract import Contract
from bgsdk.tiling import IMAGE_TYPES, calculate_positions, plan_axis, plan_tiling, tiling_for


def test_strip_positions_are_the_given_ones():
    t = tiling_for("strip")
    assert t.row_positions == [0, 106, 212, 318, 424, 530, 636, 742, 848]
    assert t.col_positions == [0, 48]
    assert t.num_patches == 18
    assert calculate_positions(976, 128, 9) == t.row_positions
    assert calculate_positions(176, 128) == [0, 48]


def test_strip_crop_bounds_are_the_given_ones():
    t = tiling_for("strip")
    keeps = [(s.keep_start, s.keep_stop) for s in t.rows]
    assert keeps[0] == (0, 117)
    assert all(k == (11, 117) for k in keeps[1:-1])
    assert keeps[-1] == (11, 128)
    assert [(s.keep_start, s.keep_stop) for s in t.cols] == [(0, 88), (40, 128)]


def test_other_image_types():
    assert tiling_for("square").num_patches == 1
    mv = tiling_for("mvtec")
    assert mv.row_positions == [0, 256, 512, 768]
    assert all((s.keep_start, s.keep_stop) == (0, 256) for s in mv.rows)
    assert set(IMAGE_TYPES) == {"strip", "square", "mvtec"}


def test_patches_are_row_major():
    t = tiling_for("strip")
    ps = list(t.patches())
    assert [p.index for p in ps] == list(range(18))
    assert (ps[1].y, ps[1].x) == (0, 48)
    assert (ps[2].y, ps[2].x) == (106, 0)


@pytest.mark.parametrize("length,patch", [(100, 128), (0, 128), (127, 128)])
def test_too_small_raises(length, patch):
    with pytest.raises(ValueError, match="smaller than the patch size"):
        calculate_positions(length, patch)
    with pytest.raises(ValueError, match=r"cannot tile a \d+x200 image"):
        plan_tiling(length, 200, patch)


def test_bad_arguments():
    with pytest.raises(ValueError):
        calculate_positions(200, 0)
    with pytest.raises(ValueError):
        calculate_positions(200, 128, 0)
    with pytest.raises(ValueError, match="unknown image type"):
        tiling_for("hexagon")


def _owner_map(length: int, spans) -> np.ndarray:
    owner = np.full(length, -1)
    count = np.zeros(length, dtype=int)
    for i, s in enumerate(spans):
        assert 0 <= s.keep_start < s.keep_stop <= s.stop - s.start
        owner[s.out_start : s.out_stop] = i
        count[s.out_start : s.out_stop] += 1
    assert (count == 1).all(), "kept regions must tile the axis exactly"
    return owner


@settings(max_examples=300, deadline=None)
@given(
    patch=st.integers(1, 300),
    extra=st.integers(0, 2000),
    min_patches=st.one_of(st.none(), st.integers(1, 40)),
)
def test_kept_regions_tile_exactly(patch, extra, min_patches):
    length = patch + extra
    spans = plan_axis(length, patch, min_patches)
    pos = [s.start for s in spans]
    assert pos[0] == 0 and pos[-1] + patch == length
    assert all(b > a for a, b in zip(pos, pos[1:])), "strictly increasing"
    if min_patches is not None:
        assert len(pos) >= min(min_patches, extra + 1)
    owner = _owner_map(length, spans)
    # Each pixel is kept by a patch that contains it, and ownership is monotone (no interleaving).
    assert (np.diff(owner) >= 0).all()


@settings(max_examples=50, deadline=None)
@given(h=st.integers(128, 1200), w=st.integers(128, 600))
def test_2d_tiling_covers_every_pixel_once(h, w):
    t = plan_tiling(h, w, 128)
    cover = np.zeros((h, w), dtype=int)
    for p in t.patches():
        cover[p.row.out_start : p.row.out_stop, p.col.out_start : p.col.out_stop] += 1
    assert (cover == 1).all()


def test_contract_round_trip_and_tiling():
    t = tiling_for("strip")
    c = Contract.from_tiling(t, extra={"note": "x"})
    c2 = Contract.from_json(c.to_json())
    assert c2 == c
    assert c2.tiling() == t
    assert c2.input_scale == 255.0
