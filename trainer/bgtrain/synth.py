"""Synthetic defects and imaging nuisances, generated per patch over each defect's footprint.

What is drawn is set by a :class:`~bgtrain.recipe.Recipe`. The order matters and
follows how a real die is imaged: defects are placed in the dies first (each in
the target, a reference, or several -- see ``recipe.DIE_KINDS``), then every die
gets its own imaging nuisances, so a defect moves and blurs with its die; last,
label-preserving symmetries (swap the references, flips, transposes) apply to
all dies and the mask alike.

The ground truth follows the odd-die-out rule: a defect is labelled where the
target differs from *both* references -- present in the target only, or missing
from the target while both references show it. Its mask is the footprint where
the kernel exceeds ``mask_threshold`` times its peak (see docs/data.md).

All randomness goes through an explicit ``numpy.random.Generator`` so a sample
is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from scipy import ndimage

from .recipe import DIE_KINDS, DISTRACTOR_KINDS, WEAK_AMPLITUDE, Recipe, get_recipe
from .structural import place_structural

__all__ = [
    "DefectShape",
    "SHAPES",
    "Defect",
    "SynthResult",
    "gaussian_kernel",
    "random_kernel",
    "plan_defects",
    "apply_defects",
    "apply_nuisances",
    "shift_field",
    "jpeg_like",
    "jpeg_table",
    "Binarize",
    "draw_binarize",
    "binary_defects",
    "golden_defects",
    "apply_symmetries",
    "hard_negatives",
    "weak_defects",
    "synthesize",
    "sample_rng",
]


@dataclass(frozen=True)
class DefectShape:
    """A Gaussian footprint ``h`` x ``w`` with per-axis sigmas, normalised to peak 1."""

    h: int
    w: int
    sigma_y: float
    sigma_x: float


# The research code's two given shapes, chosen 50/50 by the seed recipe.
SHAPES: tuple[DefectShape, ...] = (
    DefectShape(3, 3, 1.3, 1.3),
    DefectShape(3, 5, 1.0, 1.5),
)


@lru_cache(maxsize=64)
def _kernel_cached(h: int, w: int, sy: float, sx: float) -> np.ndarray:
    y = np.arange(h, dtype=np.float64) - (h - 1) / 2
    x = np.arange(w, dtype=np.float64) - (w - 1) / 2
    k = np.exp(-(y[:, None] ** 2) / (2 * sy**2) - (x[None, :] ** 2) / (2 * sx**2))
    k /= k.max()
    k = k.astype(np.float32)
    k.setflags(write=False)
    return k


def gaussian_kernel(shape: DefectShape) -> np.ndarray:
    """Read-only ``(h,w)`` float32 kernel with peak exactly 1."""
    return _kernel_cached(shape.h, shape.w, float(shape.sigma_y), float(shape.sigma_x))


@dataclass(frozen=True)
class Defect:
    """One placed defect: top-left corner, kernel (peak 1), amplitude and the dies it is in."""

    y: int
    x: int
    kernel: np.ndarray = field(repr=False)
    amplitude: float
    kind: str  # a key of recipe.DIE_KINDS
    copy_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)  # amplitude factor per die
    shape: str = "gaussian"  # gaussian, line, cluster or a structural.KINDS (for reports)

    @property
    def dies(self) -> tuple[bool, bool, bool]:
        return DIE_KINDS[self.kind]

    @property
    def labelled(self) -> bool:
        """Odd die out: the target differs from both references."""
        t, r1, r2 = self.dies
        return r1 == r2 and t != r1

    @property
    def h(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def w(self) -> int:
        return int(self.kernel.shape[1])


@dataclass
class SynthResult:
    image: np.ndarray  # (3,P,P) float32 0..255
    mask: np.ndarray  # (P,P) bool
    defects: list[Defect] = field(default_factory=list)
    hard: np.ndarray | None = None  # (P,P) bool: footprints of not-labelled defects (hard negatives)
    weak: np.ndarray | None = None  # (P,P) bool: footprints of labelled defects with |a| <= WEAK_AMPLITUDE


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Independent stream per (seed, epoch, index): workers never share or repeat a stream."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


# ----------------------------------------------------------------------------- shapes


def _trim(k: np.ndarray, floor: float = 0.02) -> np.ndarray:
    """Normalise to peak 1 and cut the footprint to where the kernel is visible."""
    k = k / k.max()
    rows = np.flatnonzero(k.max(axis=1) > floor)
    cols = np.flatnonzero(k.max(axis=0) > floor)
    out = k[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    out.setflags(write=False)
    return out


def _grid(half: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates around a sub-pixel centre."""
    c = np.arange(-half, half + 1, dtype=np.float64)
    dy, dx = rng.uniform(-0.5, 0.5, size=2)
    return c[:, None] - dy, c[None, :] - dx


def _gaussian_family(rng: np.random.Generator, r: Recipe, half: int) -> np.ndarray:
    s_major = rng.uniform(*r.sigma_range)
    s_minor = max(s_major / rng.uniform(1.0, r.max_aspect), 0.4)
    theta = rng.uniform(0.0, np.pi)
    y, x = _grid(half, rng)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    return np.exp(-(u**2) / (2 * s_major**2) - v**2 / (2 * s_minor**2))


def _line(rng: np.random.Generator, r: Recipe, half: int) -> np.ndarray:
    """A short scratch: 1-2 px wide, 3 px up to the footprint long, any angle."""
    length = rng.uniform(3.0, 2.0 * half)
    sigma = rng.uniform(0.4, 0.8)
    theta = rng.uniform(0.0, np.pi)
    y, x = _grid(half, rng)
    ux, uy = np.cos(theta), np.sin(theta)
    t = np.clip(x * ux + y * uy, -length / 2, length / 2)
    d2 = (x - t * ux) ** 2 + (y - t * uy) ** 2
    return np.exp(-d2 / (2 * sigma**2))


def _cluster(rng: np.random.Generator, r: Recipe, half: int) -> np.ndarray:
    """2-4 small spots close together (one defect, one label)."""
    y, x = _grid(half, rng)
    k = np.zeros(np.broadcast_shapes(y.shape, x.shape))
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(-(half - 1), half - 1, size=2)
        s = rng.uniform(0.5, 1.0)
        k = np.maximum(k, rng.uniform(0.6, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s**2)))
    return k


def random_kernel(rng: np.random.Generator, r: Recipe) -> tuple[np.ndarray, str]:
    """A kernel (peak 1, footprint <= ``max_footprint``) and its shape name."""
    if r.shapes == "seed":
        return gaussian_kernel(SHAPES[int(rng.integers(len(SHAPES)))]), "gaussian"
    half = r.max_footprint // 2
    u = rng.random()
    if u < r.line_prob:
        return _trim(_line(rng, r, half)), "line"
    if u < r.line_prob + r.cluster_prob:
        return _trim(_cluster(rng, r, half)), "cluster"
    return _trim(_gaussian_family(rng, r, half)), "gaussian"


def _amplitude(rng: np.random.Generator, r: Recipe) -> float:
    if r.amplitudes:
        return float(r.amplitudes[int(rng.integers(len(r.amplitudes)))])
    lo, hi = r.amplitude_range
    mag = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # log-uniform: weak defects common
    return mag if rng.random() < 0.5 else -mag


# ----------------------------------------------------------------------------- placement


class _Placer:
    """Non-overlapping positions (1-px margin), uniform or on pattern edges (by gradient)."""

    def __init__(self, target: np.ndarray, edge_prob: float, rng: np.random.Generator) -> None:
        self.h, self.w = target.shape
        self.occupied = np.zeros((self.h, self.w), dtype=bool)
        self.edge_prob = edge_prob
        self.rng = rng
        self._cdf: np.ndarray | None = None
        if edge_prob > 0:
            g = np.zeros((self.h, self.w), dtype=np.float32)
            g[:, 1:] += np.abs(np.diff(target, axis=1))
            g[1:, :] += np.abs(np.diff(target, axis=0))
            cdf = np.cumsum(g.ravel(), dtype=np.float64)
            self._cdf = cdf if cdf[-1] > 1e-3 else None

    def _centre(self) -> tuple[int, int]:
        if self._cdf is not None and self.rng.random() < self.edge_prob:
            i = int(np.searchsorted(self._cdf, self.rng.random() * self._cdf[-1], side="right"))
            return divmod(min(i, self.h * self.w - 1), self.w)
        return int(self.rng.integers(0, self.h)), int(self.rng.integers(0, self.w))

    def place(self, kh: int, kw: int, tries: int = 20) -> tuple[int, int] | None:
        if kh > self.h or kw > self.w:
            return None
        for _ in range(tries):
            cy, cx = self._centre()
            y = min(max(cy - kh // 2, 0), self.h - kh)
            x = min(max(cx - kw // 2, 0), self.w - kw)
            region = self.occupied[max(y - 1, 0) : y + kh + 1, max(x - 1, 0) : x + kw + 1]
            if not region.any():
                region[...] = True
                return y, x
        return None


def _kinds(rng: np.random.Generator, r: Recipe, n: int) -> list[str]:
    n_label = min(n, int(rng.integers(r.target_range[0], r.target_range[1] + 1)))
    weights = np.asarray(r.distractor_weights, dtype=np.float64)
    if weights.sum() <= 0:
        n_label = n
    kinds = ["missing" if rng.random() < r.missing_prob else "target" for _ in range(n_label)]
    if n > n_label:
        picks = rng.choice(len(DISTRACTOR_KINDS), size=n - n_label, p=weights / weights.sum())
        kinds += [DISTRACTOR_KINDS[int(i)] for i in picks]
    return kinds


def plan_defects(target: np.ndarray, rng: np.random.Generator, recipe: Recipe) -> list[Defect]:
    """Decide the defects of one patch (possibly none), given its target die ``(H,W)``."""
    if rng.random() >= recipe.defect_prob:
        return []
    n = int(rng.integers(recipe.num_defects_range[0], recipe.num_defects_range[1] + 1))
    placer = _Placer(np.asarray(target, dtype=np.float32), recipe.edge_prob, rng)
    defects: list[Defect] = []
    for kind in _kinds(rng, recipe, n):
        kernel, shape = random_kernel(rng, recipe)
        amplitude = _amplitude(rng, recipe)
        jitter = recipe.copy_jitter
        gains = tuple(float(g) for g in (1.0 + rng.uniform(-jitter, jitter, size=3) if jitter else np.ones(3)))
        # -- structural defects (structural.py): shape and fill level from the die around the spot
        if recipe.structural_prob > 0 and rng.random() < recipe.structural_prob:
            s = place_structural(target, rng, recipe, amplitude, placer._centre, placer.occupied)
            if s is not None:
                defects.append(Defect(s.top, s.left, s.kernel, s.amplitude, kind, (1.0, gains[1], gains[2]), s.kind))
            continue
        # --
        where = placer.place(*kernel.shape)
        if where is not None:
            defects.append(Defect(where[0], where[1], kernel, amplitude, kind, (1.0, gains[1], gains[2]), shape))
    return defects


def apply_defects(
    image: np.ndarray, defects: list[Defect], mask_threshold: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Add defects in place to ``image`` (3,H,W) float32; return it and the GT mask.

    Work happens on each footprint only: ``die + amplitude * kernel``, clipped to 0..255.
    """
    _, h, w = image.shape
    mask = np.zeros((h, w), dtype=bool)
    for d in defects:
        ys, xs = slice(d.y, d.y + d.h), slice(d.x, d.x + d.w)
        for c, present in enumerate(d.dies):
            if present:
                view = image[c, ys, xs]
                np.clip(view + np.float32(d.amplitude * d.copy_gain[c]) * d.kernel, 0.0, 255.0, out=view)
        if d.labelled:
            mask[ys, xs] |= d.kernel > mask_threshold
    return image, mask


# ----------------------------------------------------------------------------- nuisances


def _shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Sub-pixel shift (|d| <= 1) by separable linear interpolation, edges replicated."""
    out = img
    for axis, d in ((0, dy), (1, dx)):
        if d == 0:
            continue
        n = 1 if d > 0 else -1
        idx = np.clip(np.arange(out.shape[axis]) + n, 0, out.shape[axis] - 1)
        out = (1 - abs(d)) * out + abs(d) * np.take(out, idx, axis=axis)
    return out


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(2, int(np.ceil(2.5 * sigma)))  # 2 (5 taps) up to sigma 0.8, as before wider blurs existed
    k = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).astype(np.float32)
    p = np.pad(img, radius, mode="edge")
    rows = sum(k[i] * p[i : i + img.shape[0], :] for i in range(2 * radius + 1))
    return sum(k[i] * rows[:, i : i + img.shape[1]] for i in range(2 * radius + 1))


def shift_field(rng: np.random.Generator, h: int, w: int, r: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """A smooth misregistration field ``(dy, dx)``, each ``(h,w)`` float32, px: a global shift uniform in
    ``[-shift_max, shift_max]`` per axis (whole-pixel in a third of the draws) plus a slow variation across
    the crop (a random bilinear surface, up to ``shift_warp`` px from the global shift), clipped to
    ``shift_max``. Misregistration of a real line drifts slowly, so a crop sees almost one translation."""
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    glob = rng.uniform(-r.shift_max, r.shift_max, size=2)
    if rng.random() < 1 / 3:
        glob = np.round(glob)
    coef = rng.uniform(-1.0, 1.0, size=(2, 3)) * r.shift_warp / 3.0  # |variation| <= shift_warp
    out = []
    for a in range(2):
        f = glob[a] + coef[a, 0] * yy + coef[a, 1] * xx + coef[a, 2] * yy * xx
        out.append(np.clip(f, -r.shift_max, r.shift_max).astype(np.float32))
    return out[0], out[1]


def _warp(img: np.ndarray, dy: np.ndarray | float, dx: np.ndarray | float) -> np.ndarray:
    """``img(y + dy, x + dx)`` by bilinear interpolation, edges replicated (``dy``/``dx`` maps or numbers)."""
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return ndimage.map_coordinates(img, [yy + dy, xx + dx], order=1, mode="nearest").astype(np.float32)


# The standard JPEG luminance quantisation table (ITU T.81 Annex K), scaled by quality as libjpeg does.
_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)


def jpeg_table(quality: int) -> np.ndarray:
    """The 8x8 quantisation steps of a JPEG of ``quality`` (1..100), libjpeg's scaling."""
    q = int(np.clip(quality, 1, 100))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return np.clip(np.floor((_JPEG_LUMA * scale + 50) / 100), 1, 255)


def jpeg_like(img: np.ndarray, quality: int) -> np.ndarray:
    """What JPEG's lossy step does to a grey die: level shift, 8x8 block DCT (the orthonormal DCT-II is
    JPEG's), coefficients rounded to multiples of :func:`jpeg_table`, inverse. Blocks start at the crop's
    top-left corner; a side that is not a multiple of 8 is edge-padded and cut back."""
    from scipy.fft import dctn, idctn

    h, w = img.shape
    ph, pw = -h % 8, -w % 8
    a = np.pad(img.astype(np.float64), ((0, ph), (0, pw)), mode="edge") - 128.0
    blocks = a.reshape((h + ph) // 8, 8, (w + pw) // 8, 8)
    q = jpeg_table(quality)[None, :, None, :]
    coef = np.round(dctn(blocks, axes=(1, 3), norm="ortho") / q) * q
    out = idctn(coef, axes=(1, 3), norm="ortho").reshape(h + ph, w + pw)[:h, :w] + 128.0
    return out.astype(np.float32)


def _vignette(h: int, w: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A radial brightness falloff ``1 - s * d^2`` (``d`` = distance to a random centre, in crop half-sizes)."""
    s = rng.uniform(0.0, strength)
    cy, cx = rng.uniform(-1.0, 1.0, size=2)
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None] - np.float32(cy)
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :] - np.float32(cx)
    return 1.0 - np.float32(s) * np.minimum((yy * yy + xx * xx) / 2.0, 1.0)


@dataclass(frozen=True)
class Binarize:
    """A binarised crop: every die thresholded near ``threshold`` (each with its own small jitter) to
    ``low``/``high``, as a line that scans thresholded images delivers them."""

    threshold: float
    low: float
    high: float
    jitter: float = 4.0  # max per-die change of the threshold, grey levels: edges move between dies


def draw_binarize(target: np.ndarray, rng: np.random.Generator, r: Recipe) -> Binarize | None:
    """Whether this crop is binarised (``binarize_prob``) and how: a level between the target's 35th and
    65th percentile, dark level 0-60, bright level 160-255. No draw at all when the recipe never binarises
    (or has no imaging nuisances)."""
    if r.binarize_prob <= 0 or r.nuisance_prob <= 0 or rng.random() >= r.binarize_prob:
        return None
    level = float(np.percentile(target, rng.uniform(35.0, 65.0)))
    return Binarize(level, float(rng.uniform(0.0, 60.0)), float(rng.uniform(160.0, 255.0)))


def binary_defects(defects: list[Defect], image: np.ndarray, b: Binarize) -> list[Defect]:
    """The defects of a binarised crop, made strong enough to cross the threshold: a defect's sign is set by
    the side of the threshold its die is on at its centre (bright on dark ground, dark on bright) and its
    amplitude to 2.5 x the distance to the threshold (>= 60), so its core flips and its label stays true.
    Faint defects cannot exist in a thresholded image; the other crops keep them."""
    out = []
    for d in defects:
        die = d.dies.index(True)
        v = float(image[die, d.y + d.h // 2, d.x + d.w // 2])
        mag = min(255.0, max(60.0, 2.5 * abs(b.threshold - v)))
        out.append(replace(d, amplitude=mag if v <= b.threshold else -mag))
    return out


# In a golden-template pair ref2 is ref1: a defect of one reference is in both, and the label follows.
_GOLDEN_KIND = {"ref1": "missing", "ref2": "missing", "target_ref1": "all", "target_ref2": "all"}


def golden_defects(defects: list[Defect]) -> list[Defect]:
    """The defects of a golden-template crop (both references the same image): kinds in one reference become
    the two-reference kinds (in ref1 only -> missing from the target, a labelled defect; in the target and
    one reference -> in all dies), with the second reference's copy as strong as the first's."""
    out = []
    for d in defects:
        kind = _GOLDEN_KIND.get(d.kind, d.kind)
        out.append(replace(d, kind=kind, copy_gain=(d.copy_gain[0], d.copy_gain[1], d.copy_gain[1])))
    return out


def _geometry(die: np.ndarray, c: int, rng: np.random.Generator, r: Recipe) -> np.ndarray:
    """Misregistration of a reference (the target is the frame) and a die's focus."""
    h, w = die.shape
    if c > 0 and (r.misregistration > 0 or r.shift_prob > 0):
        dy, dx = (float(np.clip(v, -1, 1)) for v in rng.uniform(-r.misregistration, r.misregistration, size=2))
        if r.shift_prob > 0 and rng.random() < r.shift_prob:
            fy, fx = shift_field(rng, h, w, r)
            die = _warp(die, fy + np.float32(dy), fx + np.float32(dx))
        else:
            die = _shift(die, dy, dx)
    if r.blur_prob > 0 and rng.random() < r.blur_prob:
        die = _blur(die, float(rng.uniform(0.3, max(r.blur_sigma, 0.3))))
    return die


def apply_nuisances(
    image: np.ndarray, rng: np.random.Generator, r: Recipe, binarize: Binarize | None = None
) -> np.ndarray:
    """Per-die imaging differences, in place: misregistration of the references vs the target
    (sub-pixel, and a smooth whole-pixel field; the target-frame mask stays exact), blur, gain, offset,
    illumination ramp, vignetting, Gaussian and shot noise -- or, for a ``binarize``d crop, the threshold
    in place of the photometric ones -- then JPEG-like compression; clipped to 0..255."""
    if r.nuisance_prob <= 0 or rng.random() >= r.nuisance_prob:
        return image
    _, h, w = image.shape
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    for c in range(3):
        die = _geometry(image[c], c, rng, r)
        gain = 1.0 + rng.uniform(-r.gain, r.gain)
        ramp = rng.uniform(-r.ramp, r.ramp, size=2).astype(np.float32)
        offset = rng.uniform(-r.offset, r.offset)
        if binarize is not None:
            level = binarize.threshold + rng.uniform(-binarize.jitter, binarize.jitter)
            die = np.where(die > level, np.float32(binarize.high), np.float32(binarize.low))
        else:
            die = gain * die + offset + ramp[0] * yy + ramp[1] * xx
            if r.vignetting > 0:
                die = die * _vignette(h, w, rng, r.vignetting)
            std = rng.uniform(0.0, r.noise_std)
            shot = rng.uniform(0.0, r.shot_noise)
            if std > 0 or shot > 0:
                sigma = np.sqrt(std**2 + shot**2 * np.maximum(die, 0.0))
                die = die + sigma * rng.standard_normal((h, w), dtype=np.float32)
        if r.jpeg_prob > 0 and rng.random() < r.jpeg_prob:
            die = jpeg_like(np.clip(die, 0.0, 255.0), int(rng.integers(r.jpeg_quality_min, 96)))
        np.clip(die, 0.0, 255.0, out=image[c])
    return image


def hard_negatives(shape: tuple[int, int], defects: list[Defect], mask_threshold: float = 0.1) -> np.ndarray:
    """Footprints of the not-labelled defects (where a reference explains the difference)."""
    return _footprints(shape, [d for d in defects if not d.labelled], mask_threshold)


def weak_defects(shape: tuple[int, int], defects: list[Defect], mask_threshold: float = 0.1) -> np.ndarray:
    """Footprints of the labelled defects with |a| <= WEAK_AMPLITUDE (the faint ones a model tends to miss)."""
    weak = [d for d in defects if d.labelled and abs(d.amplitude) <= WEAK_AMPLITUDE]
    return _footprints(shape, weak, mask_threshold)


def _footprints(shape: tuple[int, int], defects: list[Defect], mask_threshold: float) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for d in defects:
        out[d.y : d.y + d.h, d.x : d.x + d.w] |= d.kernel > mask_threshold
    return out


def apply_symmetries(
    image: np.ndarray, maps: list[np.ndarray], rng: np.random.Generator, r: Recipe
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Swap the references and flip/transpose all dies and the ``(H,W)`` maps alike (labels unchanged)."""
    if r.swap_refs and rng.random() < 0.5:
        image = image[[0, 2, 1]]
    if r.flips:
        if rng.random() < 0.5:
            image, maps = image[:, ::-1], [m[::-1] for m in maps]
        if rng.random() < 0.5:
            image, maps = image[:, :, ::-1], [m[:, ::-1] for m in maps]
        if image.shape[1] == image.shape[2] and rng.random() < 0.5:
            image, maps = image.transpose(0, 2, 1), [m.T for m in maps]
    return np.ascontiguousarray(image), [np.ascontiguousarray(m) for m in maps]


def synthesize(patch: np.ndarray, rng: np.random.Generator, recipe: Recipe | None = None) -> SynthResult:
    """Copy of ``patch`` (3,P,P) with defects, nuisances and symmetries; its GT mask and defects.

    A golden-template crop (``golden_prob``) uses ref1 as ref2 (the same image twice, after the nuisances
    too); a binarised crop (``binarize_prob``) gets defects that survive its threshold. Neither draws a
    number when its probability (or ``nuisance_prob``) is 0, so recipes without them keep their exact
    streams, and a recipe without nuisances keeps the crop's own dies."""
    r = recipe or get_recipe("seed")
    img = np.array(patch, dtype=np.float32, copy=True)
    golden = r.golden_prob > 0 and r.nuisance_prob > 0 and rng.random() < r.golden_prob
    if golden:
        img[2] = img[1]
    binarize = draw_binarize(img[0], rng, r)
    defects = plan_defects(img[0], rng, r)
    if golden:
        defects = golden_defects(defects)
    if binarize is not None:
        defects = binary_defects(defects, img, binarize)
    img, mask = apply_defects(img, defects, r.mask_threshold)
    hard = hard_negatives(mask.shape, defects, r.mask_threshold)
    weak = weak_defects(mask.shape, defects, r.mask_threshold)
    img = apply_nuisances(img, rng, r, binarize)
    if golden:
        img[2] = img[1]
    img, (mask, hard, weak) = apply_symmetries(img, [mask, hard, weak], rng, r)
    return SynthResult(img, mask, defects, hard, weak)
