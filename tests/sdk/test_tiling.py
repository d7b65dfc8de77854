from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgsdk.contract import Contract
from bgsdk.tiling import (
    CUSTOM,
    IMAGE_TYPES,
    MIN_OVERLAP,
    calculate_positions,
    default_patch,
    image_type_for,
    plan_axis,
    plan_tiling,
    tiling_for,
    tiling_for_size,
)


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
    # 256 px patches overlapping by >= 32: step 192, each neighbour keeps 16+ px of margin.
    assert mv.row_positions == [0, 192, 384, 576, 768]
    assert [(s.keep_start, s.keep_stop) for s in mv.rows] == [(0, 224)] + [(32, 224)] * 3 + [(32, 256)]
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


def _min_overlap(positions: list[int], patch: int) -> int:
    return min((a + patch - b for a, b in zip(positions, positions[1:])), default=patch)


@settings(max_examples=300, deadline=None)
@given(patch=st.sampled_from([32, 64, 128, 256]), extra=st.integers(0, 3000), overlap=st.integers(0, 31))
def test_min_overlap_is_kept_with_the_fewest_patches(patch, extra, overlap):
    length = patch + extra
    pos = calculate_positions(length, patch, min_overlap=overlap)
    assert pos[0] == 0 and pos[-1] + patch == length
    assert _min_overlap(pos, patch) >= overlap
    if len(pos) > 2:  # one patch fewer would leave a step wider than patch - overlap
        assert -(-extra // (len(pos) - 2)) > patch - overlap or len(pos) == -(-length // patch)
    # The recorded count alone rebuilds the positions (what Contract.tiling relies on).
    assert calculate_positions(length, patch, len(pos)) == pos


def test_default_geometry_for_sizes_of_no_named_type():
    assert (image_type_for(976, 176), image_type_for(640, 640), image_type_for(1024, 1024)) == (
        "strip",
        CUSTOM,
        "mvtec",
    )
    assert default_patch(640, 640) == 128 and default_patch(1024, 4096) == 256 and default_patch(1023, 4096) == 128
    t = tiling_for_size(640, 640)
    assert t.patch == 128 and t.row_positions == [0, 85, 170, 256, 341, 426, 512] == t.col_positions
    assert _min_overlap(t.row_positions, 128) >= MIN_OVERLAP
    # Every kept pixel is at least MIN_OVERLAP // 2 inside its patch, except at the image border.
    for s in t.rows:
        assert s.keep_start >= MIN_OVERLAP // 2 or s.start == 0
        assert 128 - s.keep_stop >= MIN_OVERLAP // 2 or s.stop == 640
    assert tiling_for_size(976, 176) == tiling_for("strip")  # the research layout, exactly
    assert tiling_for_size(2048, 2048).patch == 256


@pytest.mark.parametrize(
    "h,w",
    [(130, 3000), (3000, 130), (128, 128), (129, 250), (200, 6000), (1500, 1100)],
    ids=["very-wide", "very-tall", "one-patch", "not-a-multiple", "strip-of-one-row", "large"],
)
def test_odd_sizes_tile_exactly_with_the_minimum_overlap(h, w):
    t = tiling_for_size(h, w)
    cover = np.zeros((h, w), dtype=np.int32)
    for p in t.patches():
        assert p.row.stop <= h and p.col.stop <= w
        cover[p.row.out_start : p.row.out_stop, p.col.out_start : p.col.out_stop] += 1
    assert (cover == 1).all()
    for spans in (t.rows, t.cols):
        assert _min_overlap([s.start for s in spans], t.patch) >= MIN_OVERLAP
    c = Contract.from_tiling(t)
    assert Contract.from_json(c.to_json()).tiling() == t


@pytest.mark.parametrize("h,w", [(100, 640), (640, 127), (31, 31)])
def test_smaller_than_a_patch_is_a_clear_error(h, w):
    with pytest.raises(ValueError, match=rf"cannot tile a {h}x{w} image with 128px patches: .*smaller than the patch"):
        tiling_for_size(h, w)


def test_custom_needs_a_size_and_a_valid_patch():
    with pytest.raises(ValueError, match="needs its image size"):
        tiling_for(CUSTOM)
    with pytest.raises(ValueError, match="multiple of 32"):
        tiling_for(CUSTOM, 640, 640, patch=100)
    with pytest.raises(ValueError, match="has 128px patches, not 256"):
        tiling_for("strip", patch=256)
    assert tiling_for(CUSTOM, 640, 640, patch=256).row_positions == [0, 192, 384]
    with pytest.raises(ValueError, match="min_overlap"):
        calculate_positions(300, 128, min_overlap=128)
