"""fp16 release models (``build-model --fp16``): a float16 patch model, verified against fp32 like INT8.

GPU-oriented. Half precision pays off where the hardware has fast fp16 math
(tensor cores behind ONNX Runtime's CUDA / TensorRT execution providers). On
x86 CPUs ONNX Runtime runs the fp16 Convs through Casts in float32 (measured,
see below); the build verifies on the CPU provider only because that is what
the build machine has.
No GPU was available when this was written, so **no speed-up has been
measured**: the artifact is offered as verified-accurate, not as faster. And
the CPU verification is weaker than it looks: ONNX Runtime's x86 CPU provider
has no fp16 Conv kernel, so it inserts Casts and computes in float32 on the
fp16-rounded weights (:data:`CPU_VERIFICATION_SCOPE`, recorded in the metadata).

What is converted, and why this way (docs/design.md, "fp16 (GPU-oriented)"):

* Only the **patch model**, with ONNX Runtime's own converter
  (``onnxruntime.transformers.float16.convert_float_to_float16``, no new
  dependency) and ``keep_io_types=True``: the converted patch model still takes
  float32 ``input`` and returns float32 ``logits``; one Cast to fp16 follows the
  input and one Cast back to float32 precedes ``logits``. It is then composed
  exactly like the fp32 one (:func:`bgbuild.compose.compose_full_model`), so the
  Softmax, the defect-channel slice, the centre crops, the stitching and the
  zero-channel Pad stay float32 *by construction*, and the model's I/O contract
  (float32 ``input``/``output``) is unchanged. Softmax in fp16 would round
  small probabilities (the whole heatmap is small probabilities) to coarse steps.
* The converter appends the Casts it creates at the end of the node list
  (not topologically sorted; spox's inliner and ``onnx.checker`` reject that),
  and it turns the ``Resize`` scales into fp16 constants followed by a Cast
  back to float32. :func:`convert_patch_model` re-sorts the graph and folds those
  constant Casts, so inside the ``--patch-batch`` Loop body (which onnxsim
  does not fold) no per-iteration Cast of a constant remains.

Verification is the INT8 gate (:mod:`bgbuild.precision_gate`):
fp32 and fp16 full-image models in ONNX Runtime on held labelled images, max and
mean |diff| of the heatmap, pixel AP / image AUROC of both; fails -- nothing is
written -- if the AP drops by more than ``max_ap_drop`` or the mean |diff|
exceeds ``max_mean_diff`` (tighter default than INT8: fp16 has 11 significant
bits against INT8's 8).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import BuildError
from .export import op_counts
from .precision_gate import GateOptions

__all__ = [
    "DEFAULT_FP16_MAX_MEAN_DIFF",
    "CPU_VERIFICATION_SCOPE",
    "Fp16Options",
    "Fp16PatchModel",
    "convert_patch_model",
    "topological_sort",
    "fold_constant_casts",
]

# Mean |fp16 - fp32| of the probability over all pixels. fp16's unit roundoff is
# 2^-11 ~ 4.9e-4: the input (pixels/255) is rounded by up to ~2.4e-4 absolute,
# the rounding grows over ~28 layers, and dp = p(1-p) dlogit <= dlogit/4. Heatmaps
# are ~0 almost everywhere, so a sound fp16 model stays orders of magnitude below
# this (~1e-6..1e-5 measured on the test model); an overflow (|activation| >
# 65504 -> inf/NaN) or a broken conversion lands at >= 1e-2.
DEFAULT_FP16_MAX_MEAN_DIFF = 1e-3

# Measured with onnxruntime 1.32 on x86 (SessionOptions.optimized_model_filepath shows the
# "InsertedPrecisionFreeCast" nodes; the fp16 model's output equals the fp32 model with
# fp16-rounded weights exactly). Recorded in the metadata so nobody reads more into the check.
CPU_VERIFICATION_SCOPE = (
    "ONNX Runtime's x86 CPU provider has no fp16 Conv kernel: it inserts Casts and computes in float32 on the "
    "fp16-rounded weights, so the CPU check covers the graph, the I/O contract and fp16 weight rounding, not fp16 "
    "activation arithmetic; check on the GPU provider before relying on it"
)


@dataclass(frozen=True)
class Fp16Options(GateOptions):
    """``build-model --fp16`` settings: the gate's limits, with a tighter mean-diff default than INT8."""

    max_mean_diff: float = DEFAULT_FP16_MAX_MEAN_DIFF

    def check(self) -> None:
        self.check_gate("fp16")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- conversion


@dataclass(frozen=True)
class Fp16PatchModel:
    model: onnx.ModelProto
    settings: dict[str, Any]  # recorded in metadata and manifest
    seconds: float


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs (stable otherwise).

    Names not produced in this graph (inputs, initializers, outer-scope values) count as available.
    """
    produced = {o for n in graph.node for o in n.output if o}
    avail = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    pending, order = list(graph.node), []
    while pending:
        rest = []
        for n in pending:
            if all(not i or i in avail or i not in produced for i in n.input):
                order.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise BuildError(f"fp16 conversion produced a cyclic graph (stuck at node {rest[0].name!r})")
        pending = rest
    del graph.node[:]
    graph.node.extend(order)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    if node.op_type != "Constant" or len(node.attribute) != 1 or node.attribute[0].name != "value":
        return None
    return numpy_helper.to_array(node.attribute[0].t)


def fold_constant_casts(graph: onnx.GraphProto) -> int:
    """Replace ``Cast(Constant)`` / ``Cast(initializer)`` by a Constant of the cast value. Returns how many.

    The source constant is dropped when the Cast was its only consumer.
    """
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in graph.output}
    folded, drop, new_nodes = 0, set(), []
    for n in graph.node:
        src = n.input[0] if n.op_type == "Cast" and n.input else None
        value = None
        if src is not None:
            if src in inits:
                value = numpy_helper.to_array(inits[src])
            elif src in producer:
                value = _constant_value(producer[src])
        if value is None:
            new_nodes.append(n)
            continue
        to = next(a.i for a in n.attribute if a.name == "to")
        cast = value.astype(helper.tensor_dtype_to_np_dtype(to))
        new_nodes.append(
            helper.make_node(
                "Constant", [], [n.output[0]], name=n.name or None, value=numpy_helper.from_array(cast, n.output[0])
            )
        )
        folded += 1
        if src is not None and uses.get(src, 0) == 1 and src not in outputs:
            drop.add(src)
    keep = [n for n in new_nodes if not (n.op_type == "Constant" and n.output[0] in drop)]
    del graph.node[:]
    graph.node.extend(keep)
    inits_keep = [t for t in graph.initializer if t.name not in drop]
    del graph.initializer[:]
    graph.initializer.extend(inits_keep)
    return folded


def convert_patch_model(patch_model: onnx.ModelProto) -> Fp16PatchModel:
    """float16 weights and activations, float32 ``input``/``logits`` (Casts at both ends)."""
    import onnxruntime
    from onnxruntime.transformers.float16 import convert_float_to_float16

    t0 = time.perf_counter()
    src = onnx.ModelProto()
    src.CopyFrom(patch_model)
    try:
        model = convert_float_to_float16(src, keep_io_types=True)
    except Exception as exc:  # the converter raises plain exceptions from deep inside
        raise BuildError(f"fp16 conversion failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
    topological_sort(model.graph)
    folded = fold_constant_casts(model.graph)
    topological_sort(model.graph)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise BuildError(f"the fp16 patch model does not check ({' '.join(str(exc).split())[:300]})") from None
    g = model.graph
    ios = [(v.name, v.type.tensor_type.elem_type) for v in list(g.input) + list(g.output)]
    if any(t != onnx.TensorProto.FLOAT for _, t in ios):
        raise BuildError(f"the fp16 patch model must keep float32 input/logits, got {ios}")
    weights = [t for t in g.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    fp16_weights = sum(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    if not fp16_weights:
        raise BuildError("fp16 conversion left no float16 weights")
    ops = op_counts(model)
    model.doc_string = (
        "bgsdk patch model, float16 inside: input (B,3,P,P) float32 = pixels/255 -> logits (B,2,P,P) float32"
    )
    settings = {
        "precision": "fp16",
        "tool": f"onnxruntime.transformers.float16.convert_float_to_float16 (onnxruntime {onnxruntime.__version__}), "
        "keep_io_types=True",
        "scope": "patch model only (weights and activations float16); input cast to float16, logits cast back to "
        "float32; Softmax, crops, stitching and padding stay float32",
        "io": "float32 input and output (contract unchanged)",
        "fp16_initializers": int(fp16_weights),
        "float_initializers": int(len(weights) - fp16_weights),
        "casts": int(ops.get("Cast", 0)),
        "folded_constant_casts": folded,
        "target": "GPU execution providers (CUDA/TensorRT); verified on CPU; speed not measured (no GPU available)",
        "verification_scope": CPU_VERIFICATION_SCOPE,
    }
    return Fp16PatchModel(model, settings, time.perf_counter() - t0)
