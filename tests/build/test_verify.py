"""The fp32 build gate (bgbuild.verify): real defects fail it, float summation order does not.

Each broken graph below is the real composed graph of a small UNet with one deliberate
defect (a crop one pixel off, the wrong padding mode, Softmax on the wrong axis, swapped
input channels); each must fail. The same graphs without the defect -- and a model whose
float32 PyTorch reference is itself off by more than 1e-5 -- must pass.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

import bgbuild.compose
from bgbuild import BuildOptions, VerificationError, build_model
from bgbuild.compose import compose_full_model, compose_whole_model
from bgbuild.export import _export, export_patch_model, export_whole_model, op_counts
from bgbuild.fp16 import Fp16Options
from bgbuild.quantize import QuantizeOptions
from bgbuild.verify import FloatGate, VerificationImages, float_gate, references, verify_model
from bgsdk.contract import scale_input
from bgsdk.tiling import tiling_for
from bgtrain.model import level_sizes
from bgtrain.synth_dataset import make_image
from bgtrain.train import TrainConfig, train
from tests.helpers.build import tiny_unet

WHOLE = (250, 140)  # odd sides (ceil-mode pools), small enough for quick float64 references


def _images(h: int, w: int, n: int = 2) -> VerificationImages:
    rng = np.random.default_rng(5)
    imgs = np.stack([make_image(rng, h, w, defective=True)[0][:3] for _ in range(n)]).astype(np.float32)
    return VerificationImages(imgs, "synthetic", f"{n} synthetic {h}x{w} strips")


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return tiny_unet(seed=1)


@pytest.fixture(scope="module")
def tiled_patch_model(unet) -> onnx.ModelProto:
    return export_patch_model(unet, 128)


@pytest.fixture(scope="module")
def whole_core(unet) -> onnx.ModelProto:
    return export_whole_model(unet, tiling_for("strip", *WHOLE))


def _tiled(patch_model: onnx.ModelProto, tiling=None) -> bytes:
    return compose_full_model(patch_model, tiling or tiling_for("strip")).SerializeToString()


def _whole(core: onnx.ModelProto) -> onnx.ModelProto:
    return compose_whole_model(core, *WHOLE)


def _verify(model: bytes | onnx.ModelProto, unet, mode: str = "tiled"):
    data = model if isinstance(model, bytes) else model.SerializeToString()
    tiling = tiling_for("strip") if mode == "tiled" else tiling_for("strip", *WHOLE)
    return verify_model(data, unet, tiling, _images(tiling.height, tiling.width), mode=mode, raise_on_failure=False)


# ----------------------------------------------------------------------------------------------- the statistic


def test_float_gate_on_arrays():
    rng = np.random.default_rng(0)
    z64 = rng.normal(0.0, 4.0, size=(2, 40, 30))
    p64 = 1.0 / (1.0 + np.exp(-z64))
    p32 = 1.0 / (1.0 + np.exp(-(z64 + rng.normal(0.0, 1e-4, z64.shape))))  # a reference with 1e-4 logit noise
    same_noise = 1.0 / (1.0 + np.exp(-(z64 + rng.normal(0.0, 1e-4, z64.shape))))
    ok = float_gate(same_noise.astype(np.float32), p32, p64)
    assert ok.passed and 1e-4 < ok.logit_noise < 1e-3  # nu is measured from the reference pair
    shifted = np.roll(p64, 1, axis=1)  # every pixel takes its upper neighbour's value
    assert not float_gate(shifted, p32, p64).passed
    nan = p64.copy()
    nan[1, 2, 3] = np.nan
    bad = float_gate(nan, p32, p64)
    assert not bad.passed and bad.worst_pixel == (1, 2, 3)
    # the bound scales with the sigmoid's slope: 1e-5 at p = 0.5 passes, 1e-5 at p = 1e-4 does not
    flat = np.full((1, 1, 2), 0.5)
    flat[0, 0, 1] = 1e-4
    assert float_gate(flat + np.array([1e-5, 0.0]), flat, flat, FloatGate(min_logit_noise=1e-4)).passed
    assert not float_gate(flat + np.array([0.0, 1e-5]), flat, flat, FloatGate(min_logit_noise=1e-4)).passed


def test_references_are_the_network_in_float32_and_float64(unet):
    tiling = tiling_for("strip")
    x = scale_input(_images(tiling.height, tiling.width, 1).images)
    p32, p64 = references(unet, x, tiling)
    assert p32.dtype == p64.dtype == np.float64 and p32.shape == (1, tiling.height, tiling.width)
    assert 0 < np.abs(p32 - p64).max() < 1e-5  # float32 rounding, nothing else
    with torch.no_grad():  # one patch by hand: p_64 is softmax of the float64 network's logits
        logits = tiny_unet(seed=1).double()(torch.from_numpy(x[:, :, :128, :128]).double())
    np.testing.assert_allclose(p64[0, :117, :88], torch.softmax(logits, 1)[0, 1, :117, :88].numpy(), rtol=0, atol=1e-13)


# ------------------------------------------------------------------------------------ correct graphs pass


@pytest.mark.parametrize("mode", ["tiled", "whole"])
def test_a_correct_build_passes(unet, tiled_patch_model, whole_core, mode):
    model = _tiled(tiled_patch_model) if mode == "tiled" else _whole(whole_core)
    r = _verify(model, unet, mode)
    assert r.passed and r.score < 0.5 and r.max_abs_diff <= 1e-5, r.summary()


def test_softmax_instead_of_the_folded_head_passes(unet, tiled_patch_model, monkeypatch):
    """Two logits + Softmax and sigmoid(l1 - l0) are one function in another float order."""
    monkeypatch.setattr(bgbuild.compose, "_with_folded_head", lambda m: m)
    model = compose_full_model(tiled_patch_model, tiling_for("strip"))
    assert op_counts(model).get("Softmax") == 1
    assert _verify(model, unet).passed


@pytest.mark.slow
def test_a_reference_noisier_than_1e5_passes(tiled_patch_model):
    """Adding 4000 to both logits changes nothing mathematically (softmax is shift-invariant, the folded head
    subtracts it exactly), but the float32 reference rounds logits near 4000 to 2.4e-4: it is off by more than
    the old fixed 1e-5, the ONNX model is not. Summation order is not a defect."""
    net = tiny_unet(seed=1)
    with torch.no_grad():
        net.decoder.head.bias += 4000.0
    r = _verify(_tiled(export_patch_model(net, 128)), net)
    assert r.max_abs_diff > 1e-5  # the old gate would have failed this build
    assert r.passed and r.max_abs_diff_fp64 < 1e-6 and r.logit_noise > 1e-5, r.summary()


# ------------------------------------------------------------------------------------ broken graphs fail


def test_a_crop_one_pixel_off_fails(unet, tiled_patch_model):
    good = tiling_for("strip")
    rows = list(good.rows)
    r = rows[4]  # a middle row of patches: keep 11..117 becomes 12..118, placed where 11..117 belongs
    rows[4] = dataclasses.replace(r, keep_start=r.keep_start + 1, keep_stop=r.keep_stop + 1)
    result = _verify(_tiled(tiled_patch_model, dataclasses.replace(good, rows=tuple(rows))), unet)
    assert not result.passed and result.score > 10
    assert r.out_start <= result.worst_pixel[1] < r.out_stop  # the worst pixel is in the shifted band


class _StemOnce(torch.nn.Module):
    """The whole-strip network with its stem run once over the strip instead of per patch."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.stem, self.encoder, self.decoder = unet.stem, unet.encoder, unet.decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.stem(x)), level_sizes(*WHOLE))


def test_a_stem_over_the_whole_strip_instead_of_per_patch_fails(unet):
    """The whole build must register per patch as the tiled mode does; one stem pass over the strip is a
    different computation and the gate says so."""
    result = _verify(_whole(_export(_StemOnce(unet).eval(), WHOLE, 17)), unet, "whole")
    assert not result.passed and result.score > 5  # a tiny random network: small, but far above the gate's 1


def test_softmax_on_the_wrong_axis_fails(unet, tiled_patch_model, monkeypatch):
    monkeypatch.setattr(bgbuild.compose, "_with_folded_head", lambda m: m)
    model = compose_full_model(tiled_patch_model, tiling_for("strip"))
    (softmax,) = [n for n in model.graph.node if n.op_type == "Softmax"]
    del softmax.attribute[:]
    softmax.attribute.append(helper.make_attribute("axis", 3))  # over the columns, not the 2 logits
    result = _verify(model, unet)
    assert not result.passed and result.score > 10


@pytest.mark.parametrize("order", [[1, 0, 2], [0, 2, 1]])
@pytest.mark.slow
def test_swapped_input_channels_fail(unet, tiled_patch_model, order):
    """Target and ref1 swapped, or the two references swapped."""
    model = compose_full_model(tiled_patch_model, tiling_for("strip"))
    g = model.graph
    for node in g.node:
        node.input[:] = ["input_swapped" if i == "input" else i for i in node.input]
    g.initializer.append(onnx.numpy_helper.from_array(np.array(order, np.int64), "channel_order"))
    g.node.insert(0, helper.make_node("Gather", ["input", "channel_order"], ["input_swapped"], axis=1))
    result = _verify(model, unet)
    assert not result.passed and result.score > 10


def test_a_failed_gate_raises_and_names_the_pixel(unet, tiled_patch_model):
    good = tiling_for("strip")
    r = good.rows[4]
    bad = dataclasses.replace(
        good, rows=good.rows[:4] + (dataclasses.replace(r, keep_start=12, keep_stop=118),) + good.rows[5:]
    )
    with pytest.raises(VerificationError, match=r"gate score .* > 1 at image \d, row \d+, col \d+"):
        verify_model(_tiled(tiled_patch_model, bad), unet, good, _images(good.height, good.width, 1))


# ------------------------------------------------------------------ a demo-style checkpoint builds in every mode


@pytest.fixture(scope="module")
def demo_checkpoint(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``make demo`` trains (width 16, default stem and recipe), for a few steps only."""
    out = tmp_path_factory.mktemp("demo16")
    cfg = TrainConfig(
        training_dataset_path=str(demo_root),
        checkpoint_path=str(out),
        bs=4,
        epochs=1,
        width=16,
        seed=0,
        max_steps_per_epoch=4,
        device="cpu",
    )
    return train(cfg, progress=False, echo=lambda s: None).last_checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8", "fp16"])
@pytest.mark.parametrize("mode", ["tiled", "whole"])
def test_a_demo_checkpoint_builds_in_every_mode(demo_checkpoint, demo_root, tmp_path, mode, precision):
    options = BuildOptions(
        mode=mode,
        verify_data=demo_root,
        quantize=QuantizeOptions(calib_count=2, calib_method="minmax") if precision == "int8" else None,
        fp16=Fp16Options() if precision == "fp16" else None,
    )
    report = build_model(demo_checkpoint, tmp_path / "model.onnx", options)
    assert report.verification.passed and report.paths.model.exists()
    reduced = report.quantization or report.precision
    assert (reduced is None) == (precision == "fp32")
    assert reduced is None or reduced.verification.passed
