"""Patch positions and centre-region stitching: the one source of truth.

Training validation, PyTorch inference, the ONNX graph builder and the SDK all
import this module, so a patch layout is never computed twice in two ways.

Stitching rule (docs/design.md): neighbouring patches split their overlap at its
middle; the first patch keeps its leading edge and the last its trailing edge.
Every output pixel therefore comes from exactly one patch and no seam is visible
(the kept pixels are the ones furthest from a patch border).

Geometry policy (:func:`tiling_for`, :func:`tiling_for_size`): the research strip
layout (976x176, 9 x 2 patches of 128) is kept exactly as given; every other size
gets patches that overlap by at least :data:`MIN_OVERLAP` pixels, so each kept
pixel lies at least ``MIN_OVERLAP // 2`` pixels inside its patch, where the
network's zero padding no longer shows (the measured seam: docs/design.md,
"Patch overlap"). Images that are not one of the named types use
:func:`default_patch`: 128 px, or 256 px when both sides are >= 1024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

__all__ = [
    "ImageType",
    "IMAGE_TYPES",
    "CUSTOM",
    "MIN_OVERLAP",
    "default_patch",
    "image_type_for",
    "tiling_for_size",
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
    # Smallest overlap of neighbouring patches at the type's own size (0: none asked, the research strip).
    min_overlap: int = 32


#: Smallest overlap (px) of neighbouring patches at every size but the research strip layout: a kept
#: pixel is then >= 16 px inside its patch. Measured: docs/design.md, "Patch overlap".
MIN_OVERLAP = 32
#: Patch sides for images of no named type (default_patch).
SMALL_PATCH, LARGE_PATCH = 128, 256
#: Both sides at least this: LARGE_PATCH (the mvtec geometry's patch).
LARGE_IMAGE_SIDE = 1024
#: The image type of a size no named type has; its patch is recorded with it (checkpoint, model).
CUSTOM = "custom"

IMAGE_TYPES: dict[str, ImageType] = {
    # 9 row patches is the research layout: overlap 22 rows, step 106 (kept exactly as given).
    "strip": ImageType("strip", 976, 176, 128, min_rows=9, min_overlap=0),
    "square": ImageType("square", 256, 256, 256),
    "mvtec": ImageType("mvtec", 1024, 1024, 256),
}


def calculate_positions(length: int, patch: int, min_patches: int | None = None, min_overlap: int = 0) -> list[int]:
    """Start offsets of patches spread evenly so the first starts at 0 and the last ends at ``length``.

    The count is the smallest that covers ``length`` with neighbours overlapping by at
    least ``min_overlap`` pixels (or ``min_patches`` if larger), capped at the number of
    distinct offsets so positions are strictly increasing. Every layout is therefore
    ``min_patches = len(positions)`` with no overlap asked: a model's recorded positions
    are rebuilt from their count alone.
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
    if not 0 <= min_overlap < patch:
        raise ValueError(f"min_overlap must be in 0..{patch - 1} for {patch}px patches, got {min_overlap}")
    span = length - patch
    count = max(math.ceil(length / patch), min_patches or 1)
    if min_overlap and span:
        # Steps are at most ceil(span / (count - 1)); that must leave min_overlap.
        count = max(count, math.ceil(span / (patch - min_overlap)) + 1)
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


def plan_axis(length: int, patch: int, min_patches: int | None = None, min_overlap: int = 0) -> tuple[Span, ...]:
    """Positions plus centre-region crops along one axis."""
    pos = calculate_positions(length, patch, min_patches, min_overlap)
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
    min_overlap: int = 0,
) -> Tiling:
    """Tiling of a ``height`` x ``width`` image into ``patch`` x ``patch`` patches."""
    try:
        rows = plan_axis(height, patch, min_rows, min_overlap)
        cols = plan_axis(width, patch, min_cols, min_overlap)
    except ValueError as exc:
        raise ValueError(f"cannot tile a {height}x{width} image with {patch}px patches: {exc}") from None
    return Tiling(height, width, patch, rows, cols)


def default_patch(height: int, width: int) -> int:
    """Patch side for an image of no named type: 256 when both sides are >= 1024, else 128.

    128 is the strip's patch: enough context for defects of a few pixels, and cheap to
    train on. Large images take 256: with the 32 px minimum overlap a 256 patch
    recomputes 1.31x the image's pixels against 1.78x for 128 (step 224 vs 96), and the
    mvtec geometry (1024x1024) already uses it.
    """
    return LARGE_PATCH if min(height, width) >= LARGE_IMAGE_SIDE else SMALL_PATCH


def image_type_for(height: int, width: int) -> str:
    """The named type of exactly this size, else :data:`CUSTOM`."""
    for t in IMAGE_TYPES.values():
        if (t.height, t.width) == (height, width):
            return t.name
    return CUSTOM


def tiling_for(
    image_type: str, height: int | None = None, width: int | None = None, patch: int | None = None
) -> Tiling:
    """Tiling for a named image type (optionally at another size), or for :data:`CUSTOM` at its size.

    The type's own layout (``min_rows``/``min_cols``, its ``min_overlap``) applies only at
    its own size: the research strip layout stays exactly as given. Every other size gets
    the smallest covering count with neighbours overlapping by >= :data:`MIN_OVERLAP`.
    ``patch``: a named type's patch is its own (a different one is an error); a custom
    image's defaults to :func:`default_patch`.
    """
    if image_type == CUSTOM:
        if height is None or width is None:
            raise ValueError("a custom image type needs its image size (height and width)")
        p = default_patch(height, width) if patch is None else patch
        _check_patch(p)
        return plan_tiling(height, width, p, min_overlap=MIN_OVERLAP)
    try:
        t = IMAGE_TYPES[image_type]
    except KeyError:
        raise ValueError(f"unknown image type {image_type!r}; choose one of {sorted(IMAGE_TYPES) + [CUSTOM]}") from None
    if patch is not None and patch != t.patch:
        raise ValueError(f"image type {image_type!r} has {t.patch}px patches, not {patch}")
    h = t.height if height is None else height
    w = t.width if width is None else width
    if (h, w) == (t.height, t.width):
        return plan_tiling(h, w, t.patch, t.min_rows, t.min_cols, t.min_overlap)
    return plan_tiling(h, w, t.patch, min_overlap=MIN_OVERLAP)


def tiling_for_size(height: int, width: int, patch: int | None = None) -> Tiling:
    """The tiling of an image of this size: its named type's if it has one, else :data:`CUSTOM`."""
    image_type = image_type_for(height, width)
    return tiling_for(image_type, height, width, patch if image_type == CUSTOM else None)


def _check_patch(patch: int) -> None:
    # The UNet halves its input 5 times: patch sides are multiples of 32.
    if patch < 32 or patch % 32:
        raise ValueError(f"patch size must be a positive multiple of 32, got {patch}")
