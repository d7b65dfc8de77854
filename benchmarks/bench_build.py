"""Benchmark the composed full-image model against the alternatives, and the --patch-batch trade-off.

One run, same checkpoint per width (default widths 64 and 8), ONNX Runtime and
torch on ``--threads`` threads (default 2), one 976x176 strip per call:

  (a) the composed model (build-model, one patch-model call on 18 patches)
  (b) the bare patch model on the same 18 patches in one call
  (c) a Python loop calling the patch model 18 times (batch 1)
  (d) the research approach: a torch module looping over the patches, traced with torch.onnx.export
  (e) PyTorch eager sliding window (bgtrain.infer.sliding_window)

plus build/export time and peak RSS of each, and, for the first width, the
composed model for every ``--patch-batch K`` (latency and peak RSS). Every
measurement runs in its own subprocess so peak RSS (``VmHWM``) belongs to
that measurement alone (imports included: numpy + onnxruntime ~45 MB, torch ~250 MB). Weights are random (a freshly initialised UNet saved
with save_checkpoint): latency and memory do not depend on trained weights.

    python benchmarks/bench_build.py [--widths 64 8] [--ks 1 2 3 6 9 18] [--repeat 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import random_strip_checkpoint

H, W = 976, 176


# ----------------------------------------------------------------------------- children


def _rss_mb() -> float:
    """Peak RSS of this process image, MB.

    ``VmHWM`` (Linux) belongs to the current address space, so it starts afresh at
    exec. ``ru_maxrss`` does not: a child forked from a big parent inherits the
    parent's peak, which would make every measurement read the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return float("nan")


def _image(seed: int = 0):
    import numpy as np

    from bgsdk.contract import scale_input
    from bgtrain.synth_dataset import make_image

    img = make_image(np.random.default_rng(seed), H, W, defective=True)[0][:3]
    return scale_input(img[None])


def _session(path: str, threads: int):
    from bgsdk._session import create_session

    return create_session(path, threads=threads)


def _time(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def child_build(args: dict) -> dict:
    """The full build-model pipeline (verification included) at K=18, keeping the patch model."""
    import torch

    from bgbuild.build import BuildOptions, build_model

    torch.set_num_threads(args["threads"])
    opts = BuildOptions(patch_batch=None, keep_patch_model=True, verify_images=1, threads=args["threads"])
    rep = build_model(args["checkpoint"], args["out"], opts, progress=lambda s, m: None)
    st = rep.stage_seconds
    return {
        "build_s": st["export"] + st["compose"] + st["simplify+check"],
        "stage_s": st,
        "verify_max_abs_diff": rep.verification.max_abs_diff,
        "size_mb": rep.size_bytes / 1e6,
        "nodes": rep.nodes,
        "peak_rss_mb": _rss_mb(),
    }


def child_build_ks(args: dict) -> dict:
    """Composed models for every K from one export (stages of the build pipeline, no verification)."""
    import onnx
    import torch

    from bgbuild.build import compose_stage, export_stage, finalize_stage, load_stage
    from bgbuild.simplify import initializer_bytes

    torch.set_num_threads(args["threads"])
    loaded = load_stage(args["checkpoint"])
    patch = export_stage(loaded, 17)
    res = {}
    for k in args["ks"]:
        t0 = time.perf_counter()
        m = compose_stage(patch, loaded.tiling, k, 17)
        m, _, _ = finalize_stage(m, simplify_graph=True, uses_loop=k < loaded.tiling.num_patches)
        path = Path(args["dir"]) / f"k{k}.onnx"
        onnx.save(m, str(path))
        res[str(k)] = {
            "compose_s": time.perf_counter() - t0,
            "size_mb": path.stat().st_size / 1e6,
            "weights_mb": initializer_bytes(m) / 1e6,
            "path": str(path),
        }
    return res


def child_traced(args: dict) -> dict:
    """(d) The research approach: a torch module with a Python loop over the patches, traced to ONNX."""
    import io
    import warnings

    import torch

    from bgtrain.checkpoint import model_from_checkpoint

    torch.set_num_threads(args["threads"])
    unet, info = model_from_checkpoint(args["checkpoint"])
    tiling = info.tiling()

    class LoopedModel(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows = []
            for r in tiling.rows:
                cols = []
                for c in tiling.cols:
                    prob = torch.softmax(self.net(x[:, :, r.start : r.stop, c.start : c.stop]), dim=1)[:, 1:2]
                    cols.append(prob[:, :, r.keep_start : r.keep_stop, c.keep_start : c.keep_stop])
                rows.append(torch.cat(cols, dim=3))
            heat = torch.cat(rows, dim=2)
            return torch.cat([heat, torch.zeros_like(heat), torch.zeros_like(heat)], dim=1)

    model = LoopedModel(unet).eval()
    buf = io.BytesIO()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, H, W),),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
            do_constant_folding=True,
        )
    export_s = time.perf_counter() - t0
    Path(args["out"]).write_bytes(buf.getvalue())
    return {"build_s": export_s, "size_mb": len(buf.getvalue()) / 1e6, "peak_rss_mb": _rss_mb()}


def child_latency(args: dict) -> dict:
    """Latency and peak RSS of one variant on one strip."""
    import numpy as np

    variant, threads, repeat = args["variant"], args["threads"], args["repeat"]
    x = _image()
    base = _rss_mb()
    patches = None
    if variant in ("b", "c"):
        from bgsdk.tiling import tiling_for

        t = tiling_for("strip")
        patches = np.ascontiguousarray(
            np.concatenate([x[:, :, p.row.start : p.row.stop, p.col.start : p.col.stop] for p in t.patches()])
        )
    t_load = time.perf_counter()
    if variant == "e":
        import torch

        from bgtrain.checkpoint import model_from_checkpoint
        from bgtrain.infer import sliding_window

        torch.set_num_threads(threads)
        model, info = model_from_checkpoint(args["checkpoint"])
        tiling = info.tiling()
        xt = torch.from_numpy(x)
        fn = lambda: sliding_window(model, xt, tiling)  # noqa: E731
    else:
        sess = _session(args["model"], threads)
        if variant in ("a", "d", "k"):
            fn = lambda: sess.run(None, {"input": x})  # noqa: E731
        elif variant == "b":
            fn = lambda: sess.run(None, {"input": patches})  # noqa: E731
        else:
            singles = [patches[i : i + 1] for i in range(patches.shape[0])]
            fn = lambda: [sess.run(None, {"input": s}) for s in singles]  # noqa: E731
    load_s = time.perf_counter() - t_load
    rss_loaded = _current_rss_mb()
    times = _time(fn, repeat)
    return {
        "latency_s": statistics.median(times),
        "latency_all_s": times,
        "load_s": load_s,
        "rss_before_load_mb": base,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": _rss_mb(),
    }


CHILDREN = {"build": child_build, "build_ks": child_build_ks, "traced": child_traced, "latency": child_latency}


# ----------------------------------------------------------------------------- parent


def run_child(kind: str, **args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.get("threads", 2)))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(args)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} {args.get('variant', '')} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_checkpoint(path: Path, width: int) -> None:
    random_strip_checkpoint(path, width)


VARIANTS = {
    "a": "(a) composed model (build-model)",
    "b": "(b) bare patch model, 18 patches, 1 call",
    "c": "(c) Python loop, patch model x18",
    "d": "(d) traced Python-loop export",
    "e": "(e) PyTorch eager sliding window",
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 8])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 6, 9, 18])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rss-limit-mb", type=float, default=500.0)
    ap.add_argument("--json", type=Path, default=None, help="Also write all numbers here.")
    ap.add_argument("--workdir", type=Path, default=None, help="Keep models here (default: a temp dir).")
    return ap.parse_args()


def bench_width(work: Path, width: int, threads: int, repeat: int) -> dict:
    """Variants (a)-(e) at one UNet width; prints their table."""
    ck = work / f"w{width}.pt"
    make_checkpoint(ck, width)
    composed, traced = work / f"w{width}.onnx", work / f"w{width}_traced.onnx"
    r: dict = {"build": run_child("build", checkpoint=str(ck), out=str(composed), threads=threads)}
    r["traced_export"] = run_child("traced", checkpoint=str(ck), out=str(traced), threads=threads)
    patch = composed.with_suffix(".patch.onnx")
    models = {"a": composed, "b": patch, "c": patch, "d": traced, "e": None}
    for v, m in models.items():
        r[v] = run_child(
            "latency", variant=v, model=str(m) if m else None, checkpoint=str(ck), threads=threads, repeat=repeat
        )
    la = r["a"]["latency_s"]
    print(
        f"\n## width {width}  (composed: {r['build']['size_mb']:.1f} MB, {r['build']['nodes']} nodes, "
        f"verify max|diff| {r['build']['verify_max_abs_diff']:.2g})\n"
    )
    print("| variant | latency (s) | ratio to (a) | peak RSS (MB) | build/export (s) | build peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for v in "abcde":
        build = {"a": r["build"], "d": r["traced_export"]}.get(v)
        bs = f"{build['build_s']:.1f}" if build else "-"
        br = f"{build['peak_rss_mb']:.0f}" if build else "-"
        print(
            f"| {VARIANTS[v]} | {r[v]['latency_s']:.3f} | {r[v]['latency_s'] / la:.2f} | "
            f"{r[v]['peak_rss_mb']:.0f} | {bs} | {br} |"
        )
    print(
        "\nbuild stages (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in r["build"]["stage_s"].items())
        + f"; traced model {r['traced_export']['size_mb']:.1f} MB"
    )
    return r


def bench_patch_batch(work: Path, width: int, ks: list[int], threads: int, repeat: int) -> dict:
    """``--patch-batch K`` for each K at ``width`` (its checkpoint is already in ``work``); prints the table."""
    ck = work / f"w{width}.pt"
    kdir = work / f"ks_w{width}"
    kdir.mkdir(exist_ok=True)
    built = run_child("build_ks", checkpoint=str(ck), ks=ks, dir=str(kdir), threads=threads)
    print(f"\n## --patch-batch K, width {width}\n")
    print("| K | latency (s) | peak RSS (MB) | RSS after load (MB) | file (MB) | weights (MB) | compose+simplify (s) |")
    print("|---|---|---|---|---|---|---|")
    out = {}
    for k in ks:
        b = built[str(k)]
        m = run_child("latency", variant="k", model=b["path"], checkpoint=str(ck), threads=threads, repeat=repeat)
        out[str(k)] = {**b, **m}
        print(
            f"| {k} | {m['latency_s']:.3f} | {m['peak_rss_mb']:.0f} | {m['rss_after_load_mb']:.0f} | "
            f"{b['size_mb']:.1f} | {b['weights_mb']:.1f} | {b['compose_s']:.1f} |"
        )
    return out


def recommend(patch_batch: dict, rss_limit_mb: float) -> int | None:
    """The fastest K whose peak RSS stays within the limit (printed), or None."""
    ok = {k: v for k, v in patch_batch.items() if v["peak_rss_mb"] <= rss_limit_mb}
    if not ok:
        print(f"\nno K kept peak RSS <= {rss_limit_mb:.0f} MB")
        return None
    best = min(ok, key=lambda k: ok[k]["latency_s"])
    print(
        f"\nfastest K with peak RSS <= {rss_limit_mb:.0f} MB: K={best} "
        f"({ok[best]['latency_s']:.3f} s, {ok[best]['peak_rss_mb']:.0f} MB)"
    )
    return int(best)


def main() -> None:
    a = parse_args()
    if a.child:
        print(json.dumps(CHILDREN[a.child[0]](json.loads(a.child[1]))))
        return
    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="bench_build_")
    work = a.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    import onnxruntime
    import torch

    print(
        f"# bench_build: {H}x{W} strip, N=1, {a.threads} threads, median of {a.repeat} (after 1 warm-up); "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs"
    )
    print("# weights are random (fresh UNet via save_checkpoint): latency and memory do not depend on trained weights")
    results: dict = {"threads": a.threads, "repeat": a.repeat, "widths": {}, "patch_batch": {}}
    for width in a.widths:
        results["widths"][str(width)] = bench_width(work, width, a.threads, a.repeat)
    results["patch_batch"] = bench_patch_batch(work, a.widths[0], a.ks, a.threads, a.repeat)
    results["recommended_patch_batch"] = recommend(results["patch_batch"], a.rss_limit_mb)
    results["total_s"] = time.perf_counter() - t_start
    print(f"\ntotal benchmark time {results['total_s']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
