"""C++ example vs Python SDK: latency on the same model and image, in one run.

Builds cpp_example (as its test does), then times, on the same full-image model and strip:

* C++  (``bgsdk_cpp --repeat N``): reading the TIFF, creating the session, and the median of
  N model calls (tensor wrap + ``Session::Run`` + copying channel 0 out);
* Python (``bgsdk.Segmenter``, in a fresh interpreter like the C++ process): ``read_image``,
  creating the Segmenter, and the median of N ``seg.run(array)`` calls (validation + ``/255`` +
  ``session.run`` + result).

Both use ONNX Runtime's default intra-op threads unless ``--threads`` is given, and both link
the same libonnxruntime (the wheel's). ``--rounds`` alternating C++/Python rounds (order
flipped each round, fresh processes on both sides) give medians of per-round medians, so a
drifting machine load hits both sides alike. The heatmaps are compared too (max |diff|).
Prints a table and the Python/C++ ratios. Run:

    .venv/bin/python benchmarks/bench_cpp.py [--model model.onnx] [--image strip.tiff] [--repeat 10]

Without ``--model`` a small stand-in model with the full-image I/O contract (one 3x3 Conv +
Sigmoid) is built and used -- it measures the integration overhead, not the UNet; pass the
real model for deployment numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "cpp_example"))
import cpp_harness  # noqa: E402


def python_side(model: Path, image: Path, repeat: int, threads: int | None) -> tuple[dict[str, float], np.ndarray]:
    """Time the SDK in a fresh interpreter, as the C++ side runs in a fresh process.

    (The first session in a process pays ONNX Runtime's one-time set-up; timing both sides
    fresh keeps that out of the ratio.) Imports happen before the clock starts.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "py_heatmap.npy"
        cmd = [sys.executable, __file__, "--_worker", str(model), str(image), str(repeat), str(threads or 0), str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"Python side failed:\n{proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out)


def _worker(model: str, image: str, repeat: str, threads: str, out: str) -> None:
    """Entry point of the fresh interpreter: time, save the heatmap, print the timings as JSON."""
    timings, heatmap = _time_sdk(Path(model), Path(image), int(repeat), int(threads) or None)
    np.save(out, heatmap)
    print(json.dumps(timings))


def _time_sdk(model: Path, image: Path, repeat: int, threads: int | None) -> tuple[dict[str, float], np.ndarray]:
    import bgsdk  # imported before the clock starts
    from bgsdk.io import read_image

    t0 = time.perf_counter()
    img = read_image(image)
    read_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    seg = bgsdk.Segmenter(model, threads=threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    runs = []
    heatmap = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        heatmap = seg.run(img).heatmap
        runs.append((time.perf_counter() - t0) * 1e3)
    return {"read_ms": read_ms, "load_ms": load_ms, "run_ms_median": statistics.median(runs)}, np.asarray(heatmap)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="full-image model (default: build the stand-in)")
    ap.add_argument("--image", type=Path, help="strip TIFF (default: one synthetic demo strip)")
    ap.add_argument("--repeat", type=int, default=10, help="model calls per side and round (median taken)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating C++/Python rounds (median of medians)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for both (default: ORT's)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    return ap.parse_args()


def default_inputs(args: argparse.Namespace, tmp: Path) -> tuple[Path, str, Path]:
    """``(model, its description, image)``: the given ones, else the stand-in model and one demo strip."""
    model, model_desc = args.model, str(args.model)
    if model is None:
        from bgsdk.contract import Contract
        from bgsdk.tiling import tiling_for

        contract = Contract.from_tiling(tiling_for("strip", 976, 176))
        model = cpp_harness.make_standin_model(tmp / "standin.onnx", contract_json=contract.to_json())
        model_desc = "stand-in (Conv3x3 + Sigmoid, full-image I/O contract) -- NOT the UNet"
    image = args.image
    if image is None:
        from bgtrain.synth_dataset import make_dataset

        make_dataset(tmp / "demo", 1, 0, 0, seed=0, progress=False)
        (image,) = sorted((tmp / "demo").glob("train/good/*.tif*"))
    return model, model_desc, image


def alternate_rounds(binary: Path, model: Path, image: Path, out: Path, args: argparse.Namespace):
    """``(C++ timings, Python timings, Python heatmap)`` per round, sides alternating; None if the C++ run failed."""
    cpp_args = ["--repeat", str(args.repeat)]
    if args.threads is not None:
        cpp_args += ["--threads", str(args.threads)]
    cpp_rounds: list[dict[str, float]] = []
    py_rounds: list[dict[str, float]] = []
    py_heatmap = None
    for rnd in range(args.rounds):  # alternate the order: a shared machine's load drifts
        for side in ("cpp", "py") if rnd % 2 == 0 else ("py", "cpp"):
            if side == "cpp":
                r = cpp_harness.run_cpp(binary, *cpp_args, model, image, out, timeout=3600)
                if r.returncode != 0:
                    print(r.stderr, file=sys.stderr)
                    return None
                cpp_rounds.append(r.timings)
            else:
                t, py_heatmap = python_side(model, image, args.repeat, args.threads)
                py_rounds.append(t)
    return cpp_rounds, py_rounds, py_heatmap


def report(args, model_desc: str, image: Path, cpp_rounds: list, py_rounds: list, diff: float) -> None:
    """The table (and --json): medians of the rounds per step, and the Python/C++ ratio."""
    import onnxruntime

    cpp = {k: statistics.median(r[k] for r in cpp_rounds) for k in cpp_rounds[0]}
    py = {k: statistics.median(r[k] for r in py_rounds) for k in py_rounds[0]}
    print(f"model:   {model_desc}")
    print(f"image:   {image if args.image else 'synthetic demo strip (976x176, 4 channels)'}")
    print(
        f"machine: {platform.processor() or platform.machine()}, onnxruntime {onnxruntime.__version__}, "
        f"threads {args.threads or 'ORT default'}, {args.rounds} alternating rounds x {args.repeat} model calls per side"
    )
    print(f"max |C++ - Python| heatmap difference: {diff:.3g}")
    print()
    print(f"{'step':<28}{'C++ (ms)':>12}{'Python (ms)':>14}{'Python/C++':>12}")
    rows = [("read image", "read_ms"), ("create session", "load_ms"), ("run (one model call)", "run_ms_median")]
    for label, key in rows:
        print(f"{label:<28}{cpp[key]:>12.2f}{py[key]:>14.2f}{py[key] / cpp[key]:>11.2f}x")
    if args.json:
        numbers = {"model": model_desc, "cpp": cpp, "python": py, "max_abs_diff": diff, "repeat": args.repeat}
        numbers |= {
            "rounds": args.rounds,
            "threads": args.threads,
            "cpp_rounds": cpp_rounds,
            "python_rounds": py_rounds,
        }
        args.json.write_text(json.dumps(numbers, indent=2))


def main() -> int:
    if len(sys.argv) == 7 and sys.argv[1] == "--_worker":
        _worker(*sys.argv[2:])
        return 0
    args = parse_args()
    why = cpp_harness.missing_toolchain()
    if why:
        print(f"bench_cpp: cannot build the C++ example: {why}", file=sys.stderr)
        return 2
    binary = cpp_harness.build(cpp_harness.prepare_ort(sys.executable))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, model_desc, image = default_inputs(args, tmp)
        out = tmp / "cpp_heatmap.npy"
        rounds = alternate_rounds(binary, model, image, out, args)
        if rounds is None:
            return 2
        cpp_rounds, py_rounds, py_heatmap = rounds
        diff = float(np.abs(np.load(out) - py_heatmap).max())
    report(args, model_desc, image, cpp_rounds, py_rounds, diff)
    return 0


if __name__ == "__main__":
    sys.exit(main())
