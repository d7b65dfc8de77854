"""Verify a built model numerically against the PyTorch sliding-window reference.

Every build runs the ONNX model in ONNX Runtime and
:func:`bgtrain.infer.sliding_window` on the same real images, all images in one
batch (so every build also exercises N > 1 and the patch-major plumbing), and
fails if the largest absolute difference of the defect probability exceeds the
tolerance (1e-5 in fp32), or if channels 1-2 are not exactly zero.

Which images (the first that applies, reported in the output):
1. ``--verify-data DIR`` -- a data set root (its valid/, then train/ images) or a folder of images;
2. the data set the checkpoint was trained on (``train_config["training_dataset_path"]``), if it still exists;
3. synthetic strips from :func:`bgtrain.synth_dataset.make_image` (seeded), when no real images are at hand.
Given images (``--verify-data``, ``--calib-data``) of another size than the build's are an error naming the
file and both sizes; the training data set's are skipped (a build at another ``--image-size`` falls back).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from bgsdk._dataset_layout import GOOD, Sample, labelled_split, sample_image
from bgsdk.contract import INPUT_NAME, OUTPUT_NAME, scale_input
from bgsdk.errors import InputError
from bgsdk.io import list_images, read_image
from bgsdk.tiling import Tiling

from .errors import BuildError, VerificationError

__all__ = [
    "VerificationImages",
    "VerificationResult",
    "select_verification_images",
    "verify_model",
    "DEFAULT_TOLERANCE",
]

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class VerificationImages:
    images: np.ndarray  # (N,3,H,W) float32, 0..255
    source: str  # "verify-data", "training-dataset" or "synthetic"
    description: str  # human-readable: where they came from


@dataclass(frozen=True)
class VerificationResult:
    max_abs_diff: float
    tolerance: float
    n_images: int
    source: str
    description: str
    zero_channels_exact: bool

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.zero_channels_exact

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def _candidate_files(root: Path) -> list[Path | Sample]:
    """Validation images first (they are what the model is judged on), then training images, then test images,
    then a flat folder. Samples carry their references (a test image beside its template)."""
    files: list[Path | Sample] = []
    files += labelled_split(root, "valid")
    if (root / "train" / GOOD).is_dir():
        files += list_images(root / "train" / GOOD)
    files += labelled_split(root, "test")
    if not files and root.is_dir():
        files = list(list_images(root))
    return files


def read_item(item: Path | Sample) -> np.ndarray:
    """``(3,H,W)``: a layout sample with its references, or a file (a single-die clean image as all three views)."""
    return sample_image(item) if isinstance(item, Sample) else read_image(item, single="replicate")


def read_matching(
    files: list[Path | Sample], tiling: Tiling, count: int, strict: bool = False
) -> tuple[list[np.ndarray], list[Path], int]:
    """Up to ``count`` images of the tiling's size, the files they came from, and how many were skipped.

    ``strict``: an image of another size is an :class:`InputError` naming it and both sizes (images
    the user gave); else it is skipped (the training data set at another build size).
    """
    images: list[np.ndarray] = []
    used: list[Path] = []
    skipped = 0
    for f in files:
        if len(images) == count:
            break
        img = read_item(f)
        path = f.path if isinstance(f, Sample) else f
        if img.shape[1:] != (tiling.height, tiling.width):
            if strict:
                raise InputError(
                    path,
                    f"image is {img.shape[1]}x{img.shape[2]}, the model is {tiling.height}x{tiling.width} "
                    "(give images of the model's size, or build with --image-size H W)",
                )
            skipped += 1
            continue
        images.append(img)
        used.append(path)
    return images, used, skipped


def _synthetic(tiling: Tiling, count: int, seed: int) -> np.ndarray:
    from bgtrain.synth_dataset import make_image

    rng = np.random.default_rng(seed)
    return np.stack([make_image(rng, tiling.height, tiling.width, defective=True)[0][:3] for _ in range(count)])


def select_verification_images(
    tiling: Tiling,
    *,
    verify_data: str | Path | None = None,
    train_config: Mapping[str, Any] | None = None,
    count: int = 2,
    seed: int = 0,
) -> VerificationImages:
    """Pick ``count`` images of the build's size (see the module docstring for the order)."""
    if count < 1:
        raise BuildError(f"need at least one verification image, got {count}")
    size = f"{tiling.height}x{tiling.width}"
    if verify_data is not None:
        root = Path(verify_data)
        if not root.is_dir():
            raise BuildError(f"--verify-data {root}: folder not found")
        try:
            images, _, skipped = read_matching(_candidate_files(root), tiling, count, strict=True)
        except InputError as exc:
            raise BuildError(f"--verify-data: {exc}") from None
        if not images:
            raise BuildError(f"--verify-data {root}: no {size} images found ({skipped} of another size skipped)")
        return VerificationImages(np.stack(images), "verify-data", f"{len(images)} image(s) from {root}")
    dataset = (train_config or {}).get("training_dataset_path")
    if dataset and Path(dataset).is_dir():
        try:
            images, _, skipped = read_matching(_candidate_files(Path(dataset)), tiling, count)
        except InputError as exc:
            log.warning("training data set unreadable (%s); using synthetic strips", exc)
            images, skipped = [], 0
        if images:
            return VerificationImages(
                np.stack(images), "training-dataset", f"{len(images)} image(s) from the training data set {dataset}"
            )
        log.warning(
            "no %s images in the training data set %s (%d skipped); using synthetic strips", size, dataset, skipped
        )
    return VerificationImages(
        _synthetic(tiling, count, seed),
        "synthetic",
        f"{count} synthetic {size} strip(s) (bgtrain make_image, seed {seed})",
    )


def run_onnx(model_bytes: bytes, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run a full-image model in ONNX Runtime on ``x`` (N,3,H,W) already /255."""
    from bgsdk._session import create_session

    sess = create_session(model_bytes, threads=threads or None)
    return sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def verify_model(
    model_bytes: bytes,
    torch_model: torch.nn.Module,
    tiling: Tiling,
    images: VerificationImages,
    tolerance: float = DEFAULT_TOLERANCE,
    threads: int | None = None,
    raise_on_failure: bool = True,
    mode: str = "tiled",
) -> VerificationResult:
    """Compare ONNX Runtime with the model's PyTorch reference on ``images``.

    ``mode="tiled"``: :func:`bgtrain.infer.sliding_window`; ``mode="whole"``:
    :func:`bgtrain.infer.whole_image` (reflect pad, one pass, crop). Same gate for both.
    """
    from bgtrain.infer import sliding_window, whole_image

    x = scale_input(images.images)
    out = run_onnx(model_bytes, x, threads)
    n = x.shape[0]
    expected_shape = (n, 3, tiling.height, tiling.width)
    if out.shape != expected_shape:
        raise VerificationError(f"the built model returned shape {out.shape}, expected {expected_shape}")
    if mode == "whole":
        ref = whole_image(torch_model, torch.from_numpy(x)).numpy()
    else:
        ref = sliding_window(torch_model, torch.from_numpy(x), tiling).numpy()
    diff = float(np.abs(out[:, 0].astype(np.float64) - ref.astype(np.float64)).max())
    zeros = bool(np.all(out[:, 1:] == 0.0))
    result = VerificationResult(diff, tolerance, n, images.source, images.description, zeros)
    if raise_on_failure and not result.passed:
        what = (
            f"max |ONNX - PyTorch| = {diff:.3g} > {tolerance:g}"
            if diff > tolerance
            else "channels 1-2 of the output are not exactly zero"
        )
        raise VerificationError(f"verification failed on {images.description}: {what}")
    return result
