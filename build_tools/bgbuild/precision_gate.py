"""The release gate for reduced-precision models (INT8, fp16): compare with the fp32 model, pass or fail.

One gate for every reduced precision; only the label ("INT8", "fp16") and the limits
differ. The fp32 (reference) and reduced-precision (candidate) full-image models run in
ONNX Runtime on held images; max and mean |diff| of the heatmap, and pixel AP / image
AUROC of both when the images have masks. The build fails -- and writes nothing -- if the
pixel AP drops by more than ``max_ap_drop`` or the mean |diff| exceeds ``max_mean_diff``.
Without labelled images only the diff gate applies (reported as such).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bgsdk.contract import INPUT_NAME, OUTPUT_NAME, scale_input
from bgsdk.errors import InputError
from bgsdk.tiling import Tiling

from .errors import BuildError, VerificationError

__all__ = [
    "DEFAULT_MAX_AP_DROP",
    "DEFAULT_MAX_MEAN_DIFF",
    "GateOptions",
    "EvalImages",
    "PrecisionVerification",
    "select_eval_images",
    "compare_models",
]

DEFAULT_MAX_AP_DROP = 0.02
# Mean |INT8 - fp32| of the probability over all pixels. Heatmaps are ~0 almost
# everywhere, so a sound INT8 model stays far below this (~1e-3 measured); a
# broken calibration (all-zero images) lands at ~0.1-0.5. fp16 sets a tighter one.
DEFAULT_MAX_MEAN_DIFF = 0.01


@dataclass(frozen=True)
class GateOptions:
    """The gate's limits and how many held images it uses; QuantizeOptions and Fp16Options extend it."""

    max_ap_drop: float = DEFAULT_MAX_AP_DROP
    max_mean_diff: float = DEFAULT_MAX_MEAN_DIFF
    verify_count: int = 16  # at most this many held images for the check

    def check_gate(self, label: str) -> None:
        if not 0.0 <= self.max_ap_drop <= 1.0:
            raise BuildError(f"--max-ap-drop must be in [0, 1], got {self.max_ap_drop}")
        if self.max_mean_diff < 0.0:
            raise BuildError(f"--max-mean-diff must be >= 0, got {self.max_mean_diff}")
        if self.verify_count < 1:
            raise BuildError(f"need at least one {label} verification image")


@dataclass(frozen=True)
class EvalImages:
    images: np.ndarray  # (N,3,H,W) float32 0..255
    masks: list[np.ndarray | None] | None  # None: unlabelled
    defective: list[bool] | None
    source: str
    description: str

    @property
    def labelled(self) -> bool:
        return self.masks is not None


def _labelled(root: Path, tiling: Tiling, count: int) -> EvalImages | None:
    from bgsdk._dataset_layout import labelled_split, sample_image, sample_mask

    for split in ("valid", "test"):
        samples = [s for s in labelled_split(root, split)]
        if not samples:
            continue
        # Keep both classes when capping: good and defective images interleaved.
        bad = [s for s in samples if s.defective]
        good = [s for s in samples if not s.defective]
        picked = bad[:0]  # same element type, empty
        while len(picked) < count and (bad or good):
            for pool in (bad, good):
                if pool and len(picked) < count:
                    picked.append(pool.pop(0))
        imgs, masks, labels = [], [], []
        for s in picked:
            img = sample_image(s)  # a test image with its template(s), if they are separate files
            if img.shape[1:] != (tiling.height, tiling.width):
                continue
            imgs.append(img)
            masks.append(sample_mask(s, img.shape[1:]))  # box-annotated: the filled boxes
            labels.append(s.defective)
        if imgs and any(labels):
            desc = f"{len(imgs)} labelled {split}/ image(s) ({sum(labels)} with defects) from {root}"
            return EvalImages(np.stack(imgs).astype(np.float32), masks, labels, split, desc)
    return None


def select_eval_images(
    tiling: Tiling,
    *,
    verify_data: str | Path | None,
    train_config: Mapping[str, Any] | None,
    count: int,
    fallback: np.ndarray,
    fallback_description: str,
    label: str,
) -> EvalImages:
    """Labelled held images (valid/, else test/ with masks) of ``verify_data`` or the training set.

    Without any, ``fallback`` (the fp32 verification images) is used unlabelled:
    the gate then checks the heatmap difference only.
    """
    roots = [Path(verify_data)] if verify_data is not None else []
    dataset = (train_config or {}).get("training_dataset_path")
    if verify_data is None and dataset:
        roots.append(Path(dataset))
    for root in roots:
        if not root.is_dir():
            continue
        try:
            found = _labelled(root, tiling, count)
        except InputError as exc:
            raise BuildError(f"{label} verification images: {exc}") from None
        if found is not None:
            return found
    return EvalImages(
        fallback.astype(np.float32),
        None,
        None,
        "unlabelled",
        f"{len(fallback)} unlabelled image(s) ({fallback_description}); no masks: heatmap-difference gate only",
    )


@dataclass(frozen=True)
class PrecisionVerification:
    """A reduced-precision model (INT8, fp16) vs fp32 on the same images; ``passed`` is the release gate.

    One class for both builds: the rule is the same, only ``label`` differs. ``as_dict`` writes
    label-prefixed keys (``int8_pixel_ap``, ``fp16_pixel_ap``) for the manifest and metadata.
    """

    label: str
    max_abs_diff: float
    mean_abs_diff: float
    n_images: int
    source: str
    description: str
    labelled: bool
    fp32_pixel_ap: float | None = None
    pixel_ap: float | None = None
    fp32_image_auroc: float | None = None
    image_auroc: float | None = None
    max_ap_drop: float = DEFAULT_MAX_AP_DROP
    max_mean_diff: float = DEFAULT_MAX_MEAN_DIFF
    zero_channels_exact: bool = True
    fp32_seconds: float = 0.0
    seconds: float = 0.0
    device: str = "CPUExecutionProvider"
    failures: list[str] = field(default_factory=list)

    @property
    def ap_drop(self) -> float | None:
        if self.fp32_pixel_ap is None or self.pixel_ap is None:
            return None
        return self.fp32_pixel_ap - self.pixel_ap

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        prefix = self.label.lower()
        renamed = {
            "pixel_ap": f"{prefix}_pixel_ap",
            "image_auroc": f"{prefix}_image_auroc",
            "seconds": f"{prefix}_seconds",
        }
        d = {renamed.get(k, k): v for k, v in asdict(self).items() if k != "label"}
        d["ap_drop"] = self.ap_drop
        d["passed"] = self.passed
        d["gate"] = (
            f"pixel AP drop <= {self.max_ap_drop:g} and mean |diff| <= {self.max_mean_diff:g}"
            if self.labelled
            else f"mean |diff| <= {self.max_mean_diff:g} (no labelled images: AP not checked)"
        )
        return d

    def summary(self) -> str:
        s = f"max |{self.label} - fp32| {self.max_abs_diff:.3g}, mean {self.mean_abs_diff:.3g}"
        if self.labelled and self.ap_drop is not None:
            s += f"; pixel AP {self.fp32_pixel_ap:.4f} -> {self.pixel_ap:.4f} (drop {self.ap_drop:+.4f}, limit {self.max_ap_drop:g})"
            if self.fp32_image_auroc is not None and self.image_auroc is not None:
                s += f"; image AUROC {self.fp32_image_auroc:.4f} -> {self.image_auroc:.4f}"
        else:
            s += " (no labelled images: AP not checked)"
        return s + f" on {self.description}"


def _run(model_bytes: bytes, x: np.ndarray, threads: int | None) -> tuple[np.ndarray, float]:
    from bgsdk._session import create_session

    sess = create_session(model_bytes, threads=threads or None)
    outs, t0 = [], time.perf_counter()
    for i in range(0, len(x), 2):  # two images per call: bounded memory, still exercises N > 1
        outs.append(sess.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + 2]})[0])
    return np.concatenate(outs), time.perf_counter() - t0


def _compare_accuracy(
    ref: np.ndarray, out: np.ndarray, images: EvalImages, max_ap_drop: float, failures: list[str]
) -> dict[str, Any]:
    """Pixel AP and image AUROC of both models on labelled ``images``; an AP drop above ``max_ap_drop`` is
    appended to ``failures``. Returns the four numbers as :class:`PrecisionVerification` fields."""
    from bgsdk.evaluate.metrics import evaluate

    assert images.masks is not None and images.defective is not None
    m32 = evaluate(list(ref[:, 0]), images.masks, images.defective)
    mc = evaluate(list(np.nan_to_num(out[:, 0])), images.masks, images.defective)
    if m32.pixel_ap is not None and mc.pixel_ap is not None and m32.pixel_ap - mc.pixel_ap > max_ap_drop:
        failures.append(
            f"pixel AP dropped by {m32.pixel_ap - mc.pixel_ap:.4f} ({m32.pixel_ap:.4f} -> {mc.pixel_ap:.4f}) > {max_ap_drop:g}"
        )
    return dict(
        fp32_pixel_ap=m32.pixel_ap, pixel_ap=mc.pixel_ap, fp32_image_auroc=m32.image_auroc, image_auroc=mc.image_auroc
    )


def compare_models(
    reference_bytes: bytes,
    candidate_bytes: bytes,
    images: EvalImages,
    *,
    label: str,
    gate: GateOptions,
    threads: int | None = None,
    raise_on_failure: bool = True,
    hint: str = "",
) -> PrecisionVerification:
    """Run the fp32 (reference) and reduced-precision (candidate) full-image models on ``images``;
    compare heatmaps and, with masks, AP/AUROC.

    ``label`` names the candidate in messages (``INT8``, ``fp16``); ``gate`` holds the limits;
    ``hint`` is appended to the failure message (what the user can change).
    """
    max_ap_drop, max_mean_diff = gate.max_ap_drop, gate.max_mean_diff
    x = scale_input(images.images)
    ref, t_ref = _run(reference_bytes, x, threads)
    out, t_out = _run(candidate_bytes, x, threads)
    if out.shape != ref.shape:
        raise VerificationError(f"the {label} model returned shape {out.shape}, the fp32 model {ref.shape}")
    diff = np.abs(out[:, 0].astype(np.float64) - ref[:, 0].astype(np.float64))
    zeros = bool(np.all(out[:, 1:] == 0.0))
    failures: list[str] = []
    if not np.isfinite(out).all():
        failures.append(f"the {label} heatmap contains NaN or Inf")
        diff = np.nan_to_num(diff, nan=1.0, posinf=1.0)
    kw = _compare_accuracy(ref, out, images, max_ap_drop, failures) if images.labelled else {}
    mean = float(diff.mean())
    if mean > max_mean_diff:
        failures.append(f"mean |{label} - fp32| = {mean:.3g} > {max_mean_diff:g}")
    if not zeros:
        failures.append(f"channels 1-2 of the {label} output are not exactly zero")
    result = PrecisionVerification(
        label=label,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=mean,
        n_images=len(x),
        source=images.source,
        description=images.description,
        labelled=images.labelled,
        max_ap_drop=max_ap_drop,
        max_mean_diff=max_mean_diff,
        zero_channels_exact=zeros,
        fp32_seconds=t_ref,
        seconds=t_out,
        failures=failures,
        **kw,
    )
    if raise_on_failure and failures:
        raise VerificationError(
            f"{label} verification failed on {images.description}: {'; '.join(failures)} -- no model written"
            + (f" ({hint})" if hint else "")
        )
    return result
