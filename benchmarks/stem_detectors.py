"""The input stems' comparison channels scored as detectors on their own, like double detection.

Command (docs/experiments/2026-11-28-aligned-stem.md)::

    .venv/bin/python benchmarks/stem_detectors.py SET_ROOT [SET_ROOT ...] [--split test]

Why: a stem is parameter-free, so before spending training runs on one it can be asked directly how well
its odd-die-out channel separates defects from the rest. Each channel's |value| is the heatmap, computed
tile by tile with the deployed 128-px strip tiling (so the aligned stem estimates its shift per tile, as in
a built model) and scored by ``bgtrain.validate.score_maps``: pixel AP, image AUROC and recall of weak
defects at the best-F1 threshold; the pixel AP also per band of the strips' misregistration std
(``dataset.json`` of synth-dataset records it). Channels: ``dd`` (signed double detection, = the classical
baseline), ``tolerant`` (against each reference's 3x3 range) and ``aligned`` (against each reference
shifted onto the target, ``bgtrain.model.AlignedStem``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from bgsdk.tiling import tiling_for
from bgtrain.model import AlignedStem
from bgtrain.validate import EvalSet, heatmaps, load_eval_set, score_maps

# channel of AlignedStem's output: compare's signed double detection, tolerant's and aligned's odd-die-out
CHANNELS = {"dd": 5, "tolerant": 8, "aligned": 11}
BANDS = ((0.0, 0.2), (0.2, 0.4), (0.4, 10.0))


class ChannelDetector(nn.Module):
    """Logits ``(0, log |channel|)``: the softmax defect probability is ``|c| / (1 + |c|)``, monotonic in the
    channel's size and, unlike a scaled logit, never rounded to 1 (which would tie the ranking)."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.stem, self.channel = AlignedStem(), channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.stem(x)[:, self.channel : self.channel + 1].abs()
        return torch.cat([torch.zeros_like(c), torch.log(c + 1e-12)], dim=1)


def score_set(root: Path, split: str) -> None:
    es = load_eval_set(root, split)
    if es is None or not es.annotated:
        raise SystemExit(f"{root}: no annotated {split!r} split")
    h, w = es.images[0].image.shape[1:]
    tiling = tiling_for("strip", h, w)
    backgrounds = json.loads((root / "dataset.json").read_text()).get("backgrounds", {})
    mis = [backgrounds.get(f"{split}/{e.sample.path.stem}", {}).get("misregistration") for e in es.images]
    for name, channel in CHANNELS.items():
        with torch.no_grad():
            maps = heatmaps(ChannelDetector(channel), es, tiling, torch.device("cpu"))
        s = score_maps(maps, es)
        bands = []
        for lo, hi in BANDS:
            idx = [i for i, m in enumerate(mis) if m is not None and lo <= m < hi]
            if idx:
                sub = EvalSet(es.split, [es.images[i] for i in idx], es.annotated)
                bands.append(f"{score_maps([maps[i] for i in idx], sub)['pixel_ap']:.3f}")
        print(
            f"{root.name:12s} {name:9s} pixel AP {s['pixel_ap']:.3f}  image AUROC {s['image_auroc']:.3f}  "
            f"weak recall {s['recall_weak']:.2f}  AP by misregistration std <0.2/0.2-0.4/>=0.4: {' / '.join(bands)}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("roots", nargs="+", type=Path, help="synth-dataset roots with an annotated split")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for root in a.roots:
        score_set(root, a.split)


if __name__ == "__main__":
    main()
