"""Recall and false alarms per kind of synthesised defect (data sets written by ``bgsdk synth``).

A synthetic data set lists every defect it drew in ``ROOT/annotations/<split>.json``
(kind, amplitude, box; :func:`bgsdk._dataset_layout.load_annotations`). Two kinds are
defects by the odd-die-out rule and are in the ground-truth mask (:data:`LABELLED_KINDS`:
in the target only, or missing from the target while both references show it); the
others (in one reference, in the target and one reference, in all three dies) are not,
and a good method ignores them. These numbers are what training validation and
``bgsdk evaluate`` report per kind and per amplitude band (docs/accuracy.md).

A defect counts as found (or, for a not-labelled one, flagged) when the heatmap exceeds
the threshold anywhere in its box: the same rule for both, so the rates compare.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .metrics import roc_auc

__all__ = [
    "LABELLED_KINDS",
    "WEAK_AMPLITUDE",
    "FAINT_AMPLITUDE",
    "RATE_GROUPS",
    "defect_rates",
    "image_auroc_without_faint",
]

#: The kinds in the ground-truth mask.
LABELLED_KINDS = ("target", "missing")
#: A defect is weak when its |amplitude| is at most this many grey levels; the validation's weak recall
#: and the training recipe's weak-defect weight use this one definition.
WEAK_AMPLITUDE = 40.0
#: Weak defects below this |amplitude| are *faint*: at the evaluation sets' noise level. Reported apart
#: (``recall_weak12`` = 12..40) so a weak-recall figure says whether its misses are findable.
FAINT_AMPLITUDE = 12.0

_ANY = (0.0, math.inf)
#: name -> (kinds, |amplitude| band lo..hi, both ends inclusive). ``recall_*``: share of labelled defects
#: found; ``fa_*``: share of not-labelled (reference) defects flagged.
RATE_GROUPS: dict[str, tuple[tuple[str, ...], tuple[float, float]]] = {
    "recall": (LABELLED_KINDS, _ANY),
    "recall_weak": (LABELLED_KINDS, (0.0, WEAK_AMPLITUDE)),
    "recall_weak12": (LABELLED_KINDS, (FAINT_AMPLITUDE, WEAK_AMPLITUDE)),
    "recall_strong": (LABELLED_KINDS, (math.nextafter(WEAK_AMPLITUDE, math.inf), math.inf)),
    "recall_present": (("target",), _ANY),
    "recall_missing": (("missing",), _ANY),
    "fa_one_ref": (("ref1", "ref2"), _ANY),
    "fa_target_ref": (("target_ref1", "target_ref2"), _ANY),
    "fa_all": (("all",), _ANY),
}

#: One image's annotated defects (``None``: the image has no annotation entry).
Defects = Sequence[dict[str, Any]] | None


def defect_rates(
    heatmaps: Sequence[np.ndarray], defects: Sequence[Defects], threshold: float
) -> dict[str, float | int | None]:
    """Each :data:`RATE_GROUPS` rate at ``threshold`` (``None`` where the group is empty) and its count ``n_*``."""
    peaks: list[tuple[str, float, float]] = []
    for hm, per_image in zip(heatmaps, defects):
        for d in per_image or []:
            y0, x0, y1, x1 = d["box"]
            peaks.append((d["kind"], abs(float(d["amplitude"])), float(np.max(hm[y0:y1, x0:x1]))))
    out: dict[str, float | int | None] = {}
    for name, (kinds, (lo, hi)) in RATE_GROUPS.items():
        sel = [p for k, a, p in peaks if k in kinds and lo <= a <= hi]
        out[name] = float(np.mean(np.asarray(sel) > threshold)) if sel else None
        out[f"n_{name}"] = len(sel)
    return out


def image_auroc_without_faint(
    heatmaps: Sequence[np.ndarray],
    defects: Sequence[Defects],
    defective: Sequence[bool],
    below: float = FAINT_AMPLITUDE,
) -> tuple[float | None, int]:
    """Image AUROC (strip score = heatmap maximum) over the good strips and the defective strips with a
    labelled defect of ``|a| >= below``; and how many defective strips were left out.

    Why: the evaluation sets draw labelled defects down to |a| = 8, and a defective strip whose
    only defects are that faint is outranked by a good strip's maximum; this is the image AUROC
    over the strips a findable-defect range describes, next to the full one.
    """
    labels, scores, left_out = [], [], 0
    for hm, per_image, bad in zip(heatmaps, defects, defective):
        peak = max((abs(float(d["amplitude"])) for d in per_image or [] if d["kind"] in LABELLED_KINDS), default=0.0)
        if bad and peak < below:
            left_out += 1
            continue
        labels.append(bool(bad))
        scores.append(float(np.max(hm)))
    if all(labels) or not any(labels):
        return None, left_out
    return roc_auc(np.asarray(labels), np.asarray(scores)), left_out
