"""The segmentation network: DRAEM's discriminative sub-network (the research code's).

A plain UNet: 6 encoder blocks of (Conv3x3-BN-ReLU)x2 with widths
``w*[1,2,4,8,8,8]`` and 5 max-pools, a decoder of 5 stages (bilinear upsample
with align_corners=True, Conv-BN-ReLU, skip concat, (Conv-BN-ReLU)x2) and a final
Conv3x3 to 2 logits (background, defect). ``base_width`` is a parameter so tests
and demos can use tiny models; 64 is the production width (28.4 M parameters).

Pools round up (ceil mode) and each upsampling goes to its skip's size, so the
network also runs on sides that are not multiples of 32 -- the whole-strip build
runs it on the strip as it is (:mod:`bgtrain.infer`). On multiples of 32 both are
exactly the research network's max-pool and 2x upsampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import exporting, interpolate_taps, max3x3

__all__ = [
    "UNet",
    "CompareStem",
    "TolerantStem",
    "SmoothStem",
    "AlignedStem",
    "RegisteredStem",
    "Registration",
    "register",
    "best_shift",
    "estimate_shift",
    "shift_bilinear",
    "STEMS",
    "DEFAULT_STEM",
    "check_input_size",
    "count_parameters",
    "DOWNSAMPLE",
    "level_sizes",
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
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

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

    def forward(self, feats: list[torch.Tensor], sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """``sizes``: each level's ``(H, W)``, finest first, as Python ints (:func:`level_sizes`; an export
        passes them, so no traced shape is read). ``None``: read from the tensors in eager mode; while
        exporting, plain 2x upsampling (sides that are multiples of 32, as every patch)."""
        if sizes is None and not exporting():
            sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]
        x = feats[-1]
        for level, (up, block, skip) in enumerate(zip(self.ups, self.blocks, reversed(feats[:-1]))):
            size = None if sizes is None else (sizes[-1 - level], sizes[-2 - level])
            x = block(torch.cat([_upsample_to(up, x, size), skip], dim=1))
        return self.head(x)


def level_sizes(height: int, width: int, levels: int = 6) -> list[tuple[int, int]]:
    """Each encoder level's ``(H, W)`` for an ``height x width`` input, finest first (pools round up)."""
    sizes = [(height, width)]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def _upsample_to(up: nn.Module, x: torch.Tensor, size: tuple[tuple[int, int], tuple[int, int]] | None) -> torch.Tensor:
    """``up(x)`` at the skip's size: 2x, or, where a ceil-mode pool rounded an odd side up, that side's size
    (bilinear with align_corners maps output pixel ``i`` to input ``i/2`` exactly then). ``size`` = (x's,
    the skip's) ``(H, W)``; ``None``: 2x."""
    if size is None or size[1] == (2 * size[0][0], 2 * size[0][1]):
        return up(x)
    assert isinstance(up, nn.Sequential)  # Upsample, then Conv-BN-ReLU (_up)
    return up[1:](F.interpolate(x, size=size[1], mode="bilinear", align_corners=True))


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
        pool = self.pool if exporting() else max3x3  # the same maximum; MaxPool in the graph
        above = torch.relu(t - pool(r))
        below = torch.relu(-pool(-r) - t)
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


def shift_bilinear(r: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, radius: int, step: int = 1) -> torch.Tensor:
    """``r(y + dy, x + dx)`` by separable linear interpolation, edges replicated; ``dx``/``dy`` are
    ``(B,C,1,1)`` (or broadcast to ``r``) with ``|d| <= radius``. Each axis is a weighted sum of the
    ``2*radius+1`` whole-pixel shifts (weights ``relu(1 - |d - j|)``), so the graph needs only Pad, Slice,
    Mul and Add. ``step`` > 1 keeps every ``step``-th whole-pixel shift only: exact for shifts that are
    multiples of it (the registered stem's coarse shift), at a ``step``-th of the cost."""
    rows = _interpolate(F.pad(r, (radius, radius, 0, 0), mode="replicate"), dx, radius, -1, step)
    return _interpolate(F.pad(rows, (0, 0, radius, radius), mode="replicate"), dy, radius, -2, step)


def _interpolate(padded: torch.Tensor, d: torch.Tensor, radius: int, dim: int, step: int = 1) -> torch.Tensor:
    """Linear interpolation at offset ``d`` along ``dim`` of a tensor padded by ``radius`` on both sides."""
    if not exporting() and d.shape[-2:] == (1, 1):  # one shift per image: the same sum, only its non-zero taps
        # (exporting() first: while tracing, shapes are traced values and comparing them warns)
        return interpolate_taps(padded, d, radius, dim, step)
    size = padded.shape[dim] - 2 * radius
    out = torch.relu(1 - (d + radius).abs()) * padded.narrow(dim, 0, size)
    for j in range(-radius + step, radius + 1, step):
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


def _interior(x: torch.Tensor, margin: int) -> torch.Tensor:
    """``x`` without a band of ``margin`` pixels on every side (all of it for margin 0)."""
    if margin == 0:
        return x
    return x[..., margin : x.shape[-2] - margin, margin : x.shape[-1] - margin]


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """3x3 box average, scaled by ``_SHIFT_SCALE`` (borders: the mean of the pixels inside)."""
    return _SHIFT_SCALE * F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def estimate_shift(
    t: torch.Tensor,
    r: torch.Tensor,
    iterations: int = 3,
    reg: float = 1e-5,
    radius: int = 2,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    margin: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The translation ``(dx, dy)``, each ``(B,C,1,1)``, that best maps each channel of ``r`` onto ``t``.

    Lucas-Kanade on 3x3-averaged dies with their means removed (so an offset between dies does not
    bias it): ``iterations`` Gauss-Newton steps of the 2x2 normal equations of ``t ~ r(x + d)``.
    ``reg`` (a mean squared gradient, in the 0..1 input scale) keeps a flat patch's estimate near 0, and
    a ridge of 1e-3 of the equations' trace does the same along the direction a striped patch cannot
    see, where a shift changes nothing anyway. Clamped to ``radius``. ``start`` is the first guess
    (default 0); the sums run over the patch less a band of ``margin`` px (where a caller's earlier
    whole-pixel shift replicated the border).
    """
    k = _SHIFT_SCALE
    ts = _interior(_smooth(t), margin)
    rs0 = _smooth(r)
    ts = ts - ts.mean((2, 3), keepdim=True)
    if start is None:
        dx = torch.zeros_like(r[:, :, :1, :1])
        dy = torch.zeros_like(dx)
    else:
        dx, dy = start
    for step in range(iterations):
        # at d = 0 the resampling is the identity
        rs = rs0 if step == 0 and start is None else shift_bilinear(rs0, dx, dy, radius)
        gx, gy = (_interior(g, margin) for g in _gradients(rs))
        rs = _interior(rs, margin)
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


# The registered stem's whole-pixel search (see RegisteredStem). Dissimilarities are mean absolute
# differences of dies normalised to unit standard deviation; _SEARCH_EPS (in _SHIFT_SCALE units: 2 grey
# levels) keeps a flat die from being blown up to unit contrast; _SEARCH_PRIOR per squared px (half-resolution
# px) breaks ties towards the smallest shift (a flat or periodic patch); _UNIQUE_FLOOR keeps the uniqueness
# of a surface that is flat at zero (identical constant dies) at 0.
_SEARCH_EPS = _SHIFT_SCALE * 2.0 / 255.0
_SEARCH_PRIOR = 3e-3
_UNIQUE_FLOOR = 0.1


def _normalise(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(s - mean) / (std + eps)`` per image and channel, with the mean and ``std + eps``."""
    mean = s.mean((2, 3), keepdim=True)
    c = s - mean
    scale = (c * c).mean((2, 3), keepdim=True).sqrt() + _SEARCH_EPS
    return c / scale, mean, scale


def _dissimilarity(t: torch.Tensor, r: torch.Tensor, radius: int, margin: int) -> torch.Tensor:
    """``(B,C,(2*radius+1)**2)``: mean ``|t(y,x) - r(y+sy, x+sx)|`` over the patch less ``margin`` px, for every
    whole-pixel ``(sy, sx)`` in ``[-radius, radius]^2`` (row-major, sy outer). Slices only: no padding."""
    h, w = t.shape[-2], t.shape[-1]
    tc = t[..., margin : h - margin, margin : w - margin]
    out = []
    for sy in range(-radius, radius + 1):
        for sx in range(-radius, radius + 1):
            rc = r[..., margin + sy : h - margin + sy, margin + sx : w - margin + sx]
            out.append((tc - rc).abs().mean((2, 3)))
    return torch.stack(out, dim=-1)


def _offsets(radius: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(sy, sx)`` of each candidate of :func:`_dissimilarity`, as constants of ``like``'s dtype."""
    cand = [(sy, sx) for sy in range(-radius, radius + 1) for sx in range(-radius, radius + 1)]
    sy = torch.tensor([c[0] for c in cand], dtype=like.dtype)
    sx = torch.tensor([c[1] for c in cand], dtype=like.dtype)
    return sy, sx


def best_shift(d: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole-pixel ``(sy, sx)``, each ``(B,C,1,1)``, minimising a :func:`_dissimilarity` surface ``d``
    (plus a small prior for small shifts), and how *unique* that minimum is, in 0..1.

    Uniqueness = ``(d2 - d1) / (d2 + floor)`` with ``d1`` the minimum and ``d2`` the lowest dissimilarity more
    than 1 px (per axis) away from it: ~1 for a sharp, single minimum; ~0 where another shift fits as well
    (a flat patch, a pattern periodic within the search range, stripes along their direction). ArgMin, then
    one-hot weights (Equal, Cast, Mul, ReduceSum) turn the index into the shift without integer arithmetic.
    """
    sy_c, sx_c = _offsets(radius, d)
    penalised = d + _SEARCH_PRIOR * (sy_c * sy_c + sx_c * sx_c)
    index = penalised.argmin(dim=-1, keepdim=True)
    onehot = (index == torch.arange(d.shape[-1])).to(d.dtype)
    sy, sx = (onehot * sy_c).sum(-1, keepdim=True), (onehot * sx_c).sum(-1, keepdim=True)
    near = (((sy_c - sy).abs() < 1.5) & ((sx_c - sx).abs() < 1.5)).to(d.dtype)
    d1 = (onehot * d).sum(-1, keepdim=True)
    d2 = (d + 100.0 * near).amin(-1, keepdim=True)
    unique = ((d2 - d1) / (d2 + _UNIQUE_FLOOR)).clamp(0.0, 1.0)
    return sy.unsqueeze(-1), sx.unsqueeze(-1), unique.unsqueeze(-1)


@dataclass
class Registration:
    """What :func:`register` found for each reference channel: all ``(B,C,1,1)``."""

    dx: torch.Tensor  # total shift, px: aligned r(y, x) = r(y + dy, x + dx)
    dy: torch.Tensor
    unique: torch.Tensor  # uniqueness of the whole-pixel minimum, 0..1 (best_shift)
    residual: torch.Tensor  # mean |T - aligned R| of the normalised dies after alignment, / 2, clamped to 0..1
    aligned: torch.Tensor  # (B,C,H,W): each reference resampled onto the target


def register(t: torch.Tensor, r: torch.Tensor, search: int = 3, lk_radius: int = 2) -> Registration:
    """Align each channel of ``r`` (B,C,H,W) to the target ``t`` (B,1,H,W), for shifts up to ``2*search+1`` px.

    Coarse to fine, all parameter-free and exportable (Slice, Sub, Abs, ReduceMean, ArgMin, Equal, Mul, Pad):
    1. dies 3x3-averaged and normalised (mean removed, divided by their std: gain and offset differences
       between dies do not matter), then 2x2-averaged: the whole-pixel search over ``[-search, search]^2``
       at half resolution, i.e. even shifts up to ``2*search`` px (:func:`best_shift`);
    2. the reference moved by that even shift (exact: one-hot weights), then a full-resolution search
       over ``[-1, 1]^2``: the nearest whole pixel;
    3. Lucas-Kanade (:func:`estimate_shift`) from there, for the sub-pixel rest (|rest| <= ``lk_radius``).
    A patch is assumed to move as one piece (per-patch estimate; misregistration varies slowly).
    """
    m = 2 * search
    tn, _, _ = _normalise(_smooth(t))
    rn, r_mean, r_scale = _normalise(_smooth(r))
    coarse = _dissimilarity(F.avg_pool2d(tn, 2), F.avg_pool2d(rn, 2), search, search)
    sy, sx, unique = best_shift(coarse, search)
    cy, cx = 2 * sy, 2 * sx
    c = r.shape[1]
    both = shift_bilinear(torch.cat([r, rn], 1), torch.cat([cx, cx], 1), torch.cat([cy, cy], 1), m, step=2)
    r_int, rn_int = both[:, :c], both[:, c:]
    uy, ux, _ = best_shift(_dissimilarity(tn, rn_int, 1, m + 1), 1)
    dx, dy = estimate_shift(t, r_int, radius=lk_radius, start=(ux, uy), margin=m + lk_radius)
    aligned = shift_bilinear(r_int, dx, dy, lk_radius)
    an = (_smooth(aligned) - r_mean) / r_scale
    residual = _interior((tn - an).abs(), m + lk_radius).mean((2, 3), keepdim=True)
    return Registration(cx + dx, cy + dy, unique, (0.5 * residual).clamp(0.0, 1.0), aligned)


class RegisteredStem(nn.Module):
    """The tolerant channels of the target against each reference *registered* to it, plus how far to trust
    the registration.

    Why: real lines misregister dies by several pixels, and the aligned stem's linearised estimate follows
    only about a pixel; beyond that every pattern edge fires. :func:`register` searches whole-pixel shifts
    up to 7 px (coarse to fine) and refines them to sub-pixel precision. Where no shift is unique (flat
    ground, a pattern periodic within the search range) or none explains the reference, the network is
    told so: per reference the uniqueness of the minimum and the residual after alignment, as constant
    maps it can learn to gate on. ``(B,3,H,W)`` -> ``(B,13,H,W)``: :class:`TolerantStem` of
    (target, registered ref1, registered ref2) -- the dies, their differences, the range-tolerant ones
    (1 px of what a translation leaves, e.g. binarised edges that jitter), odd-die-out agreements -- then
    uniqueness 1, 2 and residual 1, 2. One estimate per patch (per image in a whole-image build).
    """

    out_channels = 13
    search = 3  # half-resolution px: even whole-pixel shifts up to 6 px, +-1 at full resolution: 7 px

    def __init__(self) -> None:
        super().__init__()
        self.tolerant = TolerantStem()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x[:, 0:1]
        reg = register(t, x[:, 1:3], self.search)
        ones = torch.ones_like(t)
        trust = [ones * reg.unique[:, 0:1], ones * reg.unique[:, 1:2]]
        trust += [ones * reg.residual[:, 0:1], ones * reg.residual[:, 1:2]]
        return torch.cat([self.tolerant(torch.cat([t, reg.aligned], 1)), *trust], dim=1)


# What the first convolution sees: "plain" = target, ref1, ref2 (DRAEM as given);
# "compare" = those plus the die-to-die differences (CompareStem); "tolerant" = compare plus
# differences that ignore up to 1 px of misregistration (TolerantStem); "smooth" = tolerant plus
# the same on 3x3-averaged dies, for weak defects at the noise level (SmoothStem).
# "aligned" = tolerant plus differences against each reference aligned to the target (AlignedStem).
# "registered" = the tolerant channels of the dies registered by a whole-pixel search plus that sub-pixel
# refinement, and the registration's uniqueness and residual (RegisteredStem).
_STEM_MODULES: dict[str, type[nn.Module]] = {
    "compare": CompareStem,
    "tolerant": TolerantStem,
    "smooth": SmoothStem,
    "aligned": AlignedStem,
    "registered": RegisteredStem,
}
STEMS = ("plain", *_STEM_MODULES)
# What train-model uses unless told otherwise. "aligned" was measured best on every evaluation set of
# sub-pixel misregistration (docs/experiments/); "registered" recovers the whole-pixel shifts of real lines
# (3-7 px) that its linearised estimate cannot follow (tests/train/test_model_register.py, docs/design.md).
DEFAULT_STEM = "registered"


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
        if not exporting():
            check_input_size(int(x.shape[-2]), int(x.shape[-1]))
        return self.body(self.stem(x.contiguous()))

    def body(self, s: torch.Tensor, sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """The stem's maps ``(B,C,H,W)`` -> logits: everything after the stem, any ``H x W`` (``sizes``:
        :class:`Decoder`)."""
        if self.channels_last():  # the stem's many small ops run fastest on NCHW, the convolutions on NHWC
            s = s.contiguous(memory_format=torch.channels_last)
        return self.decoder(self.encoder(s), sizes)

    def channels_last(self) -> bool:
        """Whether the convolutions' weights are channels-last (``model.to(memory_format=torch.channels_last)``)."""
        conv = next(m for m in self.encoder.modules() if isinstance(m, nn.Conv2d))
        w = conv.weight
        return bool(w.ndim == 4 and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
