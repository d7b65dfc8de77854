"""Validation on full images, tiled and stitched exactly as the deployed graph does.

Patch-level numbers would flatter the model (no borders, no stitching); the
product runs on whole strips, so validation does too. The classical
double-detection baseline is scored on the same images so every report says
whether the model earns its keep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from bgsdk._dataset_layout import Sample, labelled_split, load_annotations, sample_image, sample_mask
from bgsdk.contract import scale_input
from bgsdk.errors import InputError
from bgsdk.evaluate import defect_kinds
from bgsdk.evaluate.defect_kinds import FAINT_AMPLITUDE, RATE_GROUPS, WEAK_AMPLITUDE
from bgsdk.evaluate.metrics import SegMetrics, best_f1_threshold, double_detection, evaluate
from bgsdk.tiling import Tiling

from .infer import sliding_window, whole_image

__all__ = [
    "EvalImage",
    "EvalSet",
    "load_eval_set",
    "validate",
    "baseline",
    "metrics_dict",
    "score_maps",
    "image_auroc_without_faint",
    "defect_rates",
    "WEAK_AMPLITUDE",
    "FAINT_AMPLITUDE",
    "RATE_GROUPS",
]


@dataclass(frozen=True)
class EvalImage:
    sample: Sample
    image: np.ndarray  # (3,H,W) float32 0..255
    mask: np.ndarray | None  # (H,W) bool
    defects: list[dict[str, Any]] | None = None  # synth-dataset annotations (kind, amplitude, box)


@dataclass(frozen=True)
class EvalSet:
    split: str
    images: list[EvalImage]
    annotated: bool = field(default=False)

    def __len__(self) -> int:
        return len(self.images)


def load_eval_set(
    root: str | Path, split: str | None = None, image_size: tuple[int, int] | None = None
) -> EvalSet | None:
    """``valid`` if present, else ``test``; None if neither has images.

    ``image_size``: the size validation tiles for; an image of another size is an
    :class:`InputError` naming it and both sizes (validation runs on full images).
    Box-annotated images are scored against their filled boxes.
    """
    for name in [split] if split else ["valid", "test"]:
        samples = labelled_split(root, name)
        if samples:
            ann = load_annotations(root, name)
            imgs = []
            for s in samples:
                img = sample_image(s)
                if image_size is not None and img.shape[1:] != tuple(image_size):
                    raise InputError(
                        s.path,
                        f"validation image is {img.shape[1]}x{img.shape[2]}, the training images are "
                        f"{image_size[0]}x{image_size[1]}: validation runs on full images of the training size",
                    )
                mask = sample_mask(s, img.shape[1:])
                imgs.append(EvalImage(s, img, mask, None if ann is None else ann.get(s.path.stem, [])))
            return EvalSet(name, imgs, annotated=ann is not None)
    return None


def heatmaps(
    model: nn.Module, eval_set: EvalSet, tiling: Tiling, device: torch.device, batch: int = 4, mode: str = "tiled"
) -> list[np.ndarray]:
    """Heatmaps of the deployed computation: ``tiled`` (the default build) or ``whole`` (``--mode whole``)."""
    if mode not in ("tiled", "whole"):
        raise ValueError(f"mode must be 'tiled' or 'whole', got {mode!r}")
    out: list[np.ndarray] = []
    for i in range(0, len(eval_set), batch):
        chunk = eval_set.images[i : i + batch]
        x = torch.from_numpy(scale_input(np.stack([e.image for e in chunk]))).to(device)
        hm = sliding_window(model, x, tiling) if mode == "tiled" else whole_image(model, x, tiling)
        out += list(hm.cpu().numpy())
    return out


def defect_rates(heatmaps: Sequence[np.ndarray], eval_set: EvalSet, threshold: float) -> dict[str, float | int | None]:
    """Recall and false-alarm rates per defect kind (``RATE_GROUPS``) at ``threshold``: the SDK's
    :func:`bgsdk.evaluate.defect_kinds.defect_rates`, which ``bgsdk evaluate`` reports too."""
    return defect_kinds.defect_rates(heatmaps, [e.defects for e in eval_set.images], threshold)


def image_auroc_without_faint(
    heatmaps: Sequence[np.ndarray], eval_set: EvalSet, below: float = FAINT_AMPLITUDE
) -> tuple[float | None, int]:
    """Image AUROC without the strips whose labelled defects are all fainter than ``below``
    (:func:`bgsdk.evaluate.defect_kinds.image_auroc_without_faint`)."""
    images = eval_set.images
    return defect_kinds.image_auroc_without_faint(
        heatmaps, [e.defects for e in images], [e.sample.defective for e in images], below
    )


def score_maps(heatmaps: Sequence[np.ndarray], eval_set: EvalSet) -> dict[str, float | int | None]:
    """Pixel AP/AUROC, image AUROC and, on annotated sets, per-kind rates at the best-F1 threshold and the
    image AUROC without the strips whose labelled defects are all faint (``image_auroc12``)."""
    masks = [e.mask for e in eval_set.images]
    out = metrics_dict(evaluate(heatmaps, masks, [e.sample.defective for e in eval_set.images]))
    if eval_set.annotated and any(m is not None and m.any() for m in masks):
        point = best_f1_threshold(heatmaps, masks)
        out.update(best_f1=point.f1, best_f1_threshold=point.threshold)
        out.update(defect_rates(heatmaps, eval_set, point.threshold))
        out["image_auroc12"], out["n_faint_only"] = image_auroc_without_faint(heatmaps, eval_set)
    return out


def validate(
    model: nn.Module, eval_set: EvalSet, tiling: Tiling, device: torch.device, whole: bool = True
) -> dict[str, float | int | None]:
    """The deployed model's numbers on ``eval_set`` (see :func:`score_maps`): tiled, and with
    ``whole`` also the whole-strip mode's as ``whole_*`` keys, so the build mode is chosen with numbers."""
    out = score_maps(heatmaps(model, eval_set, tiling, device), eval_set)
    if whole:
        out.update(
            metrics_dict(score_maps(heatmaps(model, eval_set, tiling, device, mode="whole"), eval_set), "whole_")
        )
    return out


def baseline(eval_set: EvalSet) -> dict[str, float | int | None]:
    """Double detection min(|T-R1|,|T-R2|)/255 scored like the model."""
    return score_maps([scale_input(double_detection(e.image)) for e in eval_set.images], eval_set)


def metrics_dict(m: SegMetrics | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    items = asdict(m).items() if isinstance(m, SegMetrics) else m.items()
    return {f"{prefix}{k}": v for k, v in items}
