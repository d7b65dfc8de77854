"""Fixtures shared by the C++ example's tests: ONNX Runtime for the build, and the built programs
(cpp_example/cpp_harness.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "cpp_example"))
import cpp_harness  # noqa: E402


@pytest.fixture(scope="session")
def ort_root() -> Path:
    """ONNX Runtime for the build (headers + this interpreter's library); skips without a toolchain."""
    why = cpp_harness.missing_toolchain()
    if why:
        pytest.skip(why)
    return cpp_harness.prepare_ort(sys.executable)


@pytest.fixture(scope="session")
def binary(ort_root: Path) -> Path:
    """``bgsdk_cpp``, built (or the cached build) against the onnxruntime of this interpreter."""
    return cpp_harness.build(ort_root)


@pytest.fixture(scope="session")
def minimal(binary: Path) -> Path:
    """``bgsdk_minimal``, built by the same CMake project as ``bgsdk_cpp``."""
    return binary.parent / cpp_harness.MINIMAL_NAME
