"""bgsdk: die-to-die defect segmentation with one self-contained ONNX model.

>>> import bgsdk
>>> seg = bgsdk.Segmenter()                 # doctest: +SKIP  (the model shipped in the package)
>>> seg.run("strip.tiff").verdict           # doctest: +SKIP
'pass'

Runtime dependencies are numpy, onnxruntime and tifffile only -- importing
bgsdk never imports torch. Public: :class:`Segmenter`, :class:`Result` and the
names in ``__all__``; the modules :mod:`bgsdk.io`, :mod:`bgsdk.tiling`,
:mod:`bgsdk.contract`, :mod:`bgsdk.errors`. Modules with a leading underscore
are internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import BgsdkError, BgsdkWarning, InputError, InputWarning, ModelError
from .io import read_image, read_mask, to_chw
from .tiling import IMAGE_TYPES, Tiling, calculate_positions, plan_tiling, tiling_for

__version__ = "0.1.0"

# Segmenter/Result pull in onnxruntime (~0.1 s); load them on first use so that
# ``import bgsdk`` stays cheap for the trainer and the CLI helpers (PEP 562).
_LAZY = {"Segmenter": "._segmenter", "Result": "._result", "ErrorResult": "._result"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from ._result import ErrorResult, Result
    from ._segmenter import Segmenter

__all__ = [
    "Segmenter",
    "Result",
    "ErrorResult",
    "__version__",
    "BgsdkError",
    "InputError",
    "ModelError",
    "BgsdkWarning",
    "InputWarning",
    "IMAGE_TYPES",
    "Tiling",
    "calculate_positions",
    "plan_tiling",
    "tiling_for",
    "read_image",
    "read_mask",
    "to_chw",
]


def __dir__() -> list[str]:
    """The public names (``Segmenter``, ``Result``, ...) and public modules; internals stay out of completion."""
    return sorted(set(__all__) | {"io", "tiling", "contract", "errors"})
