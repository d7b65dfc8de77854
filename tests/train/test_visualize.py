"""The 7-panel figure: written atomically as a real PNG, no matplotlib state leaked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bgtrain.visualize import PANEL_TITLES, seven_panel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _strip(seed: int = 0, h: int = 976, w: int = 176) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.uniform(60, 120, size=(3, h, w)).astype(np.float32)
    img[0, 100:103, 50:53] += 80  # target-only defect
    mask = np.zeros((h, w), dtype=bool)
    mask[100:103, 50:53] = True
    heat = rng.uniform(0, 0.2, size=(h, w)).astype(np.float32)
    heat[mask] = 0.95
    return img, heat, mask


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _open_pyplot_figures() -> list[int]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return list(plt.get_fignums())


def test_writes_png(tmp_path: Path) -> None:
    before = _open_pyplot_figures()
    img, heat, mask = _strip()
    out = seven_panel(img, heat, tmp_path / "sub" / "fig.png", mask=mask, title="strip 0")
    assert out == tmp_path / "sub" / "fig.png"
    width, height = _png_size(out)
    # Seven tall panels side by side: wider than tall, and big enough to see a 3x3 defect.
    assert width > height > 300
    assert width > 600
    assert 10_000 < out.stat().st_size < 5_000_000
    # Atomic write: no temp files left next to it.
    assert [p.name for p in out.parent.iterdir()] == ["fig.png"]
    assert _open_pyplot_figures() == before
    assert len(PANEL_TITLES) == 7


def test_channel_last_and_no_mask_and_overwrite(tmp_path: Path) -> None:
    img, heat, _ = _strip(1, h=256, w=256)
    path = tmp_path / "sq.png"
    path.write_bytes(b"old")
    seven_panel(np.moveaxis(img, 0, -1), heat, path)
    _png_size(path)
    # An empty mask draws no outline but is fine.
    seven_panel(img, heat, path, mask=np.zeros((256, 256), bool))
    _png_size(path)


def test_shape_errors_leave_nothing(tmp_path: Path) -> None:
    img, heat, mask = _strip(2, h=64, w=64)
    with pytest.raises(ValueError, match="heatmap"):
        seven_panel(img, heat[:, :10], tmp_path / "a.png")
    with pytest.raises(ValueError, match="mask"):
        seven_panel(img, heat, tmp_path / "a.png", mask=mask[:10])
    assert list(tmp_path.iterdir()) == []
