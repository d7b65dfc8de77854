"""Simplify and check the composed graph.

onnxsim folds the constant plumbing (shape arithmetic, duplicate constants);
if it fails we keep the unsimplified graph and say so -- the graph is correct
either way, only slightly larger. Then the checks every artifact must pass:
``onnx.checker`` with ``full_check`` (which includes strict shape inference)
and no control-flow or scatter op the configuration does not need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import onnx
from onnx import numpy_helper

from .errors import BuildError
from .export import op_counts
from .graphs import all_graphs

__all__ = [
    "SimplifyResult",
    "simplify",
    "constants_to_initializers",
    "hoist_subgraph_initializers",
    "check_graph",
    "initializer_bytes",
    "FORBIDDEN_OPS",
]

log = logging.getLogger(__name__)

# Ops that have no business in a static tiling graph (a Loop is allowed only when --patch-batch asks for it).
FORBIDDEN_OPS = ("Loop", "If", "ScatterND", "Scan")


@dataclass(frozen=True)
class SimplifyResult:
    model: onnx.ModelProto
    simplified: bool
    warning: str | None = None


def simplify(model: onnx.ModelProto) -> SimplifyResult:
    """onnxsim, falling back to the input model (with a logged warning) if it fails or its check fails."""
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # onnxsim raises plain RuntimeErrors from C++
        msg = (
            f"onnxsim failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); keeping the unsimplified graph"
        )
        log.warning(msg)
        return SimplifyResult(model, False, msg)
    if not ok:
        msg = "onnxsim's own check failed; keeping the unsimplified graph"
        log.warning(msg)
        return SimplifyResult(model, False, msg)
    return SimplifyResult(simplified, True)


def constants_to_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn ``Constant`` nodes carrying a tensor into graph initializers (main graph and subgraphs).

    spox inlines the patch model's weights as Constant nodes. Initializers are what
    tools expect weights to be (ONNX Runtime's quantizer looks weights up as
    initializers; Netron shows them as such) and they are the same bytes.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)

    # Innermost graphs first: rebuilding a parent's node list copies its nodes (and their bodies).
    for graph in reversed(list(all_graphs(out.graph))):
        keep = []
        for node in graph.node:
            attrs = {a.name: a for a in node.attribute}
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and set(attrs) == {"value"}:
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attrs["value"].t)
                tensor.name = node.output[0]
                graph.initializer.append(tensor)
            else:
                keep.append(node)
        del graph.node[:]
        graph.node.extend(keep)
    return out


def hoist_subgraph_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move the initializers of Loop bodies into the main graph (the body reads them as outer-scope values).

    Measured (benchmarks/bench_build.py, w=64): with the weights inside the Loop body
    ONNX Runtime keeps them resident twice (~+140 MB after loading, ~505 MB vs ~180 MB);
    as main-graph initializers they are loaded once like in the one-call graph.
    Names are unique across the model (spox prefixes them); a name that would
    collide stays where it is.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    taken = {t.name for t in out.graph.initializer} | {i.name for i in out.graph.input}
    taken |= {o for n in out.graph.node for o in n.output}

    def body_names(graph: onnx.GraphProto) -> set[str]:
        names = {i.name for i in graph.input} | {o for n in graph.node for o in n.output}
        for n in graph.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    names |= body_names(a.g)
        return names

    for node in out.graph.node:
        for attr in node.attribute:
            if attr.type != onnx.AttributeProto.GRAPH:
                continue
            body = attr.g
            local = body_names(body)
            keep = []
            for t in body.initializer:
                if t.name in taken or t.name in local:
                    keep.append(t)
                else:
                    out.graph.initializer.append(t)
                    taken.add(t.name)
            del body.initializer[:]
            body.initializer.extend(keep)
    return out


def check_graph(model: onnx.ModelProto, allow_loop: bool = False) -> onnx.ModelProto:
    """Full ONNX check + strict shape inference; reject unexpected ops. Returns the shape-inferred model."""
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise BuildError(f"the composed graph fails the ONNX checker: {' '.join(str(exc).split())[:400]}") from None
    ops = op_counts(model)
    allowed = {"Loop"} if allow_loop else set()
    bad = {op: n for op, n in ops.items() if op in FORBIDDEN_OPS and op not in allowed}
    if bad:
        raise BuildError(f"the composed graph contains unexpected op(s) {bad}")
    return inferred


def initializer_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all weights (initializers in every graph): a copy of the weights shows up here."""
    return sum(numpy_helper.to_array(t).nbytes for g in all_graphs(model.graph) for t in g.initializer)
