"""The segmentation network: DRAEM's discriminative sub-network (the research code's).

A plain UNet: 6 encoder blocks of (Conv3x3-BN-ReLU)x2 with widths
``w*[1,2,4,8,8,8]`` and 5 max-pools, a decoder of 5 stages (bilinear upsample
with align_corners=True, Conv-BN-ReLU, skip concat, (Conv-BN-ReLU)x2) and a final
Conv3x3 to 2 logits (background, defect). ``base_width`` is a parameter so tests
and demos can use tiny models; 64 is the production width (28.4 M parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "UNet",
    "CompareStem",
    "TolerantStem",
    "SmoothStem",
    "AlignedStem",
    "estimate_shift",
    "shift_bilinear",
    "STEMS",
    "DEFAULT_STEM",
    "check_input_size",
    "count_parameters",
    "DOWNSAMPLE",
]


# 5 max-pools: both input sides must be multiples of 2**5.
DOWNSAMPLE = 32


def check_input_size(height: int, width: int) -> None:
    """Raise a ValueError that says why, for sides the network cannot take."""
    if height % DOWNSAMPLE or width % DOWNSAMPLE or height <= 0 or width <= 0:
        raise ValueError(
            f"UNet input must have sides that are positive multiples of {DOWNSAMPLE} "
            f"(5 max-pools halve them 5 times and the decoder must restore the exact size), got {height}x{width}"
        )


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn_relu(cin, cout), *_conv_bn_relu(cout, cout))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), *_conv_bn_relu(cin, cout))


class Encoder(nn.Module):
    def __init__(self, in_channels: int, w: int) -> None:
        super().__init__()
        widths = [w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w]
        chans = [in_channels] + widths
        self.blocks = nn.ModuleList(_double(chans[i], chans[i + 1]) for i in range(6))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


class Decoder(nn.Module):
    def __init__(self, w: int, out_channels: int) -> None:
        super().__init__()
        # (in of upsample, out of upsample, skip width, out of stage)
        stages = [
            (8 * w, 8 * w, 8 * w, 8 * w),
            (8 * w, 4 * w, 8 * w, 4 * w),
            (4 * w, 2 * w, 4 * w, 2 * w),
            (2 * w, w, 2 * w, w),
            (w, w, w, w),
        ]
        self.ups = nn.ModuleList(_up(cin, cup) for cin, cup, _, _ in stages)
        self.blocks = nn.ModuleList(_double(cup + skip, cout) for _, cup, skip, cout in stages)
        self.head = nn.Conv2d(w, out_channels, 3, padding=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(feats[:-1])):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def _odd_die_out(d1: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """``sign * min(|d1|, |d2|)`` where both differences agree in sign, 0 elsewhere."""
    agree = (d1 * d2 > 0).to(d1.dtype)
    return torch.sign(d1) * torch.minimum(d1.abs(), d2.abs()) * agree


class CompareStem(nn.Module):
    """Hands the network the comparisons the label is defined by, as extra input channels.

    ``(B,3,H,W)`` target/ref1/ref2 -> ``(B,6,H,W)``: the three dies, ``T-R1``, ``T-R2``
    and the signed double detection ``sign(T-R1) * min(|T-R1|, |T-R2|)`` where both
    differences agree in sign (0 elsewhere): large only where the target is the odd die
    out, present *or* missing. Parameter-free, so it costs nothing to learn; the convs
    after it still see the raw dies to judge pattern context and misregistration.
    """

    out_channels = 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, r1, r2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        d1, d2 = t - r1, t - r2
        return torch.cat([x, d1, d2, _odd_die_out(d1, d2)], dim=1)


class TolerantStem(nn.Module):
    """The compare channels plus die differences that misregistration cannot fake.

    Why: with the dies shifted by a fraction of a pixel, ``T-R`` is large along every
    pattern edge, where it drowns weak defects and makes false alarms. The classic
    die-to-die remedy is to compare the target with the *range* of the reference over
    a 3x3 neighbourhood: ``relu(T - max3x3(R)) - relu(min3x3(R) - T)`` is zero wherever
    some reference pixel within 1 px matches the target, and keeps a defect's contrast
    on flat ground (less the noise range). ``(B,3,H,W)`` -> ``(B,9,H,W)``: the compare
    channels, then that tolerant difference for R1 and R2 and their odd-die-out
    agreement. Parameter-free; two MaxPools per reference in the graph.
    """

    out_channels = 9

    def __init__(self) -> None:
        super().__init__()
        self.compare = CompareStem()
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)

    def _tolerant(self, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        above = torch.relu(t - self.pool(r))
        below = torch.relu(-self.pool(-r) - t)
        return above - below

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, r1, r2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        e1, e2 = self._tolerant(t, r1), self._tolerant(t, r2)
        return torch.cat([self.compare(x), e1, e2, _odd_die_out(e1, e2)], dim=1)


class SmoothStem(nn.Module):
    """The tolerant channels plus the same tolerant comparison of 3x3-averaged dies.

    Why: the tolerant difference compares the target with the *maximum* (and minimum)
    of nine reference pixels, and the maximum of nine noisy pixels sits about 1.5 noise
    standard deviations above the true level. A weak defect (|a| 12-40 grey levels on
    dies with noise std 3-5) loses most of its contrast to that bias, and the convs
    after the stem cannot undo a max. Averaging each die over 3x3 first cuts the noise
    std by ~3 while a defect of sigma >= 1 px keeps most of its peak, so the same
    comparison keeps weak defects above the noise; the 1 px misregistration tolerance is
    unchanged. ``(B,3,H,W)`` -> ``(B,12,H,W)``: the tolerant channels, then the tolerant
    difference of the averaged dies for R1 and R2 and their odd-die-out agreement.
    Parameter-free; an AvgPool (borders: mean of the pixels inside) plus the MaxPools.
    """

    out_channels = 12

    def __init__(self) -> None:
        super().__init__()
        self.tolerant = TolerantStem()
        self.smooth = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.smooth(x)
        t, r1, r2 = s[:, 0:1], s[:, 1:2], s[:, 2:3]
        e1, e2 = self.tolerant._tolerant(t, r1), self.tolerant._tolerant(t, r2)
        return torch.cat([self.tolerant(x), e1, e2, _odd_die_out(e1, e2)], dim=1)


def shift_bilinear(r: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, radius: int) -> torch.Tensor:
    """``r(y + dy, x + dx)`` by separable linear interpolation, edges replicated; ``dx``/``dy`` are
    ``(B,1,1,1)`` with ``|d| <= radius``. Each axis is a weighted sum of the ``2*radius+1`` whole-pixel
    shifts (weights ``relu(1 - |d - j|)``), so the graph needs only Pad, Slice, Mul and Add."""
    rows = _interpolate(F.pad(r, (radius, radius, 0, 0), mode="replicate"), dx, radius, dim=-1)
    return _interpolate(F.pad(rows, (0, 0, radius, radius), mode="replicate"), dy, radius, dim=-2)


def _interpolate(padded: torch.Tensor, d: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Linear interpolation at offset ``d`` along ``dim`` of a tensor padded by ``radius`` on both sides."""
    size = padded.shape[dim] - 2 * radius
    out = torch.relu(1 - (d + radius).abs()) * padded.narrow(dim, 0, size)
    for j in range(-radius + 1, radius + 1):
        out = out + torch.relu(1 - (d - j).abs()) * padded.narrow(dim, radius + j, size)
    return out


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences along x and y, edges replicated."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]), 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])


# estimate_shift works on dies scaled by this (1 grey level = 0.25) and solves its normal equations
# normalised by their trace, so every intermediate stays between ~1e-3 and ~1e3: float16 (a --fp16 build)
# then estimates the same shift as float32 instead of flushing products of small means to zero.
_SHIFT_SCALE = 64.0


def estimate_shift(
    t: torch.Tensor, r: torch.Tensor, iterations: int = 3, reg: float = 1e-5, radius: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """The translation ``(dx, dy)``, each ``(B,1,1,1)``, that best maps ``r`` onto ``t`` over the patch.

    Lucas-Kanade on 3x3-averaged dies with their means removed (so an offset between dies does not
    bias it): ``iterations`` Gauss-Newton steps of the 2x2 normal equations of ``t ~ r(x + d)``.
    ``reg`` (a mean squared gradient, in the 0..1 input scale) keeps a flat patch's estimate near 0, and
    a ridge of 1e-3 of the equations' trace does the same along the direction a striped patch cannot
    see, where a shift changes nothing anyway. Clamped to ``radius``.
    """
    k = _SHIFT_SCALE
    ts = k * F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False)
    rs0 = k * F.avg_pool2d(r, 3, stride=1, padding=1, count_include_pad=False)
    ts = ts - ts.mean((2, 3), keepdim=True)
    dx = torch.zeros_like(t[:, :, :1, :1])
    dy = torch.zeros_like(dx)
    for step in range(iterations):
        rs = rs0 if step == 0 else shift_bilinear(rs0, dx, dy, radius)  # at d = 0 the resampling is the identity
        gx, gy = _gradients(rs)
        e = ts - (rs - rs.mean((2, 3), keepdim=True))
        sxx = (gx * gx).mean((2, 3), keepdim=True) + reg * k * k
        syy = (gy * gy).mean((2, 3), keepdim=True) + reg * k * k
        n = sxx + syy
        a, c, b = sxx / n + 1e-3, syy / n + 1e-3, (gx * gy).mean((2, 3), keepdim=True) / n
        ux, uy = (gx * e).mean((2, 3), keepdim=True) / n, (gy * e).mean((2, 3), keepdim=True) / n
        det = a * c - b * b
        dx = (dx + (c * ux - b * uy) / det).clamp(-radius, radius)
        dy = (dy + (a * uy - b * ux) / det).clamp(-radius, radius)
    return dx, dy


class AlignedStem(nn.Module):
    """The tolerant channels plus the target against each reference *aligned* to it.

    Why: misregistration is a translation of a whole die, and the tolerant range pays for ignoring it
    with the noise range on every pixel (a weak defect loses most of its contrast to the max of nine
    noisy pixels) while still failing where the dies disagree by more than a pixel. Estimating the
    translation per patch (:func:`estimate_shift`, parameter-free) and resampling the reference
    removes the pattern edges from ``T - R`` and keeps a defect's full contrast; the network still
    gets the tolerant channels for what a translation cannot explain. ``(B,3,H,W)`` -> ``(B,12,H,W)``:
    the tolerant channels, then ``T - aligned(R1)``, ``T - aligned(R2)`` and their odd-die-out agreement.
    The estimate is per patch (per strip in a whole-strip build), so it adapts to a drift along a strip.
    """

    out_channels = 12
    radius = 2  # largest shift followed, px (per axis)

    def __init__(self) -> None:
        super().__init__()
        self.tolerant = TolerantStem()

    def _aligned_difference(self, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        dx, dy = estimate_shift(t, r, radius=self.radius)
        return t - shift_bilinear(r, dx, dy, self.radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, r1, r2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        a1, a2 = self._aligned_difference(t, r1), self._aligned_difference(t, r2)
        return torch.cat([self.tolerant(x), a1, a2, _odd_die_out(a1, a2)], dim=1)


# What the first convolution sees: "plain" = target, ref1, ref2 (DRAEM as given);
# "compare" = those plus the die-to-die differences (CompareStem); "tolerant" = compare plus
# differences that ignore up to 1 px of misregistration (TolerantStem); "smooth" = tolerant plus
# the same on 3x3-averaged dies, for weak defects at the noise level (SmoothStem).
# "aligned" = tolerant plus differences against each reference aligned to the target (AlignedStem).
_STEM_MODULES: dict[str, type[nn.Module]] = {
    "compare": CompareStem,
    "tolerant": TolerantStem,
    "smooth": SmoothStem,
    "aligned": AlignedStem,
}
STEMS = ("plain", *_STEM_MODULES)
# What train-model uses unless told otherwise: measured best on every evaluation set (docs/model-card.md,
# since 2026-11-28; "tolerant" before that).
DEFAULT_STEM = "aligned"


class UNet(nn.Module):
    """``(B,3,H,W)`` in 0..1 -> ``(B,2,H,W)`` logits (background, defect)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 2, base_width: int = 64, stem: str = "plain") -> None:
        super().__init__()
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if stem != "plain" and in_channels != 3:
            raise ValueError(f"the {stem} stem needs the 3 dies (target, ref1, ref2) as input")
        self.base_width = base_width
        self.stem_name = stem
        stem_cls = _STEM_MODULES.get(stem)
        self.stem = stem_cls() if stem_cls is not None else nn.Identity()
        stem_channels = getattr(stem_cls, "out_channels", in_channels)
        self.encoder = Encoder(stem_channels, base_width)
        self.decoder = Decoder(base_width, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            check_input_size(int(x.shape[-2]), int(x.shape[-1]))
        return self.decoder(self.encoder(self.stem(x)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
