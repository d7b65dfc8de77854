"""bgsdk: die-to-die defect segmentation with one self-contained ONNX model.

Runtime dependencies are numpy, onnxruntime and tifffile only -- importing
bgsdk never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import BgsdkError, BgsdkWarning, InputError, InputWarning, ModelError
from .io import read_image, read_mask, to_chw
from .tiling import IMAGE_TYPES, Tiling, calculate_positions, plan_tiling, tiling_for

__version__ = "0.1.0"

# Segmenter/Result pull in onnxruntime (~0.1 s); load them on first use so that
# ``import bgsdk`` stays cheap for the trainer and the CLI helpers (PEP 562).
_LAZY = {"Segmenter": "segmenter", "Result": "result", "ErrorResult": "result"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from .result import ErrorResult, Result
    from .segmenter import Segmenter

__all__ = [
    "__version__",
    "BgsdkError",
    "InputError",
    "ModelError",
    "BgsdkWarning",
    "InputWarning",
    "Segmenter",
    "Result",
    "ErrorResult",
    "IMAGE_TYPES",
    "Tiling",
    "calculate_positions",
    "plan_tiling",
    "tiling_for",
    "read_image",
    "read_mask",
    "to_chw",
]
