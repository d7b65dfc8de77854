"""Build stage: calibrate the model's operating point and store it in the artifact.

The release model (fp32, INT8 or fp16 -- whatever is written) is run with ONNX
Runtime on labelled calibration images: ``--calibrate-data DIR`` (its
``valid`` split in the data set layout, or a folder of strips with ``masks/``), by
default the ``valid`` split of the training data set named in the checkpoint.
:func:`bgsdk._operating_point.calibrate` chooses the threshold and min area.
Without defective images it falls back to a false-alarm rule on the good ones
(and says so in the metadata and the log); without any calibration image (no
valid split, nothing given) the training images -- clean by definition -- are
used the same way. Only when there is no image at all is the model written
uncalibrated, with a warning and the reason in the metadata: never a silent 0.5.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import onnx

from bgsdk._dataset_layout import labelled_split, training_images
from bgsdk._operating_point import OPERATING_POINT_KEY, RULES, OperatingPoint, calibrate
from bgsdk.errors import InputError
from bgsdk.io import read_image, read_mask

from .errors import BuildError

__all__ = ["OperatingPointOptions", "calibration_samples", "calibrate_model", "set_operating_point_metadata"]

log = logging.getLogger(__name__)

#: Calibration images are capped (each costs one model run); the first ones by name are used.
MAX_CALIBRATION_IMAGES = 200


@dataclass(frozen=True)
class OperatingPointOptions:
    """``build-model --calibrate-data/--target-recall/--max-false-alarms/--min-area``."""

    data: Path | None = None
    rule: str = "best_f1"
    target: float | None = None
    min_area: int | None = None  # None: calibrated too
    max_images: int = MAX_CALIBRATION_IMAGES

    def as_dict(self) -> dict[str, Any]:
        return {
            "data": None if self.data is None else str(self.data),
            "rule": self.rule,
            "target": self.target,
            "min_area": self.min_area,
            "max_images": self.max_images,
        }


Sample = tuple[Path, Path | None]


def calibration_samples(opts: OperatingPointOptions, train_config: Mapping[str, Any]) -> tuple[list[Sample], str]:
    """``([(image, mask or None)], description)``; an explicit ``--calibrate-data`` that is unusable is an error."""
    if opts.data is not None:
        from bgsdk.evaluate.evaluation import discover

        try:
            layout, found, _ = discover(opts.data, split="valid")
        except InputError as exc:
            raise BuildError(f"--calibrate-data: {exc}") from None
        return [(s.path, s.mask_path) for s in found][: opts.max_images], f"{opts.data} ({layout})"
    root = train_config.get("training_dataset_path")
    if not root or not Path(root).is_dir():
        return [], "no calibration data (no --calibrate-data and the training data set is not available)"
    valid = labelled_split(root, "valid")
    if valid:
        return [(s.path, s.mask_path) for s in valid][: opts.max_images], f"{root}/valid (training data set)"
    train = training_images(root)[: opts.max_images]
    return [(p, None) for p in train], f"{root}/train/good (no valid split: clean training images only)"


def _heatmaps(model_bytes: bytes, samples: list[Sample], threads: int | None) -> tuple[list[np.ndarray], list[Any]]:
    from bgsdk._session import create_session
    from bgsdk.contract import INPUT_NAME, OUTPUT_NAME, scale_input

    sess = create_session(model_bytes, threads=threads or None)
    maps: list[np.ndarray] = []
    masks: list[Any] = []
    for img_path, mask_path in samples:
        img = read_image(img_path)
        out = sess.run([OUTPUT_NAME], {INPUT_NAME: scale_input(img[None])})[0]
        maps.append(np.array(out[0, 0], copy=True))
        m = read_mask(mask_path) if mask_path is not None else None
        if m is not None and m.shape != maps[-1].shape:
            raise BuildError(
                f"{mask_path}: mask is {m.shape[0]}x{m.shape[1]}, the model's output is "
                f"{maps[-1].shape[0]}x{maps[-1].shape[1]}"
            )
        masks.append(m if m is not None and m.any() else None)
    return maps, masks


def calibrate_model(
    model_bytes: bytes,
    opts: OperatingPointOptions,
    train_config: Mapping[str, Any],
    threads: int | None = None,
    say: Callable[[str, str], None] | None = None,
) -> OperatingPoint:
    """The operating point of ``model_bytes`` on the calibration images (see the module docstring)."""
    if opts.rule not in RULES:
        raise BuildError(f"unknown operating-point rule {opts.rule!r} (one of {', '.join(RULES)})")
    samples, description = calibration_samples(opts, train_config)
    if not samples:
        note = f"uncalibrated: {description}; default threshold 0.5, min area 1"
        log.warning("operating point: %s", note)
        return OperatingPoint(
            threshold=0.5,
            min_area=opts.min_area or 1,
            calibrated=False,
            rule="default",
            note=note,
            data={"source": description, "n_images": 0, "n_defect_images": 0},
        )
    maps, masks = _heatmaps(model_bytes, samples, threads)
    data = {"source": description, "n_images": len(samples), "n_defect_images": sum(m is not None for m in masks)}
    try:
        op = calibrate(maps, masks, rule=opts.rule, target=opts.target, min_area=opts.min_area, data=data)
    except ValueError as exc:
        raise BuildError(f"operating point: {exc}") from None
    if say is not None:
        m = op.metrics
        extra = (
            f"pixel F1 {m['pixel_f1']:.3f}, defect recall {m['defect_recall']:.3f}, "
            if m.get("pixel_f1") is not None and m.get("defect_recall") is not None
            else ""
        )
        say("operating point", f"{op.summary()}; {extra}false alarms/image {m['false_alarms_per_image']:.3f}")
    return op


def set_operating_point_metadata(model: onnx.ModelProto, op: OperatingPoint) -> None:
    """Add (or replace) ``bgsdk._operating_point``; the other metadata stays as it is."""
    keep = [p for p in model.metadata_props if p.key != OPERATING_POINT_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key, entry.value = OPERATING_POINT_KEY, op.to_json()
