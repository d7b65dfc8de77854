"""Build stage: calibrate the model's operating point and store it in the artifact.

The release model (fp32, INT8 or fp16 -- whatever is written) is run with ONNX
Runtime on labelled calibration images: ``--calibrate-data DIR`` (its
``valid`` split in the data set layout, or a folder of strips with ``masks/``), by
default the ``valid`` split of the training data set named in the checkpoint.
:func:`bgsdk._operating_point.calibrate` chooses the threshold and min area.
Without defective images it falls back to a false-alarm rule on the good ones
(and says so in the metadata and the log); without any calibration image (no
valid split, nothing given) the training images -- clean by definition -- are
used the same way (seen in training, so said in the log; a single-die golden
template gets the training recipe's imaging nuisances first, :func:`_clean_views`).
Only when there is no image at all is the model written
uncalibrated, with a warning and the reason in the metadata: never a silent 0.5.
Clean-only calibration (rule ``fallback_false_alarms``) sets the lowest threshold
with at most ``--max-false-alarms`` (default 0) false-alarm components per image.
Box-annotated calibration images are scored against their filled boxes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import onnx

from bgsdk._dataset_layout import GOOD, Sample, labelled_split, sample_image, sample_mask, training_images
from bgsdk._operating_point import OPERATING_POINT_KEY, RULES, OperatingPoint, calibrate
from bgsdk.errors import InputError
from bgsdk.io import read_image

from .errors import BuildError

__all__ = ["OperatingPointOptions", "calibration_samples", "calibrate_model", "set_operating_point_metadata"]

log = logging.getLogger(__name__)

#: Calibration images are capped (each costs one model run); the first ones by name are used.
MAX_CALIBRATION_IMAGES = 200
#: The ``kind`` of a calibration sample that is a clean training image.
TRAIN_KIND = "train"


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


def calibration_samples(opts: OperatingPointOptions, train_config: Mapping[str, Any]) -> tuple[list[Any], str]:
    """``(samples, description)``: images with their annotations (:class:`bgsdk._dataset_layout.Sample`-like);
    an explicit ``--calibrate-data`` that is unusable is an error. A data set root without a valid split
    (only clean images, e.g. golden templates) calibrates on its clean training images, as the training
    data set does."""
    if opts.data is not None:
        root = Path(opts.data)
        if not (root / "valid").is_dir() and (root / "train" / GOOD).is_dir():
            return _root_samples(root, opts.max_images, "data set")
        from bgsdk.evaluate.evaluation import discover

        try:
            layout, found, _ = discover(opts.data, split="valid")
        except InputError as exc:
            raise BuildError(f"--calibrate-data: {exc}") from None
        return list(found[: opts.max_images]), f"{opts.data} ({layout})"
    trained_on = train_config.get("training_dataset_path")
    if not trained_on or not Path(trained_on).is_dir():
        return [], "no calibration data (no --calibrate-data and the training data set is not available)"
    return _root_samples(Path(trained_on), opts.max_images, "training data set")


def _root_samples(root: Path, max_images: int, what: str) -> tuple[list[Any], str]:
    """A data set root's valid split, else its clean training images (said in the description)."""
    try:
        valid = labelled_split(root, "valid")
    except InputError as exc:
        raise BuildError(f"operating point: {what} {root}: {exc}") from None
    if valid:
        return valid[:max_images], f"{root}/valid ({what})"
    train = training_images(root)[:max_images]
    note = "no valid split: clean images only"
    if what == "training data set":
        note += ", seen in training (new images may give more false alarms)"
    return [Sample(p, False, None, kind=TRAIN_KIND) for p in train], f"{root}/train/good ({note})"


def _clean_views(img: np.ndarray, recipe: Mapping[str, Any] | None, index: int) -> np.ndarray | None:
    """A single-die template (all three views equal) with the training recipe's imaging nuisances on each die.

    Identical views give a near-zero heatmap, and a threshold calibrated on them would flag
    every real image; with the nuisances the model was trained to ignore (misregistration,
    gain, noise, ...) the views differ as in training. None: the recipe has none (seed).
    """
    try:
        from bgtrain.recipe import Recipe, RecipeError
        from bgtrain.synth import apply_nuisances

        r = Recipe.from_dict({**dict(recipe or {}), "nuisance_prob": 1.0}, source="checkpoint recipe")
    except (ImportError, RecipeError, TypeError, ValueError):
        return None
    out = apply_nuisances(img.copy(), np.random.default_rng([0, index]), r)
    return None if np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2]) else out


def _read_sample(s: Any, recipe: Mapping[str, Any] | None, index: int) -> tuple[np.ndarray, bool]:
    """``(image, nuisances added)``; a clean training image may be a single-die template (see _clean_views)."""

    if s.kind != TRAIN_KIND:
        return sample_image(s), False
    img = read_image(s.path, single="replicate")
    if np.array_equal(img[0], img[1]) and np.array_equal(img[0], img[2]):
        views = _clean_views(img, recipe, index)
        if views is None:
            raise BuildError(
                f"{s.path}: a single-die template (target = both references) and a recipe without imaging "
                "nuisances: no calibration possible; give --calibrate-data with (test, template) images"
            )
        return views, True
    return img, False


def _heatmaps(
    model_bytes: bytes, samples: list[Any], threads: int | None, recipe: Mapping[str, Any] | None = None
) -> tuple[list[np.ndarray], list[Any], int]:
    """Each sample's heatmap from the model and its mask (None: no defect), sizes checked first; and how many
    single-die templates got the recipe's nuisances."""
    from bgsdk._session import create_session
    from bgsdk.contract import INPUT_NAME, OUTPUT_NAME, scale_input

    sess = create_session(model_bytes, threads=threads or None)
    size = tuple(sess.get_inputs()[0].shape[2:])
    maps: list[np.ndarray] = []
    masks: list[Any] = []
    n_views = 0
    for k, s in enumerate(samples):
        try:
            img, added = _read_sample(s, recipe, k)
            m = sample_mask(s, img.shape[1:])
        except InputError as exc:
            raise BuildError(f"operating point: {exc}") from None
        n_views += added
        if all(isinstance(v, int) for v in size) and img.shape[1:] != size:
            raise BuildError(
                f"{s.path}: calibration image is {img.shape[1]}x{img.shape[2]}, the model is {size[0]}x{size[1]} "
                "(calibrate on images of the model's size, or build with --image-size)"
            )
        out = sess.run([OUTPUT_NAME], {INPUT_NAME: scale_input(img[None])})[0]
        maps.append(np.array(out[0, 0], copy=True))
        masks.append(m if m is not None and m.any() else None)
    return maps, masks, n_views


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
    maps, masks, n_views = _heatmaps(model_bytes, samples, threads, train_config.get("recipe"))
    if n_views:
        description += f"; {n_views} single-die template(s) given the training recipe's imaging nuisances"
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
