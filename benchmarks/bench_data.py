"""Dataset throughput: crop-then-synthesise vs synthesise-on-the-whole-image, in one run.

Single process (one core), warm image cache, strip patches (128x128).
Prints patches/s for both and their ratio. Run:  .venv/bin/python benchmarks/bench_data.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bgtrain.dataset import PatchDataset
from bgtrain.layout import training_images
from bgtrain.synth import apply_defects, plan_defects, sample_rng
from bgtrain.synth_dataset import make_dataset


class WholeImageDataset(PatchDataset):
    """The research approach: synthesise over the full image, then crop the patch."""

    def __getitem__(self, index):
        path, patch = self.locate(index)
        img = self.image(path).copy()  # full (3,976,176) copy per item
        rng = sample_rng(self.seed, self.epoch, index)
        defects = plan_defects(img.shape[1], img.shape[2], rng, self.synth)
        img, mask = apply_defects(img, defects, self.synth.mask_threshold)  # full-size mask
        img *= np.float32(1.0 / 255.0)
        p = self.tiling.patch
        crop = np.ascontiguousarray(img[:, patch.y : patch.y + p, patch.x : patch.x + p])
        m = np.ascontiguousarray(mask[None, patch.y : patch.y + p, patch.x : patch.x + p].astype(np.float32))
        return {"input": torch.from_numpy(crop), "mask": torch.from_numpy(m)}


def rate(ds: PatchDataset, n: int, rounds: int) -> float:
    """Best-of-rounds patches/s over n items (warm cache)."""
    for i in range(min(n, len(ds))):  # warm the cache
        ds[i]
    best = 0.0
    for r in range(rounds):
        ds.set_epoch(r + 1)
        t0 = time.perf_counter()
        for i in range(n):
            ds[i % len(ds)]
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(tmp, n_train=args.images, n_valid=0, n_test=0, seed=0, progress=False)
        files = training_images(Path(tmp))
        crop_first = PatchDataset(files, cache_size=args.images, seed=0)
        whole = WholeImageDataset(files, cache_size=args.images, seed=0)
        # Interleave the two so machine noise hits both alike.
        a, b = [], []
        for _ in range(2):
            a.append(rate(crop_first, args.items, args.rounds))
            b.append(rate(whole, args.items, args.rounds))
    ra, rb = max(a), max(b)
    print(f"images={args.images} items/round={args.items} rounds={args.rounds} threads=1 (per core)")
    print(f"crop-then-synthesise       : {ra:9.0f} patches/s per core")
    print(f"synthesise-on-whole-image  : {rb:9.0f} patches/s per core")
    print(f"ratio crop-first / whole   : {ra / rb:9.2f}x")
    print(f"target >= 2000 patches/s/core: {'met' if ra >= 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()
