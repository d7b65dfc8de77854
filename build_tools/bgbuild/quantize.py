"""INT8 release models: static QDQ quantization of the patch model, then a verification gate.

What is quantized, and why this way (docs/design.md, "INT8 quantization"):

* The **patch model** is quantized, not the composed full-image graph. Calibration
  feeds it the tiling's patches of real training images (the same patches the
  deployed graph cuts), and the quantized patch model is then composed exactly
  like the fp32 one. Softmax, the defect-channel slice, the centre crops, the
  stitching Concats and the zero-channel Pad therefore stay float *by
  construction*: quantizing them only adds error (a quantized Softmax turns
  small probabilities into 0), and they cost < 1% of the time.
* ONNX Runtime static quantization, QDQ format, per-channel symmetric int8
  weights, after ``quant_pre_process``. Activations are **uint8** by default
  (U8S8), not int8: measured on this AVX-512 VNNI CPU (benchmarks/bench_int8.py)
  S8S8 left the second Conv of encoder blocks 0-4 in float. Their ReLU output
  feeds both the MaxPool and the skip Concat, so its QuantizeLinear has two
  consumers, and ONNX Runtime's x86 rewrite of int8 Q/DQ pairs to uint8 (the
  x86 kernels are U8S8) skips such a pair -- the Conv is left with mismatched
  input/output types and runs in float (~1.5x total speed-up instead of ~3x).
  uint8 activations need no rewrite; for post-ReLU tensors (>= 0) they have the
  same 256 levels, so accuracy is the same. ``activation_type="int8"`` keeps S8S8
  available (e.g. for accelerators that want it).
* The logits (head Conv output) stay float too (:func:`float_logits`): the
  Softmax gets exact logits, not 256 levels of them.
* The bilinear ``Resize`` (align_corners) stays float between a DequantizeLinear
  and a QuantizeLinear (onnxruntime issue 21319: some versions mishandled Q/DQ
  around linear Resize); the tests check the INT8 output against fp32.

Verification (:func:`compare_models`): fp32 and INT8 full-image models run in
ONNX Runtime on held images; max and mean |diff| of the heatmap, and pixel AP /
image AUROC of both when the images have masks. The build fails -- and writes
nothing -- if the pixel AP drops by more than ``max_ap_drop`` or the mean
|diff| exceeds ``max_mean_diff``. Without labelled images only the diff gate
applies (reported as such).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import onnx

from bgsdk.errors import InputError
from bgsdk.io import list_images, read_image
from bgsdk.tiling import Tiling

from .errors import BuildError, VerificationError
from .export import op_counts
from .verify import read_matching

__all__ = [
    "CALIBRATION_METHODS",
    "AUTO_CALIBRATION_ORDER",
    "ACTIVATION_TYPES",
    "QuantizeOptions",
    "CalibrationSet",
    "PatchCalibrationReader",
    "QuantizedPatchModel",
    "EvalImages",
    "PrecisionVerification",
    "select_calibration_images",
    "calibration_patches",
    "calibration_strips",
    "quantize_patch_model",
    "select_eval_images",
    "compare_models",
]

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("auto", "minmax", "entropy", "percentile")
# --calib-method auto: tried in this order, the first that passes the AP gate is kept. MinMax first: it is
# the cheapest (per-tensor ReduceMin/Max) and usually passes; Percentile and Entropy keep whole activation
# tensors (memory!) and are only tried when MinMax's ranges cost too much AP.
AUTO_CALIBRATION_ORDER = ("minmax", "percentile", "entropy")
ACTIVATION_TYPES = ("uint8", "int8")
DEFAULT_MAX_AP_DROP = 0.02
# Mean |INT8 - fp32| of the probability over all pixels. Heatmaps are ~0 almost
# everywhere, so a sound INT8 model stays far below this (~1e-3 measured); a
# broken calibration (all-zero images) lands at ~0.1-0.5.
DEFAULT_MAX_MEAN_DIFF = 0.01


@dataclass(frozen=True)
class QuantizeOptions:
    """``build-model --quantize`` settings; defaults are the release settings."""

    calib_data: Path | None = None  # None: the checkpoint's training data set (train/good)
    calib_count: int = 8  # images; x18 patches for a strip
    calib_method: str = "auto"  # or one of AUTO_CALIBRATION_ORDER
    calib_synth_defects: bool = True  # add the training synthesiser's defects to the calibration patches
    activation_type: str = "uint8"
    per_channel: bool = True
    calib_batch: int = 6  # patches per calibration run
    max_ap_drop: float = DEFAULT_MAX_AP_DROP
    max_mean_diff: float = DEFAULT_MAX_MEAN_DIFF
    verify_count: int = 16  # at most this many held images for the INT8 check

    def check(self) -> None:
        if self.calib_method not in CALIBRATION_METHODS:
            raise BuildError(f"--calib-method {self.calib_method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
        if self.activation_type not in ACTIVATION_TYPES:
            raise BuildError(f"--quant-activations {self.activation_type!r}: choose one of {', '.join(ACTIVATION_TYPES)}")
        if self.calib_count < 1:
            raise BuildError(f"--calib-count must be >= 1, got {self.calib_count}")
        if self.calib_batch < 1:
            raise BuildError(f"calibration batch must be >= 1, got {self.calib_batch}")
        if not 0.0 <= self.max_ap_drop <= 1.0:
            raise BuildError(f"--max-ap-drop must be in [0, 1], got {self.max_ap_drop}")
        if self.max_mean_diff < 0.0:
            raise BuildError(f"--max-mean-diff must be >= 0, got {self.max_mean_diff}")
        if self.verify_count < 1:
            raise BuildError("need at least one INT8 verification image")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calib_data"] = str(self.calib_data) if self.calib_data is not None else None
        return d


# ----------------------------------------------------------------------------- calibration data


@dataclass(frozen=True)
class CalibrationSet:
    images: np.ndarray  # (N,3,H,W) float32, 0..255
    files: list[str]
    source: str  # "calib-data" or "training-dataset"
    description: str


def _calib_files(root: Path) -> list[Path]:
    """A data set root's ``train/good`` images, else the images directly in ``root``."""
    from bgtrain.layout import GOOD

    sub = root / "train" / GOOD
    return list_images(sub) if sub.is_dir() else list_images(root)


def select_calibration_images(
    tiling: Tiling,
    *,
    calib_data: str | Path | None,
    train_config: Mapping[str, Any] | None,
    count: int,
) -> CalibrationSet:
    """The first ``count`` images of the build's size from ``calib_data`` or the training set.

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
        images, used_paths, skipped = read_matching(files, tiling, count)
        used = [str(f) for f in used_paths]
    except InputError as exc:
        raise BuildError(f"{flag}: {exc}") from None
    if not images:
        raise BuildError(f"{flag}: no {size} calibration images found in {root} ({skipped} of another size skipped)")
    if len(images) < count:
        log.warning("only %d calibration image(s) of %s in %s (asked for %d)", len(images), size, root, count)
    desc = f"{len(images)} image(s) x {tiling.num_patches} patches from {flag}"
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
    x = np.stack(crops).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x, dtype=np.float32)


def calibration_strips(images: np.ndarray, tiling: Tiling, synth_seed: int | None = 0) -> np.ndarray:
    """``(N,3,H',W')`` float32 = pixels/255, reflect-padded: what the whole-strip network sees.

    The whole-mode counterpart of :func:`calibration_patches`. The training
    synthesiser plans its defects per patch, so it is applied block by block
    (a grid of ``tiling.patch`` blocks, seeded per block): the strip then carries
    the training defect density. Synthesising once over the whole strip gave a
    handful of defects per strip, MinMax ranges that clipped the defect responses,
    and a 0.08 pixel AP drop on the test model. Then the reflect padding of
    :func:`bgtrain.infer.whole_padding`.
    """
    from bgtrain.infer import whole_padding

    _, _, h, w = images.shape
    top, bottom, left, right = whole_padding(h, w)
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
        strips.append(np.pad(img, ((0, 0), (top, bottom), (left, right)), mode="reflect"))
    x = np.stack(strips).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x, dtype=np.float32)


def _reader_class() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, patches: np.ndarray, batch: int) -> None:
            self.patches, self.batch = patches, batch
            self.rewind()

        def _batches(self) -> Iterator[dict[str, np.ndarray]]:
            for i in range(0, len(self.patches), self.batch):
                yield {"input": self.patches[i : i + self.batch]}

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = self._batches()

    return _Reader


def PatchCalibrationReader(patches: np.ndarray, batch: int = 6) -> Any:  # noqa: N802 - a class factory
    """An ``onnxruntime.quantization.CalibrationDataReader`` over patch batches (import deferred)."""
    return _reader_class()(patches, batch)


# ----------------------------------------------------------------------------- quantization


@dataclass(frozen=True)
class QuantizedPatchModel:
    model: onnx.ModelProto
    settings: dict[str, Any]  # what went into quantize_static (recorded in metadata and manifest)
    seconds: float


def _strip_unused_domains(model: onnx.ModelProto) -> None:
    """quant_pre_process imports every ORT domain; keep only those a node uses (plus the default)."""
    used = {n.domain or "" for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if (o.domain or "") in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def float_logits(model: onnx.ModelProto, output: str = "logits") -> bool:
    """Drop the QuantizeLinear -> DequantizeLinear pair the quantizer puts on the graph output.

    The head Conv then writes float logits, so the Softmax downstream sees the
    exact logits instead of 256 levels of them (rounded logits make ties in the
    heatmap, which is what pixel AP is sensitive to). The head is a w->2 channel
    Conv, ~1/30 of one w->w layer: running it in float costs nothing measurable.
    Returns whether the pair was found and removed.
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    dq = producer.get(output)
    if dq is None or dq.op_type != "DequantizeLinear":
        return False
    q = producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear" or consumers.get(q.output[0], 0) != 1:
        return False
    source = q.input[0]
    if consumers.get(source, 0) != 1 or source not in producer:
        return False
    head = producer[source]
    head.output[list(head.output).index(source)] = output
    keep = [n for n in g.node if n is not q and n is not dq]
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    inits = [t for t in g.initializer if t.name in used or t.name not in set(q.input) | set(dq.input)]
    del g.initializer[:]
    g.initializer.extend(inits)
    return True


def quantize_patch_model(patch_model: onnx.ModelProto, patches: np.ndarray, options: QuantizeOptions) -> QuantizedPatchModel:
    """Static QDQ quantization of ``input (B,3,P,P) -> logits`` calibrated on ``patches``."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    options.check()
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile,
              "auto": CalibrationMethod.MinMax}[options.calib_method]  # auto's choice happens in the build, by the gate
    act = QuantType.QUInt8 if options.activation_type == "uint8" else QuantType.QInt8
    # No CalibMaxIntermediateOutputs: in onnxruntime 1.32 it *discards* the collected
    # batches when the limit is reached instead of merging their ranges. MinMax does
    # not need it anyway: its augmented graph outputs per-tensor ReduceMin/ReduceMax,
    # not the tensors. (entropy/percentile keep whole tensors: more memory.)
    extra: dict[str, Any] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bgbuild-quant-") as tmp:
        src, pre, dst = Path(tmp) / "patch.onnx", Path(tmp) / "patch.pre.onnx", Path(tmp) / "patch.int8.onnx"
        onnx.save(patch_model, str(src))
        try:
            # ORT's symbolic shape inference gives up on the exported graph ("Incomplete
            # symbolic shape inference"); ONNX shape inference covers this static CNN.
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(dst),
                PatchCalibrationReader(patches, options.calib_batch),
                quant_format=QuantFormat.QDQ,
                per_channel=options.per_channel,
                activation_type=act,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options=extra,
            )
        except Exception as exc:  # ORT's quantizer raises plain exceptions from deep inside
            raise BuildError(f"INT8 quantization failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
        model = onnx.load(str(dst))
    _strip_unused_domains(model)
    logits_float = float_logits(model)
    ops = op_counts(model)
    if not ops.get("QuantizeLinear") or not ops.get("DequantizeLinear"):
        raise BuildError("INT8 quantization produced no QuantizeLinear/DequantizeLinear nodes")
    model.doc_string = "bgsdk patch model, INT8 QDQ: input (B,3,P,P) = pixels/255 -> logits (B,2,P,P)"
    settings = {
        "format": "QDQ",
        "tool": f"onnxruntime.quantization {onnxruntime.__version__} (quant_pre_process + quantize_static)",
        "scope": "patch model only; Softmax, crops, stitching and padding stay float",
        "activations": options.activation_type,
        "weights": "int8 symmetric, per-channel" if options.per_channel else "int8 symmetric, per-tensor",
        "calibration_method": options.calib_method,
        "calibration_patches": int(len(patches)),
        "float_logits": logits_float,
        "quantized_ops": {k: v for k, v in sorted(ops.items()) if k in ("QuantizeLinear", "DequantizeLinear")},
    }
    return QuantizedPatchModel(model, settings, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- verification


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
    from bgsdk.io import read_mask
    from bgtrain.layout import labelled_split

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
            img = read_image(s.path)
            if img.shape[1:] != (tiling.height, tiling.width):
                continue
            imgs.append(img)
            masks.append(read_mask(s.mask_path) if s.mask_path else None)
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
            raise BuildError(f"INT8 verification images: {exc}") from None
        if found is not None:
            return found
    return EvalImages(fallback.astype(np.float32), None, None, "unlabelled",
                      f"{len(fallback)} unlabelled image(s) ({fallback_description}); no masks: heatmap-difference gate only")


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
        renamed = {"pixel_ap": f"{prefix}_pixel_ap", "image_auroc": f"{prefix}_image_auroc",
                   "seconds": f"{prefix}_seconds"}
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
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    outs, t0 = [], time.perf_counter()
    for i in range(0, len(x), 2):  # two images per call: bounded memory, still exercises N > 1
        outs.append(sess.run(["output"], {"input": x[i : i + 2]})[0])
    return np.concatenate(outs), time.perf_counter() - t0


def compare_models(
    fp32_bytes: bytes,
    int8_bytes: bytes,
    images: EvalImages,
    *,
    max_ap_drop: float = DEFAULT_MAX_AP_DROP,
    max_mean_diff: float = DEFAULT_MAX_MEAN_DIFF,
    threads: int | None = None,
    raise_on_failure: bool = True,
    label: str = "INT8",
    hint: str = "",
) -> PrecisionVerification:
    """Run both full-image models on ``images``; compare heatmaps and, with masks, AP/AUROC.

    ``label`` names the reduced-precision model in messages (``INT8``, ``fp16``); ``hint`` is
    appended to the failure message (what the user can change).
    """
    from bgsdk.metrics import evaluate

    x = (images.images / np.float32(255.0)).astype(np.float32)
    ref, t_ref = _run(fp32_bytes, x, threads)
    out, t_out = _run(int8_bytes, x, threads)
    if out.shape != ref.shape:
        raise VerificationError(f"the {label} model returned shape {out.shape}, the fp32 model {ref.shape}")
    diff = np.abs(out[:, 0].astype(np.float64) - ref[:, 0].astype(np.float64))
    zeros = bool(np.all(out[:, 1:] == 0.0))
    kw: dict[str, Any] = {}
    failures: list[str] = []
    if not np.isfinite(out).all():
        failures.append(f"the {label} heatmap contains NaN or Inf")
        diff = np.nan_to_num(diff, nan=1.0, posinf=1.0)
    if images.labelled:
        assert images.masks is not None and images.defective is not None
        m32 = evaluate(list(ref[:, 0]), images.masks, images.defective)
        m8 = evaluate(list(np.nan_to_num(out[:, 0])), images.masks, images.defective)
        kw = dict(fp32_pixel_ap=m32.pixel_ap, pixel_ap=m8.pixel_ap,
                  fp32_image_auroc=m32.image_auroc, image_auroc=m8.image_auroc)
        if m32.pixel_ap is not None and m8.pixel_ap is not None and m32.pixel_ap - m8.pixel_ap > max_ap_drop:
            failures.append(f"pixel AP dropped by {m32.pixel_ap - m8.pixel_ap:.4f} ({m32.pixel_ap:.4f} -> {m8.pixel_ap:.4f}) > {max_ap_drop:g}")
    mean = float(diff.mean())
    if mean > max_mean_diff:
        failures.append(f"mean |{label} - fp32| = {mean:.3g} > {max_mean_diff:g}")
    if not zeros:
        failures.append(f"channels 1-2 of the {label} output are not exactly zero")
    result = PrecisionVerification(
        label=label, max_abs_diff=float(diff.max()), mean_abs_diff=mean, n_images=len(x), source=images.source,
        description=images.description, labelled=images.labelled, max_ap_drop=max_ap_drop,
        max_mean_diff=max_mean_diff, zero_channels_exact=zeros, fp32_seconds=t_ref, seconds=t_out,
        failures=failures, **kw,
    )
    if raise_on_failure and failures:
        raise VerificationError(
            f"{label} verification failed on {images.description}: {'; '.join(failures)} -- no model written"
            + (f" ({hint})" if hint else "")
        )
    return result
