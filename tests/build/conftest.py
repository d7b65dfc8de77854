"""Fixtures shared by the bgbuild tests (builders: tests/helpers/build.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgtrain.reference_unet import double_detection_unet
from tests.helpers.build import data_checkpoint


@pytest.fixture(scope="module")
def dd_checkpoint(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The double-detection UNet (known accuracy) as a checkpoint trained on ``demo_root``."""
    return data_checkpoint(tmp_path_factory.mktemp("ddckpt") / "dd.pt", double_detection_unet(), demo_root)
