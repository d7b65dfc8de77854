"""What the network's input stem costs at inference: plain, compare, tolerant, aligned, in one interleaved run.

Command (docs/benchmarks.md)::

    .venv/bin/python benchmarks/bench_stem.py --data DEMO_DATA [--width 64] [--rounds 3]

The stems are parameter-free channels in front of the first convolution (bgtrain.model): ``compare`` adds
T-R1, T-R2 and the signed double detection, ``tolerant`` (train-model's default) also the same against each
reference's 3x3 range (4 MaxPools), ``aligned`` also the target against each reference shifted onto it
(a per-patch shift estimate). The speed claims elsewhere in docs/benchmarks.md were measured on plain-stem models, so this prints each stem's ms per strip and its ratio to plain for the default tiled fp32
build and the fastest build (``--mode whole --quantize``), with that build's speed-up over the tiled fp32
one per stem. Random weights (speed does not depend on them), built with ``bgbuild.build_model``; each
timing in a fresh process (benchmarks/ortworker.py), batch 1, rounds interleaved over all models.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from _common import random_strip_checkpoint, run_ortworker
from bench_modes import built_summary, cpu_info, quantize_options, test_inputs

STEMS = ("plain", "compare", "tolerant", "aligned")
BUILDS = ("tiled fp32", "whole int8")


def build(width: int, data: Path, out: Path, calib_count: int, reuse: bool) -> dict[tuple[str, str], Path]:
    from bgbuild import BuildOptions, build_model

    q = quantize_options(True, data, calib_count, 4)
    opts = {"tiled fp32": BuildOptions(verify_data=data), "whole int8": BuildOptions(mode="whole", quantize=q)}
    paths: dict[tuple[str, str], Path] = {}
    for stem in STEMS:
        ckpt = random_strip_checkpoint(out / f"w{width}_{stem}.pt", width, seed=0, data=data, stem=stem)
        for name in BUILDS:
            path = out / f"w{width}_{stem}_{name.replace(' ', '_')}.onnx"
            if not (reuse and path.is_file()):
                report = build_model(ckpt, path, opts[name], progress=lambda stage, msg: None)
                print(f"# built {stem} {name}: {built_summary(report)}", flush=True)
            paths[(stem, name)] = path
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a synth-dataset data set (calibration, test strips)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="calls per process (after one warm-up call)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-count", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the models here (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true", help="reuse models already built in --workdir")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = a.workdir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        paths = build(a.width, a.data, out, a.calib_count, a.reuse)
        strips = test_inputs(a.data, out)[0]
        times: dict[tuple[str, str], list[float]] = {k: [] for k in paths}
        for r in range(a.rounds):
            order = list(paths) if r % 2 == 0 else list(reversed(paths))
            for key in order:
                times[key] += run_ortworker(paths[key], strips, 1, a.threads, a.repeat)["times"]
            print(f"# round {r + 1}/{a.rounds} done, load average {os.getloadavg()}", flush=True)
    print(cpu_info())
    print(f"width {a.width}, batch 1, {a.threads} threads, median of {a.rounds} x {a.repeat} calls")
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print("| stem | tiled fp32 ms | vs plain | whole int8 ms | vs plain | whole int8 speed-up over tiled fp32 |")
    print("|---|---|---|---|---|---|")
    for stem in STEMS:
        t, w = med[(stem, "tiled fp32")], med[(stem, "whole int8")]
        tp, wp = med[("plain", "tiled fp32")], med[("plain", "whole int8")]
        print(f"| {stem} | {t:.1f} | {t / tp:.3f}x | {w:.1f} | {w / wp:.3f}x | {t / w:.2f}x |")


if __name__ == "__main__":
    main()
