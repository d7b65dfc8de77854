"""The build pipeline: checkpoint -> verified, self-contained ``model.onnx`` (docs/design.md).

:func:`build_model` is a short pipeline of stages over one :class:`BuildState`
(load, export, compose, verify, reduced precision, write); each stage reads what
the earlier ones left in the state and adds its part. The graph steps are public
plain functions (:func:`load_stage`, :func:`export_stage`, :func:`compose_stage`,
:func:`finalize_stage` (simplify + checks), :func:`metadata_stage`) so benchmarks
and later stages reuse them. Nothing is written until verification has passed.

Reduced precision (``BuildOptions.quantize`` = INT8, :mod:`bgbuild.quantize`;
``BuildOptions.fp16``, :mod:`bgbuild.fp16`; mutually exclusive) is ONE stage:
make the reduced-precision patch model, compose and finalize it exactly like the
fp32 one, and pass it through the release gate against the fp32 model
(:mod:`bgbuild.precision_gate`). The fp32 model is still built and verified
against PyTorch first, because it is the reference.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import onnx
import torch

from bgsdk import __version__
from bgsdk._operating_point import OperatingPoint
from bgsdk.contract import Contract
from bgsdk.tiling import Tiling
from bgtrain.train import provenance, source_commit

from .artifact import ArtifactPaths, set_metadata, set_precision_metadata, set_quantization_metadata, write_artifacts
from .calibrate_threshold import OperatingPointOptions, calibrate_model, set_operating_point_metadata
from .calibration import CalibrationSet, calibration_patches, calibration_strips, select_calibration_images
from .compose import CHUNKINGS, SUPPORTED_OPSETS, ComposeOptions, compose_full_model, compose_whole_model
from .errors import BuildError, VerificationError
from .export import export_patch_model, export_whole_model, op_counts
from .fp16 import Fp16Options, convert_patch_model
from .precision_gate import GateOptions, PrecisionVerification, compare_models, select_eval_images
from .quantize import AUTO_CALIBRATION_ORDER, QuantizeOptions, quantize_patch_model, quantized_scope
from .simplify import check_graph, constants_to_initializers, hoist_subgraph_initializers, simplify
from .verify import (
    FloatGate,
    VerificationImages,
    VerificationResult,
    select_verification_images,
    verify_model,
)

__all__ = [
    "DEFAULT_PATCH_BATCH",
    "BuildOptions",
    "BuildReport",
    "QuantizationReport",
    "PrecisionReport",
    "LoadedCheckpoint",
    "BuildState",
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
# <= 500 MB on a w=64 strip (benchmarks/bench_tiled.py, docs/experiments/2026-11-27-tiled-and-whole-builds.md).
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
    chunking: str = "unrolled"  # patch_batch < patches: "unrolled" chunks, "hybrid" or a "loop" (docs/design.md)
    mode: str = "tiled"  # "whole": stem per patch, the UNet's body once over the strip (build-model --mode whole)
    opset: int = 17
    simplify: bool = True
    keep_patch_model: bool = False
    verify_data: Path | None = None
    verify_images: int = 2
    gate: FloatGate = field(default_factory=FloatGate)  # fp32 ONNX vs the PyTorch float32/float64 references
    threads: int | None = None  # ONNX Runtime threads during verification (None: all cores)
    seed: int = 0  # synthetic verification images
    quantize: QuantizeOptions | None = None  # INT8 release model (build-model --quantize)
    fp16: Fp16Options | None = None  # fp16 release model, GPU-oriented (build-model --fp16)
    # Pixel threshold + min area calibrated on labelled images, stored in the model (bgbuild.calibrate_threshold).
    operating_point: OperatingPointOptions = field(default_factory=OperatingPointOptions)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["operating_point"] = self.operating_point.as_dict()
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
class PrecisionReport:
    """What a reduced-precision stage did: its settings and the gate's verdict against fp32."""

    settings: dict[str, Any]
    verification: PrecisionVerification
    fp32_size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        """The ``bgsdk.precision`` metadata / manifest section (fp16 builds)."""
        return {
            "precision": "fp16",
            "settings": dict(self.settings),
            "verification": self.verification.as_dict(),
            "fp32_model_bytes": self.fp32_size_bytes,
        }


@dataclass
class QuantizationReport(PrecisionReport):
    """The INT8 stage's report: a PrecisionReport plus the calibration set."""

    calibration: CalibrationSet | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``bgsdk.quantization`` metadata / manifest section."""
        c = self.calibration
        assert c is not None
        return {
            "settings": dict(self.settings),
            "calibration": {
                "source": c.source,
                "images": len(c.files),
                "patches": self.settings["calibration_patches"],
                "description": c.description,
                "files": [Path(f).name for f in c.files],
            },
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
    """The network as the graph will run it: at the patch size, or (whole mode) over the whole strip."""
    if mode == "whole":
        return export_whole_model(loaded.model, loaded.tiling, opset)
    return export_patch_model(loaded.model, loaded.tiling.patch, opset)


def compose_stage(
    patch_model: onnx.ModelProto,
    tiling: Tiling,
    patch_batch: int | None,
    opset: int,
    chunking: str = "unrolled",
    mode: str = "tiled",
) -> onnx.ModelProto:
    if mode == "whole":
        return compose_whole_model(patch_model, tiling.height, tiling.width, opset)
    return compose_full_model(
        patch_model, tiling, ComposeOptions(opset=opset, patch_batch=patch_batch, chunking=chunking)
    )


def _uses_loop(options: BuildOptions, k: int, num_patches: int) -> bool:
    return options.mode == "tiled" and options.chunking == "loop" and k < num_patches


def finalize_stage(
    model: onnx.ModelProto, *, simplify_graph: bool, uses_loop: bool
) -> tuple[onnx.ModelProto, bool, list[str]]:
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


def _data_record(root: Any) -> Any:
    """The training data set's record (seed, levels, counts) when the checkpoint predates provenance."""
    return provenance(root).get("data") if isinstance(root, str) else None


def metadata_stage(
    model: onnx.ModelProto, loaded: LoadedCheckpoint, options: BuildOptions, patch_batch: int, simplified: bool
) -> Contract:
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
        "ema_decay": info.ema_decay,  # > 0: train-model's weight average; 0: raw weights
        # provenance (bgtrain.train.provenance): the source commit and the data set's seed, when recorded
        "source_commit": info.train_config.get("source_commit"),
        "data": info.train_config.get("data") or _data_record(info.train_config.get("training_dataset_path")),
        "precision": info.train_config.get("precision"),
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
        "source_commit": source_commit(),
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
    options.gate.check()
    if options.quantize is not None:
        options.quantize.check()
    if options.fp16 is not None:
        if options.quantize is not None:
            raise BuildError("--fp16 and --quantize are mutually exclusive: choose one release precision")
        options.fp16.check()


@dataclass
class BuildState:
    """What one build knows so far. Each stage reads the fields of the stages before it and sets its own
    (fields without a default are set by the stage named in their comment)."""

    checkpoint: Path
    out: Path
    options: BuildOptions
    say: Progress
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    loaded: LoadedCheckpoint = field(init=False)  # _load
    patch_batch: int = field(init=False)  # _load: the effective K
    calibration: CalibrationSet | None = None  # _load, INT8 builds only
    patch_model: onnx.ModelProto = field(init=False)  # _export: the fp32 patch model
    final: onnx.ModelProto = field(init=False)  # _compose (fp32), replaced by _reduced_precision
    simplified: bool = field(init=False)  # _compose
    contract: Contract = field(init=False)  # _compose
    fp32_bytes: bytes = field(init=False)  # _compose
    verification_images: VerificationImages = field(init=False)  # _verify
    verification: VerificationResult = field(init=False)  # _verify
    written_patch_model: onnx.ModelProto = field(init=False)  # _export, replaced by _reduced_precision
    quantization: QuantizationReport | None = None  # _reduced_precision
    precision: PrecisionReport | None = None  # _reduced_precision
    operating_point: OperatingPoint | None = None  # _operating_point
    paths: ArtifactPaths = field(init=False)  # _write

    @property
    def model_bytes(self) -> bytes:
        """The bytes to write: the fp32 model, or the reduced-precision one once that stage ran."""
        return (
            self.fp32_bytes if self.quantization is None and self.precision is None else self.final.SerializeToString()
        )

    def timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        self.seconds[stage] = time.perf_counter() - t0
        return value


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
    out = Path(out)
    if out.exists() and out.is_dir():
        raise BuildError(f"{out}: is a directory; give the output model file name (e.g. {out}/model.onnx)")
    say: Progress = progress or (lambda stage, msg: log.info("%s: %s", stage, msg))
    state = BuildState(Path(checkpoint), out, options, say)
    for stage in (_load, _export, _compose, _verify, _reduced_precision, _operating_point, _write):
        stage(state)
    return _report(state)


def _load(state: BuildState) -> None:
    options = state.options
    loaded: LoadedCheckpoint = state.timed("load", lambda: load_stage(state.checkpoint, options.image_size))
    state.loaded, tiling, info = loaded, loaded.tiling, loaded.info
    T = tiling.num_patches
    state.patch_batch = T if options.patch_batch is None else min(options.patch_batch, T)
    state.say(
        "load",
        f"{state.checkpoint}: width {info.width}, {info.image_type}, epoch {info.epoch}; "
        f"image {tiling.height}x{tiling.width}, {T} patches of {tiling.patch}px ({state.seconds['load']:.1f}s)",
    )
    if options.quantize is not None:  # find the calibration images before any real work
        q = options.quantize
        state.calibration = select_calibration_images(
            tiling,
            calib_data=q.calib_data,
            train_config=info.train_config,
            count=q.calib_count,
            whole=options.mode == "whole",
        )


def _export(state: BuildState) -> None:
    opset = state.options.opset
    mode = state.options.mode
    state.patch_model = state.timed("export", lambda: export_stage(state.loaded, opset, mode))
    state.written_patch_model = state.patch_model
    n = len(state.patch_model.graph.node)
    what = "patch model" if mode == "tiled" else "whole-strip network"
    state.say("export", f"{what}: {n} nodes, opset {opset} ({state.seconds['export']:.1f}s)")


def _compose_and_finalize(
    state: BuildState, patch_model: onnx.ModelProto, tag: str = ""
) -> tuple[onnx.ModelProto, bool]:
    """Compose ``patch_model`` into the full-image graph, finalize it and set the metadata (any precision).

    Returns (model, simplified)."""
    options, k, T = state.options, state.patch_batch, state.loaded.tiling.num_patches
    composed = state.timed(
        f"compose{tag}",
        lambda: compose_stage(patch_model, state.loaded.tiling, k, options.opset, options.chunking, options.mode),
    )
    final, simplified, notes = state.timed(
        f"simplify+check{tag}",
        lambda: finalize_stage(composed, simplify_graph=options.simplify, uses_loop=_uses_loop(options, k, T)),
    )
    state.notes += notes
    state.contract = metadata_stage(final, state.loaded, options, k, simplified)
    return final, simplified


def _compose(state: BuildState) -> None:
    k, T = state.patch_batch, state.loaded.tiling.num_patches
    state.final, state.simplified = _compose_and_finalize(state, state.patch_model)
    state.fp32_bytes = state.final.SerializeToString()
    state.say("compose", f"full-image graph, {_layout(state.options, k, T)} ({state.seconds['compose']:.1f}s)")
    how = (
        "simplified"
        if state.simplified
        else "not simplified (--no-simplify)"
        if not state.options.simplify
        else "NOT simplified"
    )
    state.say(
        "check", f"{how}; onnx.checker full check and shape inference passed ({state.seconds['simplify+check']:.1f}s)"
    )


def _verify(state: BuildState) -> None:
    options, loaded = state.options, state.loaded
    state.verification_images = vimgs = select_verification_images(
        loaded.tiling,
        verify_data=options.verify_data,
        train_config=loaded.info.train_config,
        count=options.verify_images,
        seed=options.seed,
    )
    state.verification = result = state.timed(
        "verify",
        lambda: verify_model(
            state.fp32_bytes, loaded.model, loaded.tiling, vimgs, options.gate, options.threads, mode=options.mode
        ),
    )
    state.say("verify", f"{result.summary()}; channels 1-2 exactly zero ({state.seconds['verify']:.1f}s)")


@dataclass(frozen=True)
class ReducedPatchModel:
    """A reduced-precision patch model and how to gate and record it (made by _int8_patch_model/_fp16_patch_model)."""

    label: str  # "INT8" or "fp16": messages, stage names, manifest keys
    model: onnx.ModelProto
    settings: dict[str, Any]
    gate: GateOptions
    required_op: str | None = None  # an op the composed graph must still contain
    hint: str = ""  # what the user can change when the gate fails


def _calibration_inputs(state: BuildState, q: QuantizeOptions) -> tuple[Any, QuantizeOptions]:
    """What the network to quantize sees: the tiling's patches, or (whole mode) padded strips, one per run."""
    calib = state.calibration
    assert calib is not None
    seed = state.options.seed if q.calib_synth_defects else None
    if state.options.mode == "whole":
        return calibration_strips(calib.images, state.loaded.tiling, seed), replace(q, calib_batch=1)
    return calibration_patches(calib.images, state.loaded.tiling, seed), q


def _int8_patch_model(state: BuildState, q: QuantizeOptions, patches: Any) -> ReducedPatchModel:
    calib = state.calibration
    assert calib is not None
    qm = state.timed(f"quantize-{q.calib_method}", lambda: quantize_patch_model(state.patch_model, patches, q))
    if state.options.mode == "whole":
        qm.settings["scope"] = quantized_scope(q, whole=True)
    state.say(
        "quantize",
        f"network -> INT8 QDQ ({qm.settings['activations']} activations, "
        f"{qm.settings['weights']} weights), {q.calib_method} calibration on {calib.description}"
        f"{' + synthetic training defects' if q.calib_synth_defects else ''} ({qm.seconds:.1f}s)",
    )
    return ReducedPatchModel(
        "INT8",
        qm.model,
        qm.settings,
        q,
        required_op="DequantizeLinear",
        hint="check the calibration images: --calib-data, --calib-count, --calib-method",
    )


def _int8(state: BuildState, q: QuantizeOptions) -> None:
    """Quantize and gate; with --calib-method auto, MinMax first and the next method only if the gate fails."""
    patches, q_run = _calibration_inputs(state, q)
    methods = list(AUTO_CALIBRATION_ORDER) if q.calib_method == "auto" else [q.calib_method]
    attempts: list[dict[str, Any]] = []
    for method in methods:
        reduced = _int8_patch_model(state, replace(q_run, calib_method=method), patches)
        try:
            final, verification = _compose_and_gate(state, reduced)
        except VerificationError as exc:
            attempts.append({"method": method, "passed": False, "error": str(exc)})
            if len(methods) == 1:
                raise
            state.say("quantize", f"{method} calibration failed the gate; trying the next method")
            continue
        attempts.append(
            {
                "method": method,
                "passed": True,
                "pixel_ap": verification.pixel_ap,
                "ap_drop": verification.ap_drop,
                "mean_abs_diff": verification.mean_abs_diff,
            }
        )
        reduced.settings["calibration_selection"] = {"asked": q.calib_method, "attempts": attempts}
        _record(state, reduced, final, verification)
        return
    raise VerificationError(
        "INT8 verification failed for every calibration method ("
        + "; ".join(f"{a['method']}: {a['error'].split(': ', 1)[-1]}" for a in attempts)
        + ")"
    )


def _fp16_patch_model(state: BuildState, f: Fp16Options) -> ReducedPatchModel:
    conv = state.timed("fp16", lambda: convert_patch_model(state.patch_model))
    s = conv.settings
    state.say(
        "fp16",
        f"patch model -> float16 ({s['fp16_initializers']} fp16 weights, {s['casts']} Casts; float32 "
        f"input/logits) ({conv.seconds:.1f}s)",
    )
    return ReducedPatchModel("fp16", conv.model, conv.settings, f)


def _reduced_precision(state: BuildState) -> None:
    """INT8 or fp16: compose the reduced model like the fp32 one, gate it against fp32; nothing written here."""
    options = state.options
    if options.quantize is not None:
        _int8(state, options.quantize)
    elif options.fp16 is not None:
        reduced = _fp16_patch_model(state, options.fp16)
        _record(state, reduced, *_compose_and_gate(state, reduced))


def _compose_and_gate(state: BuildState, reduced: ReducedPatchModel) -> tuple[onnx.ModelProto, PrecisionVerification]:
    """Compose and finalize ``reduced`` exactly like the fp32 model, then the release gate against fp32."""
    options, label, tag, loaded = state.options, reduced.label, reduced.label.lower(), state.loaded
    final, _ = _compose_and_finalize(state, reduced.model, f"-{tag}")
    if reduced.required_op and not op_counts(final).get(reduced.required_op):
        raise BuildError(f"the composed {label} graph lost its {reduced.required_op} nodes")
    gate, vimgs = reduced.gate, state.verification_images
    evals = select_eval_images(
        loaded.tiling,
        verify_data=options.verify_data,
        train_config=loaded.info.train_config,
        count=gate.verify_count,
        fallback=vimgs.images,
        fallback_description=vimgs.description,
        label=label,
    )
    verification: PrecisionVerification = state.timed(
        f"verify-{tag}",
        lambda: compare_models(
            state.fp32_bytes,
            final.SerializeToString(),
            evals,
            label=label,
            gate=gate,
            threads=options.threads,
            hint=reduced.hint,
        ),
    )
    state.say(f"verify-{tag}", verification.summary())
    if not evals.labelled:
        state.notes.append(
            f"{label} verification had no labelled images (valid/ or test/ with masks): "
            "only the heatmap difference was checked, not the pixel AP"
        )
    return final, verification


def _record(
    state: BuildState, reduced: ReducedPatchModel, final: onnx.ModelProto, verification: PrecisionVerification
) -> None:
    """The gate passed: its numbers go into the metadata after the fact; the graph is the verified one."""
    if reduced.label == "INT8":
        state.quantization = QuantizationReport(
            reduced.settings, verification, len(state.fp32_bytes), state.calibration
        )
        set_quantization_metadata(final, state.quantization.as_dict())
    else:
        state.precision = PrecisionReport(reduced.settings, verification, len(state.fp32_bytes))
        set_precision_metadata(final, state.precision.as_dict())
    state.final, state.written_patch_model = final, reduced.model


def _operating_point(state: BuildState) -> None:
    """Calibrate the threshold/min area of the model that will be written and store them in it."""
    op = state.timed(
        "operating point",
        lambda: calibrate_model(
            state.model_bytes,
            state.options.operating_point,
            state.loaded.info.train_config,
            state.options.threads,
            state.say,
        ),
    )
    if not op.calibrated:
        state.notes.append(f"operating point: {op.note}")
    set_operating_point_metadata(state.final, op)
    if state.quantization is None and state.precision is None:
        state.fp32_bytes = state.final.SerializeToString()  # model_bytes is the fp32 model: keep it in step
    state.operating_point = op


def _write(state: BuildState) -> None:
    options, loaded = state.options, state.loaded
    manifest = {
        "format": "bgsdk.model-manifest/1",
        "producer": f"bgsdk build-model {__version__}",
        "checkpoint": str(state.checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "contract": json.loads(state.contract.to_json()),
        "build_options": options.as_dict() | {"effective_patch_batch": state.patch_batch},
        "verification": state.verification.as_dict(),
        "graph": {"nodes": _node_total(state.final), "op_counts": dict(sorted(op_counts(state.final).items()))},
        "warnings": state.notes,
    }
    if state.operating_point is not None:
        manifest["operating_point"] = json.loads(state.operating_point.to_json())
    if state.quantization is not None:
        manifest["quantization"] = state.quantization.as_dict()
    if state.precision is not None:
        manifest["precision"] = state.precision.as_dict()
    model_bytes = state.model_bytes
    patch_bytes = state.written_patch_model.SerializeToString() if options.keep_patch_model else None
    state.paths = paths = state.timed("write", lambda: write_artifacts(state.out, model_bytes, manifest, patch_bytes))
    state.say(
        "write",
        f"{paths.model} ({len(model_bytes) / 1e6:.1f} MB), {paths.manifest.name}"
        + (f", {paths.patch_model.name}" if paths.patch_model else ""),
    )


def _report(state: BuildState) -> BuildReport:
    ops = op_counts(state.final)
    return BuildReport(
        paths=state.paths,
        size_bytes=len(state.model_bytes),
        nodes=sum(ops.values()),
        op_counts=dict(ops),
        patch_batch=state.patch_batch,
        num_patches=state.loaded.tiling.num_patches,
        simplified=state.simplified,
        verification=state.verification,
        contract=state.contract,
        stage_seconds=state.seconds,
        warnings=state.notes,
        quantization=state.quantization,
        precision=state.precision,
    )


def _layout(options: BuildOptions, k: int, T: int) -> str:
    if options.mode == "whole":
        return "whole strip: input stem per patch, stitched; the network's body once over the strip"
    if k >= T:
        return "patch model inlined once, one call"
    if options.chunking == "loop":
        return f"patch model inlined once, Loop over chunks of {k}"
    if options.chunking == "hybrid":
        return f"full-resolution layers in {-(-T // k)} chunks of <= {k} patches, the rest once on all patches"
    return f"{-(-T // k)} unrolled calls of <= {k} patches sharing one set of weights"


def _node_total(model: onnx.ModelProto) -> int:
    return sum(op_counts(model).values())
