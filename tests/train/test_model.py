"""UNet architecture: shapes, size check, parameter count and the DRAEM layer choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bgtrain.model import UNet, check_input_size, count_parameters


def expected_parameters(w: int, cin: int = 3, cout: int = 2) -> int:
    """Parameter count of the research code's architecture, added up layer by layer."""

    def conv(a: int, b: int) -> int:
        return a * b * 9 + b

    def bn(c: int) -> int:
        return 2 * c

    def double(a: int, b: int) -> int:
        return conv(a, b) + bn(b) + conv(b, b) + bn(b)

    widths = [w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w]
    chans = [cin] + widths
    total = sum(double(chans[i], chans[i + 1]) for i in range(6))
    # Decoder stages: upsample-conv (cin -> cup), then double((cup + skip) -> cout).
    for cin_up, cup, skip, c in [
        (8 * w, 8 * w, 8 * w, 8 * w),
        (8 * w, 4 * w, 8 * w, 4 * w),
        (4 * w, 2 * w, 4 * w, 2 * w),
        (2 * w, w, 2 * w, w),
        (w, w, w, w),
    ]:
        total += conv(cin_up, cup) + bn(cup) + double(cup + skip, c)
    return total + conv(w, cout)


@pytest.mark.parametrize("size", [64, 128])
def test_output_shape(size: int) -> None:
    torch.manual_seed(0)
    model = UNet(base_width=4).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 2, size, size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_non_rectangular_multiple_of_32() -> None:
    model = UNet(base_width=4).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 96, 160)).shape == (1, 2, 96, 160)


def test_bad_size_names_32() -> None:
    model = UNet(base_width=4)
    with pytest.raises(ValueError, match="32"):
        model(torch.rand(1, 3, 100, 128))
    with pytest.raises(ValueError, match="100x128"):
        check_input_size(100, 128)
    check_input_size(128, 64)
    with pytest.raises(ValueError):
        UNet(base_width=0)


def test_w64_parameter_count() -> None:
    model = UNet(base_width=64)  # constructing only, no forward pass
    n = count_parameters(model)
    assert abs(n - 28.4e6) <= 0.05e6, n
    assert n == expected_parameters(64)
    assert count_parameters(UNet(base_width=4)) == expected_parameters(4)


def test_layers_are_draem_choices() -> None:
    model = UNet(base_width=4)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    ups = [m for m in model.modules() if isinstance(m, nn.Upsample)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    # Every conv but the final head is followed by BatchNorm: 12 encoder + 5*(1+2) decoder.
    assert len(bns) == len(convs) - 1 == 27
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert len(ups) == 5
    assert all(u.mode == "bilinear" and u.align_corners is True and u.scale_factor == 2 for u in ups)
    assert len(pools) >= 1 and all(p.kernel_size == 2 for p in pools)
    assert convs[-1].out_channels == 2


def test_align_corners_numerics() -> None:
    """The upsampler really is align_corners=True: its output corners equal the input corners."""
    up = next(m for m in UNet(base_width=4).modules() if isinstance(m, nn.Upsample))
    x = torch.rand(1, 1, 3, 4)
    y = up(x)
    ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(y[..., [0, -1], :][..., [0, -1]], x[..., [0, -1], :][..., [0, -1]])


def test_compare_stem_gives_the_network_the_die_differences() -> None:
    stem = UNet(base_width=4, stem="compare").stem
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0, 0, 0], x[0, 1, 0, 0], x[0, 2, 0, 0] = 0.9, 0.5, 0.6  # target brighter than both: odd die out
    x[0, 0, 1, 1], x[0, 1, 1, 1], x[0, 2, 1, 1] = 0.2, 0.6, 0.5  # target missing what both show
    x[0, 0, 2, 2], x[0, 1, 2, 2], x[0, 2, 2, 2] = 0.5, 0.9, 0.5  # a defect in ref1 only
    y = stem(x)
    assert y.shape == (1, 6, 4, 4) and torch.equal(y[:, :3], x)
    torch.testing.assert_close(y[0, 3], x[0, 0] - x[0, 1])
    torch.testing.assert_close(y[0, 4], x[0, 0] - x[0, 2])
    dd = y[0, 5]
    assert dd[0, 0].item() == pytest.approx(0.3) and dd[1, 1].item() == pytest.approx(-0.3)
    assert dd[2, 2].item() == 0.0 and dd[3, 3].item() == 0.0  # one reference agrees / no difference


def test_compare_stem_model_sizes() -> None:
    plain, compare = UNet(base_width=4), UNet(base_width=4, stem="compare")
    assert count_parameters(compare) - count_parameters(plain) == 3 * 4 * 9  # 3 more input channels, first conv
    with pytest.raises(ValueError, match="stem"):
        UNet(base_width=4, stem="fancy")


def _tolerant_reference(t: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Independent form of the tolerant difference: over the 3x3 shifts s that stay inside the image,
    ``min_s(T - R_s)`` where T is above every shifted reference pixel, ``max_s(T - R_s)`` where below all,
    0 where some shifted reference pixel brackets T."""
    h, w = t.shape
    out = np.zeros_like(t)
    for y in range(h):
        for x in range(w):
            diffs = [
                t[y, x] - r[y + dy, x + dx]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                if 0 <= y + dy < h and 0 <= x + dx < w
            ]
            lo, hi = min(diffs), max(diffs)
            out[y, x] = lo if lo > 0 else (hi if hi < 0 else 0.0)
    return out


def _assert_tolerant_channels(y: np.ndarray, t: np.ndarray, r1: np.ndarray, r2: np.ndarray, atol: float) -> None:
    """``y`` = the stem's three tolerant channels for dies ``t``, ``r1``, ``r2``, by the independent reference."""
    e1, e2 = _tolerant_reference(t, r1), _tolerant_reference(t, r2)
    np.testing.assert_allclose(y[0], e1, atol=atol)
    np.testing.assert_allclose(y[1], e2, atol=atol)
    agree = e1 * e2 > 0
    np.testing.assert_allclose(y[2], np.where(agree, np.sign(e1) * np.minimum(abs(e1), abs(e2)), 0.0), atol=atol)


def test_tolerant_stem_ignores_a_one_pixel_shift_but_keeps_the_odd_die_out() -> None:
    stem = UNet(base_width=4, stem="tolerant").stem
    x = torch.full((1, 3, 12, 12), 0.2)
    x[0, 0, :, 6:] = 0.8  # a pattern edge in the target ...
    x[0, 1, :, 5:] = 0.8  # ... one pixel left in ref1
    x[0, 2, :, 7:] = 0.8  # ... one pixel right in ref2
    x[0, 0, 2, 2] += 0.1  # a weak target defect on flat ground
    x[0, 0, 9, 9] -= 0.3  # the target misses the bright level both references show here
    x[0, 1, 5, 2] += 0.3  # a defect in ref1 only
    y = stem(x)[0]
    d1, e1, e2, edd = y[3], y[6], y[7], y[8]
    assert d1[0, 5].item() == pytest.approx(-0.6)  # the plain difference fires along the shifted edge
    assert e1[:, 4:8].abs().max().item() == 0.0 and e2[:, 4:8].abs().max().item() == 0.0  # the tolerant one not
    assert edd[2, 2].item() == pytest.approx(0.1) and edd[9, 9].item() == pytest.approx(-0.3)
    assert edd[5, 2].item() == 0.0 and edd[4:7, 1:4].abs().max().item() == 0.0  # ref1's own defect is not the target's
    assert edd.abs().gt(1e-6).sum().item() == 2


def _box3_reference(a: np.ndarray) -> np.ndarray:
    """Mean over the 3x3 neighbours that lie inside the image."""
    h, w = a.shape
    out = np.zeros_like(a)
    for y in range(h):
        for x in range(w):
            out[y, x] = a[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].mean()
    return out


@pytest.mark.parametrize(
    ("stem", "before", "dies", "atol"),
    [("tolerant", "compare", lambda a: a, 1e-7), ("smooth", "tolerant", _box3_reference, 1e-6)],
)
def test_stem_matches_an_independent_shift_reference(stem, before, dies, atol) -> None:
    """A stem = the previous stem's channels, unchanged, then the tolerant channels of (maybe averaged) dies."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 9, 11, generator=g)
    y = UNet(base_width=4, stem=stem).stem(x).detach().numpy()[0]
    first = UNet(base_width=4, stem=before).stem(x).detach().numpy()[0]
    assert y.shape == (first.shape[0] + 3, 9, 11)
    np.testing.assert_array_equal(y[:-3], first)
    _assert_tolerant_channels(y[-3:], *(dies(x[0, i].numpy()) for i in range(3)), atol=atol)


def test_smooth_stem_keeps_a_weak_defect_that_noise_hides_from_the_tolerant_one() -> None:
    """A |a| = 14 blob (sigma 1.2 px) in the target, noise std 4 in every die, 16 noise draws: the averaged
    comparison's odd-die-out peak stands above everything else on the patch far more often."""
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 4.0 / 255 * torch.randn(16, 3, 64, 64, generator=g)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    x[:, 0] += 14.0 / 255 * torch.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 1.2**2))
    y = UNet(base_width=4, stem="smooth").stem(x)

    def wins(channel: int) -> int:
        c = y[:, channel]
        peak = c[:, 30:35, 30:35].flatten(1).amax(1)
        away = c.clone()
        away[:, 26:39, 26:39] = 0
        return int((peak > away.flatten(1).abs().amax(1)).sum())

    tolerant_wins, smooth_wins = wins(8), wins(11)
    assert smooth_wins >= 15 and tolerant_wins <= 10, (smooth_wins, tolerant_wins)


@pytest.mark.parametrize(("before", "stem"), [("compare", "tolerant"), ("tolerant", "smooth"), ("tolerant", "aligned")])
def test_each_stem_adds_three_input_channels(before: str, stem: str) -> None:
    smaller, larger = UNet(base_width=4, stem=before), UNet(base_width=4, stem=stem)
    assert count_parameters(larger) - count_parameters(smaller) == 3 * 4 * 9  # first conv only
