"""What one image's run gives back: a :class:`Result`, or an :class:`ErrorResult`.

Batch runs (``Segmenter.run_batch``/``iter_folder``) keep going past a bad file
by default, so a failure has to be a value in the result stream rather than an
exception. The two types share ``ok`` and ``source``; an ``ErrorResult``
re-raises its error when its heatmap, score, raw output or mask is used, so code
that forgets to check ``ok`` still fails loudly -- at the right image, with the
original message -- instead of working on an empty array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NoReturn

import numpy as np

from .errors import BgsdkError

__all__ = ["Result", "ErrorResult", "Outcome"]


@dataclass(frozen=True, eq=False)
class Result:
    """The model's answer for one image.

    ``raw`` is the model output exactly as ONNX Runtime returned it, ``(3,H,W)``
    float32 (channel 0 the defect probability, channels 1-2 zeros by contract);
    ``heatmap`` is ``raw[0]`` (a view, no copy); ``score`` is the image-level
    score, the heatmap maximum (the validation metric of the trainer uses the
    same definition). ``source`` is the file path, or ``None`` for an array.
    """

    heatmap: np.ndarray
    raw: np.ndarray
    score: float
    source: str | None = None
    ok: ClassVar[bool] = True

    @classmethod
    def from_raw(cls, raw: np.ndarray, source: str | None = None) -> Result:
        heatmap = raw[0]
        return cls(heatmap=heatmap, raw=raw, score=float(heatmap.max()), source=source)

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        """Defect pixels: ``heatmap > threshold`` (strictly greater), ``(H,W)`` bool."""
        t = float(threshold)
        if not math.isfinite(t):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        return self.heatmap > t

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.heatmap.shape)
        return f"Result(source={self.source!r}, score={self.score:.4f}, heatmap={shape})"


@dataclass(frozen=True, eq=False)
class ErrorResult:
    """An image that could not be processed; ``error`` says which and why."""

    source: str | None
    error: BgsdkError
    ok: ClassVar[bool] = False

    def raise_error(self) -> NoReturn:
        raise self.error

    @property
    def heatmap(self) -> np.ndarray:
        self.raise_error()

    @property
    def raw(self) -> np.ndarray:
        self.raise_error()

    @property
    def score(self) -> float:
        self.raise_error()

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        self.raise_error()

    def __repr__(self) -> str:
        return f"ErrorResult(source={self.source!r}, error={str(self.error)!r})"


Outcome = Result | ErrorResult
