"""Fuzzing in ``make test`` (bounded): hypothesis strategies for image bytes, shapes, dtypes, layouts
and values, through the readers, ``to_chw`` and ``Segmenter.run``.

Property everywhere: a result (a finite ``(3,H,W)`` float32 image, a ``Result``) or a ``bgsdk``
error -- never another exception. Long runs (10,000+ inputs, coverage-guided with atheris):
``make fuzz`` (tests/fuzz/run.py). Derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bgsdk import InputError, InputWarning, ModelError, Segmenter
from bgsdk.io import to_chw
from tests.fuzz.targets import ALLOWED, MODEL_SIZE, small_model, target_read_image, target_segmenter, target_to_chw


def fuzz(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )


DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.byte_string_dtypes(max_len=3),
)
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6),
    st.sampled_from([(3, 4, 5), (4, 5, 6), (5, 6, 3), (6, 5, 4), (3, 4, 3), (4, 4, 4), (3, 0, 5), (2, 5, 5)]),
)


def _layout(arr: np.ndarray, how: int) -> np.ndarray:
    if arr.ndim == 0:
        return arr
    return [arr, np.asfortranarray(arr), arr[::-1], arr[..., ::-1], np.swapaxes(arr, 0, -1)][how]


@fuzz(300)
@given(arr=hnp.arrays(DTYPES, SHAPES, elements=None), how=st.integers(0, 4))
def test_to_chw_any_dtype_shape_layout(arr: np.ndarray, how: int) -> None:
    arr = _layout(arr, how)
    try:
        img = to_chw(arr)
    except InputError:
        return
    assert img.dtype == np.float32 and img.shape[0] == 3 and img.flags.c_contiguous and np.isfinite(img).all()
    # The documented rule: channel-first if the first axis is 1-4, else channel-last; 2 channels -> (t, r, r).
    src = arr[:3] if 1 <= arr.shape[0] <= 4 else np.moveaxis(arr[..., :3], -1, 0)
    src = src[[0, 1, 1]] if src.shape[0] == 2 else src
    assert src.shape[0] == 3  # a single channel is refused without references
    np.testing.assert_array_equal(img, src.astype(np.float32) / (np.float32(257) if arr.dtype == np.uint16 else 1))


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzfiles")


@pytest.fixture(scope="module")
def seg(tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    return Segmenter(small_model(tmp_path_factory.mktemp("fuzz") / "m.onnx"), threads=1)


H, W = MODEL_SIZE
VALUES = st.floats(width=32, allow_nan=True, allow_infinity=True)


@pytest.mark.needs_torch  # the model is built with onnx (tests.fuzz.targets.small_model)
@fuzz(150)
@given(
    shape=st.sampled_from([(3, H, W), (H, W, 3), (4, H, W), (H, W, 4), (3, H, W + 1), (1, H, W), (3, W, H)]),
    dtype=st.sampled_from(["float32", "float64", "float16", "uint8", "uint16", ">f4", "int32", "bool"]),
    fill=VALUES,
    specials=st.lists(st.tuples(st.integers(0, 10**6), VALUES), max_size=4),
    fortran=st.booleans(),
)
def test_segmenter_run_any_array(
    seg: Segmenter, shape: tuple[int, ...], dtype: str, fill: float, specials: list[tuple[int, float]], fortran: bool
) -> None:
    rng = np.random.default_rng(abs(hash((shape, dtype))) % 2**32)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = (rng.uniform(0, 255, shape) + (fill if np.isfinite(fill) else 0)).astype(dtype)
        flat = arr.reshape(-1)
        for at, v in specials:
            try:
                flat[at % flat.size] = v
            except (OverflowError, ValueError):  # e.g. 256 or NaN into uint8: not a value that dtype can hold
                pass
    arr = np.asfortranarray(arr) if fortran else arr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        try:
            r = seg.run(arr)
        except (InputError, ModelError):
            return
    assert r.heatmap.shape == (H, W) and np.isfinite(r.raw).all()


@fuzz(400)
@given(data=st.binary(max_size=1024))
def test_read_image_fuzzed_files(files_dir: Path, data: bytes) -> None:
    """Mutated TIFF/PNG/JPG/BMP/NPY files and raw bytes under every suffix (tests/fuzz/targets.py)."""
    assert target_read_image(data, files_dir) in ALLOWED


@fuzz(300)
@given(data=st.binary(max_size=512))
def test_to_chw_fuzzed_bytes(data: bytes) -> None:
    assert target_to_chw(data) in ALLOWED


@pytest.mark.needs_torch  # the model is built with onnx
@fuzz(100)
@given(data=st.binary(max_size=64))
def test_segmenter_fuzzed_bytes(seg: Segmenter, data: bytes) -> None:
    assert target_segmenter(data, seg) in ALLOWED
