"""Training throughput and where the time goes: data loading vs compute, in one run.

For each UNet width, runs the real training step (focal loss, Adam) on real
dataset batches (crop -> synthesise) and times the two parts separately, with the
DataLoader in the main process (workers=0, so the split is exact) and with
2 worker processes (data prepared in parallel with compute). Prints patches/s,
the data share and the share of the weight-average update (train-model's default
--ema-decay, timed on its own after each optimiser step). Run:  .venv/bin/python benchmarks/bench_train.py [--widths 16 64] [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bgsdk._dataset_layout import training_images
from bgtrain.dataset import PatchDataset
from bgtrain.ema import DEFAULT_EMA_DECAY, make_ema
from bgtrain.loss import FocalLoss
from bgtrain.model import UNet
from bgtrain.synth_dataset import make_dataset


def run(files, width: int, bs: int, steps: int, workers: int) -> dict[str, float]:
    torch.manual_seed(0)
    ds = PatchDataset(files, cache_size=len(files), seed=0)
    loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, drop_last=True)
    model = UNet(base_width=width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ema = make_ema(model, DEFAULT_EMA_DECAY)
    loss_fn = FocalLoss()
    it = iter(loader)
    batch = next(it)  # warm-up step (allocations, worker start)
    loss_fn(model(batch["input"]), batch["mask"], 1.0).backward()
    opt.step()
    ema.update_parameters(model)
    t_data = t_comp = t_ema = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = loss_fn(model(batch["input"]), batch["mask"], 2.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        ema.update_parameters(model)
        t3 = time.perf_counter()
        t_data += t1 - t0
        t_comp += t2 - t1
        t_ema += t3 - t2
    total = t_data + t_comp + t_ema
    return {
        "patches_per_s": steps * bs / total,
        "data_share": t_data / total,
        "ema_share": t_ema / total,
        "step_s": total / steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.bs}, {args.steps} timed steps")
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(tmp, n_train=8, n_valid=0, n_test=0, seed=0, progress=False)
        files = training_images(Path(tmp))
        print(f"{'width':>5} {'workers':>7} {'patches/s':>10} {'s/step':>8} {'data share':>10} {'EMA share':>9}")
        for w in args.widths:
            for workers in (0, 2):
                r = run(files, w, args.bs, args.steps, workers)
                print(
                    f"{w:>5} {workers:>7} {r['patches_per_s']:>10.1f} {r['step_s']:>8.3f} "
                    f"{r['data_share']:>10.1%} {r['ema_share']:>9.1%}"
                )


if __name__ == "__main__":
    main()
