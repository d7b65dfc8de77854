"""The data set folder layout (docs/data.md) in one place (training, build calibration, ``bgsdk evaluate``).

```
ROOT/train/good/*.tiff                 clean images only (defects are synthesised)
ROOT/valid/{good,bright_spots}/        optional validation images
ROOT/test/{good,bright_spots}/         test images
ROOT/ground_truth/bright_spots/        masks for test/valid defect images (same file stem)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .io import IMAGE_SUFFIXES, list_images

__all__ = ["Sample", "training_images", "labelled_split", "find_mask", "GOOD", "DEFECT", "GT_DIR"]

GOOD = "good"
DEFECT = "bright_spots"
GT_DIR = "ground_truth"


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
