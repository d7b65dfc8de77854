"""Calibration data for INT8 builds: real images of the build's size, cut into the deployed patches.

Real images only (``--calib-data`` or the checkpoint's training data set): a synthetic
stand-in would calibrate the activation ranges to the wrong statistics without anybody
noticing, so no images is an error. :func:`calibration_patches` cuts every patch the
deployed graph cuts and, by default, passes each through the training synthesiser, so the
ranges also see defects (docs/design.md, "INT8 quantization").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from bgsdk.contract import PATCH_INPUT_NAME, scale_input
from bgsdk.errors import InputError
from bgsdk.io import list_images
from bgsdk.tiling import Tiling

from .errors import BuildError
from .verify import read_matching

__all__ = [
    "CalibrationSet",
    "PatchCalibrationReader",
    "select_calibration_images",
    "calibration_patches",
    "calibration_strips",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationSet:
    images: np.ndarray  # (N,3,H,W) float32, 0..255
    files: list[str]
    source: str  # "calib-data" or "training-dataset"
    description: str


def _calib_files(root: Path) -> list[Any]:
    """A data set root's ``train/good`` images, else the images directly in ``root``."""
    from bgsdk._dataset_layout import GOOD

    sub = root / "train" / GOOD
    return list(list_images(sub) if sub.is_dir() else list_images(root))


def select_calibration_images(
    tiling: Tiling,
    *,
    calib_data: str | Path | None,
    train_config: Mapping[str, Any] | None,
    count: int,
    whole: bool = False,
) -> CalibrationSet:
    """The first ``count`` images of the build's size from ``calib_data`` or the training set (each cut
    into the tiling's patches, or, ``whole``, used as whole strips).

    Real images only: a synthetic stand-in would calibrate the ranges to the
    wrong statistics without anybody noticing, so no images is an error.
    """
    size = f"{tiling.height}x{tiling.width}"
    if calib_data is not None:
        root, source, flag = Path(calib_data), "calib-data", f"--calib-data {calib_data}"
        if not root.is_dir():
            raise BuildError(f"{flag}: folder not found")
    else:
        dataset = (train_config or {}).get("training_dataset_path")
        if not dataset or not Path(dataset).is_dir():
            where = f" ({dataset} no longer exists)" if dataset else ""
            raise BuildError(
                f"--quantize needs real calibration images: the checkpoint's training data set is not available{where}; "
                "pass --calib-data DIR (a data set root or a folder of images)"
            )
        root, source, flag = Path(dataset), "training-dataset", f"training data set {dataset}"
    try:
        files = _calib_files(root)
        images, used_paths, skipped = read_matching(files, tiling, count, strict=source == "calib-data")
        used = [str(f) for f in used_paths]
    except InputError as exc:
        raise BuildError(f"{flag}: {exc}") from None
    if not images:
        raise BuildError(f"{flag}: no {size} calibration images found in {root} ({skipped} of another size skipped)")
    if len(images) < count:
        log.warning("only %d calibration image(s) of %s in %s (asked for %d)", len(images), size, root, count)
    unit = "whole strip(s)" if whole else f"image(s) x {tiling.num_patches} patches"
    desc = f"{len(images)} {unit} from {flag}"
    return CalibrationSet(np.stack(images).astype(np.float32), used, source, desc)


def calibration_patches(images: np.ndarray, tiling: Tiling, synth_seed: int | None = 0) -> np.ndarray:
    """``(N*T,3,P,P)`` float32 = pixels/255: every patch the deployed graph cuts, image by image.

    ``synth_seed`` (default): each patch goes through the training synthesiser
    (:func:`bgtrain.synth.synthesize`, seeded per patch), i.e. exactly the input
    distribution the model was trained on. Training images are clean, so without
    this the ranges never see a defect: measured on a model whose activations
    grow with the defect amplitude, MinMax ranges from clean patches clipped the
    defect responses and cost 0.08 pixel AP; with synthesised defects the drop was
    within the gate. ``None``: the clean patches as they are.
    """
    crops = []
    for n in range(images.shape[0]):
        for t, p in enumerate(tiling.patches()):
            crop = images[n, :, p.row.start : p.row.stop, p.col.start : p.col.stop].astype(np.float32)
            if synth_seed is not None:
                from bgtrain.synth import synthesize

                rng = np.random.default_rng([synth_seed, n, t])
                crop = synthesize(crop.copy(), rng).image
            crops.append(crop)
    return np.ascontiguousarray(scale_input(np.stack(crops)), dtype=np.float32)


def calibration_strips(images: np.ndarray, tiling: Tiling, synth_seed: int | None = 0) -> np.ndarray:
    """``(N,3,H,W)`` float32 = pixels/255: what the whole-strip network sees.

    The whole-mode counterpart of :func:`calibration_patches`. The training
    synthesiser plans its defects per patch, so it is applied block by block
    (a grid of ``tiling.patch`` blocks, seeded per block): the strip then carries
    the training defect density. Synthesising once over the whole strip gave a
    handful of defects per strip, MinMax ranges that clipped the defect responses,
    and a 0.08 pixel AP drop on the test model.
    """
    _, _, h, w = images.shape
    P = tiling.patch
    strips = []
    for n in range(images.shape[0]):
        img = images[n].astype(np.float32).copy()
        if synth_seed is not None:
            from bgtrain.synth import synthesize

            for by, y in enumerate(range(0, h, P)):
                for bx, x in enumerate(range(0, w, P)):
                    rng = np.random.default_rng([synth_seed, n, by, bx])
                    img[:, y : y + P, x : x + P] = synthesize(img[:, y : y + P, x : x + P].copy(), rng).image
        strips.append(img)
    return np.ascontiguousarray(scale_input(np.stack(strips)), dtype=np.float32)


def _reader_class() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, patches: np.ndarray, batch: int) -> None:
            self.patches, self.batch = patches, batch
            self.rewind()

        def _batches(self) -> Iterator[dict[str, np.ndarray]]:
            for i in range(0, len(self.patches), self.batch):
                yield {PATCH_INPUT_NAME: self.patches[i : i + self.batch]}

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = self._batches()

    return _Reader


def PatchCalibrationReader(patches: np.ndarray, batch: int = 6) -> Any:  # noqa: N802 - a class factory
    """An ``onnxruntime.quantization.CalibrationDataReader`` over patch batches (import deferred)."""
    return _reader_class()(patches, batch)
