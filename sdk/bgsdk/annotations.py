"""Box annotations: readers for the formats inspection data sets come in, and box <-> mask helpers.

Numpy only (no torch): ``bgsdk evaluate``, build-time calibration and training
validation read the same files.

Formats (docs/data.md, "Your own data"):

* **one text file per image** (``<stem>.txt``): one box per line, ``x1 y1 x2 y2 [class]``,
  separated by spaces or commas (DeepPCB's ``x1,y1,x2,y2,type``); blank lines and
  lines starting with ``#`` are skipped;
* **COCO JSON** (``annotations.json``): ``images`` (``id``, ``file_name``),
  ``annotations`` (``image_id``, ``bbox`` = ``[x, y, w, h]``, ``category_id``) and
  ``categories`` (``id``, ``name``).

Coordinates are pixels with x to the right (columns) and y down (rows); a box covers
``x1 <= x <= x2``, ``y1 <= y <= y2`` (pixel centres). A bad line or entry is an
:class:`~bgsdk.errors.InputError` naming the file and the line/entry.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError, check_file

__all__ = [
    "Box",
    "BOX_SUFFIX",
    "COCO_FILE",
    "CocoIndex",
    "read_box_file",
    "read_coco",
    "boxes_to_mask",
    "mask_to_boxes",
]

#: Per-image box files: ``<stem>.txt``.
BOX_SUFFIX = ".txt"
#: A data set's COCO file name.
COCO_FILE = "annotations.json"
# More boxes than this in one file is not an annotation (a wrong file given as one).
MAX_BOXES = 100_000


@dataclass(frozen=True)
class Box:
    """One annotated defect: corners in pixels (inclusive, x = column, y = row) and its class ('' if none)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""

    @property
    def area(self) -> float:
        """Pixels the box covers (at least 1: a one-pixel box has x1 == x2)."""
        return (self.x2 - self.x1 + 1.0) * (self.y2 - self.y1 + 1.0)

    def contains(self, x: float, y: float) -> bool:
        return self.x1 - 0.5 <= x <= self.x2 + 0.5 and self.y1 - 0.5 <= y <= self.y2 + 0.5

    def with_label(self, label: str) -> Box:
        return Box(self.x1, self.y1, self.x2, self.y2, label)


def _box(values: Sequence[float], label: str, where: str, source: Path) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InputError(source, f"{where}: box coordinates must be finite numbers")
    if x2 < x1 or y2 < y1:
        raise InputError(source, f"{where}: box has x2 < x1 or y2 < y1 ({x1:g} {y1:g} {x2:g} {y2:g})")
    return Box(x1, y1, x2, y2, label)


def read_box_file(path: str | os.PathLike[str]) -> list[Box]:
    """Boxes of one ``x1 y1 x2 y2 [class]`` text file (spaces or commas); ``[]`` for an empty file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "box file not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not a readable text file ({exc})") from None
    boxes: list[Box] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) not in (4, 5):
            raise InputError(p, f"line {n}: expected 'x1 y1 x2 y2 [class]', got {line[:60]!r}")
        try:
            nums = [float(v) for v in parts[:4]]
        except ValueError:
            raise InputError(p, f"line {n}: box corners must be numbers, got {line[:60]!r}") from None
        boxes.append(_box(nums, parts[4] if len(parts) == 5 else "", f"line {n}", p))
        if len(boxes) > MAX_BOXES:
            raise InputError(p, f"more than {MAX_BOXES} boxes: not an annotation file")
    return boxes


@dataclass(frozen=True)
class CocoIndex:
    """A COCO file's boxes by image ``file_name`` (as written, with ``/``) and by base name."""

    path: Path
    by_name: dict[str, list[Box]]
    by_base: dict[str, list[Box]]

    def lookup(self, relative: str) -> list[Box] | None:
        """Boxes of an image given by its path relative to the data set root (or the COCO file's folder)."""
        rel = relative.replace(os.sep, "/")
        if rel in self.by_name:
            return self.by_name[rel]
        return self.by_base.get(rel.rsplit("/", 1)[-1])


def _list(data: dict[str, Any], key: str, p: Path) -> list[dict[str, Any]]:
    value = data.get(key, [] if key == "categories" else None)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(p, f"COCO file needs a list of objects under {key!r}")
    return value


def read_coco(path: str | os.PathLike[str]) -> CocoIndex:
    """Index a COCO detection file (images, annotations, categories; bbox = [x, y, w, h])."""
    p = Path(path)
    check_file(p, InputError, "a COCO JSON file", "annotation file")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(p, f"not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(p, "expected a COCO object with images, annotations and categories")
    names = {c.get("id"): str(c.get("name", c.get("id"))) for c in _list(data, "categories", p)}
    files: dict[Any, str] = {}
    for k, im in enumerate(_list(data, "images", p)):
        if "id" not in im or not isinstance(im.get("file_name"), str):
            raise InputError(p, f"images[{k}] needs an 'id' and a 'file_name'")
        files[im["id"]] = im["file_name"].replace("\\", "/")
    by_name: dict[str, list[Box]] = {name: [] for name in files.values()}
    for k, a in enumerate(_list(data, "annotations", p)):
        bbox = a.get("bbox")
        if a.get("image_id") not in files:
            raise InputError(p, f"annotations[{k}]: image_id {a.get('image_id')!r} is not among the images")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise InputError(p, f"annotations[{k}]: bbox must be [x, y, w, h], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise InputError(p, f"annotations[{k}]: bbox width and height must be > 0, got {bbox!r}")
        label = names.get(a.get("category_id"), "" if a.get("category_id") is None else str(a.get("category_id")))
        # [x, y, w, h] covers pixels x .. x + w - 1 (COCO's continuous box, pixel edges at integers).
        by_name[files[a["image_id"]]].append(_box((x, y, x + w - 1.0, y + h - 1.0), label, f"annotations[{k}]", p))
    by_base: dict[str, list[Box]] = {}
    for name, boxes in by_name.items():
        by_base.setdefault(name.rsplit("/", 1)[-1], boxes)
    return CocoIndex(p, by_name, by_base)


def boxes_to_mask(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """A ``(H,W)`` bool mask with every box filled (pixels whose centre lies in a box)."""
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    for b in boxes:
        r0, r1 = max(0, math.ceil(b.y1 - 0.5)), min(h, math.floor(b.y2 + 0.5) + 1)
        c0, c1 = max(0, math.ceil(b.x1 - 0.5)), min(w, math.floor(b.x2 + 0.5) + 1)
        if r0 < r1 and c0 < c1:
            mask[r0:r1, c0:c1] = True
    return mask


def mask_to_boxes(mask: np.ndarray, label: str = "") -> list[Box]:
    """The bounding box of each 8-connected component of a mask, in label order."""
    from scipy import ndimage

    labels, _ = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3), dtype=bool))
    out = []
    for sl in ndimage.find_objects(labels):
        if sl is not None:
            out.append(Box(float(sl[1].start), float(sl[0].start), float(sl[1].stop - 1), float(sl[0].stop - 1), label))
    return out
