"""Walking an ONNX model's graphs: the main graph and every nested subgraph (Loop bodies)."""

from __future__ import annotations

from typing import Iterator

import onnx

__all__ = ["subgraphs", "all_graphs"]


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held directly by a node's attributes (a Loop's body, an If's branches)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and, depth first, every graph nested in it (mutable protos, safe to edit in place)."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from all_graphs(sub)
