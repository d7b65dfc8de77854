"""Tiled vs whole-strip, fp32 vs INT8 vs fp16, in one interleaved run: speed, memory, size (and accuracy), kernels.

Command (docs/performance.md)::

    .venv/bin/python benchmarks/bench_modes.py [--data DEMO_DATA] [--checkpoint16 CKPT16] [--widths 16 64]
        [--profile] [--kernels]

For each width it builds, with ``bgbuild.build_model`` (the same code as ``build-model``), the default tiled
fp32 model, ``--quantize``, ``--fp16``, and the same three with ``--mode whole``; at width 64 also the bare patch
model (the yardstick of the tiled graph: one call on the 18 patches of a strip). Without ``--checkpoint16`` /
``--checkpoint64`` a width gets a randomly initialised checkpoint with the default input stem (speed and
memory do not depend on the weights; AP does, so it is not reported for random weights). Without ``--data``
a small demo data set is synthesised (calibration and timing inputs).

Every timing runs in a fresh process (benchmarks/ortworker.py), rounds interleaved over the models so load
from other jobs hits all of them alike. Reported per model: ms per strip and strips/s at each batch and
thread count; peak RSS (VmHWM, batch 1, most threads) and its delta over the process before the session
(what the model costs); file size; pixel AP / image AUROC on the data set's test split (trained weights
only). ``--profile``: ONNX Runtime's per-op profile of every INT8 model and the whole fp32 model (time by op
type and input type: what still runs in float). ``--kernels``: whether MLAS enabled AMX in the process, and
one QLinearConv with symmetric int8 weights (ONNX Runtime's ConvSym kernel) against the same layer with a
non-zero weight zero point (im2col + the quantized GEMM, which MLAS dispatches to AMX). The CPU model and its
SIMD flags are printed with the tables: INT8 gains depend on AVX-512 VNNI / AMX.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import cpu_info, random_strip_checkpoint, run_ortworker

HERE = Path(__file__).resolve().parent


def quantize_options(random_weights: bool, data: Path, calib_count: int, verify_count: int) -> Any:
    """``--quantize`` options of the benchmark's INT8 builds."""
    from bgbuild.quantize import QuantizeOptions

    if random_weights:
        # Random weights detect nothing: an AP gate on them is a coin toss (and a failed MinMax would make
        # --calib-method auto try Percentile/Entropy, GBs at w=64). Speed only: MinMax, gate open.
        return QuantizeOptions(
            calib_data=data,
            calib_count=calib_count,
            verify_count=min(verify_count, 4),
            calib_method="minmax",
            max_ap_drop=1.0,
            max_mean_diff=1.0,
        )
    return QuantizeOptions(calib_data=data, calib_count=calib_count, verify_count=verify_count)


def fp16_options(random_weights: bool, verify_count: int) -> Any:
    """``--fp16`` options: the build's own gate on trained weights; open on random ones (speed only)."""
    from bgbuild.fp16 import Fp16Options

    if random_weights:
        return Fp16Options(verify_count=min(verify_count, 4), max_ap_drop=1.0, max_mean_diff=1.0)
    return Fp16Options(verify_count=verify_count)


def built_summary(report: Any) -> str:
    """One line per build: size, fp32 parity, and for INT8 the calibration chosen and the gate's numbers."""
    line = f"{report.size_bytes / 1e6:.1f} MB, fp32 parity {report.verification.max_abs_diff:.2g}"
    if report.quantization is not None:
        sel = report.quantization.settings.get("calibration_selection", {})
        tried = ", ".join(a["method"] for a in sel.get("attempts", []))
        line += f"; calibration {report.quantization.settings['calibration_method']} (tried {tried}); "
        line += report.quantization.verification.summary()
    return line


def build_models(
    width: int,
    ckpt: Path | None,
    data: Path,
    out: Path,
    calib_count: int,
    verify_count: int,
    hybrid: bool = False,
    reuse: bool = False,
) -> tuple[dict[str, Path], str]:
    import onnx

    from bgbuild import BuildOptions, build_model
    from bgbuild.build import export_stage, load_stage

    if ckpt is None:
        from bgtrain.model import DEFAULT_STEM

        ckpt = random_strip_checkpoint(out / f"random_w{width}.pt", width, seed=0, data=data, stem=DEFAULT_STEM)
        weights = f"random-initialised weights (seed 0), default stem ({DEFAULT_STEM})"
    else:
        from bgtrain.checkpoint import model_from_checkpoint

        info = model_from_checkpoint(ckpt)[1]
        weights = (
            f"trained checkpoint {ckpt}: width {info.width}, epoch {info.epoch}, "
            f"valid pixel AP {info.metrics.get('pixel_ap', float('nan')):.4f}"
        )
    q = quantize_options(weights.startswith("random"), data, calib_count, verify_count)
    h = fp16_options(weights.startswith("random"), verify_count)
    v = dict(verify_data=data, verify_images=1)
    specs = {
        "tiled fp32": BuildOptions(**v),
        "tiled int8": BuildOptions(**v, quantize=q),
        "tiled fp16": BuildOptions(**v, fp16=h),
        "whole fp32": BuildOptions(**v, mode="whole"),
        "whole int8": BuildOptions(**v, mode="whole", quantize=q),
        "whole fp16": BuildOptions(**v, mode="whole", fp16=h),
    }
    if hybrid:  # --chunking hybrid: the full-resolution layers in chunks of 3, the rest once on all patches
        specs["tiled fp32 hybrid"] = BuildOptions(**v, chunking="hybrid")
        specs["tiled int8 hybrid"] = BuildOptions(**v, quantize=q, chunking="hybrid")
    paths: dict[str, Path] = {}
    for name, opts in specs.items():
        path = out / f"w{width}_{name.replace(' ', '_')}.onnx"
        if reuse and path.is_file():
            print(f"# reused w{width} {name}: {path}", flush=True)
        else:
            report = build_model(ckpt, path, opts, progress=lambda stage, msg: None)
            print(f"# built w{width} {name}: {built_summary(report)}", flush=True)
        paths[name] = path
    if width >= 64:
        bare = out / f"w{width}_bare18.onnx"
        onnx.save(export_stage(load_stage(ckpt), 17), str(bare))
        paths["bare patch x18"] = bare
    return paths, weights


def test_inputs(data: Path, out: Path) -> tuple[Path, Path, list, list[bool]]:
    """The test split as (N,3,976,176)/255, its 18 patches per strip for the bare model, masks, labels."""
    from bgsdk.tiling import tiling_for
    from bgtrain.validate import load_eval_set

    ev = load_eval_set(data, "test")
    assert ev is not None, f"{data}: no test split"
    x = (np.stack([e.image for e in ev.images]) / np.float32(255.0)).astype(np.float32)
    t = tiling_for("strip")
    patches = np.concatenate([x[:1, :, p.row.start : p.row.stop, p.col.start : p.col.stop] for p in t.patches()])
    np.save(out / "strips.npy", x)
    np.save(out / "patches.npy", patches)
    return out / "strips.npy", out / "patches.npy", [e.mask for e in ev.images], [e.sample.defective for e in ev.images]


def accuracy(model: Path, strips: Path, masks: list, defective: list[bool]) -> tuple[float, float]:
    import onnxruntime as ort

    from bgsdk.evaluate.metrics import evaluate

    x = np.load(strips)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    hm = [sess.run(None, {"input": x[i : i + 1]})[0][0, 0] for i in range(len(x))]
    m = evaluate(hm, masks, defective)
    return float(m.pixel_ap), float(m.image_auroc)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="demo data set root (train/ for calibration, test/ for timing and AP) [default: synthesised]",
    )
    ap.add_argument(
        "--checkpoint16", type=Path, default=None, help="trained width-16 checkpoint [default: random weights]"
    )
    ap.add_argument(
        "--checkpoint64", type=Path, default=None, help="trained width-64 checkpoint [default: random weights]"
    )
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 16])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="calls per process at batch 1 (after one warm-up call)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument(
        "--threads64", type=int, nargs="+", default=None, help="threads at width >= 64 [default: --threads]"
    )
    ap.add_argument(
        "--batches64", type=int, nargs="+", default=None, help="batches at width >= 64 [default: --batches]"
    )
    ap.add_argument("--calib-count", type=int, default=8)
    ap.add_argument("--verify-count", type=int, default=16)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--hybrid", action="store_true", help="also the tiled builds with --chunking hybrid")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep models already in --workdir (built by an earlier run of this commit) instead of rebuilding: "
        "build while the machine is busy, time when it is idle",
    )
    ap.add_argument("--build-only", action="store_true", help="build (or reuse) the models and stop")
    ap.add_argument("--profile", action="store_true", help="ONNX Runtime's per-op profile of the INT8 models")
    ap.add_argument("--kernels", action="store_true", help="AMX in MLAS; QLinearConv's ConvSym vs GEMM path")
    return ap.parse_args()


Results = dict[tuple[str, int, int], list[float]]  # (model, threads, batch) -> seconds per strip


def measure(
    paths: dict[str, Path],
    inputs: tuple[Path, Path],
    width: int,
    threads_list: list[int],
    batch_list: list[int],
    args: argparse.Namespace,
) -> tuple[Results, dict[str, float]]:
    """Every model once per round and setting, each in a fresh process, rounds interleaved; peak RSS at batch 1."""
    strips, patches = inputs
    results: Results = {}
    rss: dict[str, float] = {}
    for r in range(args.rounds):
        names = list(paths) if r % 2 == 0 else list(reversed(paths))
        for threads in threads_list:
            for batch in batch_list:
                for name in names:
                    bare = name.startswith("bare")
                    if (bare and batch != 1) or (width >= 64 and threads == 1 and batch > 1):
                        continue  # w>=64 batches > 1 at 1 thread: minutes per call on 2 shared cores
                    rep = args.repeat if batch == 1 else 1
                    res = run_ortworker(paths[name], patches if bare else strips, 18 if bare else batch, threads, rep)
                    results.setdefault((name, threads, batch), []).extend(t / batch for t in res["times"])
                    if threads == max(threads_list) and batch == 1:
                        rss[name] = max(rss.get(name, 0.0), res["peak_rss_mb"])
                        delta = res["peak_rss_mb"] - res["rss_before_session_mb"]
                        rss[f"{name} delta"] = max(rss.get(f"{name} delta", 0.0), delta)
        print(f"# w{width} round {r + 1}/{args.rounds} done, load average {os.getloadavg()}", flush=True)
    return results, rss


def print_width_table(
    width: int,
    weights: str,
    paths: dict[str, Path],
    results: Results,
    rss: dict[str, float],
    acc: dict[str, tuple[str, str]],
    threads_list: list[int],
    batch_list: list[int],
) -> None:
    """The markdown table of the build variants (docs/performance.md) for one width."""
    ref = {(t, b): statistics.median(v) for (name, t, b), v in results.items() if name == "tiled fp32"}
    print(
        f"\n## width {width} ({weights}); ms per strip = median over rounds x calls (min-max); "
        f"speed-up vs tiled fp32 at the same threads/batch"
    )
    print(
        "| model | threads | batch | ms/strip | min-max | strips/s | vs tiled fp32 | peak RSS MB (delta) | file MB "
        "| pixel AP | image AUROC |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for threads in threads_list:
        for batch in batch_list:
            for name in paths:
                key = (name, threads, batch)
                if key not in results or (threads, batch) not in ref:
                    continue
                t = results[key]
                med = statistics.median(t)
                rss_txt = (
                    f"{rss[name]:.0f} ({rss[name + ' delta']:.0f})"
                    if batch == 1 and threads == max(threads_list)
                    else ""
                )
                print(
                    f"| {name} | {threads} | {batch if not name.startswith('bare') else '18 patches'} | "
                    f"{med * 1e3:.0f} | {min(t) * 1e3:.0f}-{max(t) * 1e3:.0f} | {1 / med:.2f} | "
                    f"{ref[(threads, batch)] / med:.2f}x | {rss_txt} | "
                    f"{paths[name].stat().st_size / 1e6:.1f} | {acc[name][0]} | {acc[name][1]} |"
                )
    print(flush=True)


def profile_models(paths: dict[str, Path], strips: Path, work: Path, threads: int) -> None:
    """ONNX Runtime's profile of each INT8 model and the whole fp32 one: time by op type and input type."""
    for name in [n for n in paths if "int8" in n or n == "whole fp32"]:
        prefix = str(work / f"profile_{paths[name].stem}")
        extra = ["--profile", prefix, "--optimized", str(work / f"{paths[name].stem}.optimized.onnx")]
        prof = run_ortworker(paths[name], strips, 1, threads, 2, extra)["profile"]
        total = prof["total_us"]
        print(f"\n### ONNX Runtime profile: {paths[name].name}, {threads} threads, 3 calls of 1 strip")
        print("| op (first input's type) | ms per call | share |")
        print("|---|---|---|")
        for op, us in prof["by_type_dtype"].items():
            if us / total >= 0.005:
                print(f"| {op} | {us / 3e3:.1f} | {us / total:.1%} |")
        kinds: dict[str, dict[str, float]] = {"float": {}, "Q/DQ": {}, "int8": {}}
        for op, us in prof["by_type_dtype"].items():
            kinds[_kind(op)][op.split(" (")[0]] = us
        for kind, ops in kinds.items():
            listed = ", ".join(f"{op} {us / total:.1%}" for op, us in ops.items() if us / total >= 0.003)
            print(f"{kind} ops: {sum(ops.values()) / total:.1%} of the kernel time ({listed})")
    print(flush=True)


def _kind(op_and_type: str) -> str:
    """``"QLinearConv (uint8)"`` -> int8, ``"QuantizeLinear (float)"`` -> Q/DQ, ``"Resize (float)"`` -> float: the
    quantized ops by name (their first input may be a float scale), the rest by the first input's type."""
    op, dtype = op_and_type.rsplit(" (", 1)
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return "Q/DQ"
    if op.startswith("QLinear") or not dtype.startswith("float"):
        return "int8"
    return "float"


def amx_permission() -> bool | None:
    """Whether this process may use AMX tile data (Linux ARCH_GET_XCOMP_PERM): MLAS asks for it at import
    when the CPU has AMX-INT8, and installs its AMX GEMM only if the kernel grants it."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    mask = ctypes.c_ulong(0)
    if libc.syscall(158, 0x1022, ctypes.byref(mask)) != 0:  # SYS_arch_prctl, ARCH_GET_XCOMP_PERM
        return None
    return bool(mask.value & (1 << 18))  # XFEATURE_XTILEDATA


def _qlinearconv(cin: int, cout: int, h: int, w: int, weight_zero_point: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = {
        "w": rng.integers(-100, 100, size=(cout, cin, 3, 3), dtype=np.int8),
        "ws": np.full(cout, 0.01, np.float32),
        "wz": np.full(cout, weight_zero_point, np.int8),
        "xs": np.array(0.02, np.float32),
        "xz": np.array(128, np.uint8),
        "ys": np.array(0.05, np.float32),
        "yz": np.array(0, np.uint8),
        "b": np.zeros(cout, np.int32),
    }
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], pads=[1] * 4)
    graph = helper.make_graph(
        [node],
        "qconv",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, cin, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, cout, h, w])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def kernel_paths(threads: int, repeat: int = 5) -> None:
    """One QLinearConv of the w16/w64 whole-strip shapes: symmetric weights (ConvSym, AVX-512 VNNI) vs a weight
    zero point of 1 (im2col + quantized GEMM: the AMX kernel where MLAS has it)."""
    import time

    import onnxruntime as ort

    print(f"\n### kernels: onnxruntime {ort.__version__}; AMX tile data permitted in this process: {amx_permission()}")
    print(
        "| QLinearConv 3x3 | ConvSym (zero point 0) ms | GOPS | GEMM (zero point 1) ms | GOPS | ConvSym / GEMM time |"
    )
    print("|---|---|---|---|---|---|")
    for cin, cout, h, w in [(16, 16, 992, 192), (64, 64, 992, 192), (128, 128, 496, 96), (512, 512, 62, 12)]:
        x = np.random.default_rng(1).integers(0, 255, size=(1, cin, h, w), dtype=np.uint8)
        best = {}
        for zp in (0, 1):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(_qlinearconv(cin, cout, h, w, zp), so, providers=["CPUExecutionProvider"])
            sess.run(None, {"x": x})
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                sess.run(None, {"x": x})
                times.append(time.perf_counter() - t0)
            best[zp] = min(times)
        gop = 2 * cin * cout * 9 * h * w / 1e9
        print(
            f"| {cin}->{cout} at {h}x{w} | {best[0] * 1e3:.1f} | {gop / best[0]:.0f} | {best[1] * 1e3:.1f} | "
            f"{gop / best[1]:.0f} | {best[0] / best[1]:.2f} |",
            flush=True,
        )


def demo_data(work: Path) -> Path:
    from bgtrain.synth_dataset import make_dataset

    data = work / "data"
    if not (data / "test").is_dir():
        make_dataset(data, n_train=8, n_valid=4, n_test=4, seed=0, progress=False)
    return data


def main() -> None:
    args = parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_modes-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# {cpu_info()}")
    print(f"# load average at start {os.getloadavg()}; workdir {work}", flush=True)
    if args.kernels:
        kernel_paths(max(args.threads))
    data = args.data or demo_data(work)
    strips, patches, masks, defective = test_inputs(data, work)
    for width in args.widths:
        ckpt = args.checkpoint16 if width == 16 else (args.checkpoint64 if width == 64 else None)
        paths, weights = build_models(
            width, ckpt, data, work, args.calib_count, args.verify_count, args.hybrid, args.reuse
        )
        if args.build_only:
            continue
        threads_list = (args.threads64 or args.threads) if width >= 64 else args.threads
        batch_list = (args.batches64 or args.batches) if width >= 64 else args.batches
        results, rss = measure(paths, (strips, patches), width, threads_list, batch_list, args)
        acc = {}
        for name in paths:
            if name.startswith("bare"):
                acc[name] = ("-", "-")
            elif weights.startswith("random"):
                acc[name] = ("n/a (random weights)", "n/a")
            else:
                pa, au = accuracy(paths[name], strips, masks, defective)
                acc[name] = (f"{pa:.4f}", f"{au:.4f}")
        print_width_table(width, weights, paths, results, rss, acc, threads_list, batch_list)
        if args.profile:
            profile_models(paths, strips, work, max(threads_list))
    print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
