"""Shared fixtures: a small demo data set made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SPEC-layout data set: 4 train, 4 valid, 4 test strips."""
    from bgtrain.synth_dataset import make_dataset

    root = tmp_path_factory.mktemp("demo")
    make_dataset(root, n_train=4, n_valid=4, n_test=4, seed=123, progress=False)
    return root
