"""Realistic-looking die backgrounds for the built-in demo data.

A die image is a periodic pattern (grid lines or stripes) under slow
illumination changes. Its three views (target, ref1, ref2) show the same pattern
but never identically: each view is slightly misregistered (sub-pixel shift),
has its own gain/offset and its own sensor noise. Those differences are what
makes plain differencing produce false alarms, so the demo data keeps them honest
instead of giving the model identical references.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PatternParams", "random_pattern", "render_views"]


@dataclass(frozen=True)
class PatternParams:
    kind: str  # "grid", "vstripes", "hstripes"
    period_y: float
    period_x: float
    phase_y: float
    phase_x: float
    duty: float  # fraction of a period that is "line"
    sharpness: float
    base: float
    contrast: float
    gradient: tuple[float, float]
    noise: float
    misregistration: float  # std of per-view shift, px
    gain_jitter: float
    offset_jitter: float


def random_pattern(rng: np.random.Generator) -> PatternParams:
    return PatternParams(
        kind=str(rng.choice(["grid", "vstripes", "hstripes"], p=[0.5, 0.3, 0.2])),
        period_y=float(rng.uniform(10, 48)),
        period_x=float(rng.uniform(8, 40)),
        phase_y=float(rng.uniform(0, 1)),
        phase_x=float(rng.uniform(0, 1)),
        duty=float(rng.uniform(0.15, 0.5)),
        sharpness=float(rng.uniform(2.0, 8.0)),
        base=float(rng.uniform(40, 110)),
        contrast=float(rng.uniform(30, 100)),
        gradient=(float(rng.uniform(-15, 15)), float(rng.uniform(-10, 10))),
        noise=float(rng.uniform(1.5, 4.5)),
        misregistration=float(rng.uniform(0.05, 0.35)),
        gain_jitter=float(rng.uniform(0.005, 0.03)),
        offset_jitter=float(rng.uniform(0.5, 3.0)),
    )


def _wave(coord: np.ndarray, period: float, phase: float, duty: float, sharpness: float) -> np.ndarray:
    """Smooth square wave in 0..1: 1 on a line, 0 between lines."""
    frac = np.mod(coord / period + phase, 1.0)
    dist = np.abs(frac - 0.5)  # 0 at line centre, 0.5 at the furthest point
    return 1.0 / (1.0 + np.exp(sharpness * (dist - duty / 2) * period / 2))


def _render(p: PatternParams, h: int, w: int, dy: float, dx: float) -> np.ndarray:
    y = np.arange(h, dtype=np.float64)[:, None] + dy
    x = np.arange(w, dtype=np.float64)[None, :] + dx
    if p.kind == "grid":
        wy = _wave(y, p.period_y, p.phase_y, p.duty, p.sharpness)
        wx = _wave(x, p.period_x, p.phase_x, p.duty, p.sharpness)
        pat = np.maximum(wy, wx)
    elif p.kind == "vstripes":
        pat = np.broadcast_to(_wave(x, p.period_x, p.phase_x, p.duty, p.sharpness), (h, w))
    else:
        pat = np.broadcast_to(_wave(y, p.period_y, p.phase_y, p.duty, p.sharpness), (h, w))
    grad = p.gradient[0] * (y / h - 0.5) + p.gradient[1] * (x / w - 0.5)
    return p.base + p.contrast * pat + grad


def render_views(p: PatternParams, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(3,h,w) float32 0..255: target, ref1, ref2 of the same pattern, each slightly different."""
    views = []
    for _ in range(3):
        dy, dx = rng.normal(0.0, p.misregistration, size=2)
        gain = 1.0 + rng.normal(0.0, p.gain_jitter)
        offset = rng.normal(0.0, p.offset_jitter)
        v = gain * _render(p, h, w, dy, dx) + offset + rng.normal(0.0, p.noise, size=(h, w))
        views.append(v)
    return np.clip(np.stack(views), 0, 255).astype(np.float32)
