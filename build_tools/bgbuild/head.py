"""The two-class head, rewritten as one defect logit: ``softmax(l)[1] == sigmoid(l1 - l0)``.

Why: the UNet ends in a ``k x k`` Conv with 2 output channels, then the graph
takes Softmax over them and keeps channel 1. In an INT8 build that head runs in
float (its logits must not be rounded to 256 levels, :func:`bgbuild.quantize.float_logits`),
and ONNX Runtime runs a float Conv with 2 output channels through an im2col of
``C*k*k`` rows per pixel: at w64 on a whole strip the head and the Softmax were
10% of the INT8 model's time (docs/design.md, "The head").

The rewrite is exact algebra, done once on the weights:

* ``l1 - l0`` is one Conv with weights ``W[1] - W[0]`` and bias ``b[1] - b[0]``;
* a ``k x k`` Conv with one output channel is a 1x1 Conv to ``k*k`` "tap" maps
  (tap ``(dy, dx)`` holds ``W[:, dy, dx] . x``) followed by the sum of each tap
  map shifted by its offset -- a GEMM without im2col plus ``k*k`` cheap slices;
* ``Sigmoid`` of that is the Softmax's channel 1 (the composer adds it).

Zero padding of the input gives zero tap maps, so padding the tap maps with
zeros is the same as the Conv's own padding. Only the float summation order
changes (~1e-6 on the logit); the build's 1e-5 verification gate checks the
result against the PyTorch reference, which still uses Softmax.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bgsdk.contract import PATCH_OUTPUT_NAME

__all__ = ["DEFECT_LOGIT", "fold_two_class_head"]

# The folded model's output: (B,1,H,W) = l1 - l0, the defect logit.
DEFECT_LOGIT = "defect_logit"


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _float_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """An initializer's value, or a DequantizeLinear of initializers (per-tensor or per-channel axis 0), in float."""
    inits = {t.name: t for t in graph.initializer}
    if name in inits:
        return numpy_helper.to_array(inits[name]).astype(np.float32)
    dq = next((n for n in graph.node if name in n.output), None)
    if dq is None or dq.op_type != "DequantizeLinear" or any(i and i not in inits for i in dq.input):
        return None
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
    if np.ndim(scale) == 1 and q.ndim > 1:
        if int(_attrs(dq).get("axis", 1)) != 0:  # type: ignore[call-overload]
            return None
        shape = (-1,) + (1,) * (q.ndim - 1)
        scale, zp = scale.reshape(shape), np.reshape(zp, shape) if np.ndim(zp) else zp
    return ((q - zp) * scale).astype(np.float32)


def _head_weights(graph: onnx.GraphProto, conv: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W[1] - W[0], b[1] - b[0])`` when ``conv`` is a 'same' 2-channel Conv, else None."""
    a = _attrs(conv)
    w = _float_value(graph, conv.input[1])
    if w is None or w.ndim != 4 or w.shape[0] != 2:
        return None
    kh, kw = w.shape[2:]
    pads = list(a.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
    same = kh % 2 == 1 and kw % 2 == 1 and pads == [kh // 2, kw // 2, kh // 2, kw // 2]
    plain = all(v == 1 for v in a.get("strides", [1, 1])) and all(v == 1 for v in a.get("dilations", [1, 1]))  # type: ignore[attr-defined]
    if not same or not plain or a.get("group", 1) != 1 or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    b = _float_value(graph, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(2, np.float32)
    if b is None:
        return None
    return (w[1] - w[0]).astype(np.float32), np.float32(b[1] - b[0]).reshape(1)


def _tap_nodes(x: str, wd: np.ndarray, bd: np.ndarray, hw: tuple[int, int], prefix: str) -> tuple[list, list]:
    """Nodes + initializers computing ``conv(x, wd[None], bd)`` ('same' padding) as taps and a shifted sum."""
    c, kh, kw = wd.shape
    (h, w), (ph, pw) = hw, (kh // 2, kw // 2)
    taps = wd.transpose(1, 2, 0).reshape(kh * kw, c)  # tap k = (k // kw, k % kw)
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(taps), f"{prefix}taps"),
        numpy_helper.from_array(np.array([0, c, h * w], np.int64), f"{prefix}flat"),
        numpy_helper.from_array(np.array([0, kh * kw, h, w], np.int64), f"{prefix}maps"),
        numpy_helper.from_array(np.array([0, 0, ph, pw, 0, 0, ph, pw], np.int64), f"{prefix}pads"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), f"{prefix}axes"),
        numpy_helper.from_array(bd.reshape(1), f"{prefix}bias"),  # broadcasts over (N,1,H,W)
    ]
    # A MatMul, not a 1x1 Conv: ONNX Runtime would move a Conv to its blocked layout (a reorder of the
    # whole C-channel input that costs as much as the GEMM); (k*k, C) @ (N, C, H*W) reads x as it is.
    nodes = [
        helper.make_node("Reshape", [x, f"{prefix}flat"], [f"{prefix}xf"]),
        helper.make_node("MatMul", [f"{prefix}taps", f"{prefix}xf"], [f"{prefix}zf"], name=f"{prefix}TapMatMul"),
        helper.make_node("Reshape", [f"{prefix}zf", f"{prefix}maps"], [f"{prefix}z"]),
        helper.make_node("Pad", [f"{prefix}z", f"{prefix}pads"], [f"{prefix}zp"], name=f"{prefix}TapPad"),
    ]
    for k in range(kh * kw):
        dy, dx = divmod(k, kw)
        inits += [
            numpy_helper.from_array(np.array([k, dy, dx], np.int64), f"{prefix}s{k}"),
            numpy_helper.from_array(np.array([k + 1, dy + h, dx + w], np.int64), f"{prefix}e{k}"),
        ]
        nodes.append(
            helper.make_node(
                "Slice", [f"{prefix}zp", f"{prefix}s{k}", f"{prefix}e{k}", f"{prefix}axes"], [f"{prefix}t{k}"]
            )
        )
    shifted = [f"{prefix}t{k}" for k in range(kh * kw)]
    nodes.append(helper.make_node("Sum", [*shifted, f"{prefix}bias"], [DEFECT_LOGIT], name=f"{prefix}TapSum"))
    return nodes, inits


def fold_two_class_head(model: onnx.ModelProto, logits: str = PATCH_OUTPUT_NAME) -> onnx.ModelProto | None:
    """A copy of ``model`` whose output ``logits (B,2,H,W)`` becomes ``DEFECT_LOGIT (B,1,H,W) = l1 - l0``.

    ``None`` when ``logits`` is not written by a plain 'same' Conv with two output
    channels and constant (float or dequantized) weights -- e.g. an fp16 model,
    whose head is followed by a Cast; the composer then keeps Softmax.
    """
    g = model.graph
    if [o.name for o in g.output] != [logits]:
        return None
    conv = next((n for n in g.node if logits in n.output), None)
    if conv is None or conv.op_type != "Conv":
        return None
    found = _head_weights(g, conv)
    if found is None:
        return None
    dims = g.output[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[2:]):
        return None  # the tap maps are reshaped to a static H x W
    wd, bd = found
    hw = (dims[2].dim_value, dims[3].dim_value)
    nodes, inits = _tap_nodes(conv.input[0], wd, bd, hw, prefix="head_fold/")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    keep = [n for n in og.node if logits not in n.output]
    del og.node[:]
    og.node.extend(keep + nodes)
    og.initializer.extend(inits)
    batch = dims[0].dim_param or (dims[0].dim_value or None)
    del og.output[:]
    og.output.append(helper.make_tensor_value_info(DEFECT_LOGIT, onnx.TensorProto.FLOAT, [batch, 1, *hw]))
    _drop_dead_nodes(og)
    return out


def _drop_dead_nodes(g: onnx.GraphProto) -> None:
    """Remove nodes (the old weights' DequantizeLinear) whose outputs nobody reads any more."""
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        keep = [n for n in g.node if any(o in used for o in n.output)]
        if len(keep) == len(g.node):
            break
        del g.node[:]
        g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    alive = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(alive)
