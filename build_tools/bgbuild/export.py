"""Export the patch model (UNet, eval mode, BatchNorm folded) to ONNX.

Exporter choice (docs/design.md): torch >= 2.9 defaults to the dynamo exporter,
which needs onnxscript and opset >= 18 and is still the moving part between
torch releases. This UNet is a plain static CNN (Conv, BatchNorm, ReLU, MaxPool,
bilinear Resize, Concat): the TorchScript exporter (``dynamo=False``) traces it
exactly, folds eval-mode BatchNorm into the Conv weights (``TrainingMode.EVAL``
plus constant folding), supports opset 17 (what the deployed runtimes were
validated on) and is several times faster. We ask for it explicitly and check
its result instead of trusting it: no BatchNormalization may remain.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter

import onnx
import torch

from .compose import PATCH_INPUT, PATCH_OUTPUT, SUPPORTED_OPSETS
from .errors import BuildError
from .graphs import all_graphs

__all__ = ["export_patch_model", "op_counts"]


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    """Op types in the main graph and every subgraph (Loop bodies)."""
    counts: Counter[str] = Counter()
    for graph in all_graphs(model.graph):
        counts.update(node.op_type for node in graph.node)
    return counts


def export_patch_model(model: torch.nn.Module, patch: int | tuple[int, int], opset: int = 17) -> onnx.ModelProto:
    """``input (B,3,P,P)`` float32 -> ``logits (B,2,P,P)``, B dynamic.

    ``patch`` may be ``(H, W)``: the whole-strip build exports the same network at
    the padded strip size (e.g. 992x192); height and width stay static either way.
    """
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    if opset not in SUPPORTED_OPSETS:
        raise BuildError(f"opset {opset} is not supported; choose one of {list(SUPPORTED_OPSETS)}")
    model = model.eval()
    dummy = torch.zeros(2, 3, ph, pw)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation; we chose it on purpose (docs/design.md).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # The aligned stem's whole-pixel shifts are Slices the exporter cannot constant-fold (they stay ops).
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        # The registered stem's shift candidates are constants by design: the tracer's note about them is noise.
        warnings.filterwarnings("ignore", message="torch.tensor results are registered as constants")
        with torch.no_grad():
            torch.onnx.export(
                model,
                (dummy,),
                buf,  # type: ignore[arg-type]  # a file object works; torch's annotation names paths only
                dynamo=False,
                opset_version=opset,
                input_names=[PATCH_INPUT],
                output_names=[PATCH_OUTPUT],
                dynamic_axes={PATCH_INPUT: {0: "B"}, PATCH_OUTPUT: {0: "B"}},
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
            )
    exported = onnx.load_from_string(buf.getvalue())
    ops = op_counts(exported)
    if ops.get("BatchNormalization"):
        raise BuildError(
            f"the exporter left {ops['BatchNormalization']} BatchNormalization node(s) unfolded; "
            "the patch model must be exported in eval mode with BatchNorm folded into the convolutions"
        )
    exported.doc_string = "bgsdk patch model: input (B,3,P,P) = pixels/255 -> logits (B,2,P,P) (background, defect)"
    return exported
