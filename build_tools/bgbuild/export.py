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

from bgsdk.tiling import Tiling

from .compose import PATCH_INPUT, PATCH_OUTPUT, SUPPORTED_OPSETS
from .errors import BuildError
from .graphs import all_graphs

__all__ = ["export_patch_model", "export_whole_model", "op_counts"]


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    """Op types in the main graph and every subgraph (Loop bodies)."""
    counts: Counter[str] = Counter()
    for graph in all_graphs(model.graph):
        counts.update(node.op_type for node in graph.node)
    return counts


def export_patch_model(model: torch.nn.Module, patch: int, opset: int = 17) -> onnx.ModelProto:
    """``input (B,3,P,P)`` float32 -> ``logits (B,2,P,P)``, B dynamic; P static."""
    exported = _export(model.eval(), (patch, patch), opset)
    exported.doc_string = "bgsdk patch model: input (B,3,P,P) = pixels/255 -> logits (B,2,P,P) (background, defect)"
    return exported


def export_whole_model(model: torch.nn.Module, tiling: Tiling, opset: int = 17) -> onnx.ModelProto:
    """The whole-strip network (:class:`bgtrain.infer.WholeStrip`: the stem per tile of ``tiling``, the body
    once over the strip): ``input (B,3,H,W)`` -> ``logits (B,2,H,W)`` at the tiling's image size."""
    from bgtrain.infer import WholeStrip

    exported = _export(WholeStrip(model.eval(), tiling).eval(), (tiling.height, tiling.width), opset)
    # An upsampling to an odd skip's size is a Resize whose sizes input concatenates the (dynamic) batch, so
    # the exporter leaves the output's sides symbolic; they are the strip's (the head folding needs them).
    dims = exported.graph.output[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = tiling.height, tiling.width
    exported.doc_string = "bgsdk whole-strip network: input (B,3,H,W) = pixels/255 -> logits (B,2,H,W)"
    return exported


def _export(model: torch.nn.Module, size: tuple[int, int], opset: int) -> onnx.ModelProto:
    """TorchScript export at ``(B,3,*size)``, B dynamic, BatchNorm folded (checked)."""
    ph, pw = size
    if opset not in SUPPORTED_OPSETS:
        raise BuildError(f"opset {opset} is not supported; choose one of {list(SUPPORTED_OPSETS)}")
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
    return exported
