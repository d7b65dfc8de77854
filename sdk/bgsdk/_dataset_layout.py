"""The data set folder layout in one place (training, build calibration, ``bgsdk evaluate``).

```
ROOT/train/good/*                      clean images only (defects are synthesised)
ROOT/valid/{good,<kind>...}/           optional validation images
ROOT/test/{good,<kind>...}/            test images: good/ and one folder per defect kind, any names
ROOT/ground_truth/<kind>/              masks (<stem>.png or <stem>_mask.png) or boxes (<stem>.txt)
ROOT/annotations.json                  optional COCO boxes (also ROOT/ground_truth/ or ROOT/<split>/)
ROOT/annotations/{valid,test}.json     optional: every synthesised defect (kind, amplitude, box), by image stem
```

The synthetic data's ``bright_spots`` is one such kind (MVTec AD's layout is the same with its own
names). A defect image is annotated by, in this order: a mask in ``ground_truth/<kind>/``,
a box file ``<stem>.txt`` in ``ground_truth/<kind>/`` or beside the image, or its entry in
a COCO ``annotations.json`` (:mod:`bgsdk.annotations`). A defect folder with no annotation
at all is an error that says where it looked: scoring it as "0 defective" would lie.

Images are whole (3 channels, or a 2-channel (test, template) pair), or separate dies:
``<key>_test.<ext>`` next to its golden template ``<key>_temp.<ext>`` (DeepPCB's naming;
:func:`match_refs` has the rule, shared with ``bgsdk run --refs``).

The synthesised-defect lists are written by ``bgsdk synth``; ``bgsdk evaluate`` reads them (per-kind
recall and false alarms) without torch, so they are defined here with the rest of the layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from .annotations import BOX_SUFFIX, COCO_FILE, Box, CocoIndex, boxes_to_mask, read_box_file, read_coco
from .errors import InputError
from .io import IMAGE_SUFFIXES, combine, list_images, read_image, read_mask

__all__ = [
    "Sample",
    "training_images",
    "labelled_split",
    "find_mask",
    "load_annotations",
    "GOOD",
    "DEFECT",
    "GT_DIR",
    "ANNOTATIONS_DIR",
    "find_boxes",
    "match_refs",
    "pair_folder",
    "sample_image",
    "sample_mask",
    "TEST_SUFFIXES",
    "TEMPLATE_SUFFIXES",
]

GOOD = "good"
DEFECT = "bright_spots"  # the synthetic data sets' defect kind (docs/data.md)
GT_DIR = "ground_truth"
# Optional per-defect lists: ROOT/annotations/<split>.json = {stem: [defect, ...]}.
ANNOTATIONS_DIR = "annotations"

#: Stem endings of a test image and of its golden template (matched case-insensitively).
TEST_SUFFIXES = ("_test",)
TEMPLATE_SUFFIXES = ("_temp", "_template", "_ref", "_golden")


_Coco = list[tuple[Path, CocoIndex]]


@dataclass(frozen=True)
class Sample:
    """An evaluation image: its path, whether it has defects, and its annotation.

    ``mask_path``: its mask file; ``boxes``: its boxes (when annotated by boxes);
    ``refs``: separate reference image(s), for a test image paired with its template;
    ``kind``: the folder it came from (``good`` or the defect kind, the default box class).
    """

    path: Path
    defective: bool
    mask_path: Path | None
    boxes: tuple[Box, ...] | None = None
    refs: tuple[Path, ...] = ()
    kind: str = ""


class Annotated(Protocol):
    """What :func:`sample_image` and :func:`sample_mask` read (a :class:`Sample`, or evaluation's sample)."""

    @property
    def path(self) -> Path: ...
    @property
    def mask_path(self) -> Path | None: ...
    @property
    def boxes(self) -> tuple[Box, ...] | None: ...
    @property
    def refs(self) -> tuple[Path, ...]: ...


def training_images(root: str | Path) -> list[Path]:
    """``ROOT/train/good`` images; a clear error if there are none."""
    folder = Path(root) / "train" / GOOD
    if not folder.is_dir():
        raise InputError(folder, "training folder not found (expected ROOT/train/good/ with clean images)")
    files = list_images(folder)
    if not files:
        raise InputError(folder, f"no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files


def find_mask(gt_dir: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for cand in (gt_dir / f"{stem}{suffix}", gt_dir / f"{stem}_mask{suffix}"):
            if cand.is_file():
                return cand
    return None


def _strip(stem: str, suffixes: Sequence[str]) -> str | None:
    low = stem.lower()
    for s in suffixes:
        if low.endswith(s) and len(stem) > len(s):
            return stem[: -len(s)]
    return None


def _keys(stem: str) -> list[str]:
    """Names an image's annotation or template may use: its stem, then the stem without ``_test``."""
    key = _strip(stem, TEST_SUFFIXES)
    return [stem] if key is None else [stem, key]


def match_refs(tests: Sequence[Path], templates: Sequence[Path]) -> tuple[list[Path | None], list[Path]]:
    """The template of each test image (``None``: none), and the templates nobody matched.

    Rule: the template with the same stem; else one whose stem, without a template ending
    (``_temp``, ``_template``, ``_ref``, ``_golden``), equals the test stem or the test stem
    without ``_test`` (``00041000_test.jpg`` -> ``00041000_temp.jpg``). Two candidates
    (``x.png`` and ``x.tiff``) are an :class:`InputError`.
    """
    exact: dict[str, list[Path]] = {}
    keyed: dict[str, list[Path]] = {}
    for t in templates:
        exact.setdefault(t.stem, []).append(t)
        key = _strip(t.stem, TEMPLATE_SUFFIXES)
        if key is not None:
            keyed.setdefault(key, []).append(t)
    out: list[Path | None] = []
    for f in tests:
        cands = exact.get(f.stem) or next((keyed[k] for k in _keys(f.stem) if k in keyed), [])
        if len(cands) > 1:
            raise InputError(f, f"{len(cands)} templates match it ({', '.join(c.name for c in cands)}); keep one")
        out.append(cands[0] if cands else None)
    used = {p for p in out if p is not None}
    return out, [t for t in templates if t not in used]


def pair_folder(files: Sequence[Path]) -> list[tuple[Path, tuple[Path, ...]]]:
    """A folder's samples: ``(image, refs)``; ``_test`` images with their ``_temp`` templates beside them.

    A folder without templates is plain images (``refs = ()``). Once it has templates,
    every ``_test`` image needs one and every template a test image: else one error
    saying how many are unmatched, with an example.
    """
    templates = [f for f in files if _strip(f.stem, TEMPLATE_SUFFIXES) is not None]
    tests = [f for f in files if _strip(f.stem, TEST_SUFFIXES) is not None]
    if not templates or not tests:
        return [(f, ()) for f in files]
    refs, orphans = match_refs(tests, templates)
    missing = [t for t, r in zip(tests, refs) if r is None]
    if missing:
        raise InputError(
            missing[0].parent,
            f"{len(missing)} of {len(tests)} test image(s) have no template beside them "
            f"(e.g. {missing[0].name}: expected {_keys(missing[0].stem)[-1]}_temp.<ext>)",
        )
    if orphans:
        raise InputError(orphans[0].parent, f"{len(orphans)} template(s) match no test image (e.g. {orphans[0].name})")
    paired = {t: r for t, r in zip(tests, refs) if r is not None}
    skip = set(templates)
    return [(f, (paired[f],) if f in paired else ()) for f in files if f not in skip]


def find_boxes(image: Path, gt_dir: Path, coco: Sequence[tuple[Path, CocoIndex]]) -> list[Box] | None:
    """An image's boxes: ``<key>.txt`` in ``gt_dir`` or beside the image, else its COCO entry; None if none."""
    for key in _keys(image.stem):
        for folder in (gt_dir, image.parent):
            cand = folder / f"{key}{BOX_SUFFIX}"
            if cand.is_file():
                return read_box_file(cand)
    for base, index in coco:
        try:
            rel = image.relative_to(base).as_posix()
        except ValueError:
            rel = image.name
        found = index.lookup(rel)
        if found is not None:
            return found
    return None


def _coco_files(root: Path, split: str) -> _Coco:
    out = []
    for base in (root, root / GT_DIR, root / split):
        if (base / COCO_FILE).is_file():
            out.append((base, read_coco(base / COCO_FILE)))
    return out


def _annotated(image: Path, refs: tuple[Path, ...], kind: str, gt_dir: Path, coco: _Coco) -> Sample | None:
    for key in _keys(image.stem):
        m = find_mask(gt_dir, key)
        if m is not None:
            return Sample(image, True, m, None, refs, kind)
    boxes = find_boxes(image, gt_dir, coco)
    if boxes is None:
        return None
    labelled = tuple(b if b.label else b.with_label(kind) for b in boxes)
    return Sample(image, True, None, labelled, refs, kind)


def _defect_folder(folder: Path, root: Path, coco: _Coco) -> list[Sample]:
    """One defect kind's images with their annotations; an unannotated image is an error."""
    kind = folder.name
    gt_dir = root / GT_DIR / kind
    items = pair_folder(list_images(folder))
    samples = [_annotated(p, refs, kind, gt_dir, coco) for p, refs in items]
    missing = [p for (p, _), s in zip(items, samples) if s is None]
    where = (
        f"no masks in {GT_DIR}/{kind}/ nor boxes ({GT_DIR}/{kind}/<stem>{BOX_SUFFIX}, <stem>{BOX_SUFFIX} "
        f"beside the images, or {COCO_FILE})"
    )
    if missing and len(missing) == len(items):
        raise InputError(folder, f"{len(items)} image(s), {where}: none of its defects could be scored")
    if missing:
        raise InputError(
            missing[0], f"defect image has no annotation ({len(missing)} of {len(items)} in {kind}/): {where}"
        )
    return [s for s in samples if s is not None]


def labelled_split(root: str | Path, split: str) -> list[Sample]:
    """Images of ``ROOT/<split>/good`` and of every defect folder beside it; [] if the split is absent.

    A defect image without an annotation is an error: silently scoring it as
    all-background would make the numbers lie.
    """
    root = Path(root)
    base = root / split
    if not base.is_dir():
        return []
    samples: list[Sample] = []
    good = base / GOOD
    if good.is_dir():
        samples += [Sample(p, False, None, None, refs, GOOD) for p, refs in pair_folder(list_images(good))]
    kinds = sorted(d for d in base.iterdir() if d.is_dir() and d.name != GOOD and not d.name.startswith("."))
    coco = _coco_files(root, split) if kinds else []
    for folder in kinds:
        samples += _defect_folder(folder, root, coco)
    return samples


def load_annotations(root: str | Path, split: str) -> dict[str, list[dict[str, Any]]] | None:
    """Per-image defect lists of a split (kinds, amplitudes, boxes), or None if the data set has none."""
    path = Path(root) / ANNOTATIONS_DIR / f"{split}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a JSON annotation file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object {image stem: [defects]}")
    return data


def sample_image(sample: Annotated) -> np.ndarray:
    """The sample's ``(3,H,W)`` input: the image itself, or the test image stacked with its template(s)."""
    if sample.refs:
        return combine(sample.path, list(sample.refs), str(sample.path))
    return read_image(sample.path)


def sample_mask(sample: Annotated, shape: tuple[int, ...]) -> np.ndarray | None:
    """The sample's ground truth as a ``(H,W)`` bool mask (boxes filled); None for a good image.

    A mask of another size than the image is an :class:`InputError` naming both.
    """
    if sample.mask_path is not None:
        m = read_mask(sample.mask_path)
        if m.shape != tuple(shape[-2:]):
            raise InputError(
                sample.mask_path,
                f"mask is {m.shape[0]}x{m.shape[1]}, its image {sample.path.name} is {shape[-2]}x{shape[-1]}",
            )
        return m
    if sample.boxes is not None:
        return boxes_to_mask(sample.boxes, (int(shape[-2]), int(shape[-1])))
    return None
