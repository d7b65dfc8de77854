"""Fixtures shared by the C++ example's tests: the built ``bgsdk_cpp`` binary (cpp_example/cpp_harness.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "cpp_example"))
import cpp_harness  # noqa: E402


@pytest.fixture(scope="module")
def binary() -> Path:
    """Built (or the cached build) against the onnxruntime of this interpreter; skips without a toolchain."""
    why = cpp_harness.missing_toolchain()
    if why:
        pytest.skip(why)
    return cpp_harness.build(cpp_harness.prepare_ort(sys.executable))
