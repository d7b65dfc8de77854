"""What the network's input stem costs at inference: plain, compare, tolerant, aligned, in one interleaved run.

Command (docs/performance.md)::

    .venv/bin/python benchmarks/bench_stem.py --data DEMO_DATA [--width 64] [--rounds 3]
    .venv/bin/python benchmarks/bench_stem.py --stem-only [--rounds 5] [--width 64]   # each stem alone, seconds

The stems are parameter-free channels in front of the first convolution (bgtrain.model): ``compare`` adds
T-R1, T-R2 and the signed double detection, ``tolerant`` also the same against each reference's 3x3 range
(4 MaxPools), ``aligned`` (train-model's default) also the target against each reference shifted onto it
(a per-patch sub-pixel shift estimate), ``registered`` (the default) the tolerant channels of the dies registered
by a whole-pixel search up to 7 px plus that sub-pixel refinement. Older speed claims (docs/experiments/) were measured on plain-stem
models, so this prints each stem's ms per strip and its ratio to plain for the default tiled fp32
build and the fastest build (``--mode whole --quantize``), with that build's speed-up over the tiled fp32
one per stem. Random weights (speed does not depend on them), built with ``bgbuild.build_model``; each
timing in a fresh process (benchmarks/ortworker.py), batch 1, rounds interleaved over all models.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from _common import random_strip_checkpoint, run_ortworker
from bench_modes import built_summary, cpu_info, quantize_options, test_inputs

STEMS = ("plain", "compare", "tolerant", "aligned", "registered")
BUILDS = ("tiled fp32", "whole int8")


def build(
    width: int, data: Path, out: Path, calib_count: int, reuse: bool, stems: tuple[str, ...] = STEMS
) -> dict[tuple[str, str], Path]:
    from bgbuild import BuildOptions, build_model

    q = quantize_options(True, data, calib_count, 4)
    opts = {"tiled fp32": BuildOptions(verify_data=data), "whole int8": BuildOptions(mode="whole", quantize=q)}
    paths: dict[tuple[str, str], Path] = {}
    for stem in stems:
        ckpt = random_strip_checkpoint(out / f"w{width}_{stem}.pt", width, seed=0, data=data, stem=stem)
        for name in BUILDS:
            path = out / f"w{width}_{stem}_{name.replace(' ', '_')}.onnx"
            if not (reuse and path.is_file()):
                report = build_model(ckpt, path, opts[name], progress=lambda stage, msg: None)
                print(f"# built {stem} {name}: {built_summary(report)}", flush=True)
            paths[(stem, name)] = path
    return paths


def _session(module: object, shape: tuple[int, ...], threads: int) -> object:
    import io

    import onnxruntime as ort
    import torch

    f = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's constant-folding notes about Slice
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.rand(*shape), f, opset_version=17, dynamo=False)  # type: ignore[arg-type]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(f.getvalue(), so, providers=["CPUExecutionProvider"])


def stem_only(threads: int, rounds: int, repeat: int, body_width: int) -> None:
    """Each stem alone as an ONNX model, at a tiled strip's patch batch (9 x 128x128) and at a whole strip's
    padded size (992 x 192): what the stem adds to a build, without building models. Interleaved with the
    plain network of ``body_width`` (random weights, BatchNorm in eval mode) on the same input, so each stem's
    cost is also printed as a share of the network it feeds (0 = skip)."""
    import numpy as np

    from bgtrain.model import UNet

    shapes = {"tiled (9 x 128x128)": (9, 3, 128, 128), "whole (992x192)": (1, 3, 992, 192)}
    sessions = {}
    for shape_name, shape in shapes.items():
        for stem in STEMS[1:]:
            sessions[(stem, shape_name)] = _session(UNet(base_width=1, stem=stem).stem, shape, threads)
        if body_width:
            sessions[("body", shape_name)] = _session(UNet(base_width=body_width).eval(), shape, threads)
    x = {k: np.random.default_rng(0).random(shape, dtype=np.float32) for k, shape in shapes.items()}
    times: dict[tuple[str, str], list[float]] = {k: [] for k in sessions}
    for r in range(rounds):
        for key in list(sessions) if r % 2 == 0 else list(reversed(sessions)):
            s = sessions[key]
            name = s.get_inputs()[0].name  # type: ignore[attr-defined]
            s.run(None, {name: x[key[1]]})  # type: ignore[attr-defined]
            for _ in range(repeat if key[0] != "body" else max(1, repeat // 5)):
                t0 = time.perf_counter()
                s.run(None, {name: x[key[1]]})  # type: ignore[attr-defined]
                times[key].append(time.perf_counter() - t0)
    print(cpu_info())
    print(f"the stem alone, {threads} threads, median of {rounds} x {repeat} calls")
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    if body_width:
        cells = " | ".join(f"{k}: {med[('body', k)]:.0f} ms" for k in shapes)
        print(f"plain width-{body_width} network on the same input: {cells}")
    share = f" | % of w{body_width} network" if body_width else ""
    print("| stem | " + " | ".join(f"{k} ms | vs tolerant{share}" for k in shapes) + " |")
    print("|---|" + ("---|---|" + ("---|" if body_width else "")) * len(shapes))
    for stem in STEMS[1:]:
        cells = []
        for k in shapes:
            cell = f"{med[(stem, k)]:.1f} | {med[(stem, k)] / med[('tolerant', k)]:.1f}x"
            cells.append(cell + (f" | {100 * med[(stem, k)] / med[('body', k)]:.1f}%" if body_width else ""))
        print(f"| {stem} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="a synth-dataset data set (calibration, test strips)")
    ap.add_argument("--stem-only", action="store_true", help="time each stem alone (no --data, no model builds)")
    ap.add_argument("--stems", nargs="+", choices=STEMS, default=list(STEMS), help="stems to build (plain always)")
    ap.add_argument("--width", type=int, default=64, help="network width (--stem-only: of the network compared)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="calls per process (after one warm-up call)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-count", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the models here (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true", help="reuse models already built in --workdir")
    a = ap.parse_args()
    if a.stem_only:
        stem_only(a.threads, a.rounds, max(a.repeat, 10), a.width)
        return
    if a.data is None:
        ap.error("--data is required unless --stem-only")
    with tempfile.TemporaryDirectory() as tmp:
        out = a.workdir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        stems = tuple(dict.fromkeys(["plain", *a.stems]))
        paths = build(a.width, a.data, out, a.calib_count, a.reuse, stems)
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
    for stem in stems:
        t, w = med[(stem, "tiled fp32")], med[(stem, "whole int8")]
        tp, wp = med[("plain", "tiled fp32")], med[("plain", "whole int8")]
        print(f"| {stem} | {t:.1f} | {t / tp:.3f}x | {w:.1f} | {w / wp:.3f}x | {t / w:.2f}x |")


if __name__ == "__main__":
    main()
