"""The data set folder layout (docs/data.md): defined in :mod:`bgsdk.layout`, re-exported here.

It lives in the runtime SDK because ``bgsdk evaluate`` and build-time calibration
read the same layout as training; one definition. The optional per-defect
annotations written by synth-dataset are training-side only and stay here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bgsdk.errors import InputError
from bgsdk.layout import DEFECT, GOOD, GT_DIR, Sample, find_mask, labelled_split, training_images

_find_mask = find_mask  # older name, kept for callers

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

# Optional per-defect lists written by synth-dataset: ROOT/annotations/<split>.json = {stem: [defect, ...]}.
ANNOTATIONS_DIR = "annotations"


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
