"""The composed full-image graph puts every output pixel where the stitching rule says.

The patch model here is a hand-written ONNX graph (onnx.helper, not spox, not
torch) whose defect logit is ``x[0] (local pixel) + x[1] at the patch's top-left
corner``. The test image's channel 1 encodes position, so each patch adds its own
origin code: an output pixel taken from the wrong patch, the wrong place in the
patch, or the wrong image of the batch gets a different value. The expected
image is computed pixel by pixel from the given strip numbers (positions
and keep ranges), independently of bgsdk.tiling.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bgbuild.compose import ComposeOptions, compose_full_model
from bgbuild.errors import BuildError
from bgbuild.export import op_counts
from bgbuild.simplify import check_graph, constants_to_initializers, simplify
from bgsdk.tiling import tiling_for
from tests.helpers.build import SPEC_COL_KEEP, SPEC_COLS, SPEC_ROW_KEEP, SPEC_ROWS, index_patch_model

P = 128


def coded_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Channel 0 random local content, channel 1 a position code (+ a per-image offset), channel 2 noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 3, h, w)).astype(np.float32)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for i in range(n):
        x[i, 1] = (2.0 * yy / h - 1.0) + (xx / w - 0.5) + 0.1 * i
    return x


def _owners(positions: list[int], keep: list[tuple[int, int]], length: int) -> np.ndarray:
    """For every pixel along an axis: the start of the patch whose kept region holds it."""
    owner = np.full(length, -1)
    for pos, (k0, k1) in zip(positions, keep):
        seg = owner[pos + k0 : pos + k1]
        assert (seg == -1).all(), "keep regions overlap"
        seg[:] = pos
    assert (owner >= 0).all(), "keep regions leave a gap"
    return owner


def expected_output(x: np.ndarray, rows: list[int], row_keep, cols: list[int], col_keep) -> np.ndarray:
    """Pixel by pixel: sigmoid(local content + code at the owning patch's origin)."""
    n, _, h, w = x.shape
    ry = _owners(rows, row_keep, h)
    cx = _owners(cols, col_keep, w)
    corner = x[:, 1][:, ry[:, None], cx[None, :]]  # (N,H,W): code at each pixel's patch origin
    logit = x[:, 0].astype(np.float64) + corner
    out = np.zeros((n, 3, h, w), np.float64)
    out[:, 0] = 1.0 / (1.0 + np.exp(-logit))
    return out


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["output"], {"input": x})[0]


@pytest.fixture(scope="module")
def index_model() -> onnx.ModelProto:
    return index_patch_model()


@pytest.mark.parametrize("patch_batch", [None, 4, 1, 7])
@pytest.mark.parametrize("n", [1, 3])
def test_strip_pixels_come_from_the_spec_patch(index_model, patch_batch, n):
    tiling = tiling_for("strip")
    model = compose_full_model(index_model, tiling, ComposeOptions(patch_batch=patch_batch))
    x = coded_images(n, 976, 176, seed=n)
    out = run(model, x)
    assert out.shape == (n, 3, 976, 176) and out.dtype == np.float32
    exp = expected_output(x, SPEC_ROWS, SPEC_ROW_KEEP, SPEC_COLS, SPEC_COL_KEEP)
    np.testing.assert_allclose(out[:, 0], exp[:, 0], atol=2e-6, rtol=0)
    assert np.all(out[:, 1:] == 0.0), "channels 1-2 must be exactly zero"


def test_a_one_pixel_seam_shift_would_be_detected():
    """The encoding is sensitive: moving one row boundary by one pixel changes that row far beyond the tolerance."""
    x = coded_images(1, 976, 176)
    good = expected_output(x, SPEC_ROWS, SPEC_ROW_KEEP, SPEC_COLS, SPEC_COL_KEEP)
    shifted = [(0, 118), (12, 117)] + SPEC_ROW_KEEP[2:]  # row 117 from patch 0 instead of patch 1
    bad = expected_output(x, SPEC_ROWS, shifted, SPEC_COLS, SPEC_COL_KEEP)
    diff = np.abs(good - bad)[0, 0]
    assert diff[117].min() > 1e-3
    assert np.delete(diff, 117, axis=0).max() == 0.0


@pytest.mark.parametrize("n", [1, 3])
def test_other_image_size_follows_the_tiling(index_model, n):
    tiling = tiling_for("strip", 480, 200)
    assert tiling.num_patches == 10  # 5 x 2: neighbours overlap by >= 32 px off the research layout
    model = compose_full_model(index_model, tiling, ComposeOptions(patch_batch=3))
    x = coded_images(n, 480, 200, seed=10 + n)
    out = run(model, x)
    exp = expected_output(
        x,
        tiling.row_positions,
        [(s.keep_start, s.keep_stop) for s in tiling.rows],
        tiling.col_positions,
        [(s.keep_start, s.keep_stop) for s in tiling.cols],
    )
    np.testing.assert_allclose(out[:, 0], exp[:, 0], atol=2e-6, rtol=0)
    assert np.all(out[:, 1:] == 0.0)


def test_batch_dimension_is_symbolic_and_images_are_independent(index_model):
    tiling = tiling_for("strip")
    model = compose_full_model(index_model, tiling)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 976, 176]
    x = coded_images(3, 976, 176, seed=5)
    together = run(model, x)
    alone = np.concatenate([run(model, x[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(together, alone)


def test_loop_only_when_asked_for(index_model):
    tiling = tiling_for("strip")
    for k, chunking, loops, calls in (
        (None, "loop", 0, 1),
        (18, "loop", 0, 1),
        (40, "unrolled", 0, 1),
        (6, "loop", 1, 1),
        (6, "unrolled", 0, 3),
        (5, "unrolled", 0, 4),
    ):
        model = compose_full_model(index_model, tiling, ComposeOptions(patch_batch=k, chunking=chunking))
        ops = op_counts(model)
        assert ops.get("Loop", 0) == loops, (k, chunking)
        assert ops["Softmax"] == calls, (k, chunking)  # one Softmax per patch-model call
    one_call = compose_full_model(index_model, tiling)
    check_graph(one_call, allow_loop=False)
    looped = constants_to_initializers(
        compose_full_model(index_model, tiling, ComposeOptions(patch_batch=2, chunking="loop"))
    )
    with pytest.raises(BuildError, match="Loop"):
        check_graph(looped, allow_loop=False)
    check_graph(looped, allow_loop=True)
    with pytest.raises(ValueError, match="chunking"):
        ComposeOptions(patch_batch=2, chunking="scan")


def test_unrolled_chunks_share_one_copy_of_the_weights(index_model):
    """A (1,1,P,P) weight added to the patch model exists once in the file, however many chunks."""
    weighted = onnx.ModelProto()
    weighted.CopyFrom(index_model)
    g = weighted.graph
    add = next(n for n in g.node if n.op_type == "Add")
    add.input[0], extra = "local_w", helper.make_node("Add", ["local", "w_big"], ["local_w"])
    g.node.insert(list(g.node).index(add), extra)
    g.initializer.append(helper.make_tensor("w_big", TensorProto.FLOAT, [1, 1, P, P], np.zeros(P * P, np.float32)))
    tiling = tiling_for("strip")
    for k, calls in ((3, 6), (5, 4), (None, 1)):
        model = constants_to_initializers(compose_full_model(weighted, tiling, ComposeOptions(patch_batch=k)))
        assert op_counts(model)["Softmax"] == calls
        big = [t for t in model.graph.initializer if list(t.dims) == [1, 1, P, P]]
        assert len(big) == 1, k
        x = coded_images(1, 976, 176, seed=5)
        assert np.array_equal(run(model, x), run(compose_full_model(index_model, tiling), x))


def test_simplified_graph_is_the_same_function(index_model):
    tiling = tiling_for("strip")
    model = compose_full_model(index_model, tiling, ComposeOptions(patch_batch=5))
    res = simplify(model)
    assert res.simplified and res.warning is None
    final = constants_to_initializers(res.model)
    check_graph(final, allow_loop=True)
    assert "Constant" not in op_counts(final)  # weights and shape constants are initializers
    x = coded_images(2, 976, 176, seed=3)
    np.testing.assert_array_equal(run(final, x), run(model, x))


def test_simplify_failure_falls_back_with_a_warning(index_model, monkeypatch, caplog):
    import onnxsim

    def boom(*a, **k):
        raise RuntimeError("simulated onnxsim crash")

    monkeypatch.setattr(onnxsim, "simplify", boom)
    model = compose_full_model(index_model, tiling_for("strip"))
    with caplog.at_level("WARNING"):
        res = simplify(model)
    assert res.model is model and not res.simplified
    assert "simulated onnxsim crash" in res.warning and "unsimplified" in caplog.text


def test_bad_options_and_patch_models_are_rejected(index_model):
    tiling = tiling_for("strip")
    with pytest.raises(ValueError, match="patch batch"):
        compose_full_model(index_model, tiling, ComposeOptions(patch_batch=0))
    with pytest.raises(ValueError, match="opset"):
        compose_full_model(index_model, tiling, ComposeOptions(opset=11))
    with pytest.raises(ValueError, match="input must be"):
        compose_full_model(index_model, tiling_for("square"))  # 256 px patches, model takes 128
