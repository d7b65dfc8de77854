"""A real built model (tiny UNet through build-model) and a strip folder with bad files, for the
Triton and Ray tests (``from scale_env import scale_env``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from tests.helpers.models import random_strip

GOOD = 4


@dataclasses.dataclass(frozen=True)
class ScaleEnv:
    model: Path
    folder: Path  # GOOD strips + bad files
    good: tuple[Path, ...]
    bad: tuple[Path, ...]


def _tiny_checkpoint(path: Path) -> Path:
    from bgtrain.checkpoint import save_checkpoint
    from bgtrain.model import UNet

    torch.manual_seed(0)
    model = UNet(base_width=4).eval()
    return save_checkpoint(path, model, image_type="strip", image_size=(976, 176), epoch=1, seed=0)


@pytest.fixture(scope="session")
def scale_env(tmp_path_factory: pytest.TempPathFactory) -> ScaleEnv:
    from bgbuild import BuildOptions, build_model

    root = tmp_path_factory.mktemp("scale")
    ckpt = _tiny_checkpoint(root / "tiny.pt")
    model = root / "model.onnx"
    build_model(ckpt, model, BuildOptions(verify_images=1))
    folder = root / "strips"
    folder.mkdir()
    good = []
    for i in range(GOOD):
        p = folder / f"strip{i}.tiff"
        tifffile.imwrite(p, random_strip(10 + i))
        good.append(p)
    bad = [folder / "corrupt.tiff", folder / "small.tiff", folder / "empty.npy"]
    bad[0].write_bytes(b"II*\x00" + b"\x00" * 20)  # a TIFF header and nothing else
    tifffile.imwrite(bad[1], np.zeros((3, 480, 176), np.float32))  # wrong size
    bad[2].write_bytes(b"")
    return ScaleEnv(model=model, folder=folder, good=tuple(good), bad=tuple(bad))
