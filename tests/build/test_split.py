"""The hybrid tiled build: the patch model cut by resolution, and its composition.

References are independent of the split: the exported patch model run whole in ONNX
Runtime, and the one-call composed model (all 18 patches in one patch-model call),
whose stitching test_compose.py checks pixel by pixel against the given strip numbers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bgbuild.compose import ComposeOptions, compose_full_model
from bgbuild.export import export_patch_model, op_counts
from bgbuild.simplify import check_graph, constants_to_initializers
from bgbuild.split import split_by_resolution
from bgsdk.tiling import tiling_for
from tests.helpers.build import index_patch_model, tiny_unet


def _sess(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def patch_model() -> onnx.ModelProto:
    return export_patch_model(tiny_unet(), 128)


def _conv_heights(model: onnx.ModelProto) -> set[int]:
    """Output heights of the model's Convs."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {vi.name: vi.type.tensor_type.shape.dim for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    return {shapes[n.output[0]][2].dim_value for n in inferred.graph.node if n.op_type == "Conv"}


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_parts_compose_to_the_patch_model(patch_model, levels):
    parts = split_by_resolution(patch_model, levels)
    assert parts is not None
    # every Conv of the UNet is in exactly one part (27 + the head)
    assert sum(op_counts(getattr(parts, p))["Conv"] for p in ("front", "middle", "back")) == 28
    # the middle holds only the layers at or below P / 2**levels px; the ends none of them
    assert max(_conv_heights(parts.middle)) == 128 // 2**levels
    assert min(_conv_heights(parts.front) | _conv_heights(parts.back)) == 128 // 2 ** (levels - 1)
    assert len(parts.down) == 1 and len(parts.up) == 1 and len(parts.skips) == levels
    x = np.random.default_rng(levels).random((3, 3, 128, 128), dtype=np.float32)
    front = _sess(parts.front)
    fo = dict(zip([o.name for o in front.get_outputs()], front.run(None, {"input": x})))
    mo = dict(zip(parts.up, _sess(parts.middle).run(None, {t: fo[t] for t in parts.down})))
    got = _sess(parts.back).run(None, {**{t: fo[t] for t in parts.skips}, **mo})[0]
    ref = _sess(patch_model).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_a_model_without_low_resolution_layers_is_not_split():
    one_conv = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Conv", ["input", "w"], ["logits"], pads=[1, 1, 1, 1])],
            "flat",
            [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["B", 3, 128, 128])],
            [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["B", 2, 128, 128])],
            [onnx.numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 17)],
    )
    assert split_by_resolution(one_conv) is None
    with pytest.raises(ValueError, match="levels"):
        split_by_resolution(one_conv, 0)


@pytest.mark.parametrize(("k", "levels", "n"), [(3, 1, 1), (3, 1, 2), (5, 1, 2), (4, 2, 3), (1, 1, 1)])
@pytest.mark.slow
def test_hybrid_equals_one_call(patch_model, k, levels, n):
    tiling = tiling_for("strip")
    hybrid = compose_full_model(
        patch_model, tiling, ComposeOptions(patch_batch=k, chunking="hybrid", hybrid_levels=levels)
    )
    one = compose_full_model(patch_model, tiling, ComposeOptions(patch_batch=None))
    ops = op_counts(hybrid)
    calls = -(-tiling.num_patches // k)
    # one folded head (taps MatMul + Sigmoid) per chunk, no Softmax (bgbuild.head)
    assert ops["Sigmoid"] == ops["MatMul"] == calls and "Softmax" not in ops and "Loop" not in ops
    # front and back per chunk, the middle once: fewer Convs than unrolled calls of the whole model
    front_back = 2 * levels + 3 * levels  # 2 per encoder block, 3 per decoder stage (up + block); head folded
    assert ops["Conv"] == calls * front_back + (27 - front_back)
    check_graph(constants_to_initializers(hybrid), allow_loop=False)
    x = np.random.default_rng(n).random((n, 3, tiling.height, tiling.width), dtype=np.float32)
    np.testing.assert_allclose(
        _sess(hybrid).run(None, {"input": x})[0], _sess(one).run(None, {"input": x})[0], rtol=0, atol=1e-6
    )


def test_hybrid_weights_exist_once(patch_model):
    """Front, middle and every chunk's back read the same constants: each Conv weight is in the file once."""
    tiling = tiling_for("strip")
    hybrid = constants_to_initializers(
        compose_full_model(patch_model, tiling, ComposeOptions(patch_batch=3, chunking="hybrid"))
    )
    conv_weights = sorted(int(np.prod(t.dims)) for t in patch_model.graph.initializer if len(t.dims) == 4)
    assert len(conv_weights) == 28
    head = next(t for t in patch_model.graph.initializer if len(t.dims) == 4 and t.dims[0] == 2)
    conv_weights.remove(int(np.prod(head.dims)))  # folded into the (9, C) taps (bgbuild.head)
    assert sorted(int(np.prod(t.dims)) for t in hybrid.graph.initializer if len(t.dims) == 4) == conv_weights
    taps = [t for t in hybrid.graph.initializer if list(t.dims) == [9, head.dims[1]]]
    assert len(taps) == 1


def test_hybrid_on_a_model_whose_middle_reads_the_input():
    """The index model's corner code is a (B,1,1,1) slice of the input: the middle, fed the input itself."""
    model = index_patch_model()
    parts = split_by_resolution(model)
    assert parts is not None and parts.down == ["input"]
    tiling = tiling_for("strip")
    hybrid = compose_full_model(model, tiling, ComposeOptions(patch_batch=4, chunking="hybrid"))
    x = np.random.default_rng(0).random((2, 3, tiling.height, tiling.width), dtype=np.float32)
    np.testing.assert_array_equal(
        _sess(hybrid).run(None, {"input": x})[0], _sess(compose_full_model(model, tiling)).run(None, {"input": x})[0]
    )


@pytest.mark.slow
def test_quantized_patch_model_is_cut_on_uint8_tensors(patch_model):
    """INT8: the tensors that cross the cut are the quantized ones, every DequantizeLinear goes with its
    consumer, and in ONNX Runtime's optimized graph every Conv but the first and the 2-logit heads is a QLinearConv."""
    from bgbuild.quantize import QuantizeOptions, quantize_patch_model

    patches = np.random.default_rng(0).random((8, 3, 128, 128), dtype=np.float32)
    q = quantize_patch_model(patch_model, patches, QuantizeOptions(calib_count=1)).model
    parts = split_by_resolution(q)
    assert parts is not None
    front = {o.name: o.type.tensor_type.elem_type for o in parts.front.graph.output}
    assert set(front.values()) == {onnx.TensorProto.UINT8}, front
    assert {i.type.tensor_type.elem_type for i in parts.back.graph.input if i.name in parts.up} == {
        onnx.TensorProto.UINT8
    }
    tiling = tiling_for("strip")
    hybrid = compose_full_model(q, tiling, ComposeOptions(patch_batch=3, chunking="hybrid"))
    x = np.random.default_rng(1).random((1, 3, tiling.height, tiling.width), dtype=np.float32)
    got = _sess(hybrid).run(None, {"input": x})[0]
    want = _sess(compose_full_model(q, tiling, ComposeOptions(patch_batch=3))).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(Path(tempfile.mkdtemp()) / "opt.onnx")
    ort.InferenceSession(hybrid.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops = op_counts(onnx.load(so.optimized_model_filepath))
    calls = 6
    # every Conv quantized but the first of each call (float on purpose: bgbuild.quantize.first_conv_nodes);
    # the head is the float taps MatMul (bgbuild.head), once per chunk
    assert ops["QLinearConv"] == calls * 4 + 22 and ops.get("Conv", 0) + ops.get("FusedConv", 0) == calls, dict(ops)
    assert ops["MatMul"] == calls, dict(ops)
