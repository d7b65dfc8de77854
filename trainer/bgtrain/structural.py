"""Structural defects: a piece of the pattern itself gone wrong, at full contrast.

Real defects on a patterned die (a printed circuit board, a metal layer) are often not a bump
on the grey level but the pattern broken: a trace cut (open), copper bridging two traces
(short), a bite out of an edge (mousebite), a protrusion (spur), an isolated blob (spurious
copper) or a hole (pin hole) -- 5 to 40 px, whose pixels take the *other* level of the pattern.
A model that only ever saw small additive spots does not find them. Three generic shapes cover
them, none tuned to a data set:

* ``blob`` -- an irregular blob, filled with the level opposite to the die's at its centre
  (spurious copper on the background, a pin hole in copper);
* ``edge`` -- a blob centred on a pattern edge, filled with one side's level: it eats into the
  other side (a bite) or grows into it (a spur);
* ``band`` -- a band 2-6 px wide across the narrowest run of one level through a spot, reaching
  1-3 px into the other level on both sides and filled with it: across a trace it is an open,
  across the gap between two structures a short.

The two levels are measured in the defect's neighbourhood (5th/95th percentiles), so the same
code works on grey textures; where the neighbourhood is flat (a blob far from any structure) the
second level is the die's plus the defect's drawn amplitude. A pixel only moves *towards* the fill
level (one sign), so a defect is ``die + delta`` with ``delta = amplitude * kernel`` and a kernel
of peak 1, like every other synthetic defect (the same delta goes into a reference die), and
``die + delta`` stays inside 0..255. Half the defects get soft edges (the footprint blurred by
0.5-1 px), as on a grey image; the others are pixel-sharp, as on a binarised scan. Everything is
computed over the defect's box and a small neighbourhood, never over a whole die.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .recipe import Recipe

__all__ = ["KINDS", "StructuralDefect", "structural_defect", "place_structural"]

KINDS = ("blob", "edge", "band")  # drawn with equal odds
BAND_WIDTH = (2.0, 6.0)  # px
BAND_OVERLAP = (1.0, 3.0)  # px a band reaches into the other level at each end
MIN_BAND_LENGTH = 6.0
SOFT_PROB = 0.5  # share of defects with soft edges
SOFT_SIGMA = (0.5, 1.0)  # px, blur of a soft footprint
# grey levels between the 5th and 95th percentile of a neighbourhood for it to have two levels (more
# than the noise of a flat one); a flatter neighbourhood has no edge or run for an ``edge`` or ``band``
MIN_CONTRAST = 20.0
LEVEL_MARGIN = 24  # px of neighbourhood around a defect where its two levels are measured
EDGE_SEARCH = 12  # px around a drawn spot where an ``edge`` defect looks for a pattern edge
TRIES = 8  # positions tried for one kind before an ``edge`` or ``band`` falls back to a ``blob``


@dataclass(frozen=True)
class StructuralDefect:
    """One structural defect: ``die[top:top+h, left:left+w] += delta``."""

    top: int
    left: int
    delta: np.ndarray = field(repr=False)  # (h,w) float32, one sign
    mask: np.ndarray = field(repr=False)  # (h,w) bool: |delta| > mask_threshold * peak (the GT footprint)
    kind: str  # one of KINDS

    @property
    def amplitude(self) -> float:
        """The signed largest change, grey levels."""
        return _unit(self.delta)[0]

    @property
    def kernel(self) -> np.ndarray:
        """``delta / amplitude``: peak exactly 1, read-only (the synthesiser's defect model)."""
        return _unit(self.delta)[1]


def _unit(delta: np.ndarray) -> tuple[float, np.ndarray]:
    """(signed peak, delta / peak) of a one-sign delta; the kernel is read-only."""
    amplitude = float(delta.flat[int(np.argmax(np.abs(delta)))])
    kernel = (delta / np.float32(amplitude)).astype(np.float32)
    kernel.setflags(write=False)
    return amplitude, kernel


def _levels(die: np.ndarray, cy: int, cx: int, radius: int, amplitude: float) -> tuple[float, float]:
    """(dark, bright) around (cy, cx); a flat neighbourhood gets the die's level and that plus ``amplitude``."""
    win = die[max(cy - radius, 0) : cy + radius + 1, max(cx - radius, 0) : cx + radius + 1].ravel()
    ranks = [int(q * (win.size - 1)) for q in (0.05, 0.5, 0.95)]
    dark, m, bright = (float(v) for v in np.partition(win, ranks)[ranks])
    if bright - dark >= MIN_CONTRAST:
        return dark, bright
    return (m, min(m + abs(amplitude), 255.0)) if amplitude > 0 else (max(m - abs(amplitude), 0.0), m)


def _box(die: np.ndarray, cy: float, cx: float, half: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Top, left and pixel offsets from (cy, cx) of the die's pixels within ``half`` of it."""
    h, w = die.shape
    y0, y1 = max(int(cy) - half, 0), min(int(cy) + half + 1, h)
    x0, x1 = max(int(cx) - half, 0), min(int(cx) + half + 1, w)
    return y0, x0, np.arange(y0, y1)[:, None] - cy, np.arange(x0, x1)[None, :] - cx


def _blob(yy: np.ndarray, xx: np.ndarray, diameter: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular blob: an ellipse (aspect <= 2) whose radius wobbles with 2-4 lobes."""
    rot, aspect = rng.uniform(0.0, np.pi), np.sqrt(rng.uniform(1.0, 2.0))
    u = (xx * np.cos(rot) + yy * np.sin(rot)) / aspect
    v = (yy * np.cos(rot) - xx * np.sin(rot)) * aspect
    theta = np.arctan2(v, u)
    wobble = sum(rng.uniform(0.0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    centre = (np.abs(yy) <= 0.5) & (np.abs(xx) <= 0.5)  # never empty
    return (np.hypot(u, v) <= max(diameter / 2, 0.75) * (1.0 + wobble)) | centre


def _band(yy: np.ndarray, xx: np.ndarray, theta: float, length: float, width: float) -> np.ndarray:
    along = xx * np.cos(theta) + yy * np.sin(theta)
    across = yy * np.cos(theta) - xx * np.sin(theta)
    return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)


def _narrowest_run(die: np.ndarray, cy: int, cx: int, mid: float, reach: int) -> tuple[int, float, float] | None:
    """Shortest run of the level of (cy, cx) through it over 8 directions, bounded by the other level
    on both sides within ``reach`` px: (length px, direction, offset of the run's middle from the spot)."""
    h, w = die.shape
    theta = np.array([0, 4, 2, 6, 1, 3, 5, 7]) * np.pi / 8  # a tie goes to the axes, then the diagonals
    steps = np.arange(1, reach + 1)[None, None, :] * np.array([1, -1])[None, :, None]  # (1, side, step)
    ys = np.rint(cy + steps * np.sin(theta)[:, None, None]).astype(int)  # (direction, side, step)
    xs = np.rint(cx + steps * np.cos(theta)[:, None, None]).astype(int)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    other = inside & ((die[ys.clip(0, h - 1), xs.clip(0, w - 1)] >= mid) != (die[cy, cx] >= mid))
    first = np.argmax(other | ~inside, axis=2)  # first step that leaves the run (or the die)
    bounded = np.take_along_axis(other, first[..., None], axis=2)[..., 0].all(axis=1)
    run = first.sum(axis=1) + 1
    ok = np.flatnonzero(bounded & (run <= reach))
    if ok.size == 0:
        return None
    i = int(ok[np.argmin(run[ok])])
    return int(run[i]), float(theta[i]), (int(first[i, 0]) - int(first[i, 1])) / 2


def _edge_spot(
    die: np.ndarray, cy: int, cx: int, mid: float, bright_side: bool, rng: np.random.Generator
) -> tuple[int, int] | None:
    """A random pixel of one level (bright or dark side) next to the other within EDGE_SEARCH px of (cy, cx)."""
    y0, x0 = max(cy - EDGE_SEARCH, 0), max(cx - EDGE_SEARCH, 0)
    bright = die[y0 : cy + EDGE_SEARCH + 1, x0 : cx + EDGE_SEARCH + 1] >= mid
    edge = np.zeros_like(bright)  # a pixel with a 4-neighbour of the other level
    for a, b in ((np.s_[1:], np.s_[:-1]), (np.s_[:-1], np.s_[1:])):
        edge[a, :] |= bright[a, :] != bright[b, :]
        edge[:, a] |= bright[:, a] != bright[:, b]
    ys, xs = np.nonzero(edge & (bright == bright_side))
    if ys.size == 0:
        return None
    i = int(rng.integers(ys.size))
    return y0 + int(ys[i]), x0 + int(xs[i])


def _finish(
    die: np.ndarray, top: int, left: int, inside: np.ndarray, fill: float, up: bool, sigma: float, kind: str, thr: float
) -> StructuralDefect | None:
    """Turn a footprint into a one-sign ``delta`` towards ``fill``, soft if ``sigma`` > 0, cut to where it changes."""
    s = inside.astype(np.float32)
    if sigma > 0:
        s = ndimage.gaussian_filter(s, sigma, mode="nearest")
        s[s < 0.02] = 0.0
    change = np.float32(fill) - die[top : top + s.shape[0], left : left + s.shape[1]]
    delta = s * (np.maximum(change, 0.0) if up else np.minimum(change, 0.0))
    moved = delta != 0
    if not moved.any():
        return None
    rows, cols = np.flatnonzero(moved.any(axis=1)), np.flatnonzero(moved.any(axis=0))
    delta = np.ascontiguousarray(delta[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], dtype=np.float32)
    delta.setflags(write=False)
    return StructuralDefect(top + int(rows[0]), left + int(cols[0]), delta, _unit(delta)[1] > thr, kind)


def structural_defect(
    die: np.ndarray,
    rng: np.random.Generator,
    cy: int,
    cx: int,
    kind: str,
    amplitude: float = 60.0,
    size: tuple[int, int] = (3, 25),
    soft: float | None = None,
    mask_threshold: float = 0.1,
) -> StructuralDefect | None:
    """One ``kind`` defect at or near (cy, cx) of ``die`` (H,W) float32 0..255.

    ``size``: range of a blob's diameter (log-uniform: small ones common) and the widest run a band
    crosses. ``amplitude`` (signed): the fill's contrast against the die where the neighbourhood is flat
    (no second level to take). ``soft``: blur sigma of the footprint (0 = pixel-sharp, None = drawn).
    None where the kind does not fit the spot (no edge near it, no short run through it) or changes nothing.
    """
    die = np.asarray(die, dtype=np.float32)
    diameter = float(np.exp(rng.uniform(np.log(size[0]), np.log(size[1]))))
    dark, bright = _levels(die, cy, cx, int(diameter) // 2 + LEVEL_MARGIN, amplitude)
    mid = (dark + bright) / 2
    up = bool(die[cy, cx] < mid)  # a blob or band is filled with the level the spot does not have
    if kind == "band":
        run = _narrowest_run(die, cy, cx, mid, size[1])
        if run is None:
            return None
        length, theta, offset = run
        o1, o2 = rng.uniform(*BAND_OVERLAP, size=2)
        length, width = max(length + o1 + o2, MIN_BAND_LENGTH), rng.uniform(*BAND_WIDTH)
        offset += (o1 - o2) / 2
        py, px = cy + offset * np.sin(theta), cx + offset * np.cos(theta)
        top, left, yy, xx = _box(die, py, px, int(np.ceil(np.hypot(length, width) / 2)) + 3)
        inside = _band(yy, xx, theta + rng.uniform(-0.15, 0.15), length, width)
    else:
        if kind == "edge":  # centred on the edge pixel it changes: a bite into one side, a spur out of the other
            up = bool(rng.random() < 0.5)
            spot = _edge_spot(die, cy, cx, mid, not up, rng)
            if spot is None:
                return None
            cy, cx = spot
        elif kind != "blob":
            raise ValueError(f"unknown structural defect kind {kind!r}; kinds: {', '.join(KINDS)}")
        py, px = cy + rng.uniform(-0.5, 0.5), cx + rng.uniform(-0.5, 0.5)
        top, left, yy, xx = _box(die, py, px, int(np.ceil(diameter)) + 3)  # a blob reaches < 0.96 diameter
        inside = _blob(yy, xx, diameter, rng)
    if soft is None:
        soft = float(rng.uniform(*SOFT_SIGMA)) if rng.random() < SOFT_PROB else 0.0
    return _finish(die, top, left, inside, bright if up else dark, up, soft, kind, mask_threshold)


def place_structural(
    die: np.ndarray,
    rng: np.random.Generator,
    recipe: Recipe,
    amplitude: float,
    centre: Callable[[], tuple[int, int]],
    occupied: np.ndarray,
) -> StructuralDefect | None:
    """A structural defect of a random kind at a free spot of ``die``, or None.

    ``centre`` draws spots (the synthesiser's placer: uniform or on pattern edges); the defect's box
    plus a 1-px margin must be free in ``occupied`` (the placer's map), which is then marked, so it
    never overlaps another defect. An ``edge`` or ``band`` that finds no spot in TRIES becomes a ``blob``.
    """
    die = np.asarray(die, dtype=np.float32)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    for attempt in range(2 * TRIES):
        cy, cx = centre()
        this = kind if attempt < TRIES else "blob"
        d = structural_defect(die, rng, cy, cx, this, amplitude, recipe.structural_size, None, recipe.mask_threshold)
        if d is None:
            continue
        h, w = d.delta.shape
        region = occupied[max(d.top - 1, 0) : d.top + h + 1, max(d.left - 1, 0) : d.left + w + 1]
        if not region.any():
            region[...] = True
            return d
    return None
