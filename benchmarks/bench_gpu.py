"""What a CUDA GPU does with the bgsdk UNet: inference per strip (tiled vs whole, fp32 vs fp16) and training steps.

Runs the PyTorch reference of the deployed computation (``bgtrain.infer.sliding_window`` = the
default tiled build, ``whole_image`` = ``build-model --mode whole``) on random weights, timed with
CUDA events after warm-up, all variants interleaved in one run so the ratios are comparable::

    python benchmarks/bench_gpu.py --widths 16 64 --repeat 30

It also prints which ONNX Runtime execution providers the installed onnxruntime offers, since
the ONNX model itself needs ``onnxruntime-gpu`` for the CUDA provider.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from bgsdk.tiling import tiling_for
from bgtrain.infer import sliding_window, whole_image
from bgtrain.loss import FocalLoss
from bgtrain.model import UNet


def _cuda_ms(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn`` measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def inference_rows(width: int, batch: int, repeat: int) -> list[tuple[str, float]]:
    """ms per strip for tiled/whole x fp32/fp16 at ``batch`` strips per call."""
    t = tiling_for("strip")
    model = UNet(base_width=width).cuda().eval()
    x = torch.rand(batch, 3, t.height, t.width, device="cuda")
    rows: list[tuple[str, float]] = []
    for dtype in (torch.float32, torch.float16):
        m = model.to(dtype)
        xi = x.to(dtype)
        with torch.inference_mode():
            for mode, fn in (
                ("tiled", partial(sliding_window, m, xi, t)),
                ("whole", partial(whole_image, m, xi, t, batch)),
            ):
                ms = _cuda_ms(fn, repeat) / batch
                rows.append((f"w{width} {mode} {str(dtype).removeprefix('torch.')} batch {batch}", ms))
    return rows


def _train_step(model: UNet, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, amp: bool) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        loss = FocalLoss()(model(x).float(), y, 2.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def training_rows(width: int, bs: int, steps: int) -> list[tuple[str, float]]:
    """Optimiser steps per second on random 128x128 patches (compute only: no data loading)."""
    rows: list[tuple[str, float]] = []
    x = torch.rand(bs, 3, 128, 128, device="cuda")
    y = (torch.rand(bs, 1, 128, 128, device="cuda") > 0.99).float()
    for amp in (False, True):
        model = UNet(base_width=width).cuda().train()
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        ms = _cuda_ms(partial(_train_step, model, opt, x, y, amp), steps, warmup=5)
        rows.append((f"w{width} train bs {bs} {'bf16 autocast' if amp else 'fp32'} (steps/s)", 1000.0 / ms))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--train-steps", type=int, default=30)
    a = ap.parse_args()
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__} providers: {ort.get_available_providers()}")
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device visible to torch")
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cudnn {torch.backends.cudnn.version()}")
    t0 = time.perf_counter()
    rows: list[tuple[str, float]] = []
    for w in a.widths:
        for b in a.batches:
            rows += inference_rows(w, b, a.repeat)
        rows += training_rows(w, 16, a.train_steps)
    print("| variant | value |\n|---|---|")
    for name, v in rows:
        unit = "steps/s" if "steps/s" in name else "ms/strip"
        print(f"| {name.replace(' (steps/s)', '')} | {v:.2f} {unit} |")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
