"""Builders for the bgbuild tests: a tiny UNet, a hand-written index patch model, an independent stitching reference.

The SPEC_* numbers below are the research code's given strip numbers, written
out by hand rather than computed with bgsdk.tiling, so they are an independent check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from bgsdk.tiling import Tiling
from bgtrain.checkpoint import save_checkpoint
from bgtrain.model import DEFAULT_STEM, UNet

WIDTH = 4
# The given numbers for the 976x176 strip.
SPEC_ROWS = [0, 106, 212, 318, 424, 530, 636, 742, 848]
SPEC_COLS = [0, 48]
SPEC_ROW_KEEP = [(0, 117)] + [(11, 117)] * 7 + [(11, 128)]
SPEC_COL_KEEP = [(0, 88), (40, 128)]


def _i64(name: str, values: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def index_patch_model(opset: int = 17, patch: int = 128) -> onnx.ModelProto:
    """A hand-written patch model (onnx.helper, not spox, not torch): ``logits = [0, x[:,0] + x[:,1,0,0]]``.

    The defect logit carries the patch origin's code (channel 1 at the patch's top-left corner), so an output
    pixel taken from the wrong patch, the wrong place in it or the wrong image gets a different value.
    """
    nodes = [
        helper.make_node("Slice", ["input", "c0s", "c0e", "ax1"], ["local"]),  # (B,1,P,P)
        helper.make_node("Slice", ["input", "c1s", "c1e", "ax123"], ["corner"]),  # (B,1,1,1)
        helper.make_node("Add", ["local", "corner"], ["defect"]),
        helper.make_node("Sub", ["defect", "defect"], ["background"]),  # exact zeros
        helper.make_node("Concat", ["background", "defect"], ["logits"], axis=1),
    ]
    inits = [
        _i64("c0s", [0]),
        _i64("c0e", [1]),
        _i64("ax1", [1]),
        _i64("c1s", [1, 0, 0]),
        _i64("c1e", [2, 1, 1]),
        _i64("ax123", [1, 2, 3]),
    ]
    graph = helper.make_graph(
        nodes,
        "index_patch_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 3, patch, patch])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 2, patch, patch])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


def tiny_unet(seed: int = 0, stem: str = DEFAULT_STEM) -> UNet:
    """Width-4 UNet with train-model's default input stem (what users build) and non-trivial BatchNorm
    statistics, so folding them actually matters."""
    torch.manual_seed(seed)
    m = UNet(base_width=WIDTH, stem=stem)
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return m.eval()


def data_checkpoint(path: Path, model: torch.nn.Module, data: Path) -> Path:
    """An epoch-0 strip checkpoint of ``model`` whose training data set is ``data`` (build-model calibrates
    INT8 and verifies on it)."""
    save_checkpoint(
        path,
        model,
        image_type="strip",
        image_size=(976, 176),
        epoch=0,
        seed=0,
        train_config={"training_dataset_path": str(data)},
    )
    return path


def spec_reference(
    model: torch.nn.Module,
    x: np.ndarray,
    rows: Sequence[int],
    row_keep: Sequence[tuple[int, int]],
    cols: Sequence[int],
    col_keep: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Independent stitching: each patch through the UNet alone, its keep region pasted at its place."""
    n, _, h, w = x.shape
    out = np.full((n, h, w), np.nan, np.float32)
    with torch.no_grad():
        for y, (r0, r1) in zip(rows, row_keep):
            for xx, (c0, c1) in zip(cols, col_keep):
                patch = torch.from_numpy(x[:, :, y : y + 128, xx : xx + 128].copy())
                prob = torch.softmax(model(patch), dim=1)[:, 1].numpy()
                out[:, y + r0 : y + r1, xx + c0 : xx + c1] = prob[:, r0:r1, c0:c1]
    assert not np.isnan(out).any()
    return out


def whole_reference(model: UNet, x: np.ndarray, tiling: Tiling) -> np.ndarray:
    """The whole-strip computation written independently of ``bgtrain.infer``: the stem on each tile, each
    tile's keep region placed by numpy, the body once on the stitched maps, softmax in float64."""
    maps = None
    with torch.no_grad():
        for p in tiling.patches():
            s = model.stem(torch.from_numpy(x[:, :, p.row.start : p.row.stop, p.col.start : p.col.stop])).numpy()
            if maps is None:
                maps = np.zeros((x.shape[0], s.shape[1], *x.shape[2:]), np.float32)
            maps[:, :, p.row.out_start : p.row.out_stop, p.col.out_start : p.col.out_stop] = s[
                :, :, p.row.keep_start : p.row.keep_stop, p.col.keep_start : p.col.keep_stop
            ]
        logits = model.body(torch.from_numpy(maps)).numpy().astype(np.float64)
    return 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))
