"""Patch positions and centre-region stitching: the one source of truth.

Training validation, PyTorch inference, the ONNX graph builder and the SDK all
import this module, so a patch layout is never computed twice in two ways.

Stitching rule (docs/design.md): neighbouring patches split their overlap at its
middle; the first patch keeps its leading edge and the last its trailing edge.
Every output pixel therefore comes from exactly one patch and no seam is visible
(the kept pixels are the ones furthest from a patch border).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

__all__ = [
    "ImageType",
    "IMAGE_TYPES",
    "Span",
    "Patch",
    "Tiling",
    "calculate_positions",
    "plan_axis",
    "plan_tiling",
    "tiling_for",
]


@dataclass(frozen=True)
class ImageType:
    """Default geometry of one kind of image (the research code's given numbers)."""

    name: str
    height: int
    width: int
    patch: int
    min_rows: int | None = None
    min_cols: int | None = None


IMAGE_TYPES: dict[str, ImageType] = {
    # 9 row patches is the research layout: overlap 22 rows, step 106.
    "strip": ImageType("strip", 976, 176, 128, min_rows=9),
    "square": ImageType("square", 256, 256, 256),
    "mvtec": ImageType("mvtec", 1024, 1024, 256),
}


def calculate_positions(length: int, patch: int, min_patches: int | None = None) -> list[int]:
    """Start offsets of patches spread evenly so the first starts at 0 and the last ends at ``length``.

    The count is the smallest that covers ``length`` (or ``min_patches`` if larger),
    capped at the number of distinct offsets so positions are strictly increasing.
    """
    if patch <= 0:
        raise ValueError(f"patch size must be positive, got {patch}")
    if length < patch:
        raise ValueError(
            f"image side {length} is smaller than the patch size {patch}: "
            "images must be at least one patch in each direction"
        )
    if min_patches is not None and min_patches < 1:
        raise ValueError(f"min_patches must be >= 1, got {min_patches}")
    span = length - patch
    count = max(math.ceil(length / patch), min_patches or 1)
    count = min(count, span + 1)
    if count == 1:
        return [0]
    return [(i * span) // (count - 1) for i in range(count)]


@dataclass(frozen=True)
class Span:
    """One patch along one axis.

    ``start``/``stop``: where the patch sits in the image.
    ``keep_start``/``keep_stop``: the part of the patch (patch-local) that goes to the output.
    ``out_start``/``out_stop``: where the kept part lands in the image.
    """

    start: int
    stop: int
    keep_start: int
    keep_stop: int

    @property
    def out_start(self) -> int:
        return self.start + self.keep_start

    @property
    def out_stop(self) -> int:
        return self.start + self.keep_stop


def plan_axis(length: int, patch: int, min_patches: int | None = None) -> tuple[Span, ...]:
    """Positions plus centre-region crops along one axis."""
    pos = calculate_positions(length, patch, min_patches)
    # Boundary between patch i and i+1: the middle of their overlap.
    bounds = [0] + [nxt + (cur + patch - nxt) // 2 for cur, nxt in zip(pos, pos[1:])] + [length]
    spans = []
    for i, p in enumerate(pos):
        spans.append(Span(p, p + patch, bounds[i] - p, bounds[i + 1] - p))
    return tuple(spans)


@dataclass(frozen=True)
class Patch:
    """One 2-D patch: its index in row-major order and its row/column spans."""

    index: int
    row: Span
    col: Span

    @property
    def y(self) -> int:
        return self.row.start

    @property
    def x(self) -> int:
        return self.col.start


@dataclass(frozen=True)
class Tiling:
    """The full patch layout of an image: row spans x column spans, row-major."""

    height: int
    width: int
    patch: int
    rows: tuple[Span, ...]
    cols: tuple[Span, ...]

    @property
    def num_patches(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def row_positions(self) -> list[int]:
        return [s.start for s in self.rows]

    @property
    def col_positions(self) -> list[int]:
        return [s.start for s in self.cols]

    def patches(self) -> Iterator[Patch]:
        """Row-major: patch index = row_index * len(cols) + col_index."""
        for r, row in enumerate(self.rows):
            for c, col in enumerate(self.cols):
                yield Patch(r * len(self.cols) + c, row, col)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly description (model metadata, checkpoints, manifests)."""
        return {
            "height": self.height,
            "width": self.width,
            "patch": self.patch,
            "row_positions": self.row_positions,
            "col_positions": self.col_positions,
            "row_keep": [[s.keep_start, s.keep_stop] for s in self.rows],
            "col_keep": [[s.keep_start, s.keep_stop] for s in self.cols],
        }


def plan_tiling(
    height: int,
    width: int,
    patch: int,
    min_rows: int | None = None,
    min_cols: int | None = None,
) -> Tiling:
    """Tiling of a ``height`` x ``width`` image into ``patch`` x ``patch`` patches."""
    try:
        rows = plan_axis(height, patch, min_rows)
        cols = plan_axis(width, patch, min_cols)
    except ValueError as exc:
        raise ValueError(f"cannot tile a {height}x{width} image with {patch}px patches: {exc}") from None
    return Tiling(height, width, patch, rows, cols)


def tiling_for(image_type: str, height: int | None = None, width: int | None = None) -> Tiling:
    """Tiling for a named image type, optionally at another image size.

    The type's ``min_rows``/``min_cols`` only apply at its own size: for another
    size the smallest covering count is used.
    """
    try:
        t = IMAGE_TYPES[image_type]
    except KeyError:
        raise ValueError(f"unknown image type {image_type!r}; choose one of {sorted(IMAGE_TYPES)}") from None
    h = t.height if height is None else height
    w = t.width if width is None else width
    return plan_tiling(
        h,
        w,
        t.patch,
        t.min_rows if h == t.height else None,
        t.min_cols if w == t.width else None,
    )
