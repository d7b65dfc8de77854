"""bgsdk: die-to-die defect segmentation with one self-contained ONNX model.

Runtime dependencies are numpy, onnxruntime and tifffile only -- importing
bgsdk never imports torch.
"""

from __future__ import annotations

from .errors import BgsdkError, InputError, ModelError
from .io import read_image, read_mask, to_chw
from .tiling import IMAGE_TYPES, Tiling, calculate_positions, plan_tiling, tiling_for

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BgsdkError",
    "InputError",
    "ModelError",
    "IMAGE_TYPES",
    "Tiling",
    "calculate_positions",
    "plan_tiling",
    "tiling_for",
    "read_image",
    "read_mask",
    "to_chw",
]
