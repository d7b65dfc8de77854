"""bgbuild: turn a training checkpoint into one self-contained full-image ONNX model.

``build_model(checkpoint, out, BuildOptions(...)) -> BuildReport`` runs the whole
pipeline; its stages (export, compose, finalize, metadata, verify, write) are
public so benchmarks and later stages reuse them. INT8 (``--quantize``) and fp16 (``--fp16``)
share one reduced-precision stage and one release gate (:mod:`bgbuild.precision_gate`).
"""

from __future__ import annotations

from .artifact import read_metadata, write_artifacts
from .build import DEFAULT_PATCH_BATCH, BuildOptions, BuildReport, build_model
from .compose import ComposeOptions, compose_full_model
from .errors import BuildError, VerificationError
from .export import export_patch_model, export_whole_model
from .fp16 import Fp16Options
from .precision_gate import GateOptions
from .quantize import QuantizeOptions
from .verify import VerificationResult, verify_model

__all__ = [
    "DEFAULT_PATCH_BATCH",
    "BuildError",
    "BuildOptions",
    "BuildReport",
    "ComposeOptions",
    "Fp16Options",
    "GateOptions",
    "QuantizeOptions",
    "VerificationError",
    "VerificationResult",
    "build_model",
    "compose_full_model",
    "export_patch_model",
    "export_whole_model",
    "read_metadata",
    "verify_model",
    "write_artifacts",
]
