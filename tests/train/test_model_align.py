"""The aligned input stem: per-patch translation estimate, bilinear resampling, the channels it adds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from bgtrain.model import UNet, estimate_shift, shift_bilinear


def _texture(seed: int, size: int = 96, sigma: float = 2.0) -> np.ndarray:
    """A smooth random texture in 0.2..0.8 (grey/255 units), the kind of pattern alignment locks on to."""
    a = ndimage.gaussian_filter(np.random.default_rng(seed).random((size + 32, size + 32)), sigma)
    return 0.2 + 0.6 * (a - a.min()) / (a.max() - a.min())


def _moved(a: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``a(y + dy, x + dx)`` by cubic splines: an independent resampler, not the one under test."""
    return ndimage.shift(a, (-dy, -dx), order=3, mode="nearest")


def _t(*arrays: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.stack(arrays)[:, None], dtype=torch.float32)


@pytest.mark.parametrize(("dx", "dy"), [(0.0, 0.0), (0.4, -0.25), (-1.0, 1.0), (1.3, -1.7), (-2.0, 0.6)])
def test_shift_bilinear_matches_scipy_linear_interpolation(dx: float, dy: float) -> None:
    a = np.random.default_rng(1).random((12, 15))
    want = ndimage.shift(a, (-dy, -dx), order=1, mode="nearest")
    got = shift_bilinear(_t(a), torch.tensor(dx).view(1, 1, 1, 1), torch.tensor(dy).view(1, 1, 1, 1), radius=2)
    np.testing.assert_allclose(got.numpy()[0, 0], want, atol=1e-6)


def test_shift_bilinear_takes_one_shift_per_patch() -> None:
    a, b = np.random.default_rng(2).random((2, 10, 10))
    dx, dy = torch.tensor([0.5, -1.2]).view(2, 1, 1, 1), torch.tensor([-0.3, 0.9]).view(2, 1, 1, 1)
    got = shift_bilinear(_t(a, b), dx, dy, radius=2).numpy()[:, 0]
    np.testing.assert_allclose(got[0], ndimage.shift(a, (0.3, -0.5), order=1, mode="nearest"), atol=1e-6)
    np.testing.assert_allclose(got[1], ndimage.shift(b, (-0.9, 1.2), order=1, mode="nearest"), atol=1e-6)


@pytest.mark.parametrize(("dx", "dy"), [(0.3, -0.7), (1.4, 0.2), (-1.1, -1.6), (0.0, 0.0)])
def test_estimate_shift_recovers_a_known_translation(dx: float, dy: float) -> None:
    """The reference is the target's texture moved by (dx, dy), with a grey offset between the dies:
    the estimate is the shift that maps the reference back, to a few hundredths of a pixel."""
    base = _texture(0)
    t = base[16:-16, 16:-16]
    r = _moved(base, -dx, -dy)[16:-16, 16:-16] + 0.05
    ex, ey = estimate_shift(_t(t), _t(r))
    assert float(ex) == pytest.approx(dx, abs=0.03) and float(ey) == pytest.approx(dy, abs=0.03)


def test_estimate_shift_per_patch_and_stays_put_on_flat_ground() -> None:
    """A batch mixes a shifted texture, stripes (only the across-stripe shift is visible) and flat noise."""
    rng = np.random.default_rng(4)
    base = _texture(5)
    stripes = np.tile(0.5 + 0.3 * np.sin(np.arange(96) / 3.0), (96, 1))
    t = np.stack([base[16:-16, 16:-16], stripes, 0.5 + 0.01 * rng.standard_normal((96, 96))])
    r = np.stack(
        [
            _moved(base, 0.8, -0.5)[16:-16, 16:-16],
            _moved(stripes, 0.6, 0.0),
            0.5 + 0.01 * rng.standard_normal((96, 96)),
        ]
    )
    ex, ey = (v.flatten().numpy() for v in estimate_shift(_t(*t), _t(*r)))
    assert np.all(np.isfinite(ex)) and np.all(np.isfinite(ey))
    assert ex[0] == pytest.approx(-0.8, abs=0.03) and ey[0] == pytest.approx(0.5, abs=0.03)
    assert ex[1] == pytest.approx(-0.6, abs=0.05) and abs(ey[1]) < 0.05  # no vertical structure: no vertical shift
    assert abs(ex[2]) < 0.2 and abs(ey[2]) < 0.2


def test_estimate_shift_in_half_precision_matches_float() -> None:
    """A --fp16 build runs the stem in float16: the scaled, trace-normalised equations give the float32
    shift there too, for a texture and for high-contrast stripes (where unscaled products underflow)."""
    base = _texture(0)
    stripes = np.tile(0.1 + 0.8 * (np.sin(np.arange(96) / 2.0) > 0), (96, 1))
    t = _t(base[16:-16, 16:-16], stripes)
    r = _t(_moved(base, -0.6, 0.4)[16:-16, 16:-16], _moved(stripes, 0.6, 0.0))
    full = torch.cat(estimate_shift(t, r), dim=1).flatten(1).numpy()
    half = torch.cat(estimate_shift(t.half(), r.half()), dim=1).flatten(1).float().numpy()
    np.testing.assert_allclose(full, [[0.6, -0.4], [-0.6, 0.0]], atol=0.02)
    np.testing.assert_allclose(half, full, atol=0.01)


def test_estimate_shift_is_clamped_to_the_radius() -> None:
    base = _texture(6, sigma=4.0)
    t, r = base[16:-16, 16:-16], _moved(base, 3.5, 0.0)[16:-16, 16:-16]
    ex, _ = estimate_shift(_t(t), _t(r), radius=2)
    assert abs(float(ex)) <= 2.0


def test_aligned_stem_keeps_the_tolerant_channels_and_finds_weak_defects_past_misregistration() -> None:
    """Both references are the target's texture moved by over a pixel, every die noisy (std 3); the target
    has a |a| = 20 blob and ref1 a defect of its own. Over 12 noise draws, the aligned odd-die-out channel
    stands highest on the target's blob far more often than the tolerant one (which pays for the shift
    with the noise range), and it stays low on ref1's own defect."""
    rng = np.random.default_rng(7)
    base = _texture(8, size=128, sigma=1.5)
    clean = [base[16:-16, 16:-16], _moved(base, 1.4, -0.6)[16:-16, 16:-16], _moved(base, -0.7, 1.3)[16:-16, 16:-16]]
    yy, xx = np.mgrid[:128, :128]
    clean[0] = clean[0] + 20 / 255 * np.exp(-((yy - 64) ** 2 + (xx - 40) ** 2) / (2 * 1.2**2))
    clean[1] = clean[1] + 40 / 255 * np.exp(-((yy - 30) ** 2 + (xx - 90) ** 2) / (2 * 1.2**2))
    x = torch.tensor(np.stack(clean)[None] + 3 / 255 * rng.standard_normal((12, 3, 128, 128)), dtype=torch.float32)
    y = UNet(base_width=4, stem="aligned").stem(x).numpy()
    tolerant = UNet(base_width=4, stem="tolerant").stem(x).numpy()
    assert y.shape == (12, 12, 128, 128)
    np.testing.assert_array_equal(y[:, :9], tolerant)

    def wins(c: np.ndarray) -> int:
        """Patches whose peak on the target's blob beats the channel everywhere else (the border aside)."""
        c = np.abs(c)[:, 4:-4, 4:-4]
        away = c.copy()
        away[:, 54:67, 30:43] = 0
        return int((c[:, 57:64, 33:40].max((1, 2)) > away.max((1, 2))).sum())

    aligned_wins, tolerant_wins = wins(y[:, 11]), wins(y[:, 8])
    assert aligned_wins >= 11 and tolerant_wins <= 7, (aligned_wins, tolerant_wins)
    # ref1's own defect: T - aligned(R1) shows most of its 40 grey levels (bilinear resampling softens it), the odd-die-out under half
    assert np.all(y[:, 9, 26:35, 86:95].min((1, 2)) < -0.6 * 40 / 255)
    assert np.all(np.abs(y[:, 11, 26:35, 86:95]).max((1, 2)) < 0.5 * 40 / 255)
