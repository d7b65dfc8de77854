"""Focal loss and gamma schedule against independently written references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bgsdk.evaluate.metrics import average_precision
from bgtrain.background import EVAL_KINDS, random_pattern, render_views
from bgtrain.loss import FocalLoss, gamma_at, top_background_loss
from bgtrain.model import UNet
from bgtrain.recipe import Recipe
from bgtrain.synth import apply_defects, plan_defects


def draem_focal_numpy(
    logits: np.ndarray, mask: np.ndarray, gamma: float, alpha: float = 0.75, smooth: float = 1e-5
) -> float:
    """DRAEM's FocalLoss written out per pixel in float64 (softmax, clamped one-hot, + smooth)."""
    logits = logits.astype(np.float64)
    b, c, h, w = logits.shape
    flat = logits.transpose(0, 2, 3, 1).reshape(-1, c)
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    target = mask.reshape(-1).astype(np.int64)
    one_hot = np.zeros_like(p)
    one_hot[np.arange(target.size), target] = 1.0
    if smooth:
        one_hot = np.clip(one_hot, smooth / (c - 1), 1.0 - smooth)
    pt = (one_hot * p).sum(axis=1) + smooth
    alpha_vec = np.array([1.0 - alpha, alpha])
    loss = -alpha_vec[target] * (1.0 - pt) ** gamma * np.log(pt)
    return float(loss.mean())


def _random_case(seed: int, scale: float = 3.0, shape=(2, 2, 5, 7)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, size=shape)
    mask = (rng.random((shape[0], 1, shape[2], shape[3])) < 0.3).astype(np.float64)
    return logits, mask


@pytest.mark.parametrize("gamma", [0.0, 1.0, 1.7, 2.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference_float64(gamma: float, seed: int) -> None:
    logits, mask = _random_case(seed)
    got = FocalLoss()(torch.from_numpy(logits), torch.from_numpy(mask), gamma).item()
    assert got == pytest.approx(draem_focal_numpy(logits, mask, gamma), rel=1e-10, abs=1e-14)


def test_matches_reference_float32_and_confident_logits() -> None:
    logits, mask = _random_case(5, scale=12.0, shape=(3, 2, 8, 8))
    got = FocalLoss()(torch.from_numpy(logits).float(), torch.from_numpy(mask).float(), 2.5).item()
    assert got == pytest.approx(draem_focal_numpy(logits, mask, 2.5), rel=1e-5)


def test_custom_alpha_and_smoothing() -> None:
    logits, mask = _random_case(7)
    got = FocalLoss(alpha=0.4, smoothing=1e-3)(torch.from_numpy(logits), torch.from_numpy(mask), 1.5).item()
    assert got == pytest.approx(draem_focal_numpy(logits, mask, 1.5, alpha=0.4, smooth=1e-3), rel=1e-10)


def test_gamma_zero_is_alpha_weighted_cross_entropy() -> None:
    logits, mask = _random_case(3)
    lt, mt = torch.from_numpy(logits), torch.from_numpy(mask)
    ce = torch.nn.functional.cross_entropy(
        lt, mt[:, 0].long(), weight=torch.tensor([0.25, 0.75], dtype=lt.dtype), reduction="none"
    ).mean()
    got = FocalLoss(smoothing=0.0)(lt, mt, 0.0)
    torch.testing.assert_close(got, ce, rtol=1e-12, atol=0)
    # Mild logits: the default tiny smoothing barely moves it.
    mild = lt / 10
    ce_mild = torch.nn.functional.cross_entropy(
        mild, mt[:, 0].long(), weight=torch.tensor([0.25, 0.75], dtype=lt.dtype), reduction="none"
    ).mean()
    assert FocalLoss()(mild, mt, 0.0).item() == pytest.approx(ce_mild.item(), rel=1e-3)


def test_extreme_logits_stay_finite_with_finite_gradients() -> None:
    logits = torch.tensor([[[[1e4, -1e4]], [[-1e4, 1e4]]]], dtype=torch.float32, requires_grad=True)
    mask = torch.tensor([[[[1.0, 1.0]]]])  # one pixel confidently wrong, one confidently right
    for gamma in (0.0, 0.5, 1.0, 3.0):
        for loss_fn in (FocalLoss(), FocalLoss(smoothing=0.0)):
            logits.grad = None
            loss = loss_fn(logits, mask, gamma)
            loss.backward()
            assert torch.isfinite(loss)
            assert torch.isfinite(logits.grad).all()
    # Confidently wrong costs ~ -alpha*log(2*smooth)/2 (averaged over 2 pixels) with smoothing.
    loss = FocalLoss()(logits.detach(), mask, 1.0).item()
    assert loss == pytest.approx(-0.75 * (1 - 2e-5) * math.log(2e-5) / 2, rel=1e-4)


def test_shape_errors() -> None:
    loss = FocalLoss()
    with pytest.raises(ValueError, match=r"\(B,2,H,W\)"):
        loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4), 1.0)
    with pytest.raises(ValueError, match="mask"):
        loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=1.5)


def test_gamma_schedule() -> None:
    assert gamma_at(0, 100) == 1.0
    assert gamma_at(100, 100) == pytest.approx(3.0, abs=1e-12)
    assert gamma_at(50, 100) == pytest.approx(2.0, abs=1e-12)
    assert gamma_at(25, 100) == pytest.approx(1.0 + 2.0 * (1 - math.cos(math.pi / 4)) / 2, abs=1e-12)
    # Clamped outside [0, T].
    assert gamma_at(-5, 100) == 1.0
    assert gamma_at(500, 100) == pytest.approx(3.0, abs=1e-12)
    assert gamma_at(5, 10, gamma_start=2.0, gamma_end=0.0) == pytest.approx(1.0, abs=1e-12)
    values = [gamma_at(t, 40) for t in range(41)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError):
        gamma_at(0, 0)


def _synthetic_batch(n: int = 4, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` demo-pattern patches, each with target-only defects and reference distractors.

    Backgrounds from the periodic/texture kinds (EVAL_KINDS): the batch stays the one this test
    was sized for when the training kinds grow (a 64 px dead-leaves patch packs more edges than a
    w=4 UNet learns in 120 steps, which says nothing about the loss).
    """
    rng = np.random.default_rng(seed)
    cfg = Recipe(defect_prob=1.0, num_defects_range=(4, 6))
    images, masks = [], []
    for _ in range(n):
        img = render_views(random_pattern(rng, EVAL_KINDS), size, size, rng)
        img, mask = apply_defects(img, plan_defects(img[0], rng, cfg))
        images.append(img / 255.0)
        masks.append(mask[None].astype(np.float32))
    return torch.from_numpy(np.stack(images)).float(), torch.from_numpy(np.stack(masks))


@pytest.mark.slow
def test_tiny_unet_overfits_one_batch(one_thread: None) -> None:
    """The loss must be trainable: a w=4 UNet learns one fixed batch, defects included.

    A 10x fall alone could come from predicting "all background" (defects are
    ~0.5% of the pixels), so the learned batch must also be segmented: pixel AP
    of the defect probability against the mask >= 0.9 (distractor defects that
    are also in a reference are in the input but not in the mask).
    """
    torch.manual_seed(0)
    x, y = _synthetic_batch()
    assert 0 < y.mean() < 0.05
    model = UNet(base_width=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = FocalLoss()
    model.train()
    losses = []
    for _ in range(120):
        opt.zero_grad()
        loss = loss_fn(model(x), y, 2.0)  # fixed gamma: the fall is learning, not the schedule
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] * 10 <= losses[0], f"loss only went from {losses[0]:.4g} to {losses[-1]:.4g}"
    with torch.no_grad():
        prob = torch.softmax(model(x), dim=1)[:, 1]
    ap = average_precision(y[:, 0].numpy().ravel() > 0.5, prob.numpy().ravel())
    assert ap >= 0.9, f"pixel AP on the training batch is only {ap:.3f}"


def test_pixel_weights_scale_each_pixel() -> None:
    torch.manual_seed(0)
    logits, mask = torch.randn(2, 2, 8, 8), (torch.rand(2, 1, 8, 8) > 0.8).float()
    loss_fn = FocalLoss()
    ones = torch.ones(2, 1, 8, 8)
    assert loss_fn(logits, mask, 2.0, ones) == pytest.approx(loss_fn(logits, mask, 2.0).item())
    w = ones.clone()
    w[0, 0, :4] = 3.0
    per_pixel = torch.stack(
        [
            loss_fn(logits[i : i + 1, :, r : r + 1, c : c + 1], mask[i : i + 1, :, r : r + 1, c : c + 1], 2.0)
            for i in range(2)
            for r in range(8)
            for c in range(8)
        ]
    ).reshape(2, 8, 8)
    assert loss_fn(logits, mask, 2.0, w).item() == pytest.approx((per_pixel * w[:, 0]).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="weight"):
        loss_fn(logits, mask, 2.0, torch.ones(2, 8, 8))


def _plain(mask: np.ndarray, hard: np.ndarray, margin: int) -> np.ndarray:
    """(H,W) bool: farther than ``margin`` px (Chebyshev) from every mask pixel, and not hard."""
    h, w = mask.shape
    near = np.zeros((h, w), bool)
    for y, x in zip(*np.nonzero(mask > 0.5)):
        near[max(0, y - margin) : y + margin + 1, max(0, x - margin) : x + margin + 1] = True
    return ~near & ~(hard > 0.5)


def top_background_numpy(logits: np.ndarray, mask: np.ndarray, hard: np.ndarray, k: int, margin: int) -> float:
    """Per patch: sort the plain pixels by defect probability and sum -log(1-p) over the top k;
    divided by all pixels of the batch."""
    b, _, h, w = logits.shape
    total = 0.0
    for i in range(b):
        z = logits[i, 1].astype(np.float64) - logits[i, 0]
        p = 1.0 / (1.0 + np.exp(-z[_plain(mask[i, 0], hard[i, 0], margin)]))
        total += float(-np.log1p(-np.sort(p)[::-1][:k]).sum())
    return total / (b * h * w)


def _top_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(0, 2, size=(3, 2, 16, 16)))
    mask, hard = torch.zeros(3, 1, 16, 16, dtype=torch.float64), torch.zeros(3, 1, 16, 16, dtype=torch.float64)
    mask[0, 0, 4:6, 5:7] = 1
    mask[1, 0, 12, 1] = 1
    hard[1, 0, 2:5, 9:13] = 1
    hard[2] = 1
    hard[2, 0, 15, 13:] = 0  # patch 2: three plain pixels, fewer than k
    return logits, mask, hard


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0, 1, 2])
def test_top_background_loss_matches_numpy_reference(seed: int, margin: int) -> None:
    logits, mask, hard = _top_case(seed)
    k = 20
    got = top_background_loss(logits, mask, hard, fraction=k / 256, margin=margin)
    want = top_background_numpy(logits.numpy(), mask.numpy(), hard.numpy(), k, margin)
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_top_background_loss_pushes_only_the_top_plain_pixels() -> None:
    """Gradient reaches exactly the k highest plain pixels and lowers their defect logit; a pixel
    next to a labelled defect or on a hard negative gets none, however high it scores."""
    logits, mask, hard = _top_case(0)
    logits[0, 1, 6, 7] = 50.0  # diagonal neighbour of the mask: excluded by the 2 px margin
    logits[1, 1, 3, 10] = 50.0  # on a hard negative
    logits.requires_grad_(True)
    top_background_loss(logits, mask, hard, fraction=5 / 256).backward()
    g = logits.grad
    assert g is not None
    moved = g[:, 1] != 0
    assert moved.sum(dim=(1, 2)).tolist() == [5, 5, 3]
    assert bool((g[:, 1] >= 0).all()) and bool((g[:, 0] <= 0).all())  # descent lowers p(defect)
    assert g[0, 1, 6, 7] == 0 and g[1, 1, 3, 10] == 0
    z = (logits[:, 1] - logits[:, 0]).detach()
    for i in range(3):
        plain = torch.from_numpy(_plain(mask[i, 0].numpy(), hard[i, 0].numpy(), 2))
        assert bool((moved[i] <= plain).all())
        rest = z[i][plain & ~moved[i]]
        assert rest.numel() == 0 or z[i][moved[i]].min() >= rest.max()


def test_top_background_loss_without_plain_pixels_is_zero() -> None:
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    hard = torch.ones(2, 1, 8, 8)
    loss = top_background_loss(logits, torch.zeros(2, 1, 8, 8), hard)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None and bool(torch.isfinite(logits.grad).all())


def test_top_background_loss_errors() -> None:
    logits = torch.randn(2, 2, 8, 8)
    z = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="hard"):
        top_background_loss(logits, z, torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="mask"):
        top_background_loss(logits, torch.zeros(1, 1, 8, 8), z)
    with pytest.raises(ValueError, match="fraction"):
        top_background_loss(logits, z, z, fraction=0.0)
