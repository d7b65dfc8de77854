"""The I/O contract of a full-image model, as recorded in its ``metadata_props``.

Production consumers depend on it (docs/design.md): input ``input`` float32
``(N,3,H,W)`` = channels/255; output ``output`` float32 ``(N,3,H,W)`` with
channel 0 the defect probability and channels 1-2 zeros. The builder writes it,
the SDK and ``bgsdk inspect`` read it: one dataclass, one JSON key.

The one home of every fact the packages share about a model: the I/O names, the
input scaling (:func:`scale_input`), the metadata keys, and the patch geometry
(:meth:`Contract.tiling`, :attr:`Contract.num_patches`). bgtrain and bgbuild import
these; nothing copies them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from .tiling import Tiling, plan_axis

__all__ = [
    "Contract",
    "FORMAT_VERSION",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "PATCH_INPUT_NAME",
    "PATCH_OUTPUT_NAME",
    "INPUT_SCALE",
    "scale_input",
    "CONTRACT_KEY",
    "PRODUCER_VERSION_KEY",
    "CHECKPOINT_SHA_KEY",
    "TRAINING_KEY",
    "BUILD_KEY",
    "QUANTIZATION_KEY",
    "PRECISION_KEY",
]

FORMAT_VERSION = 1

# I/O names: the full-image model, and the patch model inside it (what torch.onnx.export writes).
INPUT_NAME = "input"
OUTPUT_NAME = "output"
PATCH_INPUT_NAME = "input"
PATCH_OUTPUT_NAME = "logits"

# File values are 0..255; every model input (full-image or patch, ONNX or PyTorch) is pixels / 255.
INPUT_SCALE = 255.0

# metadata_props keys. The contract is what consumers need; the rest is provenance.
CONTRACT_KEY = "bgsdk.contract"
PRODUCER_VERSION_KEY = "bgsdk.producer_version"
CHECKPOINT_SHA_KEY = "bgsdk.checkpoint_sha256"
TRAINING_KEY = "bgsdk.training"
BUILD_KEY = "bgsdk.build"
# INT8 models only: quantization settings, calibration set, INT8-vs-fp32 verification.
QUANTIZATION_KEY = "bgsdk.quantization"
# fp16 models only (build-model --fp16): conversion settings and the fp16-vs-fp32 verification.
PRECISION_KEY = "bgsdk.precision"


def scale_input(pixels: np.ndarray, scale: float = INPUT_SCALE) -> np.ndarray:
    """``pixels / scale`` in float32: exactly what a model's input gets (the SDK, the build's checks,
    calibration and the PyTorch reference all call this, so they agree bit for bit)."""
    out: np.ndarray = np.asarray(pixels, dtype=np.float32) / np.float32(scale)
    return out


@dataclass(frozen=True)
class Contract:
    height: int
    width: int
    patch: int
    row_positions: tuple[int, ...]
    col_positions: tuple[int, ...]
    row_keep: tuple[tuple[int, int], ...]
    col_keep: tuple[tuple[int, int], ...]
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    input_channels: tuple[str, ...] = ("target", "ref1", "ref2")
    output_channels: tuple[str, ...] = ("defect_probability", "zero", "zero")
    # The model expects pixel values already divided by this (file values are 0..255).
    input_scale: float = INPUT_SCALE
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tiling(cls, tiling: Tiling, **kwargs: Any) -> Contract:
        return cls(
            height=tiling.height,
            width=tiling.width,
            patch=tiling.patch,
            row_positions=tuple(tiling.row_positions),
            col_positions=tuple(tiling.col_positions),
            row_keep=tuple((s.keep_start, s.keep_stop) for s in tiling.rows),
            col_keep=tuple((s.keep_start, s.keep_stop) for s in tiling.cols),
            **kwargs,
        )

    def to_json(self) -> str:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Contract:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("contract is not a JSON object")
        known = set(cls.__dataclass_fields__)
        d = {k: v for k, v in d.items() if k in known}
        for k in ("row_positions", "col_positions", "input_channels", "output_channels"):
            if k in d:
                d[k] = tuple(d[k])
        for k in ("row_keep", "col_keep"):
            if k in d:
                d[k] = tuple(tuple(x) for x in d[k])
        return cls(**d)

    @property
    def num_patches(self) -> int:
        return len(self.row_positions) * len(self.col_positions)

    def tiling(self) -> Tiling:
        """Rebuild the tiling from the recorded positions (and check the crops agree)."""
        rows = plan_axis(self.height, self.patch, len(self.row_positions))
        cols = plan_axis(self.width, self.patch, len(self.col_positions))
        t = Tiling(self.height, self.width, self.patch, rows, cols)
        if tuple(t.row_positions) != tuple(self.row_positions) or tuple(t.col_positions) != tuple(self.col_positions):
            raise ValueError("recorded patch positions do not match the tiling rule")
        return t
