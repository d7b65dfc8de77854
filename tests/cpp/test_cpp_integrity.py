"""``bgsdk_cpp --verify``: the C++ example checks the model against the sha256 in its model.json, like
``bgsdk.Segmenter(path, verify=True)``: the built pair runs (same numbers as without the flag), a
tampered, truncated or manifest-less model is refused with one line naming the file, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from bgbuild.artifact import write_artifacts
from tests.helpers import REPO

sys.path.insert(0, str(REPO / "cpp_example"))
import cpp_harness  # noqa: E402

H, W = 64, 64


@pytest.fixture()
def release(tmp_path: Path) -> tuple[Path, Path]:
    """A model + model.json written by build-model's artifact writer, and one input strip."""
    src = cpp_harness.make_standin_model(tmp_path / "src.onnx", H, W)
    model = write_artifacts(tmp_path / "rel" / "model.onnx", src.read_bytes(), {"note": "test"}).model
    image = tmp_path / "in.tiff"
    tifffile.imwrite(image, np.random.default_rng(0).uniform(0, 255, (3, H, W)).astype(np.float32))
    return model, image


def _run(binary: Path, *args: object) -> cpp_harness.CppRun:
    return cpp_harness.run_cpp(binary, *map(str, args))


def _refused(r: cpp_harness.CppRun, model: Path, fragment: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"bgsdk_cpp: error: {model}: ") and fragment in lines[0], lines[0]


def test_verified_model_runs_and_gives_the_same_heatmap(
    binary: Path, release: tuple[Path, Path], tmp_path: Path
) -> None:
    model, image = release
    plain, checked = (
        _run(binary, model, image, tmp_path / "a.npy"),
        _run(binary, "--verify", model, image, tmp_path / "b.npy"),
    )
    assert plain.returncode == 0 and checked.returncode == 0, checked.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_sha256_agrees_with_python(binary: Path, release: tuple[Path, Path], tmp_path: Path) -> None:
    """The manifest's hash (Python hashlib) is what the C++ implementation computes: a manifest
    carrying the same hash in another spelling of the JSON is accepted, a one-hex-digit change refused."""
    model, image = release
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    model.with_suffix(".json").write_text(json.dumps({"nested": {"model_sha256": "0" * 64}, "model_sha256": sha}))
    assert _run(binary, "--verify", model, image, tmp_path / "o.npy").returncode == 0
    bad = sha[:-1] + ("0" if sha[-1] != "0" else "1")
    model.with_suffix(".json").write_text(json.dumps({"model_sha256": bad}))
    _refused(_run(binary, "--verify", model, image, tmp_path / "o.npy"), model, "integrity check failed")


@pytest.mark.parametrize("damage", ["flip", "truncate", "no manifest", "manifest without hash"])
def test_damaged_release_is_refused(binary: Path, release: tuple[Path, Path], tmp_path: Path, damage: str) -> None:
    model, image = release
    data = bytearray(model.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        model.write_bytes(bytes(data))
        assert _run(binary, model, image, tmp_path / "o.npy").returncode in (0, 2)  # without --verify: unnoticed or not
        fragment = "integrity check failed"
    elif damage == "truncate":
        model.write_bytes(bytes(data[:-10]))
        fragment = "integrity check failed"
    elif damage == "no manifest":
        model.with_suffix(".json").unlink()
        fragment = "no manifest model.json"
    else:
        model.with_suffix(".json").write_text('{"model_file": "model.onnx"}')
        fragment = "no valid 'model_sha256'"
    _refused(_run(binary, "--verify", model, image, tmp_path / "o.npy"), model, fragment)
    assert not (tmp_path / "o.npy").exists()
