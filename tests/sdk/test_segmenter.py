"""bgsdk.Segmenter against raw ONNX Runtime, batches, threads and every bad-input class.

The reference for "what the model gives" is always an independent
``onnxruntime.InferenceSession`` fed arrays decoded independently of bgsdk.io
(tifffile / Pillow / numpy directly), so a preprocessing bug cannot cancel out.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tifffile
from PIL import Image

import bgsdk
from bgsdk import BgsdkError, ErrorResult, InputError, ModelError, Result, Segmenter
from bgsdk._overlay import ALPHA, overlay_rgb
from bgsdk.contract import Contract
from bgsdk.io import read_image
from bgsdk.tiling import tiling_for
from tests.helpers.models import (
    SdkEnv,
    make_corrupt_model,
    make_full_model,
    random_strip,
    strip_contract_json,
)

H, W = 976, 176


@pytest.fixture(scope="module")
def seg(sdk_env: SdkEnv) -> Segmenter:
    return Segmenter(sdk_env.strip_model)


@pytest.fixture(scope="module")
def raw_session(sdk_env: SdkEnv) -> ort.InferenceSession:
    return ort.InferenceSession(str(sdk_env.strip_model), providers=["CPUExecutionProvider"])


def raw_run(session: ort.InferenceSession, chw_0_255: np.ndarray) -> np.ndarray:
    """What an integrator would do by hand: (3,H,W) 0..255 -> /255 -> session.run."""
    return session.run(["output"], {"input": chw_0_255[None].astype(np.float32) / 255})[0][0]


# ------------------------------------------------------------------ parity
def _write_variants(root: Path) -> list[tuple[str, Path, np.ndarray, np.ndarray]]:
    """(name, file, the array written, the independently decoded (3,H,W) float32 reference)."""
    root.mkdir(exist_ok=True)
    base = random_strip(7)  # (4,H,W) float32
    out = []

    def add(name: str, arr: np.ndarray, suffix: str, ref: np.ndarray) -> None:
        p = root / f"{name}{suffix}"
        if suffix == ".npy":
            np.save(p, arr)
        else:  # channel-last 3/4 samples: say RGB explicitly (tifffile's current default)
            tifffile.imwrite(p, arr, photometric="rgb" if arr.shape[-1] in (3, 4) else "minisblack")
        out.append((name, p, arr, ref.astype(np.float32)))

    add("chw4_f32", base, ".tiff", base[:3])
    add("chw3_f32", base[:3].copy(), ".tif", base[:3])
    hwc4 = np.ascontiguousarray(np.moveaxis(base, 0, -1))
    add("hwc4_f32", hwc4, ".tiff", base[:3])
    add("hwc3_f32", np.ascontiguousarray(hwc4[..., :3]), ".tiff", base[:3])
    u8 = np.rint(base).astype(np.uint8)
    add("chw4_u8", u8, ".tiff", u8[:3].astype(np.float32))
    add("hwc3_u8", np.ascontiguousarray(np.moveaxis(u8[:3], 0, -1)), ".tiff", u8[:3].astype(np.float32))
    u16 = (u8.astype(np.uint16) * 257 + 3).astype(np.uint16)
    add("chw3_u16", u16[:3], ".tiff", u16[:3].astype(np.float32) / np.float32(257))
    f64 = base.astype(np.float64) + 0.123456789
    add("chw4_f64", f64, ".npy", f64[:3].astype(np.float32))

    # PNG/JPG: colour order on disk is B,G,R = target, ref1, ref2; decode with Pillow directly.
    bgr = np.ascontiguousarray(np.moveaxis(u8[:3], 0, -1)[..., ::-1])  # (H,W,3) R,G,B = ref2,ref1,target
    for suffix in (".png", ".jpg"):
        p = root / f"bgr{suffix}"
        Image.fromarray(bgr).save(p)
        decoded = np.asarray(Image.open(p).convert("RGB"))
        ref = np.moveaxis(decoded[..., ::-1], -1, 0).astype(np.float32)
        out.append((f"bgr{suffix}", p, bgr, ref))
    return out


def test_output_equals_raw_onnxruntime_bit_for_bit_for_every_layout(tmp_path, seg, raw_session):
    variants = _write_variants(tmp_path)
    for name, path, arr, ref in variants:
        expected = raw_run(raw_session, ref)
        got = seg.run(path)
        np.testing.assert_array_equal(got.raw, expected, err_msg=name)
        assert got.raw.dtype == np.float32 and got.raw.shape == (3, H, W)
        assert got.source == str(path)
        # The documented rule, literally: read_image(path)[None] / 255.
        np.testing.assert_array_equal(seg.preprocess(path), read_image(path) / 255, err_msg=name)
        if not name.startswith("bgr"):  # the same pixels as an in-memory array
            got_arr = seg.run(arr)
            np.testing.assert_array_equal(got_arr.raw, expected, err_msg=f"{name} (array)")
            assert got_arr.source is None


def test_layouts_agree_with_each_other(tmp_path, seg):
    """CHW/HWC and 3/4-channel files of the same float pixels give identical heatmaps."""
    variants = {n: p for n, p, _, _ in _write_variants(tmp_path)}
    ref = seg.run(variants["chw4_f32"]).heatmap
    for name in ("chw3_f32", "hwc4_f32", "hwc3_f32"):
        np.testing.assert_array_equal(seg.run(variants[name]).heatmap, ref, err_msg=name)


def test_result_fields(seg, sdk_env):
    r = seg.run(sdk_env.strips[0])
    assert isinstance(r, Result) and r.ok
    assert r.heatmap.shape == (H, W) and r.heatmap.dtype == np.float32
    np.testing.assert_array_equal(r.heatmap, r.raw[0])
    assert np.all(r.raw[1:] == 0)  # contract: channels 1-2 exactly zero
    assert r.score == float(r.heatmap.max())
    for t in (0.0, 0.3, 0.5, 0.9):
        m = r.mask(t)
        assert m.dtype == bool and m.shape == (H, W)
        np.testing.assert_array_equal(m, r.heatmap > t)
    assert 0 < r.mask().sum() < H * W  # the test model is not degenerate
    with pytest.raises(ValueError):
        r.mask(float("nan"))


def test_contract_and_metadata_exposed(seg):
    assert seg.contract == Contract.from_tiling(tiling_for("strip"))
    assert seg.image_size == (H, W)
    assert seg.info.batch is None
    assert seg.providers == ["CPUExecutionProvider"]
    assert seg.info.metadata["note"] == "plain text value"


def test_model_without_metadata_falls_back_to_input_shape(sdk_env, seg):
    plain = Segmenter(sdk_env.plain_model)
    assert plain.contract is None
    assert plain.image_size == (H, W) and plain.info.input_scale == 255.0
    # same weights as the contract model -> identical output
    np.testing.assert_array_equal(plain.run(sdk_env.strips[1]).raw, seg.run(sdk_env.strips[1]).raw)


# ------------------------------------------------------------------ batches
def test_batch_results_equal_single_results(seg, sdk_env):
    arrays = [random_strip(20 + i, channels=3) for i in range(2)]
    items = [sdk_env.strips[0], arrays[0], str(sdk_env.strips[1]), arrays[1], sdk_env.strips[2]]
    singles = [seg.run(x) for x in items]
    for bs in (1, 2, 3, 4, 8):
        batch = seg.run_batch(items, batch_size=bs)
        assert len(batch) == len(items)
        for s, b in zip(singles, batch):
            assert b.ok and b.source == s.source
            np.testing.assert_array_equal(b.raw, s.raw, err_msg=f"batch_size={bs}")


def test_fixed_batch_model_is_padded(sdk_env):
    seg = Segmenter(sdk_env.square_model)
    assert seg.info.batch == 2 and seg.image_size == (256, 256)
    raw = ort.InferenceSession(str(sdk_env.square_model), providers=["CPUExecutionProvider"])
    imgs = [random_strip(30 + i, channels=3, hw=(256, 256)) for i in range(3)]
    ref = raw.run(None, {"input": np.stack(imgs[:2]) / np.float32(255)})[0]
    results = seg.run_batch(imgs, batch_size=4)  # capped at 2, last batch padded
    for i in range(2):
        np.testing.assert_array_equal(results[i].raw, ref[i])
    np.testing.assert_array_equal(results[2].raw, seg.run(imgs[2]).raw)


def test_bad_item_becomes_error_result_and_the_rest_go_on(seg, sdk_env, tmp_path):
    missing = tmp_path / "missing.tiff"
    items = [sdk_env.strips[0], missing, sdk_env.strips[1], np.zeros((3, H, W - 1), np.float32), sdk_env.strips[2]]
    out = seg.run_batch(items, batch_size=2)
    assert [o.ok for o in out] == [True, False, True, False, True]
    assert isinstance(out[1], ErrorResult) and isinstance(out[1].error, InputError)
    assert out[1].source == str(missing) and "file not found" in str(out[1].error)
    assert out[3].source is None and "items[3]" in str(out[3].error)
    for i in (0, 2, 4):
        np.testing.assert_array_equal(out[i].raw, seg.run(items[i]).raw)
    # using an error result re-raises its error
    with pytest.raises(InputError, match="missing.tiff"):
        _ = out[1].heatmap
    with pytest.raises(InputError):
        out[3].mask()


def test_on_error_raise_yields_earlier_results_first(seg, sdk_env, tmp_path):
    items = [sdk_env.strips[0], sdk_env.strips[1], tmp_path / "nope.tiff", sdk_env.strips[2]]
    got = []
    with pytest.raises(InputError, match="nope.tiff"):
        for r in seg.iter_batch(items, batch_size=4, on_error="raise"):
            got.append(r)
    assert [r.source for r in got] == [str(sdk_env.strips[0]), str(sdk_env.strips[1])]
    with pytest.raises(ValueError):
        seg.run_batch(items, on_error="ignore")
    with pytest.raises(ValueError):
        seg.run_batch(items, batch_size=0)


def test_iter_batch_streams_lazily(seg):
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield random_strip(i % 2, channels=3)

    it = seg.iter_batch(endless(), batch_size=2)
    first = next(it)
    assert first.ok and len(pulled) == 2  # one batch read, nothing more
    next(it)
    assert len(pulled) == 2
    next(it)
    assert len(pulled) == 4


def test_iter_folder(seg, sdk_env, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("b.tiff", "a.tiff", "c.tif"):
        tifffile.imwrite(folder / name, random_strip(len(name)))
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.tiff").write_bytes(b"")
    (folder / "d.tiff").write_bytes(b"")  # bad file: error result, not a stop
    out = list(seg.iter_folder(folder, batch_size=2))
    assert [Path(o.source).name for o in out] == ["a.tiff", "b.tiff", "c.tif", "d.tiff"]
    assert [o.ok for o in out] == [True, True, True, False]
    np.testing.assert_array_equal(out[0].raw, seg.run(folder / "a.tiff").raw)
    with pytest.raises(InputError, match="folder not found"):
        seg.iter_folder(tmp_path / "nowhere")


# ------------------------------------------------------------------ threads
def test_threads_match_sequential(seg, sdk_env):
    items = list(sdk_env.strips) + [random_strip(40, channels=3)]
    sequential = [seg.run(x).raw for x in items]
    barrier = threading.Barrier(4)

    def worker(t: int) -> list[tuple[int, np.ndarray]]:
        barrier.wait()
        out = []
        for k in range(10):
            i = (t + k) % len(items)
            out.append((i, seg.run(items[i]).raw))
        return out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, range(4)))
    assert sum(len(r) for r in results) == 40
    for per_thread in results:
        for i, raw in per_thread:
            np.testing.assert_array_equal(raw, sequential[i])


def test_threads_option_gives_same_numbers(sdk_env, seg):
    one = Segmenter(sdk_env.strip_model, providers=["cpu"], threads=1)
    assert one.threads == 1
    np.testing.assert_array_equal(one.run(sdk_env.strips[0]).raw, seg.run(sdk_env.strips[0]).raw)
    with pytest.raises(ValueError):
        Segmenter(sdk_env.strip_model, threads=0)


# ------------------------------------------------------------------ bad input
def _bad_inputs(tmp: Path, good: Path) -> dict[str, object]:
    empty = tmp / "empty.tiff"
    empty.write_bytes(b"")
    truncated = tmp / "truncated.tiff"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    small = tmp / "small.tiff"
    tifffile.imwrite(small, random_strip(1, hw=(960, 176)))
    one = tmp / "one.tiff"
    tifffile.imwrite(one, random_strip(1, channels=1))  # a single die without its references
    nan_file = tmp / "nan.tiff"
    arr = random_strip(2)
    arr[1, 5, 5] = np.nan
    tifffile.imwrite(nan_file, arr)
    txt = tmp / "strip.txt"
    txt.write_text("hello")
    (tmp / "adir.tiff").mkdir()
    inf = random_strip(3, channels=3)
    inf[0, 0, 0] = np.inf
    return {
        "missing": tmp / "missing.tiff",
        "empty": empty,
        "truncated": truncated,
        "wrong size file": small,
        "wrong size array": random_strip(1, channels=3, hw=(H, 170)),
        "single-channel file": one,
        "wrong channels array": np.zeros((5, H, W), np.float32),
        "NaN file": nan_file,
        "Inf array": inf,
        "directory": tmp / "adir.tiff",
        "unsupported suffix": txt,
        "signed int array": np.zeros((3, H, W), np.int32),
        "4-D array": np.zeros((1, 3, H, W), np.float32),
        "not an array": "",
    }


def test_every_bad_input_raises_input_error(seg, sdk_env, tmp_path):
    bad = _bad_inputs(tmp_path, sdk_env.strips[0])
    for name, x in bad.items():
        with pytest.raises(InputError) as info:
            seg.run(x)
        err = info.value
        assert isinstance(err, BgsdkError) and isinstance(err, ValueError), name
        if isinstance(x, Path):
            assert str(x) in str(err), name  # the message names the file
    # and in a batch each one is an error result, the good image still runs
    out = seg.run_batch([sdk_env.strips[0], *bad.values(), sdk_env.strips[1]], batch_size=3)
    assert out[0].ok and out[-1].ok
    assert all(isinstance(o, ErrorResult) and isinstance(o.error, InputError) for o in out[1:-1])


def test_refs_run_separate_dies(seg, raw_session, tmp_path):
    """A die plus its reference die(s), as arrays or grey files, is the stacked (t, r1, r2) image."""
    dies = np.rint(random_strip(11, channels=3)).astype(np.uint8)
    t, r1, r2 = dies
    paths = []
    for name, d in zip(("t", "r1", "r2"), dies):
        Image.fromarray(d, "L").save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    two = seg.run(t, refs=[r1, r2])
    np.testing.assert_array_equal(two.raw, raw_run(raw_session, dies.astype(np.float32)))
    one = seg.run(paths[0], refs=[paths[1]])  # one template stands for both references
    np.testing.assert_array_equal(one.raw, raw_run(raw_session, dies[[0, 1, 1]].astype(np.float32)))
    assert one.source == str(paths[0])
    batch = seg.run_batch([paths[0], t], refs=[[paths[1], paths[2]], None])
    assert isinstance(batch[1], ErrorResult) and "single-channel image" in str(batch[1].error)
    np.testing.assert_array_equal(batch[0].raw, two.raw)
    with pytest.raises(InputError, match=r"r1.png: reference is 976x175, its target .*t.png is 976x176"):
        Image.fromarray(r1[:, 1:], "L").save(paths[1])
        seg.run(paths[0], refs=[paths[1]])


def test_channel_order_of_colour_arrays(seg, raw_session):
    dies = np.rint(random_strip(12, channels=3)).astype(np.uint8)
    hwc = np.ascontiguousarray(np.moveaxis(dies, 0, -1))  # cv2.imread of a data-set PNG: B,G,R = t, r1, r2
    expected = raw_run(raw_session, dies.astype(np.float32))
    fresh = Segmenter(seg.model_path)
    with pytest.warns(bgsdk.errors.ChannelOrderWarning, match="channel_order='rgb'") as rec:
        first = fresh.run(hwc)
        fresh.run(hwc)  # once per Segmenter
    assert len(rec) == 1
    np.testing.assert_array_equal(first.raw, expected)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(Segmenter(seg.model_path).run(hwc, channel_order="bgr").raw, expected)
        rgb = np.ascontiguousarray(hwc[..., ::-1])  # PIL/imageio order: R,G,B = r2, r1, t
        np.testing.assert_array_equal(Segmenter(seg.model_path).run(rgb, channel_order="rgb").raw, expected)
        Segmenter(seg.model_path).run(dies)  # channel-first: not ambiguous
    with pytest.raises(ValueError, match="channel_order must be one of"):
        seg.run(hwc, channel_order="grb")


def test_wrong_size_message_names_expected_and_got(seg, tmp_path):
    p = tmp_path / "small.tiff"
    tifffile.imwrite(p, random_strip(1, hw=(960, 128)))
    with pytest.raises(InputError, match=r"small\.tiff: wrong image size: this model expects 976x176 .*got 960x128"):
        seg.run(p)
    with pytest.raises(InputError, match=r"^array: wrong image size.*976x176.*got 976x170"):
        seg.run(np.zeros((H, 170, 3), np.uint8), channel_order="trr")


# ------------------------------------------------------------------ bad models
def test_bad_models_raise_model_error(sdk_env, tmp_path):
    d = tmp_path
    (d / "adir.onnx").mkdir()
    (d / "empty.onnx").write_bytes(b"")
    cases = {
        "missing": (d / "missing.onnx", "model file not found"),
        "directory": (d / "adir.onnx", "directory"),
        "empty": (d / "empty.onnx", "empty"),
        "junk": (make_corrupt_model(d / "junk.onnx"), "cannot be loaded as an ONNX model"),
        "truncated": (make_corrupt_model(d / "trunc.onnx", sdk_env.strip_model), "cannot be loaded"),
        "patch model": (sdk_env.patch_model, "patch model"),
        "float64 input": (make_full_model(d / "f64.onnx", input_type=11), "tensor(double)"),
        "contract/shape mismatch": (
            make_full_model(d / "mismatch.onnx", 256, 256, contract_json=strip_contract_json()),
            "contract says 976x176",
        ),
        "bad contract json": (make_full_model(d / "badjson.onnx", contract_json="{not json"), "not a valid contract"),
        "inconsistent contract": (
            make_full_model(
                d / "inconsistent.onnx",
                contract_json=strip_contract_json().replace('"row_positions": [0, 106', '"row_positions": [0, 100'),
            ),
            "inconsistent",
        ),
        "wrong output name": (make_full_model(d / "outname.onnx", output_name="probs"), "no output named 'output'"),
        "dynamic size, no metadata": (make_full_model(d / "dyn.onnx", height="H", width="W"), "no fixed image size"),
    }
    for name, (path, fragment) in cases.items():
        with pytest.raises(ModelError) as info:
            Segmenter(path)
        assert fragment in str(info.value), f"{name}: {info.value}"
        assert str(path) in str(info.value), name


def test_unavailable_provider_is_a_clear_error(sdk_env):
    for asked in (["cuda"], ["tensorrt", "cpu"], "CUDAExecutionProvider", [("cuda", {"device_id": 0})]):
        with pytest.raises(ModelError) as info:
            Segmenter(sdk_env.strip_model, providers=asked)
        msg = str(info.value)
        assert "not available" in msg and "CPUExecutionProvider" in msg, msg
    seg = Segmenter(sdk_env.strip_model, providers=["cuda"], fallback=True)
    assert seg.providers == ["CPUExecutionProvider"]


# ------------------------------------------------------------------ overlay
def test_overlay_rgb_tints_exactly_the_mask():
    image = np.zeros((3, 4, 5), np.float32)
    image[0] = np.arange(20, dtype=np.float32).reshape(4, 5) * 10
    heat = np.zeros((4, 5), np.float32)
    heat[1, 2] = 0.9
    heat[2, 3] = 0.5  # not > 0.5
    rgb = overlay_rgb(image, heat, 0.5)
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 5, 3)
    g = image[0, 1, 2]
    np.testing.assert_array_equal(rgb[1, 2], np.rint([(1 - ALPHA) * g + ALPHA * 255, (1 - ALPHA) * g, (1 - ALPHA) * g]))
    others = np.ones((4, 5), bool)
    others[1, 2] = False
    np.testing.assert_array_equal(rgb[others], np.repeat(image[0][others][:, None], 3, axis=1))


def test_public_names():
    assert bgsdk.Segmenter is Segmenter and bgsdk.Result is Result and bgsdk.ErrorResult is ErrorResult
    assert issubclass(InputError, BgsdkError) and issubclass(ModelError, BgsdkError)
