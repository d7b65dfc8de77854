"""The data set folder layout (docs/data.md) in one place (training, build calibration, ``bgsdk evaluate``).

```
ROOT/train/good/*.tiff                 clean images only (defects are synthesised)
ROOT/valid/{good,bright_spots}/        optional validation images
ROOT/test/{good,bright_spots}/         test images
ROOT/ground_truth/bright_spots/        masks for test/valid defect images (same file stem)
ROOT/annotations/{valid,test}.json     optional: every synthesised defect (kind, amplitude, box), by image stem
```

The annotations are written by ``bgsdk synth``; ``bgsdk evaluate`` reads them (per-kind recall and
false alarms) without torch, so they are defined here with the rest of the layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import IMAGE_SUFFIXES, list_images

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
]

GOOD = "good"
DEFECT = "bright_spots"
GT_DIR = "ground_truth"
# Optional per-defect lists: ROOT/annotations/<split>.json = {stem: [defect, ...]}.
ANNOTATIONS_DIR = "annotations"


@dataclass(frozen=True)
class Sample:
    """An evaluation image: its path, whether it has defects, and its mask file (if any)."""

    path: Path
    defective: bool
    mask_path: Path | None


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


def labelled_split(root: str | Path, split: str) -> list[Sample]:
    """Images of ``ROOT/<split>/{good,bright_spots}`` with their masks; [] if the split is absent.

    A defect image without a mask is an error: silently scoring it as all-background
    would make the validation numbers lie.
    """
    root = Path(root)
    base = root / split
    if not base.is_dir():
        return []
    samples: list[Sample] = []
    good = base / GOOD
    if good.is_dir():
        samples += [Sample(p, False, None) for p in list_images(good)]
    bad = base / DEFECT
    if bad.is_dir():
        gt_dir = root / GT_DIR / DEFECT
        for p in list_images(bad):
            m = find_mask(gt_dir, p.stem)
            if m is None:
                raise InputError(p, f"defect image has no mask in {gt_dir} (same file stem expected)")
            samples.append(Sample(p, True, m))
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
