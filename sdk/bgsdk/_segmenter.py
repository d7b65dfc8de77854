"""``Segmenter``: one full-image ONNX model, any accepted input, a heatmap out.

Preprocessing is deliberately nothing more than the documented input rule
(:mod:`bgsdk.io`: 3/4 channels, CHW/HWC, float/uint8/uint16, no NaN) followed by
``/ contract.input_scale`` in float32, so the SDK's output is bit for bit what
``session.run`` gives on ``read_image(path)[None] / 255``. Tiling, softmax and
stitching live inside the model graph, not here.

Thread safety: after ``__init__`` a ``Segmenter`` holds no mutable state;
ONNX Runtime's ``InferenceSession.run`` may be called from several threads at
once. Every call builds its own batch buffer, so one ``Segmenter`` can serve a
thread pool. (A single generator from ``iter_batch``/``iter_folder`` must not be
advanced from two threads at once -- true of any Python generator.)
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Iterable, Iterator, Sequence, Union

import numpy as np

from ._operating_point import OperatingPoint, with_override
from ._result import ErrorResult, Outcome, Result
from ._sanity import value_problems
from ._session import ModelInfo, ProviderSpec, describe, open_session
from .contract import Contract
from .errors import BgsdkError, ChannelOrderWarning, InputError, InputWarning, ModelError
from .io import CHANNEL_ORDERS, combine, is_ambiguous_colour, list_images, read_image, to_chw

__all__ = ["Segmenter", "ImageLike", "ON_ERROR"]

log = logging.getLogger(__name__)

#: A file path (TIFF/PNG/JPG/BMP/.npy) or an array in any accepted layout.
ImageLike = Union[str, "os.PathLike[str]", np.ndarray, Any]
#: The reference die(s) of a single-die target: one (used as both references) or two images.
Refs = Sequence[ImageLike]

#: ``"return"``: a bad image becomes an :class:`ErrorResult` and the run goes on;
#: ``"raise"``: its :class:`InputError` is raised once the images before it are yielded.
ON_ERROR = ("return", "raise")

_Pending = tuple[str | None, np.ndarray | BgsdkError]


# Images per model call. One strip already holds 18 patches, and on CPU larger batches were slower per
# image in every measurement (docs/performance.md: batch 1/2/4 = 219/283/286 ms per strip, width 16);
# raise it on a GPU, where bigger batches fill the device.
DEFAULT_BATCH_SIZE = 1


class Segmenter:
    """Run a bgsdk full-image model on strips.

    >>> seg = Segmenter("model.onnx")            # doctest: +SKIP
    >>> seg.run("strip.tiff").heatmap.shape      # doctest: +SKIP
    (976, 176)

    ``model_path``: an ONNX model file; ``None`` (the default) uses the model shipped
    inside the package (``bgsdk/models/default.onnx``), or raises
    :class:`~bgsdk._default_model.NoDefaultModelError` (a ``ModelError``) if this
    installation ships none. A PyTorch training checkpoint is a ``ModelError`` that
    says to build it first.

    ``providers``: ``None`` (CPU), or names in priority order -- ``"cpu"``,
    ``"cuda"``, ``"tensorrt"`` or full ONNX Runtime names, optionally as
    ``(name, options)``. A provider this onnxruntime build lacks is a
    :class:`ModelError` listing the available ones; ``fallback=True`` drops it
    with a logged warning and runs on CPU instead. ``threads``: ONNX Runtime
    intra-op threads (``None``: its default, one per physical core).

    ``verify=True`` checks the model file against the sha256 in the
    ``model.json`` beside it and refuses a changed or damaged file
    (:mod:`bgsdk._integrity`). Images whose values look wrong (outside 0..255,
    a constant channel, target identical to a reference: :mod:`bgsdk._sanity`)
    give an :class:`~bgsdk.errors.InputWarning`; ``strict=True`` makes each an
    :class:`InputError` instead (in batches: an ``ErrorResult``).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        providers: Sequence[ProviderSpec] | str | None = None,
        threads: int | None = None,
        *,
        fallback: bool = False,
        verify: bool = False,
        strict: bool = False,
    ) -> None:
        if model_path is None:
            from ._default_model import default_model_path

            model_path = default_model_path()
        self._strict = bool(strict)
        self._session = open_session(model_path, providers, threads, fallback, verify=verify)
        self._init_from(describe(self._session, model_path), threads)

    def _init_from(self, info: ModelInfo, threads: int | None) -> None:
        """Everything derived from the validated model description (shared with ``TritonSegmenter``)."""
        self._info = info
        self._threads = threads
        self._scale = np.float32(self._info.input_scale)
        self._shape = (3, self._info.height, self._info.width)
        self._op = _read_operating_point(self._info)
        self._warned_colour = False  # the ambiguous-colour warning is given once per Segmenter

    # ------------------------------------------------------------------ facts
    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def contract(self) -> Contract | None:
        """The model's recorded contract (``None`` for a model without metadata)."""
        return self._info.contract

    @property
    def model_path(self) -> str:
        return self._info.path

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` every input must have."""
        return self._info.height, self._info.width

    @property
    def providers(self) -> list[str]:
        """Execution providers actually active, in priority order."""
        return list(self._session.get_providers())

    @property
    def strict(self) -> bool:
        """Whether suspicious input values are refused (``True``) or only warned about."""
        return self._strict

    @property
    def operating_point(self) -> OperatingPoint:
        """The model's calibrated threshold and min area (``calibrated=False``: an older model, 0.5 / 1)."""
        return self._op

    @property
    def threads(self) -> int | None:
        return self._threads

    @property
    def session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession`` (for raw comparisons)."""
        return self._session

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"Segmenter({self.model_path!r}, {h}x{w}, providers={self.providers}, threads={self._threads})"

    # --------------------------------------------------------- preprocessing
    def _load(
        self, x: ImageLike, label: str, refs: Refs | None = None, channel_order: str | None = None
    ) -> tuple[str | None, np.ndarray]:
        """``(source, (3,H,W) float32 0..255)``; raises ``InputError``."""
        source: str | None = os.fspath(x) if isinstance(x, (str, os.PathLike)) else None
        try:
            if refs is not None:
                img = combine(x, refs, source or label)
            elif source is not None:
                img = read_image(source)
            else:
                if channel_order is None and is_ambiguous_colour(x):
                    self._warn_colour(label)
                img = to_chw(x, label, channel_order=channel_order)
        except OSError as exc:  # permissions, I/O errors: still this file's problem
            where = exc.filename if isinstance(exc.filename, str) else source or label
            raise InputError(where, f"cannot be read ({exc.strerror or exc})") from None
        if img.shape != self._shape:
            h, w = self.image_size
            raise InputError(
                source or label,
                f"wrong image size: this model expects {h}x{w} (rows x cols), got {img.shape[1]}x{img.shape[2]}",
            )
        problems = value_problems(img)
        if problems:
            if self._strict:
                raise InputError(source or label, "; ".join(problems) + " (refused: strict=True)")
            warnings.warn(InputWarning(f"{source or label}: {'; '.join(problems)}"), stacklevel=3)
        return source, img

    def _warn_colour(self, label: str) -> None:
        if self._warned_colour:
            return
        self._warned_colour = True
        warnings.warn(
            ChannelOrderWarning(
                f"{label}: a channel-last uint8 3-channel array is ambiguous; taken as target, ref1, ref2 "
                "(channel_order='trr', the same as OpenCV's 'bgr' of a data-set PNG). Pass channel_order='rgb' "
                "for an array from PIL/imageio, or channel_order='trr'/'bgr' to silence this (warned once)"
            ),
            stacklevel=4,
        )

    def preprocess(self, x: ImageLike, *, refs: Refs | None = None, channel_order: str | None = None) -> np.ndarray:
        """Exactly what the model is fed for ``x``: ``(3,H,W)`` float32, ``pixels / input_scale``."""
        _check_order(channel_order)
        _, img = self._load(x, "array", refs, channel_order)
        scaled: np.ndarray = img / self._scale
        return scaled

    # ------------------------------------------------------------- inference
    def _infer(self, images: list[np.ndarray]) -> np.ndarray:
        """Run ``images`` (each (3,H,W), 0..255) as one batch; returns ``(n,3,H,W)``."""
        n = len(images)
        rows = self._info.batch or n  # a fixed-batch model is padded up to its size
        batch = np.zeros((rows,) + self._shape, dtype=np.float32)
        for i, img in enumerate(images):
            np.divide(img, self._scale, out=batch[i])
        out = self._forward(batch)
        expected = (rows,) + self._shape
        if not isinstance(out, np.ndarray) or out.shape != expected or out.dtype != np.float32:
            got = f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
            raise ModelError(self.model_path, f"model output is {got}, expected float32 {expected}")
        if not np.isfinite(out[:n]).all():
            bad = int(np.count_nonzero(~np.isfinite(out[:n])))
            raise ModelError(
                self.model_path,
                f"model output contains {bad} NaN/Inf value(s) on a batch of {n} (a broken model, or inputs far "
                "outside 0..255); not returned as a heatmap",
            )
        return out[:n] if rows != n else out

    def _forward(self, batch: np.ndarray) -> Any:
        """The model call itself on a prepared ``(N,3,H,W)`` batch (``TritonSegmenter`` sends it to a server)."""
        try:
            return self._session.run([self._info.output_name], {self._info.input_name: batch})[0]
        except Exception as exc:
            raise ModelError(self.model_path, f"inference failed on a batch of {len(batch)}: {exc}") from exc

    def _point(self, threshold: float | None, min_area: int | None) -> OperatingPoint:
        return with_override(self._op, threshold, min_area)

    def run(
        self,
        x: ImageLike,
        *,
        refs: Refs | None = None,
        channel_order: str | None = None,
        threshold: float | None = None,
        min_area: int | None = None,
    ) -> Result:
        """Segment one image (path or array); raises ``InputError`` for bad input.

        ``refs``: ``x`` is one die (a single-channel image: path or array) and these are
        its reference dies -- ``[template]`` (used as both references) or ``[ref1, ref2]``.
        ``channel_order`` (a 3-channel array; :data:`bgsdk.io.CHANNEL_ORDERS`): ``"trr"``
        / ``"bgr"`` take channel 0 as the target, ``"rgb"`` channel 2; files always read
        B,G,R = target, ref1, ref2. A channel-last uint8 3-channel array without it is
        read as ``"trr"`` with a :class:`~bgsdk.errors.ChannelOrderWarning` (once).
        ``threshold``/``min_area`` override the model's operating point for this
        call (defects, verdict and ``mask()``); ``None`` keeps the model's.
        """
        op = self._point(threshold, min_area)
        _check_order(channel_order)
        source, img = self._load(x, "array", refs, channel_order)
        return Result.from_raw(self._infer([img])[0], source, op.threshold, op.min_area, img)

    def _flush(self, pending: list[_Pending], op: OperatingPoint) -> Iterator[Outcome]:
        images = [p for _, p in pending if isinstance(p, np.ndarray)]
        out = self._infer(images) if images else None
        k = 0
        for source, p in pending:
            if isinstance(p, np.ndarray):
                assert out is not None
                yield Result.from_raw(out[k], source, op.threshold, op.min_area, p)
                k += 1
            else:
                yield ErrorResult(source, p)

    def iter_batch(
        self,
        items: Iterable[ImageLike],
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: str = "return",
        *,
        refs: Iterable[Refs | None] | None = None,
        channel_order: str | None = None,
        threshold: float | None = None,
        min_area: int | None = None,
    ) -> Iterator[Outcome]:
        """Stream results for ``items`` in order, ``batch_size`` images per model call.

        ``items`` is consumed lazily: at most one batch of images is in memory,
        so a generator over a huge folder is fine. A fixed-batch model caps the
        batch size at its own. See :data:`ON_ERROR` for ``on_error``;
        ``refs``: one entry per item (``None``, or that item's references as in
        :meth:`run`), consumed alongside ``items``; ``channel_order``,
        ``threshold``/``min_area`` as in :meth:`run`.
        """
        op = self._point(threshold, min_area)
        _check_order(channel_order)
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        fixed = self._info.batch
        if fixed is not None and batch_size != fixed:
            log.info("%s: fixed batch size %d; using it instead of %d", self.model_path, fixed, batch_size)
            batch_size = fixed
        pending: list[_Pending] = []
        n_images = 0
        ref_iter = iter(refs) if refs is not None else None
        for i, item in enumerate(items):
            item_refs = next(ref_iter, None) if ref_iter is not None else None
            try:
                source, img = self._load(item, f"items[{i}]", item_refs, channel_order)
            except InputError as exc:
                if on_error == "raise":
                    yield from self._flush(pending, op)
                    raise exc
                pending.append((os.fspath(item) if isinstance(item, (str, os.PathLike)) else None, exc))
                continue
            pending.append((source, img))
            n_images += 1
            if n_images == batch_size:
                yield from self._flush(pending, op)
                pending, n_images = [], 0
        yield from self._flush(pending, op)

    def run_batch(
        self,
        items: Iterable[ImageLike],
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: str = "return",
        *,
        refs: Iterable[Refs | None] | None = None,
        channel_order: str | None = None,
        threshold: float | None = None,
        min_area: int | None = None,
    ) -> list[Outcome]:
        """:meth:`iter_batch` collected into a list (same order as ``items``)."""
        return list(
            self.iter_batch(
                items,
                batch_size,
                on_error,
                refs=refs,
                channel_order=channel_order,
                threshold=threshold,
                min_area=min_area,
            )
        )

    def iter_folder(
        self,
        folder: str | os.PathLike[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: str = "return",
        *,
        threshold: float | None = None,
        min_area: int | None = None,
    ) -> Iterator[Outcome]:
        """Stream results for the image files directly inside ``folder``, sorted by name.

        Only the file list is built up front; pixels are read one batch at a
        time. A missing folder raises ``InputError`` at once.
        """
        paths = list_images(folder)
        return self.iter_batch(paths, batch_size, on_error, threshold=threshold, min_area=min_area)


def _check_order(channel_order: str | None) -> None:
    if channel_order is not None and channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")


def _read_operating_point(info: ModelInfo) -> OperatingPoint:
    """The model's operating point; an older model is flagged uncalibrated (logged), a broken one a ModelError."""
    try:
        op = OperatingPoint.from_metadata(info.metadata)
    except (ValueError, TypeError) as exc:
        raise ModelError(info.path, f"metadata 'bgsdk.operating_point' is not valid ({exc})") from None
    if not op.calibrated:
        log.info(
            "%s: no calibrated operating point; using threshold %g, min area %d", info.path, op.threshold, op.min_area
        )
    return op
