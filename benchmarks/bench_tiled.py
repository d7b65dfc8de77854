"""Default tiled build vs the bare patch batch: where the time goes, and which chunking to ship.

Command: ``.venv/bin/python benchmarks/bench_tiled.py --width 64 --rounds 3 --repeat 3 [--profile]``

Variants (all from the same randomly initialised UNet; latency and memory do not depend on the
weights), each timed in its own fresh process (``benchmarks/ortworker.py``: peak RSS = VmHWM, imports
included), rounds interleaved so load from other jobs hits all of them alike:

* ``bare18``   -- the exported patch model alone on one batch of 18 patches (the yardstick)
* ``one18``    -- the composed model, all 18 patches in one call (``--patch-batch 18``)
* ``loopK``    -- the composed model, chunks of K in a ``Loop`` (the old default, K=6)
* ``unrolledK``-- the composed model, chunks of K unrolled, sharing one set of weights
* ``hybridKLn``-- the composed model, the ``n`` full-resolution levels in chunks of K, the
  low-resolution middle of the UNet once on all 18 patches (``--chunking hybrid``)

``--profile`` adds one ONNX Runtime profile per variant (per-op kernel time) and the op types of
ORT's optimized graph (``SessionOptions.optimized_model_filepath``), main graph and Loop body.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from _common import run_ortworker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def build_variants(
    width: int, ks: list[int], loop_ks: list[int], out: Path, hybrid: list[tuple[int, int]] = ()
) -> dict[str, Path]:
    import numpy as np
    import onnx
    import torch

    from bgbuild.build import finalize_stage
    from bgbuild.compose import ComposeOptions, compose_full_model
    from bgbuild.export import export_patch_model
    from bgsdk.tiling import tiling_for
    from bgtrain.model import UNet

    torch.manual_seed(0)
    tiling = tiling_for("strip")
    patch = export_patch_model(UNet(base_width=width).eval(), tiling.patch)
    paths = {"bare18": out / "bare18.onnx"}
    onnx.save(patch, str(paths["bare18"]))
    T = tiling.num_patches
    specs = [("one18", ComposeOptions(patch_batch=None))]
    specs += [(f"unrolled{k}", ComposeOptions(patch_batch=k, chunking="unrolled")) for k in ks]
    specs += [(f"loop{k}", ComposeOptions(patch_batch=k, chunking="loop")) for k in loop_ks]
    specs += [
        (f"hybrid{k}L{lv}", ComposeOptions(patch_batch=k, chunking="hybrid", hybrid_levels=lv)) for k, lv in hybrid
    ]
    for name, opts in specs:
        model = compose_full_model(patch, tiling, opts)
        uses_loop = opts.chunking == "loop" and opts.patch_batch is not None and opts.patch_batch < T
        model, _, _ = finalize_stage(model, simplify_graph=True, uses_loop=uses_loop)
        paths[name] = out / f"{name}.onnx"
        onnx.save(model, str(paths[name]))
    # the bare model's input: the 18 patches of one random strip
    x = np.random.default_rng(0).random((1, 3, tiling.height, tiling.width), dtype=np.float32)
    patches = np.concatenate([x[:, :, p.row.start : p.row.stop, p.col.start : p.col.stop] for p in tiling.patches()])
    np.save(out / "patches18.npy", patches)
    np.save(out / "strip.npy", x)
    return paths


def optimized_ops(path: Path) -> dict[str, int]:
    import onnx

    from bgbuild.graphs import all_graphs

    m = onnx.load(str(path), load_external_data=False)
    c: Counter[str] = Counter()
    for g in all_graphs(m.graph):
        c.update(n.op_type for n in g.node)
    return dict(sorted(c.items()))


def print_table(
    paths: dict[str, Path],
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
    rss: dict[str, list[float]],
    what: str,
) -> None:
    """Wall median, min-max, ratios to bare18 (median and best call), CPU time, peak RSS, file size."""
    base, base_min = statistics.median(times["bare18"]), min(times["bare18"])
    base_cpu = statistics.median(cpu["bare18"])
    print(f"\nwidth {what} (wall median, min-max; cpu = user+sys median)")
    print(
        f"{'variant':<12} {'median ms':>10} {'min':>8} {'max':>8} {'/bare18':>8} {'min/bare':>8} {'cpu ms':>8} "
        f"{'cpu/bare':>8} {'peak RSS MB':>12} {'file MB':>8}"
    )
    for name in paths:
        t, c = times[name], cpu[name]
        med = statistics.median(t)
        print(
            f"{name:<12} {med * 1e3:10.0f} {min(t) * 1e3:8.0f} {max(t) * 1e3:8.0f} {med / base:8.3f} "
            f"{min(t) / base_min:8.3f} {statistics.median(c) * 1e3:8.0f} {statistics.median(c) / base_cpu:8.3f} "
            f"{max(rss[name]):12.0f} {paths[name].stat().st_size / 1e6:8.1f}"
        )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--ks", type=int, nargs="*", default=[6, 3])
    ap.add_argument("--loop-ks", type=int, nargs="*", default=[6])
    ap.add_argument(
        "--hybrid",
        nargs="*",
        default=["3:1"],
        metavar="K:LEVELS",
        help="hybrid variants: chunks of K patches for the LEVELS full-resolution levels",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--no-spin",
        action="store_true",
        help="ORT threads block instead of spinning: the cpu column then counts work, not waiting",
    )
    ap.add_argument("--workdir", default=None)
    return ap.parse_args()


def measure(paths: dict[str, Path], inputs: dict[str, Path], args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """Every variant once per round in its own process, rounds interleaved: per-call wall and CPU s, peak RSS."""
    times: dict[str, list[float]] = {n: [] for n in paths}
    rss: dict[str, list[float]] = {n: [] for n in paths}
    cpu: dict[str, list[float]] = {n: [] for n in paths}
    extra = ["--no-spin"] if args.no_spin else []
    for r in range(args.rounds):
        order = list(paths) if r % 2 == 0 else list(reversed(paths))
        for name in order:
            batch = 18 if name == "bare18" else 1
            res = run_ortworker(paths[name], inputs[name], batch, args.threads, args.repeat, extra)
            times[name] += res["times"]
            cpu[name] += res["cpu_times"]
            rss[name].append(res["peak_rss_mb"])
        print(f"# round {r + 1}/{args.rounds} done, load average {os.getloadavg()}", flush=True)
    return times, cpu, rss


def print_profiles(paths: dict[str, Path], inputs: dict[str, Path], threads: int, tmp: Path) -> None:
    """One ORT profile per variant (kernel time by op type) and the op types of ORT's optimized graph."""
    for name in paths:
        extra = ["--profile", str(tmp / f"prof_{name}"), "--optimized", str(tmp / f"opt_{name}.onnx")]
        res = run_ortworker(paths[name], inputs[name], 18 if name == "bare18" else 1, threads, 1, extra)
        p = res["profile"]
        tot = p["total_us"]
        print(
            f"\n## profile {name}: kernel time {tot / 2e3:.0f} ms per call (2 calls profiled); "
            f"call wall {res['times'][0] * 1e3:.0f} ms"
        )
        print("  by op type: " + ", ".join(f"{k} {v / tot:.1%}" for k, v in list(p["by_type"].items())[:8]))
        print("  optimized graph ops: " + json.dumps(optimized_ops(tmp / f"opt_{name}.onnx")))


def main() -> None:
    args = parse_args()
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="bench_tiled-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"# {platform.processor() or platform.machine()}, load average {os.getloadavg()}, workdir {tmp}")
    hybrid = [(int(k), int(lv)) for k, lv in (h.split(":") for h in args.hybrid)]
    paths = build_variants(args.width, args.ks, args.loop_ks, tmp, hybrid)
    inputs = {name: (tmp / "patches18.npy" if name == "bare18" else tmp / "strip.npy") for name in paths}
    times, cpu, rss = measure(paths, inputs, args)
    spin = ", no spinning" if args.no_spin else ""
    what = f"{args.width}, {args.threads} threads{spin}, {args.rounds} rounds x {args.repeat} calls"
    print_table(paths, times, cpu, rss, what)
    if args.profile:
        print_profiles(paths, inputs, args.threads, tmp)


if __name__ == "__main__":
    main()
