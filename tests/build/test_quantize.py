"""build-model --quantize: INT8 builds that are verified against fp32, and a gate that stops bad ones.

The model under test must actually detect defects, or an AP gate tests nothing.
Training one that does takes minutes on 2 shared cores, so the tests build one:
a width-4 UNet whose weights *implement the double-detection baseline*
(:func:`bgtrain.reference_unet.double_detection_unet`: encoder block 0 computes |T-R1| and |T-R2|, the
last decoder stage their minimum, the head a logit that grows with it). Its fp32
pixel AP therefore equals bgtrain's double-detection baseline AP, computed
independently in numpy -- a reference that shares no code with the build -- and
its activations grow with the defect amplitude, so a badly calibrated range
visibly clips defects.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tifffile
from onnx import TensorProto, helper, numpy_helper

from bgbuild import BuildError, BuildOptions, VerificationError, build_model, read_metadata
from bgbuild.calibration import calibration_patches
from bgbuild.cli import main as build_main
from bgbuild.export import export_patch_model, op_counts
from bgbuild.graphs import all_graphs
from bgbuild.quantize import QuantizeOptions, first_conv_nodes, float_logits, quantize_patch_model
from bgsdk import Segmenter
from bgsdk.cli import main as sdk_main
from bgsdk.contract import QUANTIZATION_KEY
from bgsdk.contract import QUANTIZATION_KEY as SDK_QUANTIZATION_KEY
from bgsdk.io import list_images, read_image
from bgsdk.tiling import tiling_for
from bgtrain.checkpoint import save_checkpoint
from bgtrain.reference_unet import double_detection_unet
from bgtrain.validate import baseline, load_eval_set
from tests.helpers.build import tiny_unet
from tests.helpers.cli import invoke

WIDTH = 4


@pytest.fixture(scope="module")
def int8_build(dd_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    opts = BuildOptions(keep_patch_model=True, quantize=QuantizeOptions(calib_count=4))
    return build_model(dd_checkpoint, out, opts), out


def test_int8_build_is_verified_against_an_independent_reference(int8_build, demo_root):
    report, out = int8_build
    q = report.quantization
    assert q is not None and q.verification.passed and q.verification.labelled
    v = q.verification
    # fp32 AP of this model == the numpy double-detection baseline on the same valid/ images.
    ref = baseline(load_eval_set(demo_root, "valid"))
    assert v.source == "valid" and v.n_images == 4
    assert v.fp32_pixel_ap == pytest.approx(ref["pixel_ap"], abs=1e-6)
    assert v.fp32_image_auroc == pytest.approx(ref["image_auroc"])
    assert v.pixel_ap is not None and v.ap_drop is not None and v.ap_drop <= 0.02
    assert 0 < v.mean_abs_diff <= 0.01 and v.max_abs_diff < 0.2  # INT8 really differs, but not much
    assert q.settings["activations"] == "uint8" and q.settings["calibration_patches"] == 4 * 18
    assert q.settings["float_logits"] is True
    assert len(q.calibration.files) == 4 and q.calibration.source == "training-dataset"
    # Weights are int8 (one copy, shared by the 6 unrolled calls) but the first Conv's, which stays float
    # (first_conv_nodes). At width 4 the file is not smaller than fp32 -- the 6 calls' Q/DQ nodes outweigh
    # the tiny weights; at width 64 it is ~4x smaller (benchmarks).
    conv_w = [t for t in onnx.load(str(out)).graph.initializer if len(t.dims) == 4]
    types = sorted(t.data_type for t in conv_w)
    assert types == [TensorProto.FLOAT] + [TensorProto.INT8] * (len(conv_w) - 1), types
    assert q.settings["float_first_conv"] is True


def test_manifest_and_metadata_record_quantization(int8_build):
    report, out = int8_build
    manifest = json.loads(out.with_suffix(".json").read_text())
    meta = read_metadata(out)
    assert SDK_QUANTIZATION_KEY == QUANTIZATION_KEY
    section = manifest["quantization"]
    assert meta[QUANTIZATION_KEY] == section
    assert section["verification"]["passed"] is True
    assert section["verification"]["fp32_pixel_ap"] == report.quantization.verification.fp32_pixel_ap
    assert section["calibration"]["images"] == 4 and section["settings"]["format"] == "QDQ"
    assert manifest["build_options"]["quantize"]["calib_count"] == 4
    assert manifest["verification"]["max_abs_diff"] <= 1e-5  # the fp32 reference was verified against PyTorch
    # Written = what the manifest describes; the patch model kept is the quantized one.
    assert manifest["model_bytes"] == out.stat().st_size
    patch = onnx.load(str(out.with_suffix(".patch.onnx")))
    assert op_counts(patch)["QuantizeLinear"] > 0


def test_head_logits_and_tail_stay_float(int8_build):
    _, out = int8_build
    model = onnx.load(str(out))
    nodes = [n for g in all_graphs(model.graph) for n in g.node]
    producer = {o: n for n in nodes for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    softmaxes = [n for n in nodes if n.op_type == "Sigmoid"]  # the folded head's (bgbuild.head)
    assert len(softmaxes) == 6 and "Softmax" not in op_counts(model)  # default build: 6 unrolled calls
    for softmax in softmaxes:
        # float defect logit: the sum of shifted tap maps of a float MatMul on the dequantized last features
        tap_sum = producer[softmax.input[0]]
        assert tap_sum.op_type == "Sum"
        matmul = next(n for n in nodes if n.op_type == "MatMul" and n.output[0] in _ancestors(tap_sum, producer))
        assert inits[matmul.input[0]].data_type == TensorProto.FLOAT
        assert producer[producer[matmul.input[1]].input[0]].op_type == "DequantizeLinear"
    # Nothing after the logit is quantized: walk forward from the Sigmoids.
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    seen: dict[int, onnx.NodeProto] = {}
    todo = [o for s in softmaxes for o in s.output]
    while todo:
        for n in consumers.get(todo.pop(), []):
            assert n.op_type not in ("QuantizeLinear", "DequantizeLinear"), n.name
            if id(n) not in seen:
                seen[id(n)] = n
                todo += list(n.output)
    assert {"Slice", "Concat", "Transpose", "Pad"} <= {n.op_type for n in seen.values()}  # crops, stitching, zeros
    # The patches are cut from the float input; the first Conv of each call reads their Concat, in float
    # (bgbuild.quantize.first_conv_nodes), with float weights.
    assert {n.op_type for n in consumers["input"]} == {"Slice"}
    first_convs = [
        n
        for n in nodes
        if n.op_type == "Conv"
        and producer[n.input[0]].op_type == "Concat"
        and all(producer[i].op_type == "Slice" for i in producer[n.input[0]].input)
    ]
    assert len(first_convs) == 6 and all(inits[n.input[1]].data_type == TensorProto.FLOAT for n in first_convs)


def _ancestors(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto], depth: int = 4) -> set[str]:
    """Tensors up to ``depth`` nodes upstream of ``node``."""
    found: set[str] = set()
    todo = [(i, 1) for i in node.input]
    while todo:
        t, d = todo.pop()
        found.add(t)
        if d < depth and t in producer:
            todo += [(i, d + 1) for i in producer[t].input]
    return found


def test_onnxruntime_runs_every_conv_as_qlinearconv(int8_build, tmp_path):
    """The point of U8S8 (docs/design.md): with int8 activations ORT left 5 encoder Convs in float; here
    only the one left float on purpose is."""
    _, out = int8_build
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    ops = op_counts(onnx.load(str(tmp_path / "opt.onnx")))
    # 6 unrolled calls (default --patch-batch 3) x (26 QLinearConv, the first Conv in float, and the 2-logit
    # head folded to a float MatMul)
    assert ops["QLinearConv"] == 6 * 26 and ops.get("Conv", 0) + ops.get("FusedConv", 0) == 6, dict(ops)
    assert ops["MatMul"] == 6, dict(ops)


def test_sdk_runs_the_int8_model_unchanged(int8_build, demo_root):
    report, out = int8_build
    files = list_images(demo_root / "test" / "bright_spots")[:2]
    seg = Segmenter(out, threads=1)
    res = seg.run(files[0])
    x = (np.stack([read_image(f) for f in files]) / np.float32(255.0)).astype(np.float32)
    direct = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]
    assert res.heatmap.shape == (976, 176)
    np.testing.assert_allclose(res.heatmap, direct[0, 0], atol=1e-6)
    assert np.all(direct[:, 1:] == 0.0)


@pytest.mark.slow
def test_all_zero_calibration_is_caught_and_nothing_is_written(dd_checkpoint, tmp_path, capsys):
    zeros = tmp_path / "zeros"
    zeros.mkdir()
    for i in range(2):
        tifffile.imwrite(zeros / f"z{i}.tiff", np.zeros((4, 976, 176), np.float32))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = invoke(
        build_main,
        capsys,
        dd_checkpoint,
        "-o",
        out_dir / "m.int8.onnx",
        "--quantize",
        "--calib-data",
        zeros,
        "--no-calib-defects",
        "--calib-count",
        2,
        "-q",
    )
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("build-model: error:")]
    assert len(lines) == 1 and "INT8 verification failed" in lines[0] and "pixel AP dropped" in lines[0], err
    assert list(out_dir.iterdir()) == []  # no model, no manifest, no temp file


@pytest.mark.slow
def test_unlabelled_verification_gates_on_the_heatmap_difference(dd_checkpoint, demo_root, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in list_images(demo_root / "test" / "bright_spots")[:2]:
        (flat / f.name).write_bytes(f.read_bytes())
    opts = BuildOptions(verify_data=flat, verify_images=2, quantize=QuantizeOptions(calib_count=2))
    report = build_model(dd_checkpoint, tmp_path / "u.int8.onnx", opts)
    v = report.quantization.verification
    assert not v.labelled and v.fp32_pixel_ap is None and v.passed and v.n_images == 2
    assert any("no labelled images" in w for w in report.warnings)
    # The same gate with a zero tolerance fails, and then nothing is written.
    strict = BuildOptions(verify_data=flat, verify_images=2, quantize=QuantizeOptions(calib_count=2, max_mean_diff=0.0))
    with pytest.raises(VerificationError, match="mean"):
        build_model(dd_checkpoint, tmp_path / "strict.int8.onnx", strict)
    assert not (tmp_path / "strict.int8.onnx").exists() and not (tmp_path / "strict.int8.json").exists()


def test_calibration_needs_real_images_and_quantize_options_need_quantize(tmp_path, capsys):
    ckpt = tmp_path / "nodata.pt"
    save_checkpoint(ckpt, double_detection_unet(), image_type="strip", image_size=(976, 176), epoch=0, seed=0)
    with pytest.raises(BuildError, match="--calib-data"):
        build_model(ckpt, tmp_path / "x.onnx", BuildOptions(quantize=QuantizeOptions()))
    with pytest.raises(BuildError, match="--calib-method"):
        build_model(ckpt, tmp_path / "x.onnx", BuildOptions(quantize=QuantizeOptions(calib_method="bogus")))
    code, _, err = invoke(build_main, capsys, ckpt, "-o", tmp_path / "x.onnx", "--calib-count", 3)
    assert code == 2 and "--calib-count only make(s) sense with --quantize" in err
    code, _, err = invoke(build_main, capsys, ckpt, "-o", tmp_path / "x.onnx", "--quantize-first-conv")
    assert code == 2 and "--float-first-conv/--quantize-first-conv only make(s) sense with --quantize" in err
    assert not (tmp_path / "x.onnx").exists()


def _conv(name: str, cin: int, cout: int, rng: np.random.Generator) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    w = numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32), f"{name}.w")
    b = numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.b")
    return w, b


def test_int8_bilinear_resize_is_right(tmp_path):
    """onnxruntime's Q/DQ around linear Resize (github.com/microsoft/onnxruntime/issues/21319): INT8 tracks fp32.

    A small patch model Conv-ReLU-MaxPool-Resize(linear, align_corners)-Conv-ReLU-Conv, built
    with onnx.helper, quantized by the build's own function; its INT8 logits must stay within a
    few quantization steps of the fp32 logits on patches it was not calibrated on.
    """
    rng = np.random.default_rng(0)
    w1, b1 = _conv("c1", 3, 8, rng)
    w2, b2 = _conv("c2", 8, 8, rng)
    w3, b3 = _conv("c3", 8, 2, rng)
    pads = [1, 1, 1, 1]
    nodes = [
        helper.make_node("Conv", ["input", "c1.w", "c1.b"], ["h1"], pads=pads),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Resize", ["p1", "", "scales"], ["u1"], mode="linear", coordinate_transformation_mode="align_corners"
        ),
        helper.make_node("Conv", ["u1", "c2.w", "c2.b"], ["h2"], pads=pads),
        helper.make_node("Relu", ["h2"], ["r2"]),
        helper.make_node("Conv", ["r2", "c3.w", "c3.b"], ["logits"], pads=pads),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(
        nodes,
        "resize_net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 3, 128, 128])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 2, 128, 128])],
        [w1, b1, w2, b2, w3, b3, scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)

    def patches(seed: int) -> np.ndarray:
        from bgtrain.synth_dataset import make_image

        img = make_image(np.random.default_rng(seed), 976, 176, defective=True)[0][:3][None]
        return calibration_patches(img, tiling_for("strip", 976, 176), synth_seed=seed)

    assert first_conv_nodes(model) == []  # unnamed: excluding "" would leave every unnamed node float
    q = quantize_patch_model(model, patches(1), QuantizeOptions(float_first_conv=False))  # c1 too: Q/DQ all round
    assert op_counts(q.model)["Resize"] == 1 and q.settings["float_logits"]
    held = patches(2)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        ["logits"], {"input": held}
    )[0]
    ref, got = run(model), run(q.model)
    span = float(ref.max() - ref.min())
    err = np.abs(got - ref)
    assert err.max() <= 0.05 * span and err.mean() <= 0.01 * span, (err.max(), err.mean(), span)
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.999


@pytest.mark.parametrize("stem", ["tolerant", "aligned", "registered"])
@pytest.mark.parametrize("float_first_conv", [True, False])
@pytest.mark.slow
def test_input_stem_stays_float(stem, float_first_conv):
    """The stem's comparisons (and the aligned stem's shift estimate) run in float, and by default so
    does the first Conv that reads them; --quantize-first-conv quantizes the map that Conv reads."""
    pm = export_patch_model(tiny_unet(1, stem=stem), 128, 17)
    assert any(n.name.startswith("/stem/") for n in pm.graph.node)
    x = np.random.default_rng(0).random((6, 3, 128, 128), dtype=np.float32)
    q = quantize_patch_model(pm, x, QuantizeOptions(float_first_conv=float_first_conv))
    assert q.settings["float_first_conv"] is float_first_conv
    assert ("the first Conv" in q.settings["scope"]) is float_first_conv  # what bgsdk inspect shows
    g = q.model.graph
    producer = {o: n for n in g.node for o in n.output}
    quantized_stem = [producer[n.input[0]] for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in producer]
    quantized_stem = [n for n in quantized_stem if n.name.startswith("/stem/")]
    stem_inputs = {i for n in g.node if n.name.startswith("/stem/") for i in n.input}
    assert not any(producer[i].op_type == "DequantizeLinear" for i in stem_inputs if i in producer)
    first = next(n for n in g.node if n.op_type == "Conv")
    reads = producer[first.input[0]]
    if float_first_conv:
        assert quantized_stem == []  # nothing the stem writes is rounded to 8 bits
        assert (reads.op_type, first.input[1] in producer) == ("Concat", False)  # float map, float weights
    else:
        assert [n.op_type for n in quantized_stem] == ["Concat"]  # the stem's output, read by the first Conv
        assert reads.op_type == "DequantizeLinear"
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        ["logits"], {"input": x}
    )[0]
    ref, got = run(pm), run(q.model)
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99


def test_first_conv_nodes_without_a_stem_is_the_conv_reading_the_input():
    pm = export_patch_model(tiny_unet(1, stem="plain"), 128, 17)
    (name,) = first_conv_nodes(pm)
    conv = next(n for n in pm.graph.node if n.name == name)
    assert conv.op_type == "Conv" and conv.input[0] == pm.graph.input[0].name


def test_float_logits_only_removes_the_output_pair():
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.uint8), "z")
    nodes = [
        helper.make_node("Relu", ["input"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["logits"]),
    ]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [s, z]), opset_imports=[helper.make_opsetid("", 17)])
    assert float_logits(m) is True
    assert [n.op_type for n in m.graph.node] == ["Relu"] and list(m.graph.node[0].output) == ["logits"]
    onnx.checker.check_model(m)
    assert float_logits(m) is False  # nothing left to remove


def test_inspect_shows_quantization(int8_build, capsys):
    _, out = int8_build
    code, text, err = invoke(sdk_main, capsys, "inspect", out)
    assert code == 0, err
    assert "quantization: QDQ INT8: uint8 activations, int8 symmetric, per-channel weights" in text
    assert "calibration: minmax on 72 patches of 4 image(s) (training-dataset)" in text
    assert "verified vs fp32 (passed;" in text and "pixel AP" in text
    code, text, _ = invoke(sdk_main, capsys, "inspect", out, "--json")
    report = json.loads(text)
    assert code == 0 and report["quantization"]["verification"]["passed"] is True


def test_calibration_images_of_another_size(tmp_path, demo_root):
    """Given calibration images (--calib-data) of another size are one line naming the file and both sizes; the
    training data set's are skipped (a build at another --image-size), and none left is an error too."""
    from bgbuild.calibration import select_calibration_images

    t = tiling_for("strip", 480, 200)
    with pytest.raises(BuildError, match=r"^--calib-data .*: .*\.tiff: image is 976x176, the model is 480x200"):
        select_calibration_images(t, calib_data=demo_root, train_config=None, count=2)
    with pytest.raises(BuildError, match=r"no 480x200 calibration images found .* \(4 of another size skipped\)"):
        select_calibration_images(t, calib_data=None, train_config={"training_dataset_path": str(demo_root)}, count=2)
    ok = select_calibration_images(tiling_for("strip"), calib_data=demo_root, train_config=None, count=2)
    assert ok.images.shape == (2, 3, 976, 176) and ok.source == "calib-data"
