"""The defect list of one image: connected components of ``heatmap > threshold``.

A defect is an 8-connected component of pixels whose defect probability is
*strictly* above the threshold (the rule of ``Result.mask``) with at least
``min_area`` pixels. Components are found with ``scipy.ndimage.label`` (a
well-kept labeller, not a home-made one) and listed in scipy's label order --
the raster order of each component's first pixel (top to bottom, then left to
right) -- so the list is deterministic and the C++ example reproduces it.
Ids are 1..n over the components that survive ``min_area``.

Polarity comes from the input image, not from the heatmap (the model only says
"defect"): ``bright`` when the target is on average brighter over the component
than the mean of the two references, else ``dark``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Defect", "find_defects", "DEFECT_FIELDS", "check_operating_point"]

#: Column order of ``defects.csv`` and keys of the JSON defect records (C++ example too).
DEFECT_FIELDS = ("id", "x", "y", "x0", "y0", "x1", "y1", "area", "peak", "mean", "polarity")

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Defect:
    """One defect. Coordinates are pixels: ``x`` = column, ``y`` = row (origin top-left).

    ``x, y``: centroid (unweighted mean of the component's pixel positions);
    ``bbox``: ``(x0, y0, x1, y1)`` inclusive; ``area``: pixels; ``peak``/``mean``:
    maximum and mean defect probability over the component; ``polarity``:
    ``"bright"`` or ``"dark"`` (target vs the references' mean), ``None`` when no
    image was given.
    """

    id: int
    x: float
    y: float
    bbox: tuple[int, int, int, int]
    area: int
    peak: float
    mean: float
    polarity: str | None

    def to_dict(self) -> dict[str, Any]:
        """Flat record with the :data:`DEFECT_FIELDS` keys (JSON/CSV)."""
        d = asdict(self)
        x0, y0, x1, y1 = d.pop("bbox")
        d.update(x0=x0, y0=y0, x1=x1, y1=y1)
        return {k: d[k] for k in DEFECT_FIELDS}


def check_operating_point(threshold: float, min_area: int) -> tuple[float, int]:
    """Validated ``(threshold, min_area)``: a finite float and an int >= 1, else ``ValueError``."""
    t = float(threshold)
    if not np.isfinite(t):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ValueError(f"min_area must be an integer >= 1, got {min_area!r}")
    return t, int(min_area)


#: Up to this many components, statistics are computed inside each bounding box (a strip has a
#: handful: ~1 ms); above it, with whole-image scipy reductions (thousands of components from an
#: uncalibrated threshold would otherwise cost a Python loop each).
_FEW = 64

_Stats = tuple[float, float, float, float, "float | None"]


def _stats_by_box(
    hm: np.ndarray, labels: np.ndarray, keep: np.ndarray, slices: list[Any], image: np.ndarray | None
) -> list[_Stats]:
    """(x, y, peak, mean, contrast) per kept component, each from its own bounding box."""
    out: list[_Stats] = []
    for lab in keep:
        sl = slices[lab - 1]
        rows, cols = np.nonzero(labels[sl] == lab)
        vals = hm[sl][rows, cols]
        contrast = None
        if image is not None:
            t, r1, r2 = (np.asarray(image[c][sl], dtype=np.float64)[rows, cols] for c in range(3))
            contrast = float(np.mean(t - 0.5 * (r1 + r2)))
        out.append(
            (
                float(sl[1].start + cols.mean()),
                float(sl[0].start + rows.mean()),
                float(vals.max()),
                float(vals.astype(np.float64).mean()),
                contrast,
            )
        )
    return out


def _stats_whole_image(
    hm: np.ndarray, labels: np.ndarray, keep: np.ndarray, slices: list[Any], image: np.ndarray | None
) -> list[_Stats]:
    """The same numbers as :func:`_stats_by_box`, with one scipy reduction per statistic."""
    from scipy import ndimage

    rows, cols = np.indices(hm.shape, dtype=np.float64)
    cy, cx = ndimage.mean(rows, labels, keep), ndimage.mean(cols, labels, keep)
    peaks = ndimage.maximum(hm, labels, keep)
    means = ndimage.mean(hm.astype(np.float64), labels, keep)
    if image is not None:
        img = np.asarray(image, dtype=np.float64)
        contrasts = ndimage.mean(img[0] - 0.5 * (img[1] + img[2]), labels, keep)
    return [
        (float(cx[k]), float(cy[k]), float(peaks[k]), float(means[k]), None if image is None else float(contrasts[k]))
        for k in range(keep.size)
    ]


def find_defects(
    heatmap: np.ndarray, threshold: float, min_area: int = 1, image: np.ndarray | None = None
) -> tuple[Defect, ...]:
    """Defects of ``heatmap`` (``(H,W)`` probability); ``image`` is the ``(3,H,W)`` input for polarity."""
    from scipy import ndimage

    t, min_area = check_operating_point(threshold, min_area)
    hm = np.asarray(heatmap, dtype=np.float32)
    labels, n = ndimage.label(hm > np.float32(t), structure=_EIGHT)
    if n == 0:
        return ()
    index = np.arange(1, n + 1)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = index[areas >= min_area]
    if keep.size == 0:
        return ()
    slices = ndimage.find_objects(labels)
    stats = _stats_by_box if keep.size <= _FEW else _stats_whole_image
    out = []
    for k, (lab, (cx, cy, peak, mean, contrast)) in enumerate(zip(keep, stats(hm, labels, keep, slices, image))):
        sl = slices[lab - 1]
        assert sl is not None
        out.append(
            Defect(
                id=k + 1,
                x=cx,
                y=cy,
                bbox=(int(sl[1].start), int(sl[0].start), int(sl[1].stop) - 1, int(sl[0].stop) - 1),
                area=int(areas[lab - 1]),
                peak=peak,
                mean=mean,
                polarity=None if contrast is None else ("bright" if contrast >= 0 else "dark"),
            )
        )
    return tuple(out)
