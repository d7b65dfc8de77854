"""What one image's run gives back: a :class:`Result`, or an :class:`ErrorResult`.

Batch runs (``Segmenter.run_batch``/``iter_folder``) keep going past a bad file
by default, so a failure has to be a value in the result stream rather than an
exception. The two types share ``ok`` and ``source``; an ``ErrorResult``
re-raises its error when its heatmap, score, raw output or mask is used, so code
that forgets to check ``ok`` still fails loudly -- at the right image, with the
original message -- instead of working on an empty array.

A ``Result`` also carries the operating point it was judged at (``threshold``,
``min_area``: the model's calibrated point unless overridden per call), the
defect list at that point (:mod:`bgsdk._defects`) and the verdict: ``"fail"``
when at least one defect remains, else ``"pass"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NoReturn

import numpy as np

from ._defects import Defect, find_defects
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
    ``threshold``/``min_area``: the operating point used for ``defects`` and
    ``verdict``; ``defects``: components of ``heatmap > threshold`` with at least
    ``min_area`` pixels, in deterministic (raster) order.
    """

    heatmap: np.ndarray
    raw: np.ndarray
    score: float
    source: str | None = None
    threshold: float = 0.5
    min_area: int = 1
    defects: tuple[Defect, ...] = ()
    ok: ClassVar[bool] = True

    @classmethod
    def from_raw(
        cls,
        raw: np.ndarray,
        source: str | None = None,
        threshold: float = 0.5,
        min_area: int = 1,
        image: np.ndarray | None = None,
    ) -> Result:
        """Wrap a model output; ``image`` (the ``(3,H,W)`` input, 0..255) gives the defects' polarity."""
        heatmap = raw[0]
        defects = find_defects(heatmap, threshold, min_area, image)
        return cls(
            heatmap=heatmap,
            raw=raw,
            score=float(heatmap.max()),
            source=source,
            threshold=float(threshold),
            min_area=int(min_area),
            defects=defects,
        )

    @property
    def verdict(self) -> str:
        """``"fail"`` when at least one defect remains at the operating point, else ``"pass"``."""
        return "fail" if self.defects else "pass"

    def mask(self, threshold: float | None = None) -> np.ndarray:
        """Defect pixels: ``heatmap > threshold`` (strictly greater), ``(H,W)`` bool.

        ``threshold=None`` uses the result's own (the model's operating point).
        """
        t = self.threshold if threshold is None else float(threshold)
        if not math.isfinite(t):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        out: np.ndarray = self.heatmap > np.float32(t)
        return out

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.heatmap.shape)
        return (
            f"Result(source={self.source!r}, score={self.score:.4f}, verdict={self.verdict!r}, "
            f"defects={len(self.defects)}, heatmap={shape})"
        )


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

    @property
    def defects(self) -> tuple[Defect, ...]:
        self.raise_error()

    @property
    def verdict(self) -> str:
        self.raise_error()

    @property
    def threshold(self) -> float:
        self.raise_error()

    @property
    def min_area(self) -> int:
        self.raise_error()

    def mask(self, threshold: float | None = None) -> np.ndarray:
        self.raise_error()

    def __repr__(self) -> str:
        return f"ErrorResult(source={self.source!r}, error={str(self.error)!r})"


Outcome = Result | ErrorResult
