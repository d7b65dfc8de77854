"""Whole-strip mode: the stem per tile, the network's body on any size, the PyTorch reference, the graph.

The references here are independent of the code under test: the research strip's patch positions and
keep regions written out by hand (``tests.helpers.build.SPEC_*``), numpy placement of each patch's keep
region, numpy bilinear interpolation, and a hand-written ONNX core model (onnx.helper).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from bgbuild.compose import compose_whole_model
from bgbuild.export import op_counts
from bgbuild.simplify import check_graph, constants_to_initializers, simplify
from bgsdk.tiling import tiling_for
from bgtrain.infer import TiledStem, sliding_window, whole_image
from bgtrain.model import UNet, _upsample_to, level_sizes
from tests.helpers.build import SPEC_COL_KEEP, SPEC_COLS, SPEC_ROW_KEEP, SPEC_ROWS, whole_reference


class _PatchMeanStem(nn.Module):
    """A stem whose output depends on the whole patch it sees: ``x - mean(patch)`` and the mean itself."""

    out_channels = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((2, 3), keepdim=True)
        return torch.cat([x - mean, mean[:, :1].expand_as(x[:, :1])], dim=1)


def test_tiled_stem_stitches_the_research_layout_as_given():
    x = torch.from_numpy(np.random.default_rng(0).random((2, 3, 976, 176), dtype=np.float32))
    got = TiledStem(_PatchMeanStem(), tiling_for("strip")).forward(x).numpy()
    expected = np.zeros((2, 4, 976, 176), np.float32)
    for r, (k0, k1) in zip(SPEC_ROWS, SPEC_ROW_KEEP):
        for c, (j0, j1) in zip(SPEC_COLS, SPEC_COL_KEEP):
            patch = x[:, :, r : r + 128, c : c + 128]
            maps = _PatchMeanStem()(patch).numpy()
            expected[:, :, r + k0 : r + k1, c + j0 : c + j1] = maps[:, :, k0:k1, j0:j1]
    np.testing.assert_allclose(got, expected, atol=1e-6)  # a tile's mean in another batch: float rounding only


@pytest.mark.parametrize("hw", [(976, 176), (250, 140)])
def test_whole_image_is_the_tiled_stem_then_the_body(hw):
    torch.manual_seed(0)
    model = UNet(base_width=2, stem="registered").eval()
    tiling = tiling_for("strip", *hw)
    x = np.random.default_rng(1).random((3, 3, *hw), dtype=np.float32)
    got = whole_image(model, torch.from_numpy(x), tiling, batch=2).numpy()
    assert got.shape == (3, *hw)
    np.testing.assert_allclose(got, whole_reference(model, x, tiling), atol=2e-6)
    model.train()
    whole_image(model, torch.from_numpy(x[:1]), tiling)
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="tiling is for"):
        whole_image(model, torch.from_numpy(x[:, :, :128]), tiling)


def test_on_one_tile_the_whole_mode_is_the_tiled_mode():
    torch.manual_seed(0)
    model = UNet(base_width=2, stem="registered").eval()
    tiling = tiling_for("strip", 128, 128)
    assert tiling.num_patches == 1
    x = torch.from_numpy(np.random.default_rng(2).random((2, 3, 128, 128), dtype=np.float32))
    np.testing.assert_allclose(whole_image(model, x, tiling), sliding_window(model, x, tiling), atol=1e-6)


def _bilinear_align_corners(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Output pixel (i, j) samples the input at (i (H-1)/(h-1), j (W-1)/(w-1)), linearly."""

    def axis(a: np.ndarray, n: int, ax: int) -> np.ndarray:
        pos = np.arange(n) * (a.shape[ax] - 1) / (n - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, a.shape[ax] - 1)
        f = (pos - lo).reshape([-1 if d == ax else 1 for d in range(a.ndim)])
        return np.take(a, lo, ax) * (1 - f) + np.take(a, hi, ax) * f

    return axis(axis(x, h, 2), w, 3)


def test_an_odd_side_is_upsampled_to_its_skip_and_an_even_one_doubled():
    up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))
    x = torch.from_numpy(np.random.default_rng(3).random((1, 2, 31, 6), dtype=np.float32))
    odd = _upsample_to(up, x, ((31, 6), (61, 11)))  # 61 -> 31 and 11 -> 6 by ceil-mode pools
    np.testing.assert_allclose(odd.numpy(), _bilinear_align_corners(x.numpy().astype(np.float64), 61, 11), atol=1e-6)
    even = _upsample_to(up, x, ((31, 6), (62, 12)))
    np.testing.assert_array_equal(even.numpy(), up(x).numpy())


def test_level_sizes_round_up():
    assert level_sizes(976, 176) == [(976, 176), (488, 88), (244, 44), (122, 22), (61, 11), (31, 6)]


def test_the_unet_takes_any_size_and_keeps_the_research_network_on_multiples_of_32():
    torch.manual_seed(0)
    model = UNet(base_width=2).eval()
    with torch.no_grad():
        assert model.body(torch.rand(1, 3, 250, 140)).shape == (1, 2, 250, 140)
        x = torch.rand(1, 3, 128, 96)
        pool = nn.MaxPool2d(2)  # the research network's pool (rounds down)
        feats, s = [], x
        for i, block in enumerate(model.encoder.blocks):
            s = block(s if i == 0 else pool(s))
            feats.append(s)
        y = feats[-1]
        for up, block, skip in zip(model.decoder.ups, model.decoder.blocks, reversed(feats[:-1])):
            y = block(torch.cat([up(y), skip], dim=1))
        np.testing.assert_array_equal(model(x).numpy(), model.decoder.head(y).numpy())


def _core_model(h: int, w: int) -> onnx.ModelProto:
    """``logits = [x[:,0], x[:,0] + 2 * x[:,1]]`` at ``h x w``."""
    nodes = [
        helper.make_node("Slice", ["input", "c0s", "c0e", "ax1"], ["x0"]),
        helper.make_node("Slice", ["input", "c1s", "c1e", "ax1"], ["x1"]),
        helper.make_node("Add", ["x1", "x1"], ["x1x2"]),
        helper.make_node("Add", ["x0", "x1x2"], ["defect"]),
        helper.make_node("Concat", ["x0", "defect"], ["logits"], axis=1),
    ]
    i64 = lambda n, v: helper.make_tensor(n, TensorProto.INT64, [len(v)], v)  # noqa: E731
    inits = [i64("c0s", [0]), i64("c0e", [1]), i64("c1s", [1]), i64("c1e", [2]), i64("ax1", [1])]
    graph = helper.make_graph(
        nodes,
        "core",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 2, h, w])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("hw", [(976, 176), (129, 130)])
def test_composed_whole_graph_is_the_core_softmax_and_zero_channels(hw):
    h, w = hw
    model = compose_whole_model(_core_model(h, w), h, w)
    model = constants_to_initializers(simplify(model).model)
    check_graph(model, allow_loop=False)
    assert op_counts(model)["Pad"] == 1  # the zero channels only: the strip is not padded
    x = np.random.default_rng(2).random((2, 3, h, w), dtype=np.float32)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert out.shape == (2, 3, h, w) and np.all(out[:, 1:] == 0.0)
    expected = 1 / (1 + np.exp(-2.0 * x[:, 1].astype(np.float64)))  # softmax of [x0, x0 + 2 x1], channel 1
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-6)


def test_whole_graph_rejects_a_core_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"\(B,3,976,176\)"):
        compose_whole_model(_core_model(992, 192), 976, 176)
