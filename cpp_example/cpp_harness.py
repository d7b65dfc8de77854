"""Build and drive the C++ example from Python (shared by its test and its benchmark).

Kept next to the C++ sources rather than in a package: it is tooling for this example,
not part of bgsdk. Importing it needs numpy and onnx (for the stand-in model) only.

* :func:`prepare_ort` runs ``setup_ort.sh`` (headers from Debian trixie, library from the
  onnxruntime wheel of the given interpreter) unless ``ONNXRUNTIME_ROOT`` is set.
* :func:`build` configures and builds ``cpp_example/build`` with CMake (the ``bgsdk_model``
  library, ``bgsdk_cpp`` and ``bgsdk_minimal``); the build folder is cached but wiped when the
  ONNX Runtime library behind it changes, because a binary only runs with the exact library
  version it was linked against (versioned symbols).
* :func:`install` and :func:`build_integrator` use the library the way an application does:
  ``integrator/`` links ``bgsdk::model`` through ``add_subdirectory`` or ``find_package``.
* :func:`make_standin_model` writes a small model that honours the full-image I/O contract,
  for tests and for benchmarking before a trained model exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "HERE",
    "BUILD_DIR",
    "ORT_DIR",
    "BINARY_NAME",
    "MINIMAL_NAME",
    "INTEGRATOR_DIR",
    "missing_toolchain",
    "prepare_ort",
    "build",
    "install",
    "build_integrator",
    "make_standin_model",
    "CppRun",
    "run_cpp",
]

HERE = Path(__file__).resolve().parent
BUILD_DIR = HERE / "build"
ORT_DIR = HERE / "_ort"
BINARY_NAME = "bgsdk_cpp"
MINIMAL_NAME = "bgsdk_minimal"
INTEGRATOR_DIR = HERE / "integrator"
INTEGRATOR_APP = "bgsdk_integrator_app"


def missing_toolchain() -> str | None:
    """Why the example cannot be built here (a missing tool), or None when it can."""
    needed = ["cmake", "make"]
    if not os.environ.get("ONNXRUNTIME_ROOT"):
        needed += ["apt-get", "dpkg-deb", "bash"]
    missing = [t for t in needed if shutil.which(t) is None]
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        missing.append("a C++17 compiler (c++/g++/clang++)")
    return f"C++ toolchain missing: {', '.join(missing)}" if missing else None


def _check(cmd: list[str], what: str, **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def prepare_ort(python: str | None = None) -> Path:
    """ONNXRUNTIME_ROOT for the build: the environment's, or one made by setup_ort.sh."""
    env_root = os.environ.get("ONNXRUNTIME_ROOT")
    if env_root:
        return Path(env_root)
    out = _check(["bash", str(HERE / "setup_ort.sh"), "--python", python or sys.executable], "setup_ort.sh")
    return Path(out.strip().splitlines()[-1])


def _library_identity(ort_root: Path) -> str:
    lib = ort_root / "lib" / "libonnxruntime.so"
    return str(lib.resolve()) if lib.exists() else str(ort_root)


def build(ort_root: Path, build_dir: Path = BUILD_DIR) -> Path:
    """Configure (if needed) and build; returns the binary's path."""
    stamp = build_dir / ".ort-library"
    identity = _library_identity(ort_root)
    cache = build_dir / "CMakeCache.txt"
    stale = stamp.exists() and stamp.read_text() != identity
    if cache.exists():
        home = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", cache.read_text(), re.M)
        stale = stale or home is None or Path(home.group(1)).resolve() != HERE
    if stale:
        shutil.rmtree(build_dir)
    _check(
        [
            "cmake",
            "-S",
            str(HERE),
            "-B",
            str(build_dir),
            f"-DONNXRUNTIME_ROOT={ort_root}",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        "cmake configure",
    )
    _check(["cmake", "--build", str(build_dir)], "cmake build")
    stamp.write_text(identity)
    return build_dir / BINARY_NAME


def install(build_dir: Path, prefix: Path) -> Path:
    """``cmake --install``: the library, its headers and its CMake package under ``prefix``."""
    _check(["cmake", "--install", str(build_dir), "--prefix", str(prefix)], "cmake install")
    return prefix


def build_integrator(
    build_dir: Path, *, source_dir: Path | None = None, prefix: Path | None = None, ort_root: Path | None = None
) -> Path:
    """Build ``integrator/`` (an application linking ``bgsdk::model``); returns its program.

    ``source_dir``: through ``add_subdirectory`` of this source tree (``ort_root`` then says where
    ONNX Runtime is); ``prefix``: through ``find_package`` of an installed copy.
    """
    if (source_dir is None) == (prefix is None):
        raise ValueError("give exactly one of source_dir and prefix")
    args = ["cmake", "-S", str(INTEGRATOR_DIR), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"]
    if source_dir is not None:
        args.append(f"-DBGSDK_SOURCE_DIR={source_dir}")
        if ort_root is not None:
            args.append(f"-DONNXRUNTIME_ROOT={ort_root}")
    else:
        args.append(f"-DCMAKE_PREFIX_PATH={prefix}")
    _check(args, "cmake configure (integrator)")
    _check(["cmake", "--build", str(build_dir)], "cmake build (integrator)")
    return build_dir / INTEGRATOR_APP


def make_standin_model(
    path: str | os.PathLike[str],
    height: int = 976,
    width: int = 176,
    seed: int = 0,
    contract_json: str | None = None,
    opset: int = 17,
) -> Path:
    """A contract-shaped stand-in for the full-image model (no training needed).

    ``input`` (N,3,H,W) -> ``output`` (N,3,H,W): channel 0 = Sigmoid(Conv3x3(input)) with
    fixed random weights (a non-trivial function of all three channels and of neighbours),
    channels 1-2 exactly zero. Batch is symbolic. Opset 17 runs on every ONNX Runtime
    since 1.13, so official releases older than the wheel work too.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((1, 3, 3, 3)) * 4.0).astype(np.float32)
    bias = np.array([-0.5], dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Sigmoid", ["conv"], ["prob"]),
        helper.make_node("Mul", ["prob", "zero"], ["zeros"]),  # finite * 0 = exact zeros, any batch
        helper.make_node("Concat", ["prob", "zeros", "zeros"], ["output"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bgsdk_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, height, width])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="cpp_harness")
    model.ir_version = 8  # readable by ONNX Runtime >= 1.10
    if contract_json is not None:
        helper.set_model_props(model, {"bgsdk.contract": contract_json})
    onnx.checker.check_model(model, full_check=True)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out)
    return out


@dataclass(frozen=True)
class CppRun:
    """One invocation of the binary: exit code, output and the timings it printed (ms)."""

    returncode: int
    stdout: str
    stderr: str
    timings: dict[str, float]


_TIMING = re.compile(r"^(read_ms|load_ms|run_ms_median): ([0-9.]+)", re.M)


def run_cpp(binary: Path, *args: str | os.PathLike[str], timeout: float = 300) -> CppRun:
    proc = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    timings = {k: float(v) for k, v in _TIMING.findall(proc.stdout)}
    return CppRun(proc.returncode, proc.stdout, proc.stderr, timings)
