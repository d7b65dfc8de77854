from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bgsdk.errors import BgsdkError, InputError
from bgsdk.io import (
    atomic_write,
    combine,
    image_shape,
    is_ambiguous_colour,
    list_images,
    read_image,
    read_mask,
    read_planes,
    to_chw,
    write_tiff,
)

H, W = 40, 24


@pytest.fixture
def chw() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(3, H, W)).astype(np.float32)


def _with_mask(chw):
    return np.concatenate([chw, np.full((1, H, W), 7.0, np.float32)])


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_tiff_float_layouts(tmp_path, chw, channels, layout):
    arr = _with_mask(chw) if channels == 4 else chw
    if layout == "hwc":
        arr = np.moveaxis(arr, 0, -1)
    p = tmp_path / "x.tiff"
    tifffile.imwrite(p, arr)
    out = read_image(p)
    assert out.dtype == np.float32 and out.shape == (3, H, W)
    np.testing.assert_array_equal(out, chw)


def test_tif_suffix_and_float64(tmp_path, chw):
    p = tmp_path / "x.TIF"
    tifffile.imwrite(p, chw.astype(np.float64))
    np.testing.assert_allclose(read_image(p), chw, rtol=1e-7)


def test_uint8_is_taken_as_is(tmp_path):
    arr = np.arange(3 * H * W, dtype=np.int64).reshape(3, H, W) % 256
    p = tmp_path / "u8.tiff"
    tifffile.imwrite(p, arr.astype(np.uint8))
    np.testing.assert_array_equal(read_image(p), arr.astype(np.float32))


def test_uint16_divided_by_257(tmp_path):
    arr = np.array([0, 257, 65535, 25700], dtype=np.uint16)
    arr = np.broadcast_to(arr[:, None, None], (4, H, W)).copy()
    p = tmp_path / "u16.tiff"
    tifffile.imwrite(p, arr)
    out = read_image(p)
    np.testing.assert_allclose(out[:, 0, 0], [0.0, 1.0, 255.0], rtol=1e-6)


def test_png_is_bgr_target_ref1_ref2(tmp_path):
    rng = np.random.default_rng(1)
    target, ref1, ref2 = (rng.integers(0, 256, size=(H, W), dtype=np.uint8) for _ in range(3))
    # File stores B,G,R = target, ref1, ref2; Pillow writes the array as R,G,B.
    rgb = np.stack([ref2, ref1, target], axis=-1)
    p = tmp_path / "x.png"
    Image.fromarray(rgb, "RGB").save(p)
    out = read_image(p)
    np.testing.assert_array_equal(out[0], target)
    np.testing.assert_array_equal(out[1], ref1)
    np.testing.assert_array_equal(out[2], ref2)


def test_jpg_reads_with_same_channel_order(tmp_path):
    target = np.full((H, W), 200, np.uint8)
    zeros = np.zeros((H, W), np.uint8)
    p = tmp_path / "x.jpg"
    Image.fromarray(np.stack([zeros, zeros, target], -1), "RGB").save(p, quality=100)
    out = read_image(p)
    assert abs(out[0].mean() - 200) < 3 and out[1].mean() < 3 and out[2].mean() < 3


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_png_without_pillow_names_the_extra(tmp_path, monkeypatch, suffix):
    """Runtime-only install (no Pillow): one InputError naming the missing extra, not an ImportError."""
    p = tmp_path / f"x{suffix}"
    Image.fromarray(np.zeros((H, W, 3), np.uint8), "RGB").save(p)
    monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` now raises ImportError
    with pytest.raises(InputError, match=r"needs Pillow: pip install 'bgsdk\[images\]'") as exc:
        read_image(p)
    assert "\n" not in str(exc.value) and str(p) in str(exc.value)


def test_npy(tmp_path, chw):
    p = tmp_path / "x.npy"
    np.save(p, np.moveaxis(chw, 0, -1))
    np.testing.assert_array_equal(read_image(p), chw)


def test_to_chw_array_layouts(chw):
    np.testing.assert_array_equal(to_chw(chw), chw)
    np.testing.assert_array_equal(to_chw(np.moveaxis(_with_mask(chw), 0, -1)), chw)
    assert to_chw(chw).flags["C_CONTIGUOUS"]


def _expect(path, match):
    with pytest.raises(InputError, match=match) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, BgsdkError) and isinstance(info.value, ValueError)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.tiff", "file not found")


def test_directory(tmp_path):
    d = tmp_path / "dir.tiff"
    d.mkdir()
    _expect(d, "is a directory")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tiff"
    p.write_bytes(b"")
    _expect(p, "empty")


def test_truncated_tiff(tmp_path, chw):
    p = tmp_path / "t.tiff"
    tifffile.imwrite(p, chw)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    _expect(p, "not a readable TIFF")


def test_not_an_image(tmp_path):
    p = tmp_path / "text.tiff"
    p.write_text("hello, I am not a TIFF")
    _expect(p, "not a readable TIFF")
    q = tmp_path / "text.png"
    q.write_text("nor a PNG")
    _expect(q, "not a readable image")


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "x.gif"
    p.write_bytes(b"GIF89a")
    _expect(p, "unsupported file type")


@pytest.mark.parametrize(
    "shape,match",
    [
        ((H * W,), "3-D image"),
        ((H, W), "single-channel image: give its reference"),
        ((1, H, W), "single-channel image: give its reference"),
        ((5, H, W), "1 to 4 channels"),
        ((H, 6, W), "1 to 4 channels"),
        ((1, 3, H, W), "3-D"),
    ],
)
def test_wrong_shapes(tmp_path, shape, match):
    p = tmp_path / "bad.tiff"
    tifffile.imwrite(p, np.zeros(shape, np.float32))
    _expect(p, match)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(tmp_path, chw, bad):
    chw[1, 3, 4] = bad
    p = tmp_path / "nan.tiff"
    tifffile.imwrite(p, chw)
    _expect(p, "NaN/Inf")


def test_unsupported_dtype(tmp_path):
    p = tmp_path / "i32.tiff"
    tifffile.imwrite(p, np.zeros((3, H, W), np.int32))
    _expect(p, "unsupported pixel type")


def test_grayscale_png_is_one_die(tmp_path):
    grey = np.arange(H * W, dtype=np.int64).reshape(H, W).astype(np.uint8)
    p = tmp_path / "g.png"
    Image.fromarray(grey, "L").save(p)
    _expect(p, "single-channel image")  # a die on its own has nothing to be compared with
    np.testing.assert_array_equal(read_planes(p), grey[None].astype(np.float32))
    np.testing.assert_array_equal(read_image(p, single="replicate"), np.stack([grey] * 3).astype(np.float32))
    # 16-bit grey PNG: 0..65535 onto 0..255 like any uint16
    g16 = (np.arange(H * W).reshape(H, W) * 60).astype(np.uint16)
    q = tmp_path / "g16.png"
    Image.fromarray(g16).save(q)
    np.testing.assert_allclose(read_planes(q)[0], g16 / np.float32(257), rtol=1e-6)


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_two_channels_are_a_test_template_pair(tmp_path, chw, layout):
    pair = chw[:2] if layout == "chw" else np.moveaxis(chw[:2], 0, -1)
    p = tmp_path / "pair.tiff"
    tifffile.imwrite(p, pair)
    out = read_image(p)
    np.testing.assert_array_equal(out, chw[[0, 1, 1]])
    np.testing.assert_array_equal(to_chw(pair), chw[[0, 1, 1]])


def test_channel_order_of_arrays(chw):
    hwc = np.moveaxis(chw, 0, -1).round().astype(np.uint8)
    as_file = hwc.astype(np.float32)
    np.testing.assert_array_equal(to_chw(hwc, channel_order="bgr"), np.moveaxis(as_file, -1, 0))
    np.testing.assert_array_equal(to_chw(hwc, channel_order="trr"), to_chw(hwc, channel_order="bgr"))
    np.testing.assert_array_equal(to_chw(hwc[..., ::-1], channel_order="rgb"), np.moveaxis(as_file, -1, 0))
    assert is_ambiguous_colour(hwc) and not is_ambiguous_colour(np.moveaxis(hwc, -1, 0))
    assert not is_ambiguous_colour(hwc.astype(np.float32)) and not is_ambiguous_colour(hwc[..., :2])
    with pytest.raises(ValueError, match="channel_order must be one of"):
        to_chw(hwc, channel_order="gbr")


def test_combine_separate_dies(tmp_path, chw):
    t, r1, r2 = chw
    np.testing.assert_array_equal(combine(t, [r1, r2]), chw)
    np.testing.assert_array_equal(combine(t, [r1]), chw[[0, 1, 1]])
    paths = []
    for name, die in zip(("t", "r1"), (t, r1)):
        u8 = die.round().astype(np.uint8)
        Image.fromarray(u8, "L").save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    # a grey image stored as colour (equal channels) is one die too
    Image.fromarray(np.stack([r1.round().astype(np.uint8)] * 3, -1), "RGB").save(tmp_path / "r1rgb.png")
    out = combine(paths[0], [paths[1]])
    np.testing.assert_array_equal(out, np.stack([t, r1, r1]).round())
    np.testing.assert_array_equal(combine(paths[0], [tmp_path / "r1rgb.png", paths[1]]), out)
    with pytest.raises(InputError, match=r"refs\[0\]: reference is 40x23, its target .* is 40x24"):
        combine(t, [r1[:, 1:]])
    with pytest.raises(InputError, match=r"small.png: reference is 40x23, its target .*t.png is 40x24"):
        Image.fromarray(r1[:, 1:].round().astype(np.uint8), "L").save(tmp_path / "small.png")
        combine(paths[0], [tmp_path / "small.png"])
    with pytest.raises(InputError, match="list of 1 or 2 reference images"):
        combine(t, [r1, r1, r1])
    with pytest.raises(InputError, match="list of 1 or 2 reference images, got a single path"):
        combine(paths[0], paths[1])
    with pytest.raises(InputError, match="expected a single-channel image .* got 3 different channels"):
        combine(chw, [r1])


def test_image_shape_reads_headers(tmp_path, chw):
    tifffile.imwrite(tmp_path / "a.tiff", np.moveaxis(chw, 0, -1))
    np.save(tmp_path / "b.npy", chw[:2])
    Image.fromarray(np.zeros((H, W), np.uint8), "L").save(tmp_path / "c.png")
    assert [image_shape(tmp_path / n) for n in ("a.tiff", "b.npy", "c.png")] == [(H, W)] * 3
    with pytest.raises(InputError, match="1 to 4 channels"):
        np.save(tmp_path / "d.npy", np.zeros((5, H, W), np.float32))
        image_shape(tmp_path / "d.npy")


def test_array_errors_name_array():
    with pytest.raises(InputError, match=r"^array: .*3-D"):
        to_chw(np.zeros((1, 1, H, W)))
    with pytest.raises(InputError, match="not a numeric array"):
        to_chw(np.array([object()] * 3).reshape(3, 1, 1))


def test_masks(tmp_path):
    m = np.zeros((H, W), np.uint8)
    m[3:6, 4:9] = 255
    p = tmp_path / "m.tiff"
    write_tiff(p, m)
    np.testing.assert_array_equal(read_mask(p), m > 0)
    q = tmp_path / "m.png"
    Image.fromarray(m).save(q)
    np.testing.assert_array_equal(read_mask(q), m > 0)
    bad = tmp_path / "bad.tiff"
    tifffile.imwrite(bad, np.zeros((2, 3, H, W), np.uint8))
    with pytest.raises(InputError, match="2-D mask"):
        read_mask(bad)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert list(tmp_path.iterdir()) == []
    atomic_write(target, lambda t: t.write_bytes(b"ok"))
    assert target.read_bytes() == b"ok"
    assert list(tmp_path.iterdir()) == [target]


def test_list_images(tmp_path, chw):
    for name in ["b.tiff", "a.png", ".hidden.tiff", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.tiff").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.tiff"]
    with pytest.raises(InputError, match="folder not found"):
        list_images(tmp_path / "missing")
