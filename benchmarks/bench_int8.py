"""fp32 vs INT8 (build-model --quantize): latency, peak memory, file size and accuracy, in one run.

For each width (default 64 and 16) the same checkpoint is built twice with
``bgbuild.build_model`` -- fp32 and ``--quantize`` (U8S8, the release
setting) -- and, for the first width, also with int8 activations (S8S8) to show
why U8S8 is the default. Then, on ``--threads`` threads (default 2), one
976x176 strip per call:

* latency: all models of a width loaded in one subprocess, repeats
  **interleaved** (fp32, INT8, fp32, INT8, ...), median per model and the
  fp32/INT8 ratio -- the machine is shared and noisy, ratios from interleaved
  runs are what count;
* peak RSS (``VmHWM``) per model, each in its own subprocess (load + 3 runs);
* file size;
* per width also the INT8 build with the first Conv (the one reading the input stem's die
  differences) quantized too, i.e. what leaving it float costs in time;
* accuracy: the INT8 build's own verification (pixel AP / image AUROC of fp32
  and INT8 on the labelled valid/ images, max/mean |diff|).

Weights: latency and memory do not depend on the weights, so the width-N
models are randomly initialised (their accuracy numbers are meaningless and the
AP gate is switched off for them). Accuracy comes from a model that detects
defects: ``--accuracy-checkpoint CKPT`` (a trained model), else the width-16
UNet whose weights implement double detection (bgtrain/reference_unet.py) -- not
a trained model, say so when quoting the numbers. Calibration always uses
real images of the data set (train/good).

    python benchmarks/bench_int8.py [--widths 64 16] [--repeat 5] [--data DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import random_strip_checkpoint, strip_checkpoint

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- children

_LATENCY = r"""
import json, sys, time, statistics
from bgsdk.contract import scale_input
from bgsdk.io import read_image
from bgsdk._session import create_session
paths, threads, repeat, image = json.loads(sys.argv[1])
x = scale_input(read_image(image)[None])
sessions = []
for p in paths:
    s = create_session(p, threads=threads)
    s.run(None, {"input": x}); s.run(None, {"input": x})  # warm-up
    sessions.append(s)
times = [[] for _ in paths]
for _ in range(repeat):
    for i, s in enumerate(sessions):
        t0 = time.perf_counter(); s.run(None, {"input": x}); times[i].append(time.perf_counter() - t0)
print(json.dumps([{"median_s": statistics.median(t), "min_s": min(t), "all_s": t} for t in times]))
"""

_MEMORY = r"""
import json, sys
from bgsdk.contract import scale_input
from bgsdk.io import read_image
from bgsdk._session import create_session
path, threads, image = json.loads(sys.argv[1])
x = scale_input(read_image(image)[None])
s = create_session(path, threads=threads)
for _ in range(3):
    s.run(None, {"input": x})
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"peak_rss_mb": hwm / 1024.0}))
"""


def _child(code: str, payload: object) -> dict | list:
    out = subprocess.run([sys.executable, "-c", code, json.dumps(payload)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- builds


def _build(ckpt: Path, out: Path, threads: int, quantize: dict | None) -> dict:
    from bgbuild import BuildOptions, build_model
    from bgbuild.quantize import QuantizeOptions

    opts = BuildOptions(threads=threads, quantize=QuantizeOptions(**quantize) if quantize is not None else None)
    t0 = time.perf_counter()
    report = build_model(ckpt, out, opts, progress=lambda stage, msg: print(f"    [{stage}] {msg}", flush=True))
    row = {"path": str(out), "size_mb": out.stat().st_size / 1e6, "build_s": time.perf_counter() - t0}
    if report.quantization is not None:
        row["verification"] = report.quantization.verification.as_dict()
    return row


def _random_checkpoint(width: int, data: Path, out: Path) -> Path:
    return random_strip_checkpoint(out, width, seed=width, data=data)


def _dd_checkpoint(width: int, data: Path, out: Path) -> Path:
    from bgtrain.reference_unet import double_detection_unet

    return strip_checkpoint(out, double_detection_unet(width), data)


NO_GATE = {"max_ap_drop": 1.0, "max_mean_diff": 1.0, "verify_count": 4}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", type=Path, default=None, help="data set root [default: a fresh demo data set]")
    ap.add_argument("--accuracy-checkpoint", type=Path, default=None)
    ap.add_argument("--accuracy-width", type=int, default=16)
    ap.add_argument("--no-s8s8", action="store_true", help="skip the int8-activation (S8S8) variant")
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args()


def bench_width(args: argparse.Namespace, width: int, first: bool, data: Path, tmp: Path, image: Path) -> dict:
    """fp32 and INT8 builds of one random-weight width: latency (interleaved in one process) and peak RSS."""
    print(f"width {width}: building (random weights)", flush=True)
    ckpt = _random_checkpoint(width, data, tmp / f"w{width}.pt")
    variants = {"fp32": None, "int8 U8S8": dict(NO_GATE)}
    # the release keeps the Conv reading the stem float; this is its price
    variants["int8 U8S8, first Conv int8"] = dict(NO_GATE, float_first_conv=False)
    if first and not args.no_s8s8:
        variants["int8 S8S8"] = dict(NO_GATE, activation_type="int8")
    rows = {
        name: _build(ckpt, tmp / f"w{width}.{name.replace(' ', '_')}.onnx", args.threads, q)
        for name, q in variants.items()
    }
    print(f"width {width}: latency ({args.repeat} interleaved repeats)", flush=True)
    lat = _child(_LATENCY, [[r["path"] for r in rows.values()], args.threads, args.repeat, str(image)])
    for (_name, row), t in zip(rows.items(), lat):
        row.update(t)
        row.update(_child(_MEMORY, [row["path"], args.threads, str(image)]))
    return rows


def print_tables(results: dict) -> None:
    print()
    print("| width | model | latency median (s) | fp32/INT8 | peak RSS (MB) | file (MB) |")
    print("|---|---|---|---|---|---|")
    for width, rows in results["widths"].items():
        base = rows["fp32"]["median_s"]
        for name, r in rows.items():
            print(
                f"| {width} | {name} | {r['median_s']:.3f} | {base / r['median_s']:.2f}x | {r['peak_rss_mb']:.0f} | {r['size_mb']:.1f} |"
            )
    for width, rows in results["widths"].items():
        shipped, quantized = rows.get("int8 U8S8"), rows.get("int8 U8S8, first Conv int8")
        if shipped and quantized:
            print(
                f"width {width}: the float first Conv costs {shipped['median_s'] / quantized['median_s'] - 1:+.1%} "
                "latency (shipped INT8 / INT8 with the first Conv int8, interleaved)"
            )
    print()
    for key, name in (("accuracy", "INT8"), ("accuracy_first_conv_int8", "INT8 with the first Conv int8")):
        a = results[key]
        print(
            f"accuracy ({a['description']}): pixel AP fp32 {a['fp32_pixel_ap']:.4f} -> {name} {a['int8_pixel_ap']:.4f} "
            f"(drop {a['ap_drop']:+.4f}); image AUROC {a['fp32_image_auroc']:.4f} -> {a['int8_image_auroc']:.4f}; "
            f"max |diff| {a['max_abs_diff']:.3g}, mean {a['mean_abs_diff']:.3g}"
        )


def main() -> None:
    args = parse_args()
    import onnxruntime

    tmp = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    data = args.data
    if data is None:
        from bgtrain.synth_dataset import make_dataset

        data = tmp / "data"
        make_dataset(data, n_train=8, n_valid=8, n_test=0, seed=0, progress=False)
    image = sorted((data / "valid" / "bright_spots").glob("*.tif*"))[0]
    print(f"onnxruntime {onnxruntime.__version__}, {args.threads} threads, data {data}", flush=True)
    results: dict = {"threads": args.threads, "repeat": args.repeat, "onnxruntime": onnxruntime.__version__}
    results["widths"] = {
        width: bench_width(args, width, i == 0, data, tmp, image) for i, width in enumerate(args.widths)
    }
    print(
        f"accuracy: {'--accuracy-checkpoint ' + str(args.accuracy_checkpoint) if args.accuracy_checkpoint else f'double-detection UNet width {args.accuracy_width}'}",
        flush=True,
    )
    ack = args.accuracy_checkpoint or _dd_checkpoint(args.accuracy_width, data, tmp / "dd.pt")
    acc = _build(ack, tmp / "acc.int8.onnx", args.threads, {})
    results["accuracy"] = {"checkpoint": str(ack), **acc["verification"]}
    acc = _build(ack, tmp / "acc.first-int8.int8.onnx", args.threads, {"float_first_conv": False, "max_ap_drop": 1.0})
    results["accuracy_first_conv_int8"] = {"checkpoint": str(ack), **acc["verification"]}
    print_tables(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
