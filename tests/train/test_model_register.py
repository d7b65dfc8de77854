"""The registered input stem: whole-pixel search + sub-pixel refinement, checked against independent references
(scipy.ndimage shifts, a brute-force numpy search, scikit-image's phase correlation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from bgtrain.model import UNet, best_shift, estimate_shift, register

SIZE = 128
PAD = 24


def _texture(seed: int, sigma: float = 2.0) -> np.ndarray:
    a = ndimage.gaussian_filter(np.random.default_rng(seed).random((SIZE + 2 * PAD,) * 2), sigma)
    return 0.2 + 0.6 * (a - a.min()) / (a.max() - a.min())


def _grid(period_y: float = 23.0, period_x: float = 19.0) -> np.ndarray:
    """Bright 3-px lines on a dark die, in both directions (a PCB-like grid), periods longer than the search."""
    y, x = np.mgrid[: SIZE + 2 * PAD, : SIZE + 2 * PAD].astype(np.float64)
    lines = np.maximum(np.mod(y, period_y) < 3, np.mod(x, period_x) < 3)
    return ndimage.gaussian_filter(0.25 + 0.5 * lines, 0.7)


def _stripes() -> np.ndarray:
    x = np.arange(SIZE + 2 * PAD, dtype=np.float64)
    return np.tile(0.5 + 0.3 * np.sin(2 * np.pi * x / 37.0) + 0.1 * np.sin(2 * np.pi * x / 11.0), (SIZE + 2 * PAD, 1))


PATTERNS = {"texture": _texture(0), "grid": _grid(), "stripes": _stripes()}


def _moved(a: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``a(y + dy, x + dx)`` by cubic splines (scipy), cut to the patch: an independent resampler."""
    return ndimage.shift(a, (-dy, -dx), order=3, mode="nearest")[PAD:-PAD, PAD:-PAD]


def _t(*arrays: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.stack(arrays)[:, None], dtype=torch.float32)


SHIFTS = [(0.0, 0.0), (3.0, -2.0), (-4.0, 4.0), (2.6, -3.4), (-3.7, 1.25), (4.0, 0.5), (0.4, -3.6)]


@pytest.mark.parametrize("pattern", ["texture", "grid"])
@pytest.mark.parametrize(("dx", "dy"), SHIFTS)
def test_register_recovers_whole_and_sub_pixel_shifts(pattern: str, dx: float, dy: float) -> None:
    """The reference is the target's pattern moved by (dx, dy) up to 4 px, with another gain and offset:
    the total shift comes back to a few hundredths of a pixel; the linearised estimate alone (the aligned
    stem's) cannot follow past its 2 px radius."""
    base = PATTERNS[pattern]
    t = base[PAD:-PAD, PAD:-PAD]
    r = 1.15 * _moved(base, -dx, -dy) - 0.04
    reg = register(_t(t), _t(r).transpose(0, 1))
    assert float(reg.dx) == pytest.approx(dx, abs=0.05) and float(reg.dy) == pytest.approx(dy, abs=0.05)
    assert float(reg.unique) > 0.3
    if max(abs(dx), abs(dy)) > 2.5:
        lk = estimate_shift(_t(t), _t(r))
        assert max(abs(float(lk[0]) - dx), abs(float(lk[1]) - dy)) > 0.5


@pytest.mark.parametrize(("dx", "dy"), [(3.4, -1.8), (-2.2, 4.0), (1.5, 2.5)])
def test_register_agrees_with_phase_correlation_and_its_resampling_with_scipy(dx: float, dy: float) -> None:
    """Independent estimate: scikit-image's upsampled phase correlation on the same pair; independent
    alignment: scipy's cubic shift of the reference by our estimate. The stem's aligned reference matches
    it away from the border, and the difference to the target falls to the noise-free interpolation error."""
    from skimage.registration import phase_cross_correlation

    base = PATTERNS["texture"]
    t, r = base[PAD:-PAD, PAD:-PAD], _moved(base, -dx, -dy)
    reg = register(_t(t), _t(r).transpose(0, 1))
    # a Hann window against the wrap-around of the crops' edges (it biases phase correlation by ~0.1 px)
    window = np.outer(np.hanning(SIZE), np.hanning(SIZE))
    (py, px), _, _ = phase_cross_correlation((t - t.mean()) * window, (r - r.mean()) * window, upsample_factor=50)
    # phase correlation reports the shift that moves r onto t: r(y - py, x - px) = t, i.e. d = -p
    assert float(reg.dx) == pytest.approx(-px, abs=0.15) and float(reg.dy) == pytest.approx(-py, abs=0.15)
    assert float(reg.dx) == pytest.approx(dx, abs=0.05) and float(reg.dy) == pytest.approx(dy, abs=0.05)
    mine = reg.aligned.numpy()[0, 0]
    scipy_aligned = ndimage.shift(r, (-float(reg.dy), -float(reg.dx)), order=1, mode="nearest")
    inner = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(mine[inner], scipy_aligned[inner], atol=2e-5)
    assert np.abs(mine - t)[inner].max() < 0.02 < np.abs(r - t)[inner].max()


def _brute_force(t: np.ndarray, r: np.ndarray, radius: int, margin: int) -> tuple[int, int]:
    """argmin over whole-pixel (sy, sx) of mean |t - r(y+sy, x+sx)| on normalised, 3x3-averaged dies (numpy)."""

    def norm(a: np.ndarray) -> np.ndarray:
        s = ndimage.uniform_filter(a, 3, mode="nearest")
        s = s - s.mean()
        return s / s.std()

    tn, rn = norm(t), norm(r)
    h, w = t.shape
    tc = tn[margin : h - margin, margin : w - margin]
    best = min(
        (np.abs(tc - rn[margin + sy : h - margin + sy, margin + sx : w - margin + sx]).mean(), sy, sx)
        for sy in range(-radius, radius + 1)
        for sx in range(-radius, radius + 1)
    )
    return best[1], best[2]


@pytest.mark.parametrize(("dx", "dy"), [(3.0, -4.0), (-5.0, 2.0), (6.0, 6.0), (-1.0, -7.0)])
def test_whole_pixel_shifts_match_a_brute_force_search(dx: float, dy: float) -> None:
    """Whole-pixel shifts up to 7 px: the stem's rounded estimate is the brute-force numpy argmin over every
    whole-pixel shift in [-8, 8]^2 (and the truth)."""
    base = PATTERNS["grid"]
    t, r = base[PAD:-PAD, PAD:-PAD], _moved(base, -dx, -dy)
    reg = register(_t(t), _t(r).transpose(0, 1))
    assert (round(float(reg.dy)), round(float(reg.dx))) == _brute_force(t, r, 8, 8) == (dy, dx)


def test_stripes_register_across_and_stay_put_along() -> None:
    """Vertical stripes: only the across-stripe shift is visible; that one is recovered, the along-stripe
    one stays at 0 (the search's prior for small shifts), and the surface is flagged as not unique."""
    base = PATTERNS["stripes"]
    t, r = base[PAD:-PAD, PAD:-PAD], _moved(base, -3.5, -2.0)
    reg = register(_t(t), _t(r).transpose(0, 1))
    assert float(reg.dx) == pytest.approx(3.5, abs=0.05) and abs(float(reg.dy)) < 0.05
    assert float(reg.unique) < 0.05 and float(reg.residual) < 0.02


def test_uniqueness_is_low_on_flat_and_periodic_patches_and_residual_high_on_unrelated_dies() -> None:
    """Flat noisy dies and a fine periodic grid (period 6 px: several shifts fit) are not registrable;
    a texture is; a reference of another texture leaves a large residual whatever the shift."""
    rng = np.random.default_rng(3)
    flat = 0.5 + 0.01 * rng.standard_normal((2, SIZE, SIZE))
    fine = _grid(6.0, 6.0)
    tex, other = PATTERNS["texture"], _texture(9)
    t = _t(flat[0], fine[PAD:-PAD, PAD:-PAD], tex[PAD:-PAD, PAD:-PAD], tex[PAD:-PAD, PAD:-PAD])
    r = _t(flat[1], _moved(fine, 2.0, 1.0), _moved(tex, 2.0, 1.0), other[PAD:-PAD, PAD:-PAD])
    reg = register(t, r)
    unique, residual = reg.unique.flatten().numpy(), reg.residual.flatten().numpy()
    assert unique[0] < 0.1 and unique[1] < 0.1 and unique[2] > 0.5
    assert residual[2] < 0.02 and residual[3] > 0.3


def test_best_shift_breaks_ties_towards_zero_and_reads_the_surface_row_major() -> None:
    d = torch.ones(2, 1, 49)
    d[1, 0, 5] = 0.2  # (sy, sx) = (-3, 2)
    sy, sx, unique = best_shift(d, 3)
    assert sy.flatten().tolist() == [0.0, -3.0] and sx.flatten().tolist() == [0.0, 2.0]
    assert float(unique[0]) == 0.0 and float(unique[1]) == pytest.approx(0.8 / 1.1)


def test_register_in_half_precision_matches_float() -> None:
    """A --fp16 build runs the stem in float16: on a structured pair it finds the float32 shift."""
    base = PATTERNS["grid"]
    t, r = _t(base[PAD:-PAD, PAD:-PAD]), _t(_moved(base, 3.3, -2.4)).transpose(0, 1)
    full, half = register(t, r), register(t.half(), r.half())
    assert float(full.dx) == pytest.approx(-3.3, abs=0.05) and float(full.dy) == pytest.approx(2.4, abs=0.05)
    assert float(half.dx) == pytest.approx(float(full.dx), abs=0.03)
    assert float(half.dy) == pytest.approx(float(full.dy), abs=0.03)


def test_registered_stem_channels_and_odd_die_out_past_whole_pixel_misregistration() -> None:
    """Two references moved by 3-4 px, a |a| = 30 blob in the target, a defect of ref1's own: the registered
    odd-die-out channel peaks on the target's blob and stays low on ref1's; the aligned stem's does not
    isolate the blob (pattern edges everywhere); the trust channels are constant maps."""
    base = PATTERNS["texture"]
    yy, xx = np.mgrid[:SIZE, :SIZE]
    t = base[PAD:-PAD, PAD:-PAD] + 30 / 255 * np.exp(-((yy - 64) ** 2 + (xx - 40) ** 2) / (2 * 1.2**2))
    r1 = _moved(base, 3.4, -2.6) + 40 / 255 * np.exp(-((yy - 30) ** 2 + (xx - 90) ** 2) / (2 * 1.2**2))
    r2 = _moved(base, -2.7, 3.9)
    x = torch.tensor(np.stack([t, r1, r2])[None], dtype=torch.float32)
    y = UNet(base_width=4, stem="registered").stem(x).numpy()[0]
    old = UNet(base_width=4, stem="aligned").stem(x).numpy()[0]
    assert y.shape == (13, SIZE, SIZE)
    np.testing.assert_array_equal(y[0], t.astype(np.float32))
    for c in range(9, 13):
        assert np.ptp(y[c]) == 0.0 and 0.0 <= y[c, 0, 0] <= 1.0

    def isolates(c: np.ndarray) -> bool:
        c = np.abs(c)[10:-10, 10:-10]
        away = c.copy()
        away[48:61, 24:37] = 0
        return bool(c[50:59, 26:35].max() > 2 * away.max())

    assert isolates(y[5]) and not isolates(old[11])
    assert np.abs(y[5, 26:35, 86:95]).max() < 0.3 * 40 / 255


def test_registered_stem_adds_four_trust_channels_to_the_tolerant_ones() -> None:
    from bgtrain.model import DEFAULT_STEM, count_parameters

    tolerant, registered = UNet(base_width=4, stem="tolerant"), UNet(base_width=4, stem="registered")
    assert count_parameters(registered) - count_parameters(tolerant) == 4 * 4 * 9  # first conv only
    assert DEFAULT_STEM == "registered"
