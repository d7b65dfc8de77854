"""INT8 release models: static QDQ quantization of the patch model (the release gate is bgbuild.precision_gate).

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
* The network's input stem (the parameter-free die comparisons, ``/stem/`` nodes) stays float
  (:func:`stem_nodes`), and so, by default, does the first Conv that reads its maps
  (:func:`first_conv_nodes`): quantizing that Conv's input rounds the die differences weak defects
  live in to a few of 256 levels (measured: 0.0119 AP lost on the demo test split with it
  quantized, 0.0021 with it float; docs/model-card.md).
* The logits (head Conv output) stay float too (:func:`float_logits`): the
  Softmax gets exact logits, not 256 levels of them. (The composer then folds
  that float head to one defect logit, :mod:`bgbuild.head`.)
* The bilinear ``Resize`` (align_corners) stays float between a DequantizeLinear
  and a QuantizeLinear (github.com/microsoft/onnxruntime/issues/21319: some versions mishandled Q/DQ
  around linear Resize); the tests check the INT8 output against fp32.

This module is the QDQ step only; the calibration data come from
:mod:`bgbuild.calibration`, and the INT8-vs-fp32 release gate is
:mod:`bgbuild.precision_gate` (the same gate as fp16).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .calibration import PatchCalibrationReader
from .errors import BuildError
from .export import op_counts
from .precision_gate import GateOptions
from .split import STEM_SCOPE

__all__ = [
    "CALIBRATION_METHODS",
    "AUTO_CALIBRATION_ORDER",
    "ACTIVATION_TYPES",
    "QuantizeOptions",
    "QuantizedPatchModel",
    "first_conv_nodes",
    "float_logits",
    "quantize_patch_model",
    "quantized_scope",
    "stem_nodes",
]

CALIBRATION_METHODS = ("auto", "minmax", "entropy", "percentile")
# --calib-method auto: tried in this order, the first that passes the AP gate is kept. MinMax first: it is
# the cheapest (per-tensor ReduceMin/Max) and usually passes; Percentile and Entropy keep whole activation
# tensors (memory!) and are only tried when MinMax's ranges cost too much AP.
AUTO_CALIBRATION_ORDER = ("minmax", "percentile", "entropy")
ACTIVATION_TYPES = ("uint8", "int8")


@dataclass(frozen=True)
class QuantizeOptions(GateOptions):
    """``build-model --quantize`` settings; defaults are the release settings (gate limits: GateOptions)."""

    calib_data: Path | None = None  # None: the checkpoint's training data set (train/good)
    calib_count: int = 8  # images; x18 patches for a strip
    calib_method: str = "auto"  # or one of AUTO_CALIBRATION_ORDER
    calib_synth_defects: bool = True  # add the training synthesiser's defects to the calibration patches
    activation_type: str = "uint8"
    per_channel: bool = True
    float_first_conv: bool = True  # the Conv reading the stem's maps runs in float (first_conv_nodes)
    calib_batch: int = 6  # patches per calibration run

    def check(self) -> None:
        if self.calib_method not in CALIBRATION_METHODS:
            raise BuildError(f"--calib-method {self.calib_method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
        if self.activation_type not in ACTIVATION_TYPES:
            raise BuildError(
                f"--quant-activations {self.activation_type!r}: choose one of {', '.join(ACTIVATION_TYPES)}"
            )
        if self.calib_count < 1:
            raise BuildError(f"--calib-count must be >= 1, got {self.calib_count}")
        if self.calib_batch < 1:
            raise BuildError(f"calibration batch must be >= 1, got {self.calib_batch}")
        self.check_gate("INT8")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calib_data"] = str(self.calib_data) if self.calib_data is not None else None
        return d


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


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """The input stem's nodes (``/stem/...``: the parameter-free die comparisons, bgtrain.model).

    They stay float: quantized, their full-resolution one-channel maps got 17 Q/DQ round trips
    (~2 ms of the w64 whole-strip INT8 model's ~150 ms) that round the very differences weak
    defects live in. The first Conv still gets a quantized input (its own Q/DQ). Names are read
    from the model quant_pre_process wrote: it folds and renames some of the exported stem nodes.
    """
    return [n.name for n in model.graph.node if n.name.startswith(STEM_SCOPE)]


def first_conv_nodes(model: onnx.ModelProto) -> list[str]:
    """The Conv(s) reading the stem's output (or, without a stem, the graph input).

    Why float: its input holds the raw dies next to their differences, in one per-tensor uint8
    range set by the strongest edges and defects; a weak defect (|a| = 12 grey levels) is then a
    handful of levels above the rounding noise. It is one full-resolution Conv with few input
    channels (12 -> w), so running it in float costs little (docs/performance.md, INT8).
    """
    produced_by_stem = {o for n in model.graph.node if n.name.startswith(STEM_SCOPE) for o in n.output}
    sources = produced_by_stem | {i.name for i in model.graph.input}
    # An unnamed node cannot be excluded by name: ONNX Runtime would leave *every* unnamed node float.
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in sources and n.name]


def _float_nodes(model: onnx.ModelProto, options: QuantizeOptions) -> list[str]:
    """The nodes quantize_static leaves in float: the stem, and by default the first Conv."""
    return stem_nodes(model) + (first_conv_nodes(model) if options.float_first_conv else [])


def quantized_scope(options: QuantizeOptions, whole: bool = False) -> str:
    """What is quantized and what stays float, in words (the settings' scope, shown by ``bgsdk inspect``)."""
    stem = "the input stem, the first Conv" if options.float_first_conv else "the input stem"
    if whole:
        return (
            f"whole-strip network only; {stem} (per patch, with its stitching), Softmax and zero-channel Pad stay float"
        )
    return f"patch model only; {stem}, Softmax, crops, stitching and padding stay float"


def _quantize_static(patch_model: onnx.ModelProto, patches: np.ndarray, options: QuantizeOptions) -> onnx.ModelProto:
    """ONNX Runtime's quantizer on a temporary copy of ``patch_model``; its failures become one BuildError."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "auto": CalibrationMethod.MinMax,
    }[options.calib_method]  # auto's choice happens in the build, by the gate
    act = QuantType.QUInt8 if options.activation_type == "uint8" else QuantType.QInt8
    # No CalibMaxIntermediateOutputs: in onnxruntime 1.32 it *discards* the collected
    # batches when the limit is reached instead of merging their ranges. MinMax does
    # not need it anyway: its augmented graph outputs per-tensor ReduceMin/ReduceMax,
    # not the tensors. (entropy/percentile keep whole tensors: more memory.)
    extra: dict[str, Any] = {}
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
                nodes_to_exclude=_float_nodes(onnx.load(str(pre)), options),
                extra_options=extra,
            )
        except Exception as exc:  # ORT's quantizer raises plain exceptions from deep inside
            raise BuildError(
                f"INT8 quantization failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
            ) from None
        return onnx.load(str(dst))


def quantize_patch_model(
    patch_model: onnx.ModelProto, patches: np.ndarray, options: QuantizeOptions
) -> QuantizedPatchModel:
    """Static QDQ quantization of ``input (B,3,P,P) -> logits`` calibrated on ``patches``."""
    import onnxruntime

    options.check()
    t0 = time.perf_counter()
    model = _quantize_static(patch_model, patches, options)
    _strip_unused_domains(model)
    logits_float = float_logits(model)
    ops = op_counts(model)
    if not ops.get("QuantizeLinear") or not ops.get("DequantizeLinear"):
        raise BuildError("INT8 quantization produced no QuantizeLinear/DequantizeLinear nodes")
    model.doc_string = "bgsdk patch model, INT8 QDQ: input (B,3,P,P) = pixels/255 -> logits (B,2,P,P)"
    settings = {
        "format": "QDQ",
        "tool": f"onnxruntime.quantization {onnxruntime.__version__} (quant_pre_process + quantize_static)",
        "scope": quantized_scope(options),
        "activations": options.activation_type,
        "weights": "int8 symmetric, per-channel" if options.per_channel else "int8 symmetric, per-tensor",
        "calibration_method": options.calib_method,
        "calibration_patches": int(len(patches)),
        "float_first_conv": options.float_first_conv,
        "float_logits": logits_float,
        "quantized_ops": {k: v for k, v in sorted(ops.items()) if k in ("QuantizeLinear", "DequantizeLinear")},
    }
    return QuantizedPatchModel(model, settings, time.perf_counter() - t0)
