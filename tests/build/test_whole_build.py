"""build-model --mode whole: parity with an independent reference, odd sizes, metadata, SDK, INT8 and fp16.

The independent reference runs the PyTorch stem on each tile, places each tile's keep region with numpy and
runs the network's body once on the stitched maps -- it shares no code with :func:`bgtrain.infer.whole_image`
(the build's own gate) or the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bgbuild import BuildOptions, build_model, read_metadata
from bgbuild.cli import main as build_main
from bgbuild.export import op_counts
from bgbuild.fp16 import Fp16Options
from bgbuild.quantize import QuantizeOptions
from bgsdk import Segmenter
from bgsdk.contract import BUILD_KEY, CONTRACT_KEY
from bgsdk.io import list_images, read_image
from bgsdk.tiling import tiling_for
from bgtrain.checkpoint import save_checkpoint
from bgtrain.validate import baseline, load_eval_set
from tests.helpers.build import tiny_unet, whole_reference
from tests.helpers.cli import invoke


def numpy_whole_reference(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The stem per tile of the strip's tiling, keep regions placed by numpy, the body once, softmax."""
    return whole_reference(model, x, tiling_for("strip", *x.shape[2:]))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, tiny_unet(), image_type="strip", image_size=(976, 176), epoch=1, seed=0)
    return path


@pytest.mark.parametrize("size", [None, (250, 140)])
@pytest.mark.slow
def test_whole_build_matches_an_independent_reference(checkpoint, tmp_path, size):
    out = tmp_path / "whole.onnx"
    report = build_model(checkpoint, out, BuildOptions(mode="whole", image_size=size, verify_images=2))
    assert report.verification.passed and report.verification.max_abs_diff <= 1e-5
    h, w = size or (976, 176)
    x = np.random.default_rng(3).random((2, 3, h, w), dtype=np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.shape == (2, 3, h, w) and np.all(got[:, 1:] == 0.0)
    np.testing.assert_allclose(got[:, 0], numpy_whole_reference(tiny_unet(), x), atol=1e-5)
    model = onnx.load(str(out))
    ops = op_counts(model)
    assert ops["Sigmoid"] == 1 and "Softmax" not in ops and "Loop" not in ops  # folded head (bgbuild.head)
    assert not [n for n in model.graph.node if n.op_type == "Pad" and any(a.s == b"reflect" for a in n.attribute)]
    meta = read_metadata(out)
    assert meta[BUILD_KEY]["mode"] == "whole" and meta[BUILD_KEY]["patch_batch"] is None
    assert meta[CONTRACT_KEY].extra["mode"] == "whole" and (meta[CONTRACT_KEY].height, meta[CONTRACT_KEY].width) == (
        h,
        w,
    )


@pytest.mark.slow
def test_the_sdk_runs_a_whole_model_unchanged(checkpoint, demo_root, tmp_path):
    out = tmp_path / "whole.onnx"
    build_model(checkpoint, out, BuildOptions(mode="whole", verify_data=demo_root))
    f = list_images(demo_root / "test" / "bright_spots")[0]
    res = Segmenter(out, threads=1).run(f)
    x = (read_image(f)[None] / np.float32(255.0)).astype(np.float32)
    np.testing.assert_allclose(res.heatmap, numpy_whole_reference(tiny_unet(), x)[0], atol=1e-5)


def test_whole_mode_options_are_checked(checkpoint, tmp_path, capsys):
    code, _, err = invoke(
        build_main, capsys, checkpoint, "-o", tmp_path / "m.onnx", "--mode", "whole", "--patch-batch", 3
    )
    assert code == 2 and "--patch-batch" in err and "--mode tiled" in err
    assert not (tmp_path / "m.onnx").exists()


def test_whole_int8_is_calibrated_on_strips_gated_and_quantized(dd_checkpoint, demo_root, tmp_path):
    out = tmp_path / "whole.int8.onnx"
    report = build_model(dd_checkpoint, out, BuildOptions(mode="whole", quantize=QuantizeOptions(calib_count=4)))
    q = report.quantization
    assert q is not None and q.verification.passed and q.verification.labelled
    assert q.settings["calibration_patches"] == 4  # four whole strips, not 2 x 18 patches
    assert "whole-strip" in q.settings["scope"]
    sel = q.settings["calibration_selection"]  # --calib-method auto: the AP gate picked the method
    assert sel["asked"] == "auto" and sel["attempts"][-1]["passed"] and sel["attempts"][0]["method"] == "minmax"
    assert q.settings["calibration_method"] == sel["attempts"][-1]["method"]
    assert all(not a["passed"] and "pixel AP" in a["error"] for a in sel["attempts"][:-1])
    # the fp32 whole model computes exactly the double-detection baseline AP (independent numpy reference)
    assert q.verification.fp32_pixel_ap == pytest.approx(
        baseline(load_eval_set(demo_root, "valid"))["pixel_ap"], abs=1e-6
    )
    assert q.verification.ap_drop is not None and q.verification.ap_drop <= 0.02
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    ops = op_counts(onnx.load(str(tmp_path / "opt.onnx")))
    # every Conv runs as QLinearConv, also those feeding MaxPool and the skip Concats, but the first (float on
    # purpose: bgbuild.quantize.first_conv_nodes); the 2-logit head is folded to the float taps MatMul
    assert ops["QLinearConv"] == 26 and ops.get("Conv", 0) + ops.get("FusedConv", 0) == 1, dict(ops)
    assert ops["MatMul"] == 1 and "Softmax" not in ops, dict(ops)
    assert read_metadata(out)[BUILD_KEY]["mode"] == "whole"


def test_whole_fp16_build(dd_checkpoint, tmp_path):
    out = tmp_path / "whole.fp16.onnx"
    report = build_model(dd_checkpoint, out, BuildOptions(mode="whole", fp16=Fp16Options()))
    assert report.precision is not None and report.precision.verification.passed
    assert report.size_bytes < report.precision.fp32_size_bytes
