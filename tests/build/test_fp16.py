"""build-model --fp16: a float16 patch model inside the unchanged float32 contract, verified against fp32.

Reuses the INT8 tests' double-detection UNet (bgtrain.reference_unet) (its fp32 pixel AP equals the numpy
double-detection baseline, an independent reference) and the
independent PyTorch stitching reference (tests.helpers.build). The gain/offset are chosen *not* to be
fp16-representable (20.3 -> 20.296875, 3.1 -> 3.099609), so the fp16 model
really differs from fp32 -- otherwise every difference would be exactly 0.

Precision note (docs/design.md): ONNX Runtime's x86 CPU provider has no fp16
Conv kernels; it inserts Casts and computes in float32 on the fp16-rounded
weights. The CPU verification therefore exercises the graph, the contract and
fp16 weight rounding, not fp16 activation arithmetic (that needs a GPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bgbuild import BuildError, BuildOptions, build_model, read_metadata
from bgbuild.cli import main as build_main
from bgbuild.export import export_patch_model, op_counts
from bgbuild.fp16 import Fp16Options, convert_patch_model, fold_constant_casts, topological_sort
from bgbuild.graphs import all_graphs
from bgbuild.quantize import QuantizeOptions
from bgsdk import Segmenter
from bgsdk.cli import main as sdk_main
from bgsdk.contract import CONTRACT_KEY, PRECISION_KEY, QUANTIZATION_KEY, Contract
from bgsdk.contract import PRECISION_KEY as SDK_PRECISION_KEY
from bgsdk.io import list_images, read_image
from bgsdk.tiling import tiling_for
from bgtrain.checkpoint import save_checkpoint
from bgtrain.reference_unet import double_detection_unet
from bgtrain.validate import baseline, load_eval_set
from tests.helpers.build import (
    SPEC_COL_KEEP,
    SPEC_COLS,
    SPEC_ROW_KEEP,
    SPEC_ROWS,
    data_checkpoint,
    spec_reference,
    tiny_unet,
)
from tests.helpers.cli import invoke

GAIN, OFFSET = 20.3, 3.1
U16 = 2.0**-11  # fp16 unit roundoff (11 significant bits)


@pytest.fixture(scope="module")
def fp16_checkpoint(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fp16ckpt") / "dd.pt"
    return data_checkpoint(path, double_detection_unet(gain=GAIN, offset=OFFSET), demo_root)


@pytest.fixture(scope="module")
def fp16_build(fp16_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("fp16") / "model.fp16.onnx"
    return build_model(fp16_checkpoint, out, BuildOptions(keep_patch_model=True, fp16=Fp16Options())), out


def test_fp16_build_is_verified_and_matches_the_independent_baseline(fp16_build, demo_root):
    report, out = fp16_build
    p = report.precision
    assert p is not None and report.quantization is None
    v = p.verification
    assert v.passed and v.labelled and v.source == "valid" and v.n_images == 4
    ref = baseline(load_eval_set(demo_root, "valid"))  # numpy double detection, shares no code with the build
    assert v.fp32_pixel_ap == pytest.approx(ref["pixel_ap"], abs=1e-6)
    assert v.pixel_ap is not None and abs(v.ap_drop) <= 1e-3
    assert v.image_auroc == pytest.approx(v.fp32_image_auroc)
    # fp16 really differs (non-representable gain), but by about one rounding of the head weights:
    # dlogit <= |20.3 - 20.296875| * min(...) <= 3.2e-3, dp <= dlogit / 4.
    assert 0 < v.mean_abs_diff <= 1e-4 and v.max_abs_diff <= 1e-3
    assert p.settings["casts"] == 2 and p.settings["fp16_initializers"] > 0 and p.settings["float_initializers"] == 0
    assert report.size_bytes < p.fp32_size_bytes


def test_contract_io_and_output_are_unchanged(fp16_build):
    report, out = fp16_build
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (i,), (o,) = sess.get_inputs(), sess.get_outputs()
    assert (i.name, i.type, i.shape) == ("input", "tensor(float)", ["N", 3, 976, 176])
    assert (o.name, o.type, o.shape) == ("output", "tensor(float)", ["N", 3, 976, 176])
    meta = read_metadata(out)
    tiling = tiling_for("strip", 976, 176)
    assert meta[CONTRACT_KEY] == report.contract == Contract.from_tiling(tiling, extra={"image_type": "strip"})


def test_heatmap_is_close_to_the_pytorch_fp32_reference(fp16_build, demo_root):
    """The fp16 artifact vs independent fp32 PyTorch stitching, 3 images in one call (N > 1).

    Tolerance: the only fp16 effect on this model that survives is rounding its weights to 11
    significant bits (0, +-1 exact; gain 20.3 and offset 3.1 are off by <= 2^-11 relative), so
    |dlogit| <= U16 * (GAIN * max min(|T-R1|,|T-R2|) + OFFSET) <= U16 * (20.3 + 3.1) ~ 0.011 and
    |dp| <= |dlogit| / 4 ~ 2.9e-3. fp16 activations (GPU) add input rounding of the same order.
    """
    _, out = fp16_build
    files = (list_images(demo_root / "test" / "bright_spots") + list_images(demo_root / "test" / "good"))[:3]
    x = (np.stack([read_image(f) for f in files]) / np.float32(255.0)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]
    assert got.dtype == np.float32 and got.shape == (3, 3, 976, 176)
    assert np.all(got[:, 1:] == 0.0)  # channels 1-2 exactly zero
    model = double_detection_unet(gain=GAIN, offset=OFFSET)
    ref = spec_reference(model, x, SPEC_ROWS, SPEC_ROW_KEEP, SPEC_COLS, SPEC_COL_KEEP)
    err = np.abs(got[:, 0] - ref)
    assert err.max() <= U16 * (GAIN + OFFSET) / 4, err.max()
    assert err.max() > 0  # it is a different model, not the fp32 one relabelled


def test_graph_casts_at_both_ends_and_float32_tail(fp16_build):
    _, out = fp16_build
    model = onnx.load(str(out))
    nodes = [n for g in all_graphs(model.graph) for n in g.node]
    producer = {o: n for n in nodes for o in n.output}
    casts = [n for n in nodes if n.op_type == "Cast"]
    to = {n.output[0]: next(a.i for a in n.attribute if a.name == "to") for n in casts}
    softmaxes = [n for n in nodes if n.op_type == "Softmax"]
    assert len(softmaxes) == 6  # default build: 6 unrolled calls of 3 patches, one input and one head Cast each
    assert sorted(to.values()) == [onnx.TensorProto.FLOAT] * 6 + [onnx.TensorProto.FLOAT16] * 6
    for softmax in softmaxes:
        head_cast = producer[softmax.input[0]]
        assert head_cast.op_type == "Cast" and to[head_cast.output[0]] == onnx.TensorProto.FLOAT  # fp32 Softmax
        assert producer[head_cast.input[0]].op_type == "Conv"
    # Slicing, stitching and Pad stay float32: no Cast downstream of a Softmax, none on the raw input.
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    assert {n.op_type for n in consumers["input"]} == {"Slice"}
    todo, seen = [o for s in softmaxes for o in s.output], set()
    while todo:
        for n in consumers.get(todo.pop(), []):
            assert n.op_type != "Cast", n.name
            if id(n) not in seen:
                seen.add(id(n))
                todo += list(n.output)
    assert {"Pad", "Transpose", "Concat"} <= {n.op_type for n in model.graph.node}
    f16 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert f16 and all(len(t.dims) in (1, 4) for t in f16)  # only Conv weights and biases are fp16
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 and not t.dims for t in model.graph.initializer)


def test_manifest_metadata_and_kept_patch_model(fp16_build):
    report, out = fp16_build
    manifest = json.loads(out.with_suffix(".json").read_text())
    meta = read_metadata(out)
    assert SDK_PRECISION_KEY == PRECISION_KEY and QUANTIZATION_KEY not in meta
    section = manifest["precision"]
    assert meta[PRECISION_KEY] == section and section["precision"] == "fp16"
    assert section["verification"]["passed"] is True and section["verification"]["device"] == "CPUExecutionProvider"
    assert section["verification"]["mean_abs_diff"] == report.precision.verification.mean_abs_diff
    assert "not measured" in section["settings"]["target"]
    assert manifest["build_options"]["fp16"]["max_mean_diff"] == 1e-3 and manifest["build_options"]["quantize"] is None
    assert manifest["verification"]["max_abs_diff"] <= 1e-5  # the fp32 reference was verified against PyTorch
    assert manifest["model_bytes"] == out.stat().st_size
    patch = onnx.load(str(out.with_suffix(".patch.onnx")))
    assert [(v.name, v.type.tensor_type.elem_type) for v in list(patch.graph.input) + list(patch.graph.output)] == [
        ("input", onnx.TensorProto.FLOAT),
        ("logits", onnx.TensorProto.FLOAT),
    ]
    assert op_counts(patch)["Cast"] == 2


def test_sdk_runs_the_fp16_model_unchanged(fp16_build, demo_root):
    _, out = fp16_build
    files = list_images(demo_root / "test" / "bright_spots")[:2]
    res = Segmenter(out, threads=1).run(files[0])
    x = (np.stack([read_image(f) for f in files]) / np.float32(255.0)).astype(np.float32)
    direct = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]
    assert res.heatmap.shape == (976, 176) and res.heatmap.dtype == np.float32
    np.testing.assert_allclose(res.heatmap, direct[0, 0], atol=1e-6)


def test_inspect_shows_precision(fp16_build, capsys):
    _, out = fp16_build
    code, text, err = invoke(sdk_main, capsys, "inspect", out)
    assert code == 0, err
    assert "precision: fp16" in text and "float32 I/O" in text
    assert "verified vs fp32 (passed;" in text and "pixel AP" in text
    assert "quantization: none" in text
    code, text, _ = invoke(sdk_main, capsys, "inspect", out, "--json")
    report = json.loads(text)
    assert code == 0 and report["precision"]["verification"]["passed"] is True and report["quantization"] is None


def test_fp16_and_quantize_are_mutually_exclusive(fp16_checkpoint, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = invoke(build_main, capsys, fp16_checkpoint, "-o", out_dir / "m.onnx", "--fp16", "--quantize")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("build-model: error:"), err
    assert "mutually exclusive" in lines[0]
    code, _, err = invoke(build_main, capsys, fp16_checkpoint, "-o", out_dir / "m.onnx", "--fp16", "--calib-count", 2)
    assert code == 2 and "--calib-count only make(s) sense with --quantize" in err
    code, _, err = invoke(build_main, capsys, fp16_checkpoint, "-o", out_dir / "m.onnx", "--max-mean-diff", 0.1)
    assert code == 2 and "only make(s) sense with --quantize or --fp16" in err
    with pytest.raises(BuildError, match="mutually exclusive"):
        build_model(fp16_checkpoint, out_dir / "m.onnx", BuildOptions(fp16=Fp16Options(), quantize=QuantizeOptions()))
    assert list(out_dir.iterdir()) == []


@pytest.mark.slow
def test_aligned_stem_builds_in_fp16(tmp_path):
    """The aligned stem's shift estimate is scaled for float16 (tests/train/test_model_align.py checks its
    arithmetic in half precision); its fp16 build passes the gate and tracks the fp32 build."""
    ckpt = tmp_path / "aligned.pt"
    save_checkpoint(ckpt, tiny_unet(stem="aligned"), image_type="strip", image_size=(976, 176), epoch=0, seed=0)
    fp32, fp16 = tmp_path / "m.onnx", tmp_path / "m.fp16.onnx"
    build_model(ckpt, fp32, BuildOptions(verify_images=1))
    assert build_model(ckpt, fp16, BuildOptions(verify_images=1, fp16=Fp16Options())).verification.passed
    x = np.random.default_rng(5).random((1, 3, 976, 176), dtype=np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    assert np.abs(run(fp16) - run(fp32)).max() < 1e-2


def test_gate_failure_writes_nothing(fp16_checkpoint, tmp_path, capsys):
    """A zero mean-|diff| limit: the fp16 heatmap differs (non-representable gain), so the gate must stop it."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = invoke(
        build_main, capsys, fp16_checkpoint, "-o", out_dir / "m.fp16.onnx", "--fp16", "--max-mean-diff", 0, "-q"
    )
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("build-model: error:")]
    assert len(lines) == 1 and "fp16 verification failed" in lines[0] and "mean |fp16 - fp32|" in lines[0], err
    assert list(out_dir.iterdir()) == []  # no model, no manifest, no temp file


def test_converted_patch_model_tracks_fp32_within_weight_rounding():
    """Random BN-folded width-4 UNet: fp16 patch logits vs fp32 ORT logits on random patches.

    Bound: every weight moves by <= U16 relative; to first order a chain of 28 Conv layers moves the
    logits by <= 28 * U16 relative to their scale (the measured error is ~100x smaller).
    """
    pm = export_patch_model(tiny_unet(1), 128, 17)
    conv = convert_patch_model(pm)
    m = conv.model
    # The parameter-free input stem's comparisons (bool -> float, and the converter keeps Min in float32)
    # cast inside /stem/; the network body has only the input and logits Casts.
    casts = [n for n in m.graph.node if n.op_type == "Cast"]
    body = [n for n in casts if not n.name.startswith("/stem/")]
    assert len(body) == 2 and conv.settings["folded_constant_casts"] == 5  # the 5 Resize scales
    assert conv.settings["casts"] == len(casts)
    # Topologically sorted, no Cast of a constant left: every body Cast reads the input or a Conv output.
    producer = {o: n for n in m.graph.node for o in n.output}
    for n in body:
        assert n.input[0] == "input" or producer[n.input[0]].op_type == "Conv"
    x = np.random.default_rng(0).random((3, 3, 128, 128), dtype=np.float32)
    run = lambda mm: ort.InferenceSession(mm.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        ["logits"], {"input": x}
    )[0]
    ref, got = run(pm), run(m)
    assert got.dtype == np.float32
    scale = float(np.abs(ref).max())
    err = float(np.abs(got - ref).max())
    assert 0 < err <= 28 * U16 * scale, (err, scale)


def test_topological_sort_and_constant_cast_folding():
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])
    c = numpy_helper.from_array(np.array([1.5, 2.0], np.float16), "c")
    nodes = [  # out of order, as the converter leaves them
        helper.make_node("Add", ["xf", "cf"], ["logits"]),
        helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["input"], ["xf"]),
    ]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [c]), opset_imports=[helper.make_opsetid("", 17)])
    topological_sort(m.graph)
    assert [n.op_type for n in m.graph.node] == ["Cast", "Identity", "Add"]
    assert fold_constant_casts(m.graph) == 1
    assert [n.op_type for n in m.graph.node] == ["Constant", "Identity", "Add"] and not m.graph.initializer
    onnx.checker.check_model(m, full_check=True)
    out = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": np.zeros((1, 2), np.float32)}
    )[0]
    np.testing.assert_array_equal(out, [[1.5, 2.0]])
