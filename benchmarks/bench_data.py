"""Does synthesis keep up with training? Patches/s per recipe next to the training step, in one run.

Single-threaded data loading (one core, warm image cache, 128x128 strip patches)
for the ``seed`` and ``robust`` recipes, plus the research approach (synthesise on
the whole image, then crop) for ``seed``; then the w16 training step (focal loss,
Adam, batch 16, 2 torch threads) on real robust batches. With ``--workers 0`` data
loading runs in the training process, so its share of a step is
``load(batch) / (load(batch) + step)``; the issue's budget is <= 20% at w16.

    .venv/bin/python benchmarks/bench_data.py [--images 8] [--items 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bgsdk._dataset_layout import training_images
from bgtrain.dataset import PatchDataset
from bgtrain.loss import FocalLoss
from bgtrain.model import DEFAULT_STEM, UNet
from bgtrain.recipe import get_recipe
from bgtrain.synth import apply_defects, plan_defects, sample_rng
from bgtrain.synth_dataset import make_dataset


class WholeImageDataset(PatchDataset):
    """The research approach: synthesise over the full image, then crop the patch."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, patch = self.locate(index)
        img = self.image(path).copy()  # full (3,976,176) copy per item
        rng = sample_rng(self.seed, self.epoch, index)
        defects = plan_defects(img[0], rng, self.recipe)
        img, mask = apply_defects(img, defects, self.recipe.mask_threshold)  # full-size mask
        img *= np.float32(1.0 / 255.0)
        p = self.tiling.patch
        crop = np.ascontiguousarray(img[:, patch.y : patch.y + p, patch.x : patch.x + p])
        m = np.ascontiguousarray(mask[None, patch.y : patch.y + p, patch.x : patch.x + p].astype(np.float32))
        return {"input": torch.from_numpy(crop), "mask": torch.from_numpy(m)}


def rate(ds: PatchDataset, n: int, rounds: int) -> float:
    """Best-of-rounds patches/s over n items (warm cache)."""
    for i in range(min(n, len(ds))):
        ds[i]
    best = 0.0
    for r in range(rounds):
        ds.set_epoch(r + 1)
        t0 = time.perf_counter()
        for i in range(n):
            ds[i % len(ds)]
        best = max(best, n / (time.perf_counter() - t0))
    return best


def step_time(ds: PatchDataset, width: int, bs: int, steps: int) -> float:
    """Median seconds of one training step (forward, focal loss with weights, backward, Adam)."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = UNet(base_width=width, stem=DEFAULT_STEM)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = FocalLoss()
    batches = [torch.utils.data.default_collate([ds[s * bs + i] for i in range(bs)]) for s in range(steps + 1)]
    times = []
    for b in batches:
        t0 = time.perf_counter()
        loss = loss_fn(model(b["input"]), b["mask"], 2.0, b["weight"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    torch.set_num_threads(1)
    return float(np.median(times[1:]))  # the first step allocates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(tmp, n_train=args.images, n_valid=0, n_test=0, seed=0, progress=False)
        files = training_images(Path(tmp))
        sets = {
            "seed, crop then synthesise": PatchDataset(files, cache_size=args.images, recipe=get_recipe("seed")),
            "seed, synthesise whole image": WholeImageDataset(files, cache_size=args.images, recipe=get_recipe("seed")),
            "robust, crop then synthesise": PatchDataset(files, cache_size=args.images, recipe=get_recipe("robust")),
        }
        rates: dict[str, list[float]] = {k: [] for k in sets}
        for _ in range(2):  # interleaved, so machine noise hits all alike
            for name, ds in sets.items():
                rates[name].append(rate(ds, args.items, args.rounds))
        step = step_time(sets["robust, crop then synthesise"], args.width, args.bs, args.steps)
    best = {k: max(v) for k, v in rates.items()}
    print(f"images={args.images} items/round={args.items} rounds={args.rounds}; data on 1 thread, training step on 2")
    for name, r in best.items():
        print(f"{name:<30}: {r:8.0f} patches/s")
    print(
        f"robust / seed (crop first)    : {best['robust, crop then synthesise'] / best['seed, crop then synthesise']:8.2f}x"
    )
    print(
        f"seed crop-first / whole image : {best['seed, crop then synthesise'] / best['seed, synthesise whole image']:8.2f}x"
    )
    load = args.bs / best["robust, crop then synthesise"]
    print(
        f"w{args.width} training step (batch {args.bs}, {DEFAULT_STEM} stem): {step * 1e3:.0f} ms; robust batch load {load * 1e3:.0f} ms"
    )
    share = load / (load + step)
    print(
        f"data-loading share of a step (workers=0): {share:.1%} (budget <= 20%: {'met' if share <= 0.2 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
