"""Shared fixtures, built once per test session. Builders live in tests/helpers/."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers.models import SdkEnv, build_sdk_env


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny data set in the data set layout: 4 train, 4 valid, 4 test strips."""
    from bgtrain.synth_dataset import make_dataset

    root = tmp_path_factory.mktemp("demo")
    make_dataset(root, n_train=4, n_valid=4, n_test=4, seed=123, progress=False)
    return root


@pytest.fixture(scope="session")
def sdk_env(tmp_path_factory: pytest.TempPathFactory) -> SdkEnv:
    """Small contract-conforming ONNX models and three test strips (tests.helpers.models)."""
    return build_sdk_env(tmp_path_factory.mktemp("sdk"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Shared 2-core machines: one torch thread beats two oversubscribed ones by far."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
