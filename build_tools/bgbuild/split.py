"""Split the patch model by resolution: full-resolution ends, low-resolution middle.

The hybrid tiled build (``--chunking hybrid``, docs/design.md) runs the full-resolution
layers of the UNet -- where the activations are large -- on chunks of K patches, and
the low-resolution middle once on all patches. That needs the patch model in three
parts, cut on tensors:

* ``front``:  ``input`` -> the tensors the middle and the back read (``down`` and ``skips``)
* ``middle``: ``down`` -> ``up``   (every node whose output is at ``P / 2**levels`` px or less)
* ``back``:   ``skips`` + ``up`` -> ``logits``

A node belongs to the middle when its output's height is at most ``P / 2**levels``
(except the MaxPool leaving the front, which pools before the cut so that a quarter of
the data crosses it); a higher-resolution node is in the back when it depends on the
middle, else in the front. Works on any precision of the same network (fp32, QDQ INT8, fp16): a boundary
tensor written by a ``DequantizeLinear`` is moved to that node's uint8/int8 input, so
the quantized tensor crosses the cut (4x less to hold and to concatenate) and every
``DequantizeLinear -> op`` pair ONNX Runtime fuses stays inside one part.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import shape_inference
from onnx.utils import Extractor

__all__ = ["PatchModelParts", "split_by_resolution"]


@dataclass(frozen=True)
class PatchModelParts:
    """Three models whose composition is the patch model; tensor names as in the patch model."""

    front: onnx.ModelProto
    middle: onnx.ModelProto
    back: onnx.ModelProto
    down: list[str]  # front -> middle
    up: list[str]  # middle -> back
    skips: list[str]  # front -> back


def _heights(model: onnx.ModelProto) -> dict[str, int]:
    """Static height (dim 2) of every rank-4 *activation* shape inference can see.

    Activations have the symbolic batch dim; weights (e.g. a DequantizeLinear's float
    (Cout,Cin,3,3) output) have a static one and are left out."""
    out: dict[str, int] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and not dims[0].HasField("dim_value") and dims[2].HasField("dim_value"):
            out[vi.name] = dims[2].dim_value
    return out


# Low-resolution nodes that stay with a front producer: the MaxPool that leaves the last
# front level, and in a QDQ model the QuantizeLinear after it.
_POOL_SIDE = ("MaxPool", "QuantizeLinear")
# The exported names of the parameter-free input stem's nodes (bgtrain.model; bgbuild.quantize keeps them float).
STEM_SCOPE = "/stem/"


def _assign(model: onnx.ModelProto, heights: dict[str, int], cut: int) -> dict[int, str]:
    """Node index -> ``front``/``middle``/``back`` (nodes with no rank-4 output: ``None``, left to extraction)."""
    nodes = model.graph.node
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    part: dict[int, str] = {}
    below: set[int] = set()  # nodes in or downstream of the middle
    for i, n in enumerate(nodes):  # ONNX graphs are topologically sorted
        if n.name.startswith(STEM_SCOPE):
            part[i] = "front"  # the input stem runs before the first Conv, whatever its tensors' shapes
            continue
        h = next((heights[o] for o in n.output if o in heights), None)
        downstream = any(producer.get(t) in below for t in n.input)
        feeds = [part.get(producer[t]) for t in n.input if t in producer and t in heights]
        if h is not None and h <= cut and not downstream and n.op_type in _POOL_SIDE and feeds == ["front"]:
            part[i] = "front"  # the pooling (and its QuantizeLinear) before the cut: 1/4 of the data crosses
        elif h is not None and h <= cut:
            part[i] = "middle"
            below.add(i)
        elif h is not None:
            part[i] = "back" if downstream else "front"
            if downstream:
                below.add(i)
        elif downstream:
            below.add(i)
    return part


def split_by_resolution(model: onnx.ModelProto, levels: int = 1) -> PatchModelParts | None:
    """Cut ``model`` (``input (B,3,P,P) -> logits``) where the resolution drops below ``P / 2**(levels-1)``.

    ``None`` when there is nothing to cut: no layer at or below ``P / 2**levels`` px
    with a full-resolution layer after it (the whole model is then "full resolution").
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    heights = _heights(inferred)
    g = inferred.graph
    size = heights[g.input[0].name]
    part = _assign(inferred, heights, size // 2**levels)
    if "middle" not in part.values() or "back" not in part.values():
        return None
    nodes = g.node
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    init = {t.name for t in g.initializer}

    def source(t: str) -> str:
        """The tensor to cut on for ``t``: a DequantizeLinear's quantized input rather than its float output."""
        i = producer.get(t)
        if i is not None and nodes[i].op_type == "DequantizeLinear" and nodes[i].input[0] not in init:
            return nodes[i].input[0]
        return t

    edges: dict[tuple[str, str], list[str]] = {("front", "middle"): [], ("middle", "back"): [], ("front", "back"): []}
    graph_input = g.input[0].name
    for i, n in enumerate(nodes):
        to = part.get(i)
        for t in n.input:
            frm = "front" if t == graph_input else part.get(producer[t]) if t in producer else None
            if to and frm and frm != to and (frm, to) in edges and source(t) not in edges[frm, to]:
                edges[frm, to].append(source(t))
    down, up, skips = edges["front", "middle"], edges["middle", "back"], edges["front", "back"]
    front_out = [t for t in dict.fromkeys(down + skips) if t != graph_input]  # the input passes through as is
    if not front_out:
        return None
    ex = Extractor(inferred)
    return PatchModelParts(
        front=ex.extract_model([g.input[0].name], front_out),
        middle=ex.extract_model(down, up),
        back=ex.extract_model(skips + up, [o.name for o in g.output]),
        down=down,
        up=up,
        skips=skips,
    )
