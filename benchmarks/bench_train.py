"""Training step speed: fp32 vs bf16 autocast vs channels-last vs both (vs torch.compile), in one run.

Part 1 (always): the real training step (``bgtrain.train.forward_loss``: forward under the
precision, focal loss in float32, backward, Adam, the weight average) on a few fixed batches
from the real dataset (crop -> synthesise), so only compute is timed. Per width and variant:
steps/s after warm-up and the ratio to fp32 NCHW. ``--compile`` adds torch.compile of the
fastest eager variant; its compile time (the first steps) is printed separately.

Part 2 (``--loader``): data loading vs compute with the DataLoader in the main process
(workers=0, so the split is exact) and with 2 worker processes.

The CPU model and its ISA flags are printed with the table (bf16 autocast pays only with
AMX / AVX-512 BF16). Run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_train.py [--widths 16 64] [--steps 4] [--compile] [--loader]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from _common import cpu_info
from torch.utils.data import DataLoader

from bgtrain.dataset import PatchDataset
from bgtrain.ema import DEFAULT_EMA_DECAY, make_ema
from bgtrain.layout import training_images
from bgtrain.loss import FocalLoss
from bgtrain.model import UNet
from bgtrain.precision import Precision
from bgtrain.synth_dataset import make_dataset
from bgtrain.train import forward_loss

FP32 = Precision("fp32", "fp32")
BF16 = Precision("bf16", "bf16 autocast")
# name -> (precision, channels_last)
VARIANTS = {
    "fp32 NCHW": (FP32, False),
    "bf16 NCHW": (BF16, False),
    "fp32 channels-last": (FP32, True),
    "bf16 channels-last": (BF16, True),
}


def fixed_batches(files: list[Path], bs: int, n: int) -> list[dict[str, torch.Tensor]]:
    ds = PatchDataset(files, cache_size=len(files), seed=0)
    it = iter(DataLoader(ds, batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(0)))
    return [next(it) for _ in range(n)]


def step_speed(
    batches: list[dict[str, torch.Tensor]],
    width: int,
    precision: Precision,
    channels_last: bool,
    steps: int,
    compile_: bool = False,
) -> dict[str, float]:
    """Steps/s of the training step after ``warm`` untimed steps (compile: the first steps compile)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    core = UNet(base_width=width).to(memory_format=fmt)
    model = torch.compile(core) if compile_ else core
    opt = torch.optim.Adam(core.parameters(), lr=1e-3)
    ema = make_ema(core, DEFAULT_EMA_DECAY)
    loss_fn = FocalLoss()

    def step(i: int) -> None:
        loss = forward_loss(model, batches[i % len(batches)], 2.0, loss_fn, precision, 0.0, fmt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update_parameters(core)

    t0 = time.perf_counter()
    warm = 2 if compile_ else 1
    for i in range(warm):
        step(i)
    t1 = time.perf_counter()
    for i in range(steps):
        step(warm + i)
    t2 = time.perf_counter()
    return {"steps_per_s": steps / (t2 - t1), "warmup_s": t1 - t0}


def precision_table(files: list[Path], args: argparse.Namespace) -> None:
    batches = fixed_batches(files, args.bs, 3)
    print(f"\n## training step, batch {args.bs}, {args.steps} timed steps after warm-up (steps/s; ratio vs fp32 NCHW)")
    print("| width | variant | steps/s | patches/s | vs fp32 NCHW | warm-up s |")
    print("|---|---|---|---|---|---|")
    for w in args.widths:
        res: dict[str, dict[str, float]] = {}
        for name, (prec, cl) in VARIANTS.items():
            res[name] = step_speed(batches, w, prec, cl, args.steps)
        if args.compile:
            best = max(res, key=lambda k: res[k]["steps_per_s"])
            prec, cl = VARIANTS[best]
            res[f"{best} + compile"] = step_speed(batches, w, prec, cl, args.steps, compile_=True)
        base = res["fp32 NCHW"]["steps_per_s"]
        for name, r in res.items():
            print(
                f"| {w} | {name} | {r['steps_per_s']:.3f} | {r['steps_per_s'] * args.bs:.1f} | "
                f"{r['steps_per_s'] / base:.2f}x | {r['warmup_s']:.1f} |",
                flush=True,
            )


def loader_run(files, width: int, bs: int, steps: int, workers: int) -> dict[str, float]:
    torch.manual_seed(0)
    ds = PatchDataset(files, cache_size=len(files), seed=0)
    loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, drop_last=True)
    model = UNet(base_width=width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = FocalLoss()
    it = iter(loader)
    next(it)  # worker start-up
    t_data = t_comp = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = forward_loss(model, batch, 2.0, loss_fn, FP32)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t_data += t1 - t0
        t_comp += time.perf_counter() - t1
    return {"patches_per_s": steps * bs / (t_data + t_comp), "data_share": t_data / (t_data + t_comp)}


def loader_table(files: list[Path], args: argparse.Namespace) -> None:
    print(f"\n## data loading (fp32 NCHW step), batch {args.bs}, {args.steps} steps")
    print("| width | workers | patches/s | data share of the step |")
    print("|---|---|---|---|")
    for w in args.widths:
        for workers in (0, 2):
            r = loader_run(files, w, args.bs, args.steps, workers)
            print(f"| {w} | {workers} | {r['patches_per_s']:.1f} | {r['data_share']:.1%} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--compile", action="store_true", help="also torch.compile of the fastest eager variant")
    ap.add_argument("--loader", action="store_true", help="also data loading: workers 0 vs 2")
    args = ap.parse_args()
    print(f"# {cpu_info()}")
    print(
        f"# torch {torch.__version__} (capability {torch.backends.cpu.get_cpu_capability()}), "
        f"{torch.get_num_threads()} threads; load average at start {os.getloadavg()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(tmp, n_train=8, n_valid=0, n_test=0, seed=0, progress=False)
        files = training_images(Path(tmp))
        precision_table(files, args)
        if args.loader:
            loader_table(files, args)
    print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
