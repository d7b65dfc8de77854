"""Synthetic defects, generated per patch over each defect's footprint only.

SPEC section 2 (given numbers). The whole point of the model is to tell a defect
that is in the target only (a real defect) from one that also shows in a
reference (background to suppress). So a defective patch always carries both:
1-2 target-only defects -- the only ones in the ground truth -- and distractors
that are copied into ref1, ref2 or both at the same place.

All randomness goes through an explicit ``numpy.random.Generator`` so a sample
is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "DefectShape",
    "SHAPES",
    "SynthConfig",
    "Defect",
    "gaussian_kernel",
    "plan_defects",
    "apply_defects",
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


# The two given shapes, chosen 50/50.
SHAPES: tuple[DefectShape, ...] = (
    DefectShape(3, 3, 1.3, 1.3),
    DefectShape(3, 5, 1.0, 1.5),
)

# Which images a non-target-only defect is copied into.
REF1, REF2, BOTH = 1, 2, 3


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
class SynthConfig:
    """Knobs of the defect synthesiser (defaults = SPEC section 2)."""

    defect_prob: float = 0.5
    num_defects_range: tuple[int, int] = (3, 8)
    target_only_range: tuple[int, int] = (1, 2)
    amplitudes: tuple[float, ...] = (-80.0, -60.0, 60.0, 80.0)
    shapes: tuple[DefectShape, ...] = SHAPES
    mask_threshold: float = 0.1
    # Placement tries per defect; footprints (plus a 1-px margin) never overlap,
    # so a distractor can never hide or fake a target-only defect.
    max_tries: int = 20

    def __post_init__(self) -> None:
        lo, hi = self.num_defects_range
        if not (1 <= lo <= hi):
            raise ValueError(f"num_defects_range must be 1 <= lo <= hi, got {self.num_defects_range}")
        tlo, thi = self.target_only_range
        if not (1 <= tlo <= thi):
            raise ValueError(f"target_only_range must be 1 <= lo <= hi, got {self.target_only_range}")
        if not 0.0 <= self.defect_prob <= 1.0:
            raise ValueError(f"defect_prob must be in [0,1], got {self.defect_prob}")


@dataclass(frozen=True)
class Defect:
    """One placed defect: top-left corner, shape, amplitude and where it is copied."""

    y: int
    x: int
    shape: DefectShape
    amplitude: float
    target_only: bool
    refs: int = 0  # 0 (target only), REF1, REF2 or BOTH


@dataclass
class SynthResult:
    image: np.ndarray  # (3,P,P) float32 0..255
    mask: np.ndarray  # (P,P) bool
    defects: list[Defect] = field(default_factory=list)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Independent stream per (seed, epoch, index): workers never share or repeat a stream."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def plan_defects(height: int, width: int, rng: np.random.Generator, cfg: SynthConfig) -> list[Defect]:
    """Decide the defects of one patch (possibly none)."""
    if rng.random() >= cfg.defect_prob:
        return []
    lo, hi = cfg.num_defects_range
    n = int(rng.integers(lo, hi + 1))
    n_target = min(n, int(rng.integers(cfg.target_only_range[0], cfg.target_only_range[1] + 1)))
    occupied = np.zeros((height, width), dtype=bool)
    defects: list[Defect] = []
    for i in range(n):
        shape = cfg.shapes[int(rng.integers(len(cfg.shapes)))]
        amplitude = float(cfg.amplitudes[int(rng.integers(len(cfg.amplitudes)))])
        target_only = i < n_target
        refs = 0 if target_only else int(rng.integers(1, 4))
        if shape.h > height or shape.w > width:
            continue
        for _ in range(cfg.max_tries):
            y = int(rng.integers(0, height - shape.h + 1))
            x = int(rng.integers(0, width - shape.w + 1))
            y0, x0 = max(y - 1, 0), max(x - 1, 0)
            region = occupied[y0 : y + shape.h + 1, x0 : x + shape.w + 1]
            if not region.any():
                region[...] = True
                defects.append(Defect(y, x, shape, amplitude, target_only, refs))
                break
    return defects


def apply_defects(
    image: np.ndarray, defects: list[Defect], mask_threshold: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Add defects in place to ``image`` (3,H,W) float32; return it and the GT mask.

    Work happens on each footprint only: ``bg + amplitude * kernel``, clipped to 0..255.
    """
    _, h, w = image.shape
    mask = np.zeros((h, w), dtype=bool)
    for d in defects:
        k = gaussian_kernel(d.shape)
        ys, xs = slice(d.y, d.y + d.shape.h), slice(d.x, d.x + d.shape.w)
        bump = np.float32(d.amplitude) * k
        channels = [0]
        if d.refs in (REF1, BOTH):
            channels.append(1)
        if d.refs in (REF2, BOTH):
            channels.append(2)
        for c in channels:
            view = image[c, ys, xs]
            np.clip(view + bump, 0.0, 255.0, out=view)
        if d.target_only:
            mask[ys, xs] |= k > mask_threshold
    return image, mask


def synthesize(patch: np.ndarray, rng: np.random.Generator, cfg: SynthConfig | None = None) -> SynthResult:
    """Copy of ``patch`` (3,P,P) with synthetic defects, its GT mask and the defect list."""
    cfg = cfg or SynthConfig()
    img = np.array(patch, dtype=np.float32, copy=True)
    defects = plan_defects(img.shape[1], img.shape[2], rng, cfg)
    img, mask = apply_defects(img, defects, cfg.mask_threshold)
    return SynthResult(img, mask, defects)
