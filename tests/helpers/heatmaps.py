"""Comparing heatmaps from two implementations (the C++ example and the Python SDK)."""

from __future__ import annotations

import numpy as np


def margin_threshold(reference: np.ndarray, other: np.ndarray, quantile: float) -> float:
    """A float32 threshold near ``quantile`` with no pixel of either heatmap closer to it than their
    largest difference, so two implementations cannot disagree about which side of it a pixel is on."""
    margin = float(np.abs(reference - other).max()) + 1e-7
    values = np.sort(np.concatenate([reference.ravel(), other.ravel()]))
    k = int(quantile * values.size)
    while values[k + 1] - values[k] <= 4 * margin:
        k += 1
    return float(np.float32((values[k] + values[k + 1]) / 2))
