"""Sliding-window inference: every output pixel comes from the patch and place the stitching rule says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bgsdk.tiling import plan_tiling, tiling_for
from bgtrain.infer import heatmap_numpy, sliding_window
from bgtrain.model import UNet

H, W = 976, 176
# The given strip numbers, written out by hand (not taken from bgsdk.tiling).
STRIP_ROWS = [0, 106, 212, 318, 424, 530, 636, 742, 848]
STRIP_COLS = [0, 48]


def strip_owner_rows() -> np.ndarray:
    """Row -> index of the row patch that must produce it: patch 0 keeps 0..117, middle 11..117, last 11..128."""
    owner = np.full(H, -1)
    for i, start in enumerate(STRIP_ROWS):
        lo = 0 if i == 0 else 11
        hi = 128 if i == len(STRIP_ROWS) - 1 else 117
        owner[start + lo : start + hi] = i
    assert (owner >= 0).all()
    return owner


def strip_owner_cols() -> np.ndarray:
    """Col -> col patch: patch 0 keeps 0..88, patch 1 keeps 40..128."""
    owner = np.full(W, -1)
    owner[0:88] = 0
    owner[48 + 40 : 48 + 128] = 1
    assert (owner >= 0).all()
    return owner


def owner_by_distance(positions: list[int], patch: int, length: int) -> np.ndarray:
    """Independent rule: a pixel comes from the patch where it is furthest from a patch border
    (a tie, possible only for an odd overlap, goes to the later patch)."""
    owner = np.full(length, -1)
    best = np.full(length, -1)
    for i, start in enumerate(positions):
        for y in range(start, start + patch):
            local = y - start
            dist = min(local, patch - 1 - local)
            if dist >= best[y]:
                best[y], owner[y] = dist, i
    return owner


class PositionModel(nn.Module):
    """Returns logits whose softmax defect channel encodes which patch, and which pixel, it was given.

    Input channels: 0 = a random value in (0,1), 1 = global row / H, 2 = global col / W.
    The patch origin is read from the input at patch-local (0,0), so the model
    knows which patch it got; output probability = (k + 0.05 + 0.9*x0) / K with
    k = row_index * n_cols + col_index. Records the batch sizes it was called with.
    """

    def __init__(self, rows: list[int], cols: list[int], height: int, width: int) -> None:
        super().__init__()
        self.rows, self.cols, self.height, self.width = rows, cols, height, width
        self.k = len(rows) * len(cols)
        self.batch_sizes: list[int] = []
        self.input_sizes: set[tuple[int, int]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        self.input_sizes.add((int(x.shape[2]), int(x.shape[3])))
        ks = []
        for patch in x:
            r0 = round(float(patch[1, 0, 0]) * self.height)
            c0 = round(float(patch[2, 0, 0]) * self.width)
            ks.append(self.rows.index(r0) * len(self.cols) + self.cols.index(c0))
        k = torch.tensor(ks, dtype=torch.float64)[:, None, None]
        v = (k + 0.05 + 0.9 * x[:, 0].double()) / self.k
        l1 = torch.log(v) - torch.log1p(-v)
        return torch.stack([torch.zeros_like(l1), l1], dim=1).to(x.dtype)


def coordinate_images(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    img = np.empty((n, 3, height, width), dtype=np.float32)
    img[:, 0] = rng.uniform(0.0, 1.0, size=(n, height, width))
    img[:, 1] = (np.arange(height, dtype=np.float32) / np.float32(height))[:, None]
    img[:, 2] = (np.arange(width, dtype=np.float32) / np.float32(width))[None, :]
    return torch.from_numpy(img)


def decode(prob: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Probability -> (patch index, the x0 value the patch saw at that pixel)."""
    v = prob.double().numpy() * k
    idx = np.floor(v).astype(int)
    x0 = (v - idx - 0.05) / 0.9
    return idx, x0


def test_strip_stitching_matches_spec() -> None:
    tiling = tiling_for("strip")
    assert tiling.row_positions == STRIP_ROWS and tiling.col_positions == STRIP_COLS
    images = coordinate_images(2, H, W)
    model = PositionModel(STRIP_ROWS, STRIP_COLS, H, W)
    out = sliding_window(model, images, tiling)
    assert out.shape == (2, H, W) and out.dtype == torch.float32
    assert model.batch_sizes == [18, 18] and model.input_sizes == {(128, 128)}
    expected = strip_owner_rows()[:, None] * len(STRIP_COLS) + strip_owner_cols()[None, :]
    # The hand-written ranges agree with the independent "furthest from a border" rule.
    by_dist = owner_by_distance(STRIP_ROWS, 128, H)[:, None] * 2 + owner_by_distance(STRIP_COLS, 128, W)[None, :]
    np.testing.assert_array_equal(expected, by_dist)
    for n in range(2):
        idx, x0 = decode(out[n], model.k)
        np.testing.assert_array_equal(idx, expected)
        # Each pixel is the model's output at that very pixel (no shift inside the patch).
        np.testing.assert_allclose(x0, images[n, 0].double().numpy(), atol=1e-4)


def test_non_default_size() -> None:
    tiling = plan_tiling(480, 200, 128)
    rows, cols = tiling.row_positions, tiling.col_positions
    assert rows[0] == 0 and rows[-1] == 480 - 128 and cols == [0, 72]
    images = coordinate_images(1, 480, 200, seed=3)
    model = PositionModel(rows, cols, 480, 200)
    out = sliding_window(model, images, tiling, patch_batch=5)
    assert max(model.batch_sizes) <= 5 and sum(model.batch_sizes) == tiling.num_patches
    expected = owner_by_distance(rows, 128, 480)[:, None] * len(cols) + owner_by_distance(cols, 128, 200)[None, :]
    idx, x0 = decode(out[0], model.k)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(x0, images[0, 0].double().numpy(), atol=1e-4)


@pytest.mark.parametrize("patch_batch", [1, 7, 100])
def test_position_model_independent_of_batching(patch_batch: int) -> None:
    tiling = tiling_for("strip")
    images = coordinate_images(3, H, W, seed=1)
    ref = sliding_window(PositionModel(STRIP_ROWS, STRIP_COLS, H, W), images, tiling, patch_batch=18)
    model = PositionModel(STRIP_ROWS, STRIP_COLS, H, W)
    got = sliding_window(model, images, tiling, patch_batch=patch_batch)
    assert torch.equal(got, ref)
    assert max(model.batch_sizes) == min(patch_batch, 54)


def test_unet_batching_and_image_count_invariance(one_thread: None) -> None:
    torch.manual_seed(0)
    model = UNet(base_width=4)
    # Non-trivial BatchNorm statistics, so eval mode matters.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    model.train()
    tiling = tiling_for("strip")
    images = torch.rand(3, 3, H, W)
    all18 = sliding_window(model, images, tiling, patch_batch=18)
    assert model.training, "the caller's train/eval mode must be restored"
    one = sliding_window(model, images, tiling, patch_batch=1)
    singles = torch.cat([sliding_window(model, images[i : i + 1], tiling) for i in range(3)])
    # Conv kernels may pick different algorithms per batch size: equal up to float rounding.
    torch.testing.assert_close(one, all18, rtol=0, atol=1e-6)
    torch.testing.assert_close(singles, all18, rtol=0, atol=1e-6)
    assert all18.min() >= 0 and all18.max() <= 1
    # Direct check of one pixel per patch against running the model on that patch alone.
    model.eval()
    with torch.no_grad():
        for p in tiling.patches():
            y, x = p.row.out_start, p.col.out_stop - 1
            patch = images[1:2, :, p.row.start : p.row.stop, p.col.start : p.col.stop]
            prob = torch.softmax(model(patch), dim=1)[0, 1, y - p.row.start, x - p.col.start]
            assert math.isclose(float(all18[1, y, x]), float(prob), abs_tol=1e-6)


def test_heatmap_numpy_matches_sliding_window(one_thread: None) -> None:
    torch.manual_seed(1)
    model = UNet(base_width=4).eval()
    tiling = plan_tiling(160, 128, 128)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(3, 160, 128)).astype(np.float32)
    hm = heatmap_numpy(model, image, tiling)
    assert hm.dtype == np.float32 and hm.shape == (160, 128)
    ref = sliding_window(model, torch.from_numpy(image / np.float32(255))[None], tiling)[0].numpy()
    np.testing.assert_array_equal(hm, ref)


def test_no_gradients_and_errors() -> None:
    tiling = plan_tiling(128, 128, 128)
    model = UNet(base_width=4)
    out = sliding_window(model, torch.rand(1, 3, 128, 128), tiling)
    assert not out.requires_grad
    with pytest.raises(ValueError, match="tiling is for 128x128"):
        sliding_window(model, torch.rand(1, 3, 160, 128), tiling)
    with pytest.raises(ValueError, match=r"\(N,3,H,W\)"):
        sliding_window(model, torch.rand(3, 128, 128), tiling)
    with pytest.raises(ValueError, match="patch_batch"):
        sliding_window(model, torch.rand(1, 3, 128, 128), tiling, patch_batch=0)
    with pytest.raises(ValueError, match=r"\(B,2,P,P\)"):
        sliding_window(nn.Conv2d(3, 3, 1), torch.rand(1, 3, 128, 128), tiling)
