"""Tiled vs whole-strip, fp32 vs INT8, in one interleaved run: speed, memory, size and accuracy.

Command (docs/performance.md)::

    .venv/bin/python benchmarks/bench_modes.py --data DEMO_DATA --checkpoint16 CKPT16 [--widths 64 16]

For each width it builds, with ``bgbuild.build_model`` (the same code as ``build-model``), the default tiled
fp32 model, ``--quantize``, ``--mode whole`` and ``--mode whole --quantize``; at width 64 also the bare patch
model (the yardstick of the tiled graph: one call on the 18 patches of a strip). Width 16 uses the trained
checkpoint given (its AP is real); width 64 uses random weights unless ``--checkpoint64`` is given (speed
and memory do not depend on the weights; AP does, so it is not reported for random weights).

Every timing runs in a fresh process (benchmarks/ortworker.py: peak RSS = VmHWM of that process, imports
included), rounds interleaved over the models so load from other jobs hits all of them alike. Reported per
model: ms per strip and strips/s at batch 1 and 8, at 1 and 2 threads; peak RSS (batch 1, 2 threads); file
size; pixel AP / image AUROC on the data set's test split (all its strips). The CPU model and its SIMD flags
are printed with the table: INT8 gains depend on AVX-512 VNNI / AMX.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import random_strip_checkpoint, run_ortworker

HERE = Path(__file__).resolve().parent
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def cpu_info() -> str:
    model, flags = "?", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    have = " ".join(f"{fl}={'yes' if fl in flags else 'no'}" for fl in FLAGS)
    return f"CPU: {model}, {os.cpu_count()} logical cores; {have}"


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
        ckpt = random_strip_checkpoint(out / f"random_w{width}.pt", width, seed=0, data=data)
        weights = "random-initialised weights (seed 0)"
    else:
        from bgtrain.checkpoint import model_from_checkpoint

        info = model_from_checkpoint(ckpt)[1]
        weights = (
            f"trained checkpoint {ckpt}: width {info.width}, epoch {info.epoch}, "
            f"valid pixel AP {info.metrics.get('pixel_ap', float('nan')):.4f}"
        )
    q = quantize_options(weights.startswith("random"), data, calib_count, verify_count)
    specs = {
        "tiled fp32": BuildOptions(verify_data=data),
        "tiled int8": BuildOptions(verify_data=data, quantize=q),
        "whole fp32": BuildOptions(verify_data=data, mode="whole"),
        "whole int8": BuildOptions(verify_data=data, mode="whole", quantize=q),
    }
    if hybrid:  # --chunking hybrid: the full-resolution layers in chunks of 3, the rest once on all patches
        specs["tiled fp32 hybrid"] = BuildOptions(verify_data=data, chunking="hybrid")
        specs["tiled int8 hybrid"] = BuildOptions(verify_data=data, quantize=q, chunking="hybrid")
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
        "--data", type=Path, required=True, help="demo data set root (train/ for calibration, test/ for AP)"
    )
    ap.add_argument("--checkpoint16", type=Path, required=True, help="trained width-16 checkpoint")
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
        "| model | threads | batch | ms/strip | min-max | strips/s | vs tiled fp32 | peak RSS MB | file MB | pixel AP | image AUROC |"
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
                rss_txt = f"{rss[name]:.0f}" if batch == 1 and threads == max(threads_list) else ""
                print(
                    f"| {name} | {threads} | {batch if not name.startswith('bare') else '18 patches'} | "
                    f"{med * 1e3:.0f} | {min(t) * 1e3:.0f}-{max(t) * 1e3:.0f} | {1 / med:.2f} | "
                    f"{ref[(threads, batch)] / med:.2f}x | {rss_txt} | "
                    f"{paths[name].stat().st_size / 1e6:.1f} | {acc[name][0]} | {acc[name][1]} |"
                )
    print(flush=True)


def main() -> None:
    args = parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_modes-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# {cpu_info()}")
    print(f"# load average at start {os.getloadavg()}; workdir {work}", flush=True)
    strips, patches, masks, defective = test_inputs(args.data, work)
    for width in args.widths:
        ckpt = args.checkpoint16 if width == 16 else (args.checkpoint64 if width == 64 else None)
        paths, weights = build_models(
            width, ckpt, args.data, work, args.calib_count, args.verify_count, args.hybrid, args.reuse
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
    print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
