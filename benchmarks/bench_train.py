"""Training step speed: fp32 vs bf16 autocast vs channels-last vs both (vs torch.compile), in one run.

Part 1 (always): the real training step (``bgtrain.train.forward_loss``: forward under the
precision, focal loss in float32, backward, Adam, the weight average) of the default model (its
``registered`` input stem included) on a few fixed batches from the real dataset (crop -> synthesise),
so only compute is timed. Per width and variant: steps/s after warm-up and the ratio to fp32 NCHW.
Two more rows time the stem as it ran before its eager kernels (``bgtrain.kernels``): in its export
form (MaxPool, every tap of the shift sums) on NCHW input, and that form on channels-last input (the
step up to 2026-12-07). ``--compile`` adds torch.compile of the bf16 channels-last variant; its compile
time (the first steps) is printed separately.

Part 2 (``--loader``): the default training step fed by the DataLoader in the main process (workers=0,
as ``bgsdk train`` does by default) and by 1 and 2 worker processes: patches/s and the time spent waiting
for a batch.

The CPU model and its ISA flags are printed with the table (bf16 autocast pays only with
AMX / AVX-512 BF16). Run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_train.py [--widths 16 64] [--steps 4] [--compile] [--loader]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from _common import cpu_info
from torch.utils.data import DataLoader

from bgsdk._dataset_layout import training_images
from bgtrain import model as model_module
from bgtrain.dataset import PatchDataset
from bgtrain.ema import DEFAULT_EMA_DECAY, make_ema
from bgtrain.loss import FocalLoss
from bgtrain.model import DEFAULT_STEM, UNet
from bgtrain.precision import Precision, resolve_precision
from bgtrain.recipe import get_recipe
from bgtrain.synth_dataset import make_dataset
from bgtrain.train import forward_loss

FP32 = Precision("fp32", "fp32")
BF16 = Precision("bf16", "bf16 autocast")
# name -> (precision, channels_last, stem form: "eager" = bgtrain.kernels, "export" = the graph's ops on NCHW,
# "export, channels-last input" = the graph's ops on the channels-last input, as before the kernels)
VARIANTS = {
    "fp32 NCHW": (FP32, False, "eager"),
    "bf16 NCHW": (BF16, False, "eager"),
    "fp32 channels-last": (FP32, True, "eager"),
    "bf16 channels-last": (BF16, True, "eager"),
    "bf16 channels-last, export-form stem": (BF16, True, "export"),
    "bf16 channels-last, export-form stem on channels-last input": (BF16, True, "export, channels-last input"),
}


def fixed_batches(files: list[Path], bs: int, n: int) -> list[dict[str, torch.Tensor]]:
    ds = PatchDataset(files, cache_size=len(files), seed=0)
    it = iter(DataLoader(ds, batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(0)))
    return [next(it) for _ in range(n)]


class Variant:
    """One training setup (precision, memory format, optionally compiled) with its own model and optimiser."""

    def __init__(
        self, width: int, precision: Precision, channels_last: bool, stem_form: str = "eager", compile_: bool = False
    ) -> None:
        torch.manual_seed(0)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.stem_form = stem_form
        self.core = UNet(base_width=width, stem=DEFAULT_STEM).to(memory_format=self.fmt)
        self.model = torch.compile(self.core) if compile_ else self.core
        self.opt = torch.optim.Adam(self.core.parameters(), lr=1e-3)
        self.ema = make_ema(self.core, DEFAULT_EMA_DECAY)
        self.precision = precision
        self.loss_fn = FocalLoss()
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.stem_form == "eager":
            return forward_loss(self.model, batch, 2.0, self.loss_fn, self.precision)
        with mock.patch.object(model_module, "exporting", lambda: True):
            if self.stem_form == "export":
                return forward_loss(self.model, batch, 2.0, self.loss_fn, self.precision)
            x = batch["input"].contiguous(memory_format=torch.channels_last)  # the stem on channels-last input
            with self.precision.autocast():
                logits = self.core.decoder(self.core.encoder(self.core.stem(x)))
            return self.loss_fn(logits.float(), batch["mask"], 2.0, batch["weight"])

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        loss = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.ema.update_parameters(self.core)
        return time.perf_counter() - t0, time.process_time() - c0


def precision_table(files: list[Path], args: argparse.Namespace) -> None:
    """All variants of a width built first, then timed in interleaved rounds (one step each per round), so load
    from other jobs hits them alike; median wall and CPU seconds per step."""
    batches = fixed_batches(files, args.bs, 3)
    print(
        f"\n## training step, batch {args.bs}: median of {args.steps} interleaved rounds after warm-up; "
        "ratios vs fp32 NCHW (wall time, and CPU time of all threads)"
    )
    print("| width | variant | s/step | patches/s | vs fp32 NCHW | CPU s/step | vs fp32 NCHW (CPU) | warm-up s |")
    print("|---|---|---|---|---|---|---|---|")
    for w in args.widths:
        variants = {name: Variant(w, prec, cl, form) for name, (prec, cl, form) in VARIANTS.items()}
        if args.compile:
            variants["bf16 channels-last + compile"] = Variant(w, BF16, True, compile_=True)
        warm: dict[str, float] = {}
        for name, v in variants.items():
            t0 = time.perf_counter()
            for i in range(2 if name.endswith("compile") else 1):  # compile: the first steps compile
                v.step(batches[i])
            warm[name] = time.perf_counter() - t0
        for r in range(args.steps):
            for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
                wall, cpu = variants[name].step(batches[r % len(batches)])
                variants[name].wall.append(wall)
                variants[name].cpu.append(cpu)
        base_w = statistics.median(variants["fp32 NCHW"].wall)
        base_c = statistics.median(variants["fp32 NCHW"].cpu)
        for name, v in variants.items():
            mw, mc = statistics.median(v.wall), statistics.median(v.cpu)
            print(
                f"| {w} | {name} | {mw:.3f} | {args.bs / mw:.1f} | {base_w / mw:.2f}x | {mc:.3f} | "
                f"{base_c / mc:.2f}x | {warm[name]:.1f} |",
                flush=True,
            )
        del variants


def loader_run(files, width: int, bs: int, steps: int, workers: int) -> dict[str, float]:
    """The training loop's data and compute time with ``workers`` DataLoader processes: the default step
    (``registered`` stem, the precision ``bgsdk train`` picks here, channels-last) on the robust recipe."""
    torch.manual_seed(0)
    ds = PatchDataset(files, cache_size=len(files), seed=0, recipe=get_recipe("robust"), repeats=8)
    loader = DataLoader(
        ds,
        batch_size=bs,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    model = UNet(base_width=width, stem=DEFAULT_STEM).to(memory_format=torch.channels_last)
    precision = resolve_precision("auto", torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = FocalLoss()
    it = iter(loader)
    next(it)  # worker start-up
    t_data = t_comp = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = forward_loss(model, batch, 2.0, loss_fn, precision)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t_data += t1 - t0
        t_comp += time.perf_counter() - t1
    return {"patches_per_s": steps * bs / (t_data + t_comp), "data_share": t_data / (t_data + t_comp)}


def loader_table(files: list[Path], args: argparse.Namespace) -> None:
    print(f"\n## data loading next to the default training step, batch {args.bs}, {args.loader_steps} steps")
    print("| width | workers | patches/s | vs 0 workers | time waiting for data |")
    print("|---|---|---|---|---|")
    for w in args.widths:
        base = None
        for workers in (0, 1, 2):
            r = loader_run(files, w, args.bs, args.loader_steps, workers)
            base = base or r["patches_per_s"]
            print(
                f"| {w} | {workers} | {r['patches_per_s']:.1f} | {r['patches_per_s'] / base:.2f}x | "
                f"{r['data_share']:.1%} |",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--compile", action="store_true", help="also torch.compile of bf16 channels-last")
    ap.add_argument("--loader", action="store_true", help="also data loading: workers 0 vs 1 vs 2")
    ap.add_argument("--loader-steps", type=int, default=30, help="training steps per --loader row")
    ap.add_argument("--no-precision-table", action="store_true", help="only the --loader table")
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
        if not args.no_precision_table:
            precision_table(files, args)
        if args.loader:
            loader_table(files, args)
    print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
