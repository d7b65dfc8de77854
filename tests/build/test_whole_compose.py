"""Whole-strip mode: the padding rule, the PyTorch reference and the composed ONNX graph.

The references here are independent of the code under test: numpy's ``np.pad(mode="reflect")``
for the padding, and a hand-written ONNX core model (onnx.helper) that flips the padded image
vertically, so the crop the graph takes back contains mirrored rows whenever the padding is
uneven -- a wrong pad size, a wrong split or edge-repeating ("symmetric") padding changes pixels.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from bgbuild.compose import compose_whole_model
from bgbuild.export import op_counts
from bgbuild.simplify import check_graph, constants_to_initializers, simplify
from bgtrain.infer import whole_image, whole_padding
from bgtrain.model import UNet


@pytest.mark.parametrize(
    ("h", "w", "pads"),
    [
        (976, 176, (8, 8, 8, 8)),  # the strip: 992x192
        (480, 200, (0, 0, 12, 12)),
        (129, 130, (15, 16, 15, 15)),  # odd totals: the extra pixel goes bottom/right
        (250, 140, (3, 3, 10, 10)),
        (64, 96, (0, 0, 0, 0)),
    ],
)
def test_whole_padding_reaches_the_next_multiple_of_32(h, w, pads):
    top, bottom, left, right = whole_padding(h, w)
    assert (top, bottom, left, right) == pads
    assert (h + top + bottom) % 32 == 0 and (w + left + right) % 32 == 0
    assert max(pads) < 32


def test_whole_padding_refuses_sides_too_small_to_mirror():
    with pytest.raises(ValueError, match="too small"):
        whole_padding(10, 128)  # needs 22 rows of padding from a 10-row image
    with pytest.raises(ValueError):
        whole_padding(0, 128)


def _numpy_reference(model: UNet, x: np.ndarray) -> np.ndarray:
    n, _, h, w = x.shape
    top, bottom, left, right = whole_padding(h, w)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
    with torch.no_grad():
        logits = model(torch.from_numpy(xp)).numpy().astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = e[:, 1] / e.sum(axis=1)
    return prob[:, top : top + h, left : left + w]


@pytest.mark.parametrize("hw", [(976, 176), (129, 150)])
def test_whole_image_is_pad_unet_softmax_crop(hw):
    torch.manual_seed(0)
    model = UNet(base_width=2).eval()
    x = np.random.default_rng(1).random((3, 3, *hw), dtype=np.float32)
    got = whole_image(model, torch.from_numpy(x), batch=2).numpy()
    assert got.shape == (3, *hw)
    np.testing.assert_allclose(got, _numpy_reference(model, x), atol=2e-6)
    model.train()
    whole_image(model, torch.from_numpy(x[:1]))
    assert model.training  # mode restored


def flip_core_model(hp: int, wp: int) -> onnx.ModelProto:
    """``logits = [0, flip_rows(x[:,0]) + 2 * x[:,1]]`` at the padded size ``hp x wp``."""
    big = 2**62
    nodes = [
        helper.make_node("Slice", ["input", "c0s", "c0e", "ax1"], ["x0"]),
        helper.make_node("Slice", ["x0", "fs", "fe", "ax2", "step"], ["flipped"]),
        helper.make_node("Slice", ["input", "c1s", "c1e", "ax1"], ["x1"]),
        helper.make_node("Add", ["x1", "x1"], ["x1x2"]),
        helper.make_node("Add", ["flipped", "x1x2"], ["defect"]),
        helper.make_node("Sub", ["defect", "defect"], ["background"]),
        helper.make_node("Concat", ["background", "defect"], ["logits"], axis=1),
    ]
    i64 = lambda n, v: helper.make_tensor(n, TensorProto.INT64, [len(v)], v)  # noqa: E731
    inits = [
        i64("c0s", [0]),
        i64("c0e", [1]),
        i64("c1s", [1]),
        i64("c1e", [2]),
        i64("ax1", [1]),
        i64("fs", [-1]),
        i64("fe", [-big]),
        i64("ax2", [2]),
        i64("step", [-1]),
    ]
    graph = helper.make_graph(
        nodes,
        "flip_core",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 3, hp, wp])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 2, hp, wp])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("hw", [(976, 176), (129, 130), (250, 140)])
def test_composed_whole_graph_pads_by_reflection_and_crops_back(hw):
    h, w = hw
    top, bottom, left, right = whole_padding(h, w)
    core = flip_core_model(h + top + bottom, w + left + right)
    model = compose_whole_model(core, h, w)
    res = simplify(model)
    model = constants_to_initializers(res.model)
    check_graph(model, allow_loop=False)
    assert op_counts(model)["Pad"] == 2  # the reflect pad in front, the zero channels behind
    x = np.random.default_rng(2).random((2, 3, h, w), dtype=np.float32)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert out.shape == (2, 3, h, w)
    assert np.all(out[:, 1:] == 0.0)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect").astype(np.float64)
    logit = xp[:, 0, ::-1, :] + 2 * xp[:, 1]
    expected = (1 / (1 + np.exp(-logit)))[:, top : top + h, left : left + w]
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-6)


def test_whole_graph_rejects_a_core_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"\(B,3,992,192\)"):
        compose_whole_model(flip_core_model(976, 176), 976, 176)
