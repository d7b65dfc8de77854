"""The ``bgsdk_model`` library as an application uses it, and the minimal example on top of it.

* ``bgsdk_minimal`` (examples/minimal.cpp, built by the same CMake project): raw float32 in, raw
  heatmap out, sizes from the model -- the same numbers as ``bgsdk.Segmenter``.
* ``cpp_example/integrator`` (an application's CMakeLists.txt) links ``bgsdk::model`` through
  ``find_package`` of an installed copy and through ``add_subdirectory`` of the source tree; its
  program (minimal.cpp again) gives the same numbers. The installed headers are the library's
  own: an application compiles without ONNX Runtime's headers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import bgsdk
from bgsdk.contract import Contract
from bgsdk.tiling import tiling_for
from tests.helpers import REPO
from tests.helpers.models import make_full_model, random_strip

sys.path.insert(0, str(REPO / "cpp_example"))
import cpp_harness  # noqa: E402

H, W = 256, 144
TOL = 1e-5


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cpp_library")


@pytest.fixture(scope="module")
def model(work: Path) -> Path:
    contract = Contract.from_tiling(tiling_for("strip", H, W)).to_json()
    return make_full_model(work / "m.onnx", H, W, contract_json=contract, seed=7)


@pytest.fixture(scope="module")
def strip(work: Path) -> tuple[Path, np.ndarray]:
    """A raw (3,H,W) float32 strip and the SDK's heatmap of it."""
    chw = random_strip(5, channels=3, hw=(H, W))
    path = work / "strip.f32"
    chw.astype("<f4").tofile(path)
    return path, chw


def sdk_heatmap(model: Path, chw: np.ndarray) -> np.ndarray:
    return np.asarray(bgsdk.Segmenter(str(model)).run(chw).heatmap)


def run_program(program: Path, model: Path, image: Path, out: Path) -> np.ndarray:
    r = cpp_harness.run_cpp(program, model, image, out)
    assert r.returncode == 0 and r.stderr == "", (r.stdout, r.stderr)
    assert f"wrote {out} ({H}x{W} float32)" in r.stdout
    assert not out.with_name(out.name + ".tmp").exists()
    return np.fromfile(out, dtype="<f4").reshape(H, W)


def test_minimal_matches_the_sdk(minimal: Path, model: Path, strip: tuple[Path, np.ndarray], work: Path):
    path, chw = strip
    assert np.abs(run_program(minimal, model, path, work / "min.f32") - sdk_heatmap(model, chw)).max() <= TOL
    pair = work / "pair.f32"
    chw[:2].astype("<f4").tofile(pair)  # target, template
    expected = sdk_heatmap(model, chw[[0, 1, 1]])
    assert np.abs(run_program(minimal, model, pair, work / "min_pair.f32") - expected).max() <= TOL


def test_minimal_errors(minimal: Path, model: Path, strip: tuple[Path, np.ndarray], work: Path):
    path, chw = strip
    short = work / "short.f32"
    chw[:, :-1].astype("<f4").tofile(short)
    for image, expected in [
        (short, f"error: {short}: expected raw float32 (3 or 2, {H}, {W})"),
        (work / "missing.f32", f"error: {work / 'missing.f32'}: cannot be opened"),
    ]:
        r = cpp_harness.run_cpp(minimal, model, image, work / "never.f32")
        assert r.returncode == 1 and r.stderr.strip() == expected, r.stderr
    r = cpp_harness.run_cpp(minimal, work / "missing.onnx", path, work / "never.f32")
    assert r.returncode == 1 and r.stderr.strip() == f"error: {work / 'missing.onnx'}: file not found"
    assert cpp_harness.run_cpp(minimal, model).returncode == 2
    assert not (work / "never.f32").exists()


def test_installed_package_in_an_application(binary: Path, model: Path, strip: tuple[Path, np.ndarray], work: Path):
    prefix = cpp_harness.install(binary.parent, work / "prefix")
    headers = sorted(p.relative_to(prefix / "include").as_posix() for p in (prefix / "include").rglob("*.h*"))
    assert headers == ["bgsdk/defects.hpp", "bgsdk/integrity.hpp", "bgsdk/model.hpp"]
    assert (prefix / "lib" / "cmake" / "bgsdk_model" / "bgsdk_model-config.cmake").is_file()
    app = cpp_harness.build_integrator(work / "app_installed", prefix=prefix)
    path, chw = strip
    assert np.abs(run_program(app, model, path, work / "app1.f32") - sdk_heatmap(model, chw)).max() <= TOL


def test_add_subdirectory_in_an_application(ort_root: Path, model: Path, strip: tuple[Path, np.ndarray], work: Path):
    app = cpp_harness.build_integrator(work / "app_subdir", source_dir=cpp_harness.HERE, ort_root=ort_root)
    assert not (work / "app_subdir" / "bgsdk_model" / cpp_harness.BINARY_NAME).exists(), "examples are opt-in"
    path, chw = strip
    assert np.abs(run_program(app, model, path, work / "app2.f32") - sdk_heatmap(model, chw)).max() <= TOL
