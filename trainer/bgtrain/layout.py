"""The data set folder layout (SPEC section 1): defined in :mod:`bgsdk.layout`, re-exported here.

It lives in the runtime SDK because ``bgsdk evaluate`` and build-time calibration
read the same layout as training; one definition.
"""

from __future__ import annotations

from bgsdk.layout import DEFECT, GOOD, GT_DIR, Sample, find_mask, labelled_split, training_images

_find_mask = find_mask  # older name, kept for callers

__all__ = ["Sample", "training_images", "labelled_split", "find_mask", "GOOD", "DEFECT", "GT_DIR"]
