"""The build pipeline: checkpoint -> verified, self-contained ``model.onnx`` (SPEC section 3).

Each stage is a plain function so later work (INT8 quantization) can reuse
them and slot its own stage in between: :func:`load_stage`, :func:`export_stage`,
:func:`compose_stage`, :func:`finalize_stage` (simplify + checks),
:func:`metadata_stage`, :func:`verify_model` and :func:`write_artifacts`.
:func:`build_model` runs them in order and returns a :class:`BuildReport`.
Nothing is written until verification has passed.

With ``BuildOptions.quantize`` set the build also quantizes the patch model to
INT8 (:mod:`bgbuild.quantize`), composes the quantized patch model the same
way, verifies it against the fp32 model on held images and writes the INT8
model instead; the fp32 model is still built and verified against PyTorch
first, because it is the INT8 model's reference.

``BuildOptions.fp16`` does the same with a float16 patch model
(:mod:`bgbuild.fp16`, GPU-oriented): convert, compose, verify against fp32 on
held images with the INT8 gate, write the fp16 model. ``quantize`` and ``fp16``
are mutually exclusive.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import onnx
import torch

from bgsdk import __version__
from bgsdk.contract import Contract
from bgsdk.tiling import Tiling

from .artifact import ArtifactPaths, set_metadata, set_precision_metadata, set_quantization_metadata, write_artifacts
from .compose import CHUNKINGS, SUPPORTED_OPSETS, ComposeOptions, compose_full_model, compose_whole_model
from .errors import BuildError, VerificationError
from .export import export_patch_model, op_counts
from .fp16 import Fp16Options, convert_patch_model
from .quantize import (
    AUTO_CALIBRATION_ORDER,
    CalibrationSet,
    PrecisionVerification,
    QuantizeOptions,
    calibration_patches,
    calibration_strips,
    compare_models,
    quantize_patch_model,
    select_calibration_images,
    select_eval_images,
)
from .simplify import check_graph, constants_to_initializers, hoist_subgraph_initializers, simplify
from .verify import DEFAULT_TOLERANCE, VerificationResult, select_verification_images, verify_model

__all__ = [
    "DEFAULT_PATCH_BATCH",
    "BuildOptions",
    "BuildReport",
    "QuantizationReport",
    "PrecisionReport",
    "LoadedCheckpoint",
    "build_model",
    "load_stage",
    "export_stage",
    "compose_stage",
    "finalize_stage",
    "metadata_stage",
]

log = logging.getLogger(__name__)

# Patches per patch-model call in CPU builds, as unrolled chunks sharing one set of
# weights (docs/design.md, "Default build"): the largest K whose peak RSS stays
# <= 500 MB on a w=64 strip (benchmarks/bench_tiled.py, docs/benchmarks.md).
# Measured on 2 shared cores, ORT 1.32, default session options: unrolled K=2
# 411 MB, K=3 424-460 MB, K=6 631 MB, one call (K=18) 1154 MB.
DEFAULT_PATCH_BATCH = 3
MODES = ("tiled", "whole")

Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class BuildOptions:
    """Everything ``build-model`` can be told; defaults are the release settings."""

    image_size: tuple[int, int] | None = None  # None: the checkpoint's image size
    patch_batch: int | None = DEFAULT_PATCH_BATCH  # None: all patches in one call
    chunking: str = "unrolled"  # patch_batch < patches: "unrolled" chunks or a "loop"
    mode: str = "tiled"  # "whole": one UNet pass on the reflect-padded strip (build-model --mode whole)
    opset: int = 17
    simplify: bool = True
    keep_patch_model: bool = False
    verify_data: Path | None = None
    verify_images: int = 2
    tolerance: float = DEFAULT_TOLERANCE
    threads: int | None = None  # ONNX Runtime threads during verification (None: all cores)
    seed: int = 0  # synthetic verification images
    quantize: QuantizeOptions | None = None  # INT8 release model (build-model --quantize)
    fp16: Fp16Options | None = None  # fp16 release model, GPU-oriented (build-model --fp16)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verify_data"] = str(self.verify_data) if self.verify_data is not None else None
        d["image_size"] = list(self.image_size) if self.image_size is not None else None
        d["quantize"] = self.quantize.as_dict() if self.quantize is not None else None
        d["fp16"] = self.fp16.as_dict() if self.fp16 is not None else None
        return d


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: torch.nn.Module
    info: Any  # bgtrain.checkpoint.CheckpointInfo
    sha256: str
    tiling: Tiling


@dataclass
class QuantizationReport:
    """What the INT8 stage did: settings, calibration set and the INT8-vs-fp32 verification."""

    settings: dict[str, Any]
    calibration: CalibrationSet
    verification: PrecisionVerification
    fp32_size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        """The ``bgsdk.quantization`` metadata / manifest section."""
        c = self.calibration
        return {
            "settings": dict(self.settings),
            "calibration": {"source": c.source, "images": len(c.files), "patches": self.settings["calibration_patches"],
                            "description": c.description, "files": [Path(f).name for f in c.files]},
            "verification": self.verification.as_dict(),
            "fp32_model_bytes": self.fp32_size_bytes,
        }


@dataclass
class PrecisionReport:
    """What the fp16 stage did: conversion settings and the fp16-vs-fp32 verification."""

    settings: dict[str, Any]
    verification: PrecisionVerification
    fp32_size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        """The ``bgsdk.precision`` metadata / manifest section."""
        return {
            "precision": "fp16",
            "settings": dict(self.settings),
            "verification": self.verification.as_dict(),
            "fp32_model_bytes": self.fp32_size_bytes,
        }


@dataclass
class BuildReport:
    """What was built, how it checked out, and how long each stage took."""

    paths: ArtifactPaths
    size_bytes: int
    nodes: int
    op_counts: dict[str, int]
    patch_batch: int
    num_patches: int
    simplified: bool
    verification: VerificationResult
    contract: Contract
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    quantization: QuantizationReport | None = None
    precision: PrecisionReport | None = None

    @property
    def build_seconds(self) -> float:
        return sum(self.stage_seconds.values())


def load_stage(checkpoint: str | Path, image_size: tuple[int, int] | None = None) -> LoadedCheckpoint:
    """Load a checkpoint safely (weights_only) and plan the tiling for the build's image size."""
    from bgtrain.checkpoint import file_sha256, model_from_checkpoint

    model, info = model_from_checkpoint(checkpoint)
    try:
        tiling = info.tiling(image_size)
    except ValueError as exc:
        raise BuildError(f"--image-size: {exc}") from None
    return LoadedCheckpoint(model, info, file_sha256(checkpoint), tiling)


def export_stage(loaded: LoadedCheckpoint, opset: int, mode: str = "tiled") -> onnx.ModelProto:
    """The network as the graph will run it: at the patch size, or (whole mode) at the padded strip size."""
    if mode == "whole":
        from bgtrain.infer import whole_padding

        t = loaded.tiling
        top, bottom, left, right = whole_padding(t.height, t.width)
        return export_patch_model(loaded.model, (t.height + top + bottom, t.width + left + right), opset)
    return export_patch_model(loaded.model, loaded.tiling.patch, opset)


def compose_stage(patch_model: onnx.ModelProto, tiling: Tiling, patch_batch: int | None, opset: int,
                  chunking: str = "unrolled", mode: str = "tiled") -> onnx.ModelProto:
    if mode == "whole":
        return compose_whole_model(patch_model, tiling.height, tiling.width, opset)
    return compose_full_model(patch_model, tiling, ComposeOptions(opset=opset, patch_batch=patch_batch, chunking=chunking))


def _uses_loop(options: BuildOptions, k: int, num_patches: int) -> bool:
    return options.mode == "tiled" and options.chunking == "loop" and k < num_patches


def finalize_stage(model: onnx.ModelProto, *, simplify_graph: bool, uses_loop: bool) -> tuple[onnx.ModelProto, bool, list[str]]:
    """Simplify (optional), weights as initializers, full check. Returns (model, simplified, warnings)."""
    notes: list[str] = []
    simplified = False
    if simplify_graph:
        res = simplify(model)
        model, simplified = res.model, res.simplified
        if res.warning:
            notes.append(res.warning)
    model = hoist_subgraph_initializers(constants_to_initializers(model))
    check_graph(model, allow_loop=uses_loop)
    return model, simplified, notes


def metadata_stage(model: onnx.ModelProto, loaded: LoadedCheckpoint, options: BuildOptions, patch_batch: int, simplified: bool) -> Contract:
    info = loaded.info
    extra: dict[str, Any] = {"image_type": info.image_type}
    if options.mode == "whole":  # the patch positions still describe the tiling; this model does not tile
        extra["mode"] = "whole"
    contract = Contract.from_tiling(loaded.tiling, extra=extra)
    training = {
        "epoch": info.epoch,
        "seed": info.seed,
        "width": info.width,
        "image_type": info.image_type,
        "checkpoint_image_size": list(info.image_size),
        "trainer_version": info.version,
        "metrics": dict(info.metrics),
        "stem": info.stem,
        "recipe": dict(info.recipe),
    }
    build = {
        "exporter": f"torch.onnx.export(dynamo=False) torch {torch.__version__}",
        "opset": options.opset,
        "mode": options.mode,
        "patch_batch": patch_batch if options.mode == "tiled" else None,
        "chunking": options.chunking if options.mode == "tiled" and patch_batch < loaded.tiling.num_patches else None,
        "num_patches": loaded.tiling.num_patches if options.mode == "tiled" else None,
        "simplified": simplified,
        "onnx": onnx.__version__,
        "python": platform.python_version(),
        "bgsdk": __version__,
    }
    set_metadata(model, contract, checkpoint_sha256=loaded.sha256, training=training, build=build)
    return contract


def _check_options(options: BuildOptions) -> None:
    if options.opset not in SUPPORTED_OPSETS:
        raise BuildError(f"--opset {options.opset} is not supported; choose one of {list(SUPPORTED_OPSETS)}")
    if options.patch_batch is not None and options.patch_batch < 1:
        raise BuildError(f"--patch-batch must be >= 1, got {options.patch_batch}")
    if options.mode not in MODES:
        raise BuildError(f"--mode {options.mode!r}: choose one of {', '.join(MODES)}")
    if options.chunking not in CHUNKINGS:
        raise BuildError(f"--chunking {options.chunking!r}: choose one of {', '.join(CHUNKINGS)}")
    if options.verify_images < 1:
        raise BuildError("need at least one verification image")
    if options.quantize is not None:
        options.quantize.check()
    if options.fp16 is not None:
        if options.quantize is not None:
            raise BuildError("--fp16 and --quantize are mutually exclusive: choose one release precision")
        options.fp16.check()


def build_model(
    checkpoint: str | Path,
    out: str | Path,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Build, check, verify and write ``out`` (plus ``out.json``, optionally ``out.patch.onnx``).

    Raises :class:`~bgsdk.errors.BgsdkError` subclasses (bad checkpoint, bad option,
    failed check or verification); in that case no output file is written.
    """
    options = options or BuildOptions()
    _check_options(options)
    say: Progress = progress or (lambda stage, msg: log.info("%s: %s", stage, msg))
    out = Path(out)
    if out.exists() and out.is_dir():
        raise BuildError(f"{out}: is a directory; give the output model file name (e.g. {out}/model.onnx)")
    seconds: dict[str, float] = {}
    notes: list[str] = []

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        seconds[stage] = time.perf_counter() - t0
        return value

    loaded: LoadedCheckpoint = timed("load", lambda: load_stage(checkpoint, options.image_size))
    tiling = loaded.tiling
    T = tiling.num_patches
    k = T if options.patch_batch is None else min(options.patch_batch, T)
    say(
        "load",
        f"{checkpoint}: width {loaded.info.width}, {loaded.info.image_type}, epoch {loaded.info.epoch}; "
        f"image {tiling.height}x{tiling.width}, {T} patches of {tiling.patch}px ({seconds['load']:.1f}s)",
    )

    calib: CalibrationSet | None = None
    if options.quantize is not None:  # find the calibration images before any real work
        q = options.quantize
        calib = select_calibration_images(
            tiling, calib_data=q.calib_data, train_config=loaded.info.train_config, count=q.calib_count
        )

    patch_model = timed("export", lambda: export_stage(loaded, options.opset, options.mode))
    what = "patch model" if options.mode == "tiled" else "whole-strip network"
    say("export", f"{what}: {len(patch_model.graph.node)} nodes, opset {options.opset} ({seconds['export']:.1f}s)")

    composed = timed("compose", lambda: compose_stage(patch_model, tiling, k, options.opset, options.chunking, options.mode))
    say("compose", f"full-image graph, {_layout(options, k, T)} ({seconds['compose']:.1f}s)")

    final, simplified, fin_notes = timed(
        "simplify+check",
        lambda: finalize_stage(composed, simplify_graph=options.simplify, uses_loop=_uses_loop(options, k, T)),
    )
    notes += fin_notes
    how = "simplified" if simplified else ("not simplified (--no-simplify)" if not options.simplify else "NOT simplified")
    say("check", f"{how}; onnx.checker full check and shape inference passed ({seconds['simplify+check']:.1f}s)")

    contract = metadata_stage(final, loaded, options, k, simplified)
    model_bytes = final.SerializeToString()

    vimgs = select_verification_images(
        tiling,
        verify_data=options.verify_data,
        train_config=loaded.info.train_config,
        count=options.verify_images,
        seed=options.seed,
    )
    result: VerificationResult = timed(
        "verify",
        lambda: verify_model(model_bytes, loaded.model, tiling, vimgs, options.tolerance, options.threads, mode=options.mode),
    )
    say(
        "verify",
        f"max |ONNX - PyTorch| = {result.max_abs_diff:.3g} (tolerance {result.tolerance:g}) on {result.description}; "
        f"channels 1-2 exactly zero ({seconds['verify']:.1f}s)",
    )

    quant: QuantizationReport | None = None
    patch_out = patch_model
    if options.quantize is not None and calib is not None:
        final, model_bytes, patch_out, quant, q_notes = _quantize_stages(
            loaded, options, options.quantize, calib, patch_model, model_bytes, vimgs.images, vimgs.description, k, say, timed
        )
        notes += q_notes
    prec: PrecisionReport | None = None
    if options.fp16 is not None:
        final, model_bytes, patch_out, prec, p_notes = _fp16_stages(
            loaded, options, options.fp16, patch_model, model_bytes, vimgs.images, vimgs.description, k, say, timed
        )
        notes += p_notes

    manifest = {
        "format": "bgsdk.model-manifest/1",
        "producer": f"bgsdk build-model {__version__}",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "contract": json.loads(contract.to_json()),
        "build_options": options.as_dict() | {"effective_patch_batch": k},
        "verification": result.as_dict(),
        "graph": {"nodes": _node_total(final), "op_counts": dict(sorted(op_counts(final).items()))},
        "warnings": notes,
    }
    if quant is not None:
        manifest["quantization"] = quant.as_dict()
    if prec is not None:
        manifest["precision"] = prec.as_dict()
    patch_bytes = patch_out.SerializeToString() if options.keep_patch_model else None
    paths = timed("write", lambda: write_artifacts(out, model_bytes, manifest, patch_bytes))
    say("write", f"{paths.model} ({len(model_bytes) / 1e6:.1f} MB), {paths.manifest.name}"
        + (f", {paths.patch_model.name}" if paths.patch_model else ""))
    ops = op_counts(final)
    return BuildReport(
        paths=paths,
        size_bytes=len(model_bytes),
        nodes=sum(ops.values()),
        op_counts=dict(ops),
        patch_batch=k,
        num_patches=T,
        simplified=simplified,
        verification=result,
        contract=contract,
        stage_seconds=seconds,
        warnings=notes,
        quantization=quant,
        precision=prec,
    )


def _quantize_stages(
    loaded: LoadedCheckpoint,
    options: BuildOptions,
    qopts: QuantizeOptions,
    calib: CalibrationSet,
    patch_model: onnx.ModelProto,
    fp32_bytes: bytes,
    fallback_images: Any,
    fallback_description: str,
    k: int,
    say: Progress,
    timed: Callable[[str, Callable[[], Any]], Any],
) -> tuple[onnx.ModelProto, bytes, onnx.ModelProto, QuantizationReport, list[str]]:
    """Calibrate + quantize the patch model, compose it, verify INT8 vs fp32; nothing is written here.

    Returns (INT8 full model, its final bytes with the quantization metadata,
    INT8 patch model, report, warnings). Raises VerificationError at the gate.
    """
    seed = options.seed if qopts.calib_synth_defects else None
    if options.mode == "whole":  # calibrated on what the whole-strip network sees: padded strips
        patches = calibration_strips(calib.images, loaded.tiling, seed)
        qopts_run = replace(qopts, calib_batch=1)
    else:
        patches = calibration_patches(calib.images, loaded.tiling, seed)
        qopts_run = qopts
    # "auto": MinMax first (cheapest, smallest memory); the AP gate decides whether to try the others.
    methods = list(AUTO_CALIBRATION_ORDER) if qopts.calib_method == "auto" else [qopts.calib_method]
    attempts: list[dict[str, Any]] = []
    for method in methods:
        q = timed(f"quantize-{method}", partial(quantize_patch_model, patch_model, patches, replace(qopts_run, calib_method=method)))
        if options.mode == "whole":
            q.settings["scope"] = "whole-strip network only; reflect Pad, Softmax, crop and zero-channel Pad stay float"
        say("quantize", f"network -> INT8 QDQ ({q.settings['activations']} activations, {q.settings['weights']} weights), "
            f"{method} calibration on {calib.description}"
            f"{' + synthetic training defects' if qopts.calib_synth_defects else ''} ({q.seconds:.1f}s)")
        try:
            final, qv, notes = _compose_and_verify(
                "INT8", q.model, loaded, options, fp32_bytes, qopts.verify_count, qopts.max_ap_drop, qopts.max_mean_diff,
                fallback_images, fallback_description, k, say, timed, required_op="DequantizeLinear",
                hint="check the calibration images: --calib-data, --calib-count, --calib-method",
            )
        except VerificationError as exc:
            attempts.append({"method": method, "passed": False, "error": str(exc)})
            if len(methods) == 1:
                raise
            say("quantize", f"{method} calibration failed the gate; trying the next method")
            continue
        attempts.append({"method": method, "passed": True, "pixel_ap": qv.pixel_ap, "ap_drop": qv.ap_drop,
                         "mean_abs_diff": qv.mean_abs_diff})
        break
    else:
        raise VerificationError(
            "INT8 verification failed for every calibration method (" + "; ".join(
                f"{a['method']}: {a['error'].split(': ', 1)[-1]}" for a in attempts) + ")"
        )
    q.settings["calibration_selection"] = {"asked": qopts.calib_method, "attempts": attempts}
    report = QuantizationReport(q.settings, calib, qv, len(fp32_bytes))
    # The verification numbers go into the metadata after the fact; the graph is the verified one.
    set_quantization_metadata(final, report.as_dict())
    return final, final.SerializeToString(), q.model, report, notes


def _fp16_stages(
    loaded: LoadedCheckpoint,
    options: BuildOptions,
    fopts: Fp16Options,
    patch_model: onnx.ModelProto,
    fp32_bytes: bytes,
    fallback_images: Any,
    fallback_description: str,
    k: int,
    say: Progress,
    timed: Callable[[str, Callable[[], Any]], Any],
) -> tuple[onnx.ModelProto, bytes, onnx.ModelProto, PrecisionReport, list[str]]:
    """Convert the patch model to fp16, compose it, verify fp16 vs fp32; nothing is written here.

    Returns (fp16 full model, its final bytes with the precision metadata, fp16
    patch model, report, warnings). Raises VerificationError at the gate.
    """
    conv = timed("fp16", lambda: convert_patch_model(patch_model))
    s = conv.settings
    say("fp16", f"patch model -> float16 ({s['fp16_initializers']} fp16 weights, {s['casts']} Casts; float32 "
        f"input/logits) ({conv.seconds:.1f}s)")
    final, fv, notes = _compose_and_verify(
        "fp16", conv.model, loaded, options, fp32_bytes, fopts.verify_count, fopts.max_ap_drop, fopts.max_mean_diff,
        fallback_images, fallback_description, k, say, timed,
    )
    report = PrecisionReport(conv.settings, fv, len(fp32_bytes))
    # As for INT8: the numbers go into the metadata after the gate; the graph is the verified one.
    set_precision_metadata(final, report.as_dict())
    return final, final.SerializeToString(), conv.model, report, notes


def _compose_and_verify(
    label: str,
    patch_model: onnx.ModelProto,
    loaded: LoadedCheckpoint,
    options: BuildOptions,
    fp32_bytes: bytes,
    verify_count: int,
    max_ap_drop: float,
    max_mean_diff: float,
    fallback_images: Any,
    fallback_description: str,
    k: int,
    say: Progress,
    timed: Callable[[str, Callable[[], Any]], Any],
    required_op: str | None = None,
    hint: str = "",
) -> tuple[onnx.ModelProto, PrecisionVerification, list[str]]:
    """Compose a reduced-precision patch model exactly like the fp32 one, then gate it against fp32.

    Shared by the INT8 and fp16 builds; raises VerificationError at the gate.
    """
    tiling = loaded.tiling
    T = tiling.num_patches
    tag = label.lower()
    composed = timed(
        f"compose-{tag}", lambda: compose_stage(patch_model, tiling, k, options.opset, options.chunking, options.mode)
    )
    final, simplified, notes = timed(
        f"simplify+check-{tag}",
        lambda: finalize_stage(composed, simplify_graph=options.simplify, uses_loop=_uses_loop(options, k, T)),
    )
    if required_op and not op_counts(final).get(required_op):
        raise BuildError(f"the composed {label} graph lost its {required_op} nodes")
    metadata_stage(final, loaded, options, k, simplified)
    evals = select_eval_images(
        tiling, verify_data=options.verify_data, train_config=loaded.info.train_config, count=verify_count,
        fallback=fallback_images, fallback_description=fallback_description,
    )
    verification: PrecisionVerification = timed(
        f"verify-{tag}",
        lambda: compare_models(fp32_bytes, final.SerializeToString(), evals, max_ap_drop=max_ap_drop,
                               max_mean_diff=max_mean_diff, threads=options.threads, label=label, hint=hint),
    )
    say(f"verify-{tag}", verification.summary())
    if not evals.labelled:
        notes.append(f"{label} verification had no labelled images (valid/ or test/ with masks): "
                     "only the heatmap difference was checked, not the pixel AP")
    return final, verification, notes


def _layout(options: BuildOptions, k: int, T: int) -> str:
    if options.mode == "whole":
        return "whole strip: reflect pad to multiples of 32, one network pass, crop"
    if k >= T:
        return "patch model inlined once, one call"
    if options.chunking == "loop":
        return f"patch model inlined once, Loop over chunks of {k}"
    return f"{-(-T // k)} unrolled calls of <= {k} patches sharing one set of weights"


def _node_total(model: onnx.ModelProto) -> int:
    return sum(op_counts(model).values())
