"""benchmarks/classical_aoi.py: the registered-difference AOI baseline other benchmarks score against."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from bgsdk.evaluate.metrics import double_detection

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "classical_aoi.py"
_spec = importlib.util.spec_from_file_location("classical_aoi", _PATH)
assert _spec is not None and _spec.loader is not None
aoi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(aoi)


def _die(size: tuple[int, int] = (160, 128)) -> np.ndarray:
    a = ndimage.gaussian_filter(np.random.default_rng(0).random((size[0] + 32, size[1] + 32)), 2.0)
    y, x = np.mgrid[: size[0] + 32, : size[1] + 32]
    lines = (np.mod(y, 19) < 3) | (np.mod(x, 23) < 3)
    return ndimage.gaussian_filter(60 + 300 * (a - a.mean()) + 90 * lines, 0.7)


def _moved(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    return ndimage.shift(a, (dy, dx), order=3, mode="nearest")[16:-16, 16:-16]


def test_registration_undoes_a_known_shift() -> None:
    base = _die()
    t, r = base[16:-16, 16:-16], _moved(base, 2.6, -3.4)
    moved, (dy, dx) = aoi.register_reference(t, r)
    assert dy == pytest.approx(-2.6, abs=0.15) and dx == pytest.approx(3.4, abs=0.15)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(moved - t)[inner].mean() < 0.2 * np.abs(r - t)[inner].mean()


def test_finds_a_defect_that_double_detection_drowns_in_misregistration() -> None:
    """Both references off by 2-3 px, a 6x6 blob of +50 grey levels in the target: the AOI heatmap peaks on
    the blob and stands well above everything else; double detection's map has pattern edges about as high
    as the blob; the good strip's AOI maximum stays below the blob's."""
    base = _die()
    t = base[16:-16, 16:-16].copy()
    good = np.stack([t, _moved(base, 2.0, -3.0), _moved(base, -2.5, 1.5)])
    bad = good.copy()
    bad[0, 80:86, 60:66] += 50.0
    hm_bad, hm_good = aoi.classical_aoi(bad), aoi.classical_aoi(good)
    assert hm_bad.shape == t.shape and hm_bad.dtype == np.float32
    peak = np.unravel_index(np.argmax(hm_bad), hm_bad.shape)
    assert 80 <= peak[0] < 86 and 60 <= peak[1] < 66
    assert hm_good.max() < 0.5 * hm_bad.max()

    def separation(hm: np.ndarray) -> float:
        """The blob's peak over the highest value more than 3 px away from it."""
        away = hm.copy()
        away[77:89, 57:69] = 0
        return float(hm[80:86, 60:66].max() / away.max())

    dd = double_detection(bad.astype(np.float32))
    assert separation(hm_bad) > 5.0 > 1.5 > separation(dd), (separation(hm_bad), separation(dd))


def test_opening_removes_thin_residue_and_blocks_register_separately() -> None:
    img = np.zeros((3, 64, 64))
    img[0, 30, :] = 40.0  # a 1-px line only in the target
    assert aoi.classical_aoi(img, opening=1).max() == pytest.approx(40.0)
    assert aoi.classical_aoi(img, opening=5).max() == 0.0
    base = _die((256, 128))
    t = base[16:-16, 16:-16]
    # the top band moved one way, the bottom band another: per-band registration follows both
    r = np.concatenate([_moved(base, 2.0, 1.0)[:128], _moved(base, -1.0, -2.0)[128:]])
    img = np.stack([t, r, r])
    whole, banded = aoi.classical_aoi(img, opening=1), aoi.classical_aoi(img, opening=1, block_rows=128)
    assert banded[8:-8, 8:-8].mean() < 0.5 * whole[8:-8, 8:-8].mean()
    with pytest.raises(ValueError, match="target/ref1/ref2"):
        aoi.classical_aoi(np.zeros((2, 8, 8)))


def test_scores_with_the_sdk_metrics() -> None:
    from bgsdk.evaluate.metrics import evaluate

    rng = np.random.default_rng(1)
    maps = [rng.random((8, 8)).astype(np.float32) for _ in range(3)]
    masks = [None, np.zeros((8, 8), bool), np.zeros((8, 8), bool)]
    masks[1][2:4, 2:4] = True
    masks[2][5, 5] = True
    got = aoi.score(maps, masks, [False, True, True])
    want = evaluate(maps, masks, [False, True, True])
    assert got["pixel_ap"] == want.pixel_ap and got["image_auroc"] == want.image_auroc
    assert 0.0 < got["best_f1"] <= 1.0
    assert got["froc_recall_1"] is None  # no boxes given


def test_froc_recall_counts_a_component_inside_its_box() -> None:
    """One bright 3x3 component per defective map: inside its box it is found (recall 1 with no false
    alarm), placed beside the box it is a false alarm and the box is missed."""
    from bgsdk.annotations import Box

    good, hit, miss = (np.zeros((32, 32), np.float32) for _ in range(3))
    hit[10:13, 10:13] = 1.0
    miss[25:28, 25:28] = 1.0
    box = [Box(9, 9, 13, 13, "blob")]
    masks = [None, np.zeros((32, 32), bool), np.zeros((32, 32), bool)]
    masks[1][10:13, 10:13] = True
    masks[2][10:13, 10:13] = True
    found = aoi.score([good, hit], masks[:2], [False, True], [[], box])
    missed = aoi.score([good, miss], [masks[0], masks[2]], [False, True], [[], box])
    assert found["froc_recall_1"] == 1.0 and missed["froc_recall_1"] == 0.0
