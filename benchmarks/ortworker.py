"""Time one ONNX model in a fresh process: the measuring half of bench_tiled.py and bench_modes.py.

Run as ``python benchmarks/ortworker.py MODEL --threads 2 --batch 1 --repeat 3``; prints one JSON
line: per-call seconds (after one warm-up call) and CPU seconds (user + system, all threads), the process's peak RSS (VmHWM, imports included, so
every variant pays the same fixed cost; ``rss_before_session_mb`` is that cost, so the difference is the model's)
and optionally an ONNX Runtime per-op profile summary.
Only numpy and onnxruntime are imported, so the RSS is the model's, not torch's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np
import onnxruntime as ort


def vmhwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def summarize_profile(path: str, top: int = 12) -> dict:
    """Per op type and per node: total kernel microseconds over all profiled calls."""
    with open(path) as f:
        events = json.load(f)
    by_type: dict[str, float] = defaultdict(float)
    by_type_dtype: dict[str, float] = defaultdict(float)  # "QLinearConv (uint8)", "Resize (float)", ...
    by_node: dict[str, float] = defaultdict(float)
    provider_types: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        op = args.get("op_name", "?")
        by_type[op] += e["dur"]
        first_input = (args.get("input_type_shape") or [{}])[0]
        by_type_dtype[f"{op} ({next(iter(first_input), '?')})"] += e["dur"]
        by_node[e["name"][: -len("_kernel_time")]] += e["dur"]
        provider_types[op] = args.get("provider", "")
    total = sum(by_type.values())
    return {
        "total_us": total,
        "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        "by_type_dtype": dict(sorted(by_type_dtype.items(), key=lambda kv: -kv[1])),
        "top_nodes": dict(sorted(by_node.items(), key=lambda kv: -kv[1])[:top]),
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--input", default=None, help=".npy (N,3,H,W) already /255; default: uniform random")
    ap.add_argument("--input-name", default="input")
    ap.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=None,
        metavar=("C", "H", "W"),
        help="per-sample shape when the model's input has no static one",
    )
    ap.add_argument("--profile", default=None, help="write ORT's profile here and print its summary")
    ap.add_argument("--optimized", default=None, help="write ORT's optimized graph here")
    ap.add_argument("--no-mem-pattern", action="store_true")
    ap.add_argument("--no-arena", action="store_true")
    ap.add_argument(
        "--no-spin", action="store_true", help="threads block instead of spinning, so cpu_times count work, not waiting"
    )
    return ap.parse_args()


def session_options(args: argparse.Namespace) -> ort.SessionOptions:
    """Its own options, not bgsdk._session's: the memory switches and the profile are what is being measured."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.enable_mem_pattern = not args.no_mem_pattern
    so.enable_cpu_mem_arena = not args.no_arena
    if args.no_spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if args.optimized:
        so.optimized_model_filepath = args.optimized
    if args.profile:  # the profile then covers the warm-up call too (repeat + 1 calls)
        so.enable_profiling = True
        so.profile_file_prefix = args.profile
    return so


def batch_input(args: argparse.Namespace, inp) -> np.ndarray:
    """``--batch`` samples: the ``--input`` file repeated/cut to size, or uniform random of the input's shape."""
    if args.input:
        x = np.load(args.input).astype(np.float32)
        reps = -(-args.batch // len(x))
        return np.concatenate([x] * reps)[: args.batch]
    shape = args.shape or [int(d) for d in inp.shape[1:]]
    return np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)


def main() -> None:
    args = parse_args()
    rss_base = vmhwm_mb()  # imports only: peak_rss_mb - this is what the model itself costs
    t0 = time.perf_counter()
    sess = ort.InferenceSession(args.model, session_options(args), providers=["CPUExecutionProvider"])
    t_load = time.perf_counter() - t0
    feed = {args.input_name: batch_input(args, sess.get_inputs()[0])}
    sess.run(None, feed)  # warm-up: first-call allocations and kernel selection
    rss_warm = vmhwm_mb()
    times, cpu = [], []
    for _ in range(args.repeat):
        c0, t0 = os.times(), time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
        c1 = os.times()
        cpu.append(c1.user - c0.user + c1.system - c0.system)
    out = {
        "model": os.path.basename(args.model),
        "threads": args.threads,
        "batch": args.batch,
        "times": times,
        "cpu_times": cpu,
        "load_s": t_load,
        "peak_rss_mb": vmhwm_mb(),
        "rss_before_session_mb": rss_base,
        "rss_after_warmup_mb": rss_warm,
    }
    if args.profile:
        prof = sess.end_profiling()
        out["profile"] = summarize_profile(prof)
        out["profile_file"] = prof
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
