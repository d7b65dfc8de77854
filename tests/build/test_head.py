"""The folded two-class head (bgbuild.head): one defect logit l1 - l0, checked against the unfolded model.

References are the models as exported or quantized, run whole in ONNX Runtime, and a
numpy softmax over their two logits; the fold must reproduce both to float rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bgbuild.export import export_patch_model, op_counts
from bgbuild.head import DEFECT_LOGIT, fold_two_class_head
from bgbuild.quantize import QuantizeOptions, quantize_patch_model
from tests.helpers.build import tiny_unet


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _softmax1(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True))[:, 1:2]


def _check_fold(model: onnx.ModelProto, x: np.ndarray, atol: float) -> onnx.ModelProto:
    folded = fold_two_class_head(model)
    assert folded is not None
    onnx.checker.check_model(folded, full_check=True)
    logits, d = _run(model, x), _run(folded, x)
    assert d.shape == (x.shape[0], 1, *logits.shape[2:])
    np.testing.assert_allclose(d[:, 0], logits[:, 1] - logits[:, 0], rtol=0, atol=atol)
    np.testing.assert_allclose(1 / (1 + np.exp(-d)), _softmax1(logits), rtol=0, atol=atol / 10)
    return folded


@pytest.fixture(scope="module")
def patch_model() -> onnx.ModelProto:
    return export_patch_model(tiny_unet(), 128)


def test_folded_unet_head_is_the_logit_difference(patch_model):
    x = np.random.default_rng(0).random((3, 3, 128, 128), dtype=np.float32)
    folded = _check_fold(patch_model, x, atol=1e-5)
    ops = op_counts(folded)
    assert ops["Conv"] == op_counts(patch_model)["Conv"] - 1 and ops["MatMul"] == 1 and ops["Sum"] == 1
    assert [o.name for o in folded.graph.output] == [DEFECT_LOGIT]
    assert patch_model.graph.output[0].name == "logits"  # the input model is left alone


@pytest.mark.slow
def test_folded_int8_head_reads_the_dequantized_weights(patch_model):
    """The head's int8 weights (DequantizeLinear, per-channel) are folded in float; activations stay as they are."""
    rng = np.random.default_rng(1)
    calib = rng.random((6, 3, 128, 128), dtype=np.float32)
    q = quantize_patch_model(patch_model, calib, QuantizeOptions(calib_method="minmax", calib_batch=3)).model
    folded = _check_fold(q, rng.random((2, 3, 128, 128), dtype=np.float32), atol=1e-5)
    inits = {t.name: t for t in folded.graph.initializer}
    int8_weights = [t for t in inits.values() if t.data_type == TensorProto.INT8 and len(t.dims) == 4]
    # every Conv but the first (float on purpose) and the folded head keeps its int8 weights; the head's are gone
    assert len(int8_weights) == 26
    assert op_counts(folded)["DequantizeLinear"] < op_counts(q)["DequantizeLinear"]


def _one_conv(kernel: tuple[int, int], out_channels: int = 2, **attrs: object) -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((out_channels, 4, *kernel)).astype(np.float32)
    b = rng.standard_normal(out_channels).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["logits"], **attrs)],
        "head",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 4, 9, 11])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", out_channels, 9, 11])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (3, 5), (5, 3)])
def test_any_odd_same_kernel_folds_exactly(kernel):
    kh, kw = kernel
    model = _one_conv(kernel, pads=[kh // 2, kw // 2, kh // 2, kw // 2])
    x = np.random.default_rng(3).standard_normal((2, 4, 9, 11)).astype(np.float32)
    _check_fold(model, x, atol=1e-5)


@pytest.mark.parametrize(
    "model",
    [
        _one_conv((3, 3), out_channels=3, pads=[1, 1, 1, 1]),  # not two classes
        _one_conv((3, 3), pads=[0, 0, 0, 0]),  # 'valid', not 'same'
        _one_conv((3, 3), pads=[1, 1, 1, 1], dilations=[2, 2]),
        _one_conv((2, 2), pads=[1, 1, 0, 0]),  # even kernel
    ],
    ids=["3-class", "valid", "dilated", "even"],
)
def test_heads_it_cannot_fold_are_left_to_softmax(model):
    assert fold_two_class_head(model) is None


def test_a_head_behind_a_cast_is_not_folded(patch_model):
    """fp16 builds end in Conv(fp16) -> Cast(float): not a constant-weight float Conv on the output."""
    m = onnx.ModelProto()
    m.CopyFrom(patch_model)
    head = next(n for n in m.graph.node if "logits" in n.output)
    head.output[0] = "logits_raw"
    m.graph.node.append(helper.make_node("Cast", ["logits_raw"], ["logits"], to=TensorProto.FLOAT))
    assert fold_two_class_head(m) is None
