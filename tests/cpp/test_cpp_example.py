"""The C++ example computes the same heatmap as the Python SDK.

Builds ``cpp_example`` (headers fetched by setup_ort.sh from Debian trixie on first use,
library from this interpreter's onnxruntime wheel, build cached in cpp_example/build), runs
it on a demo strip with a small stand-in model that honours the full-image contract, and
compares with onnxruntime-in-Python on ``bgsdk.io.read_image(path)[None] / 255`` -- by
definition what the SDK computes. Skipped only when a build tool is missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import bgsdk
from bgsdk.contract import Contract
from bgsdk.io import read_image, write_tiff
from bgsdk.tiling import tiling_for
from tests.helpers import REPO
from tests.helpers.heatmaps import margin_threshold

sys.path.insert(0, str(REPO / "cpp_example"))
import cpp_harness  # noqa: E402

H, W = 976, 176
TOL = 1e-5


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cpp")


@pytest.fixture(scope="module")
def model(work: Path) -> Path:
    contract = Contract.from_tiling(tiling_for("strip", H, W))
    return cpp_harness.make_standin_model(work / "standin.onnx", H, W, contract_json=contract.to_json())


@pytest.fixture(scope="module")
def strip(work: Path) -> Path:
    from bgtrain.synth_dataset import make_dataset

    root = work / "demo"
    make_dataset(root, 1, 0, 0, seed=0, progress=False)
    (path,) = sorted(root.glob("train/good/*.tif*"))
    return path


def python_heatmap(model: Path, image_path: Path, scale: float = 255.0) -> np.ndarray:
    """The SDK's computation, independently: read_image -> [None] / 255 -> onnxruntime -> channel 0."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = read_image(image_path)[None] / np.float32(scale)
    assert x.dtype == np.float32
    out = session.run(["output"], {"input": x})[0]
    assert out.shape == (1, 3, H, W) and not out[0, 1:].any()
    return out[0, 0]


@pytest.fixture(scope="module")
def reference(model: Path, strip: Path) -> np.ndarray:
    ref = python_heatmap(model, strip)
    assert ref.std() > 1e-3, "stand-in model output should not be flat"
    return ref


def run_ok(binary: Path, *args) -> cpp_harness.CppRun:
    r = cpp_harness.run_cpp(binary, *args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r


def run_fails(binary: Path, *args) -> str:
    r = cpp_harness.run_cpp(binary, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("bgsdk_cpp: error: "), r.stderr
    return lines[-1]


def test_demo_strip_matches_python_sdk(binary: Path, model: Path, strip: Path, reference: np.ndarray, work: Path):
    out = work / "demo_heatmap.tiff"
    r = run_ok(binary, "--repeat", "3", model, strip, out)
    heatmap = tifffile.imread(out)
    assert heatmap.shape == (H, W) and heatmap.dtype == np.float32
    assert np.abs(heatmap - reference).max() <= TOL
    assert set(r.timings) == {"read_ms", "load_ms", "run_ms_median"}
    assert "of 3;" in r.stdout and "contract found" in r.stdout
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")], "atomic write left a temp file"


def test_matches_bgsdk_segmenter(binary: Path, model: Path, strip: Path, work: Path):
    if not hasattr(bgsdk, "Segmenter"):
        pytest.skip("bgsdk.Segmenter is not available in this tree yet")
    expected = np.asarray(bgsdk.Segmenter(str(model)).run(str(strip)).heatmap)
    out = work / "seg.npy"
    run_ok(binary, model, strip, out)
    assert np.abs(np.load(out) - expected).max() <= TOL


def _write_variants(chw4: np.ndarray, folder: Path) -> dict[str, Path]:
    """The same strip stored every way the SDK accepts (and tifffile can write)."""
    hwc3 = np.ascontiguousarray(np.moveaxis(chw4[:3], 0, -1))
    v = {
        "chw3": (chw4[:3], {"photometric": "minisblack"}),
        "hwc4_sdk_writer": (np.moveaxis(chw4, 0, -1), None),  # bgsdk.io.write_tiff: 976 pages + shape tag
        "hwc3_rgb_contig": (hwc3, {"photometric": "rgb"}),
        "chw3_rgb_planar": (chw4[:3], {"photometric": "rgb", "planarconfig": "separate"}),
        "chw4_many_strips": (chw4, {"photometric": "minisblack", "rowsperstrip": 100}),
        "chw4_big_endian": (chw4, {"photometric": "minisblack", "byteorder": ">"}),
        "chw4_bigtiff": (chw4, {"photometric": "minisblack", "bigtiff": True}),
        "hwc4_no_description": (np.moveaxis(chw4, 0, -1), {"photometric": "minisblack", "metadata": None}),
    }
    paths = {}
    for name, (arr, kw) in v.items():
        p = folder / f"{name}.tif"
        if kw is None:
            write_tiff(p, arr)
        else:
            tifffile.imwrite(p, arr, **kw)
        paths[name] = p
    return paths


def test_all_tiff_layouts(binary: Path, model: Path, strip: Path, reference: np.ndarray, work: Path):
    folder = work / "layouts"
    folder.mkdir()
    chw4 = tifffile.imread(strip)
    assert chw4.shape == (4, H, W)
    for name, path in _write_variants(chw4, folder).items():
        # The SDK reads every variant as the same image; so must the C++ reader.
        assert np.array_equal(read_image(path), read_image(strip)), name
        out = folder / f"{name}.npy"
        run_ok(binary, model, path, out)
        assert np.abs(np.load(out) - reference).max() <= TOL, name


@pytest.mark.parametrize(
    "layout,shape_arg",
    [("chw4", "4,976,176"), ("hwc3", "976x176x3")],
)
def test_raw_input_and_output(binary, model, strip, reference, work, layout, shape_arg):
    img = tifffile.imread(strip)
    arr = img if layout == "chw4" else np.moveaxis(img[:3], 0, -1)
    raw_in = work / f"{layout}.f32"
    np.ascontiguousarray(arr, dtype="<f4").tofile(raw_in)
    raw_out = work / f"{layout}_heatmap.raw"
    run_ok(binary, "--threads", "1", "--raw-shape", shape_arg, model, raw_in, raw_out)
    heatmap = np.fromfile(raw_out, dtype="<f4").reshape(H, W)
    assert np.abs(heatmap - reference).max() <= TOL


def test_contract_scale_is_read_from_top_level_only(binary, strip, work):
    """input_scale comes from the contract; look-alike keys nested in "extra" are ignored."""
    contract = Contract.from_tiling(
        tiling_for("strip", H, W), input_scale=127.5, extra={"input_scale": 3.0, "height": 5, "width": 7}
    )
    assert json.loads(contract.to_json())["input_scale"] == 127.5
    model = cpp_harness.make_standin_model(work / "scaled.onnx", H, W, seed=1, contract_json=contract.to_json())
    out = work / "scaled.npy"
    run_ok(binary, model, strip, out)
    assert np.abs(np.load(out) - python_heatmap(model, strip, scale=127.5)).max() <= TOL


def test_wrong_image_size_is_rejected(binary, model, strip, work):
    bad = work / "short.tif"
    tifffile.imwrite(bad, tifffile.imread(strip)[:, :960], photometric="minisblack")
    out = work / "never.tiff"
    msg = run_fails(binary, model, bad, out)
    assert str(bad) in msg and "960x176" in msg and "(?, 3, 976, 176)" in msg
    assert not out.exists()


def _bad_inputs(strip: Path, folder: Path) -> list[tuple[Path, list[str], str]]:
    img = tifffile.imread(strip)
    cases = []

    def tif(name, arr, **kw):
        p = folder / name
        tifffile.imwrite(p, arr, **kw)
        return p

    cases.append((folder / "missing.tiff", [], "file not found"))
    cases.append((tif("zlib.tif", img, photometric="minisblack", compression="zlib"), [], "compressed TIFF"))
    cases.append((tif("u16.tif", img.astype(np.uint16), photometric="minisblack"), [], "expected float32"))
    cases.append((tif("tiled.tif", img, photometric="minisblack", tile=(64, 64)), [], "tiled TIFF"))
    five = tif("five.tif", np.concatenate([img, img[:1]]), photometric="minisblack")
    cases.append((five, [], "2 to 4 channels"))
    nan = img.copy()
    nan[0, 5, 5] = np.nan
    nan[2, 7, 9] = np.inf
    cases.append((tif("nan.tif", nan, photometric="minisblack"), [], "2 NaN/Inf"))
    notiff = folder / "text.tif"
    notiff.write_text("hello, not a tiff")
    cases.append((notiff, [], "not a TIFF"))
    trunc = folder / "truncated.tif"
    trunc.write_bytes(strip.read_bytes()[:100_000])
    cases.append((trunc, [], "truncated"))
    raw = folder / "short.f32"
    img[:, :10].astype("<f4").tofile(raw)
    cases.append((raw, ["--raw-shape", "4,976,176"], "does not match --raw-shape"))
    png = folder / "strip.png"
    png.write_bytes(b"\x89PNG")
    cases.append((png, [], "unsupported input type '.png'"))
    return cases


def test_bad_inputs_give_one_clear_error(binary, model, strip, work):
    folder = work / "bad"
    folder.mkdir()
    for path, extra, expected in _bad_inputs(strip, folder):
        msg = run_fails(binary, *extra, model, path, folder / "out.npy")
        assert f"{path}: " in msg and expected in msg, (path.name, msg)
    assert not (folder / "out.npy").exists()


def test_bad_models_are_rejected(binary, strip, work):
    import onnx
    from onnx import TensorProto, helper

    garbage = work / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    msg = run_fails(binary, garbage, strip, work / "o.npy")
    assert str(garbage) in msg and "cannot load the model" in msg

    # A patch model (input (B,3,P,P), output 'logits') is not a full-image model.
    g = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "patch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 3, 128, 128])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 3, 128, 128])],
    )
    patch = work / "patch.onnx"
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, patch)
    msg = run_fails(binary, patch, strip, work / "o.npy")
    assert "expected an output named 'output'" in msg and "'logits'" in msg


def test_usage_errors(binary, model, strip, work):
    assert "MODEL INPUT OUTPUT" in run_fails(binary, model, strip)
    assert "--repeat" in run_fails(binary, "--repeat", "0", model, strip, work / "o.npy")
    assert "--raw-shape" in run_fails(binary, "--raw-shape", "4,976", model, strip, work / "o.npy")
    r = cpp_harness.run_cpp(binary, "--help")
    assert r.returncode == 0 and "usage: bgsdk_cpp" in r.stdout


def test_corrupted_tiffs_fail_cleanly(binary, model, work):
    """Random byte damage to a (small) TIFF: always one error line naming the file, never a crash."""
    folder = work / "corrupt"
    folder.mkdir()
    good = folder / "small.tif"
    tifffile.imwrite(good, np.arange(4 * 8 * 6, dtype=np.float32).reshape(4, 8, 6), photometric="minisblack")
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    for i in range(40):
        buf = bytearray(data)
        if i % 4 == 0:
            buf = buf[: int(rng.integers(8, len(buf)))]  # truncation
        else:
            for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 6))):
                buf[pos] = int(rng.integers(0, 256))
        bad = folder / f"damaged_{i}.tif"
        bad.write_bytes(bytes(buf))
        r = cpp_harness.run_cpp(binary, model, bad, folder / "out.npy")
        assert r.returncode == 2, (i, r.returncode, r.stderr)  # 976x176 model: even a readable one is rejected
        assert r.stderr.strip().startswith(f"bgsdk_cpp: error: {bad}: ") and r.stderr.count("\n") == 1, (i, r.stderr)


def _cpp_heatmap(binary: Path, model: Path, strip: Path, work: Path) -> np.ndarray:
    run_ok(binary, model, strip, work / "for_threshold.npy")
    return np.load(work / "for_threshold.npy")


@pytest.mark.parametrize("quantile,min_area", [(0.99, 1), (0.98, 3)])
def test_defect_json_equals_sdk_defects(
    binary: Path, model: Path, strip: Path, reference: np.ndarray, work: Path, quantile: float, min_area: int
):
    threshold = margin_threshold(reference, _cpp_heatmap(binary, model, strip, work), quantile)
    out_json = work / f"defects_{min_area}.json"
    r = run_ok(
        binary,
        "--defects-json",
        out_json,
        "--threshold",
        repr(threshold),
        "--min-area",
        str(min_area),
        model,
        strip,
        work / "d.npy",
    )
    got = json.loads(out_json.read_text())
    sdk = bgsdk.Segmenter(str(model)).run(str(strip), threshold=threshold, min_area=min_area)
    expected = [d.to_dict() for d in sdk.defects]
    assert len(expected) > 3, "the check needs several defects"
    assert got["threshold"] == pytest.approx(threshold, rel=1e-7) and got["min_area"] == min_area
    assert got["verdict"] == sdk.verdict and f"defects: {len(expected)}" in r.stdout
    assert len(got["defects"]) == len(expected)
    for g, e in zip(got["defects"], expected):
        assert list(g) == list(e)  # same keys, same order (bgsdk._defects.DEFECT_FIELDS)
        for k in ("id", "x0", "y0", "x1", "y1", "area", "polarity"):
            assert g[k] == e[k], (k, g, e)
        for k in ("x", "y", "mean"):
            assert g[k] == pytest.approx(e[k], rel=1e-9, abs=1e-6), (k, g, e)
        assert g["peak"] == pytest.approx(e["peak"], abs=TOL)
    assert {d["polarity"] for d in got["defects"]} <= {"bright", "dark"}


def test_defect_json_uses_the_models_operating_point(
    binary: Path, model: Path, strip: Path, reference: np.ndarray, work: Path
):
    from bgsdk._operating_point import OPERATING_POINT_KEY, OperatingPoint

    threshold = margin_threshold(reference, _cpp_heatmap(binary, model, strip, work), 0.99)
    op = OperatingPoint(threshold=threshold, min_area=2, calibrated=True, rule="best_f1")
    contract = Contract.from_tiling(tiling_for("strip", H, W))
    path = cpp_harness.make_standin_model(work / "calibrated.onnx", H, W, contract_json=contract.to_json())
    import onnx

    m = onnx.load(path)
    entry = m.metadata_props.add()
    entry.key, entry.value = OPERATING_POINT_KEY, op.to_json()
    onnx.save(m, path)
    out_json = work / "op.json"
    run_ok(binary, "--defects-json", out_json, path, strip, work / "op.npy")
    got = json.loads(out_json.read_text())
    sdk = bgsdk.Segmenter(str(path)).run(str(strip))
    assert got["min_area"] == 2 and got["threshold"] == pytest.approx(threshold, rel=1e-7)
    assert [d["area"] for d in got["defects"]] == [d.area for d in sdk.defects] and sdk.defects
