"""Valid files with nonsense values: an ``InputWarning`` by default, an ``InputError`` with ``strict=True``.

Declared range: every dtype maps onto 0..255 (float as is, uint8 as is, uint16 / 257),
so only float input can leave it. Constant channels and a target equal to a reference
are legal pixel values but no inspection can work on them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from bgsdk import InputError, InputWarning, Segmenter
from bgsdk._sanity import value_problems
from bgsdk.cli import main as bgsdk_main
from bgsdk.errors import BgsdkWarning
from tests.helpers.cli import invoke
from tests.helpers.models import make_full_model

H, W = 32, 32


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plain fixed-size model (no metadata): ``output = concat(sigmoid(conv(x)), 0, 0)``."""
    return make_full_model(tmp_path_factory.mktemp("sanity") / "m.onnx", H, W)


def good(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (3, H, W)).astype(np.float32)


def _negative() -> np.ndarray:
    x = good()
    x[1, 3, 4] = -0.5
    return x


def _too_bright() -> np.ndarray:
    x = good()
    x[0, :2, :2] = 1e30
    return x


def _unscaled() -> np.ndarray:  # 0..65535 floats passed as if 0..255
    return good() * 257.0


def _constant_target() -> np.ndarray:
    x = good()
    x[0] = 0.0
    return x


def _blank() -> np.ndarray:
    return np.full((3, H, W), 128.0, np.float32)


def _target_is_ref1() -> np.ndarray:
    x = good()
    x[1] = x[0]
    return x


def _target_is_ref2_hwc_uint8() -> np.ndarray:
    x = good().astype(np.uint8)
    x[2] = x[0]
    return np.moveaxis(x, 0, -1)


CASES = {
    "negative": (_negative, "1 value(s) below 0 (min -0.5)"),
    "above 255": (_too_bright, "4 value(s) above 255 (max 1e+30)"),
    "0..65535 as float": (_unscaled, "above 255"),
    "constant target": (_constant_target, "constant channel(s): target (0)"),
    "blank frame": (_blank, "constant channel(s): target (128), ref1 (128), ref2 (128)"),
    "target == ref1": (_target_is_ref1, "target is identical to ref1"),
    "target == ref2 (uint8, HWC)": (_target_is_ref2_hwc_uint8, "target is identical to ref2"),
}


@pytest.mark.parametrize("name", CASES)
def test_suspicious_values_warn_and_still_run(model: Path, name: str) -> None:
    make, fragment = CASES[name]
    seg = Segmenter(model)
    with pytest.warns(InputWarning) as rec:
        r = seg.run(make())
    assert r.heatmap.shape == (H, W)
    msgs = [str(w.message) for w in rec if issubclass(w.category, InputWarning)]
    assert any(m.startswith("array: ") and fragment in m for m in msgs), msgs
    assert issubclass(InputWarning, BgsdkWarning) and issubclass(InputWarning, UserWarning)


@pytest.mark.parametrize("name", CASES)
def test_strict_turns_each_into_an_input_error(model: Path, name: str) -> None:
    make, fragment = CASES[name]
    with pytest.raises(InputError, match="strict=True") as info:
        Segmenter(model, strict=True).run(make())
    assert fragment in str(info.value)


def test_clean_inputs_of_every_dtype_give_no_warning(model: Path) -> None:
    seg = Segmenter(model, strict=True)
    rng = np.random.default_rng(1)
    items = [
        good(),
        np.moveaxis(good(2), 0, -1).astype(np.float64),
        rng.integers(0, 256, (3, H, W), dtype=np.uint8),
        rng.integers(0, 65536, (4, H, W), dtype=np.uint16),
        np.clip(good(3), 0, 255).astype(np.float16),
        np.concatenate([good(4), np.zeros((1, H, W), np.float32)]),  # constant mask plane is dropped, fine
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x in items:
            assert seg.run(x).ok
    assert value_problems(np.zeros((3, 2, 2), np.float32) + np.arange(4, dtype=np.float32).reshape(2, 2) * 60) == [
        "target is identical to ref1: the same frame stored twice? (nothing can differ from that reference)",
        "target is identical to ref2: the same frame stored twice? (nothing can differ from that reference)",
    ]


def test_strict_batches_turn_bad_values_into_error_results(model: Path, tmp_path: Path) -> None:
    files = []
    for i, x in enumerate([good(0), _negative(), good(1), _blank()]):
        p = tmp_path / f"s{i}.tiff"
        tifffile.imwrite(p, x)
        files.append(p)
    out = Segmenter(model, strict=True).run_batch(files, batch_size=2)
    assert [o.ok for o in out] == [True, False, True, False]
    assert str(files[1]) in str(out[1].error) and "below 0" in str(out[1].error)
    with pytest.warns(InputWarning):
        lax = Segmenter(model).run_batch(files, batch_size=2)
    assert all(o.ok for o in lax)


def test_cli_warns_one_line_per_image_and_strict_skips(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tiff"
    tifffile.imwrite(bad, _too_bright())
    ok = tmp_path / "ok.tiff"
    tifffile.imwrite(ok, good())
    code, err = _cli(capsys, "run", model, ok, bad, "--out", tmp_path / "o1", "-q")
    assert code == 0
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        f"bgsdk run: warning: {bad}: 4 value(s) above 255 (max 1e+30); float inputs are taken as 0..255, not rescaled"
    ]
    code, err = _cli(capsys, "run", model, ok, bad, "--out", tmp_path / "o2", "--strict", "-q")
    assert code == 1 and f"bgsdk run: skipped {bad}: 4 value(s) above 255" in err
    heatmaps = sorted(p.name for p in (tmp_path / "o2").iterdir() if p.name.endswith(".heatmap.tiff"))
    assert heatmaps == ["ok.heatmap.tiff"]


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code, _, err = invoke(bgsdk_main, capsys, *argv)
    return code, err
