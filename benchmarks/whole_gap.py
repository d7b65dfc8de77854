"""Where the whole-strip mode loses AP against the tiled mode: the input stem, or the network body?

Command (docs/model-card.md)::

    .venv/bin/python benchmarks/whole_gap.py CHECKPOINT DATA_ROOT [--splits valid test]

Why: ``build-model --mode whole`` runs the UNet once over the reflect-padded strip instead of on 128-px
patches. Two things change at once. The aligned stem estimates one shift over the whole strip (and over
the mirrored padding, which moves the opposite way), and every layer sees context beyond 128 px and no
zero padding at patch borders, which training never showed it. Scored with PyTorch on the same strips
(``bgtrain.validate.score_maps``):

* ``tiled``          -- the deployed tiled computation (``bgtrain.infer.sliding_window``);
* ``whole``          -- the whole-strip computation (``bgtrain.infer.whole_image``);
* ``whole, tiled stem`` -- the stem's maps computed tile by tile exactly as in the tiled mode and stitched
  by the tiling's centre crops, then the UNet body over the whole strip: what is left of the gap is the
  body's;
* ``whole, interior shift`` -- the stem over the whole strip, its shift estimated without the padding.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bgsdk.contract import scale_input
from bgsdk.tiling import Tiling, tiling_for
from bgtrain import model as model_module
from bgtrain.checkpoint import model_from_checkpoint
from bgtrain.infer import whole_padding
from bgtrain.model import UNet
from bgtrain.validate import heatmaps, load_eval_set, score_maps


def _stem_tiled(model: UNet, x: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """The stem's maps of every tile, stitched by the tiling's centre crops (what the tiled mode computes)."""
    out: torch.Tensor | None = None
    for p in tiling.patches():
        s = model.stem(x[:, :, p.row.start : p.row.stop, p.col.start : p.col.stop])
        if out is None:
            out = torch.zeros((x.shape[0], s.shape[1], *x.shape[2:]))
        out[:, :, p.row.out_start : p.row.out_stop, p.col.out_start : p.col.out_stop] = s[
            :, :, p.row.keep_start : p.row.keep_stop, p.col.keep_start : p.col.keep_stop
        ]
    assert out is not None
    return out


def _whole(model: UNet, x: torch.Tensor, tiling: Tiling, variant: str) -> np.ndarray:
    """Defect probability ``(H,W)`` of the whole-strip computation, with the stem as ``variant`` says."""
    _, _, h, w = x.shape
    top, bottom, left, right = whole_padding(h, w)
    xp = F.pad(x, (left, right, top, bottom), mode="reflect")
    if variant == "whole, tiled stem":
        s = model.stem(xp)
        s[:, :, top : top + h, left : left + w] = _stem_tiled(model, x, tiling)
    elif variant == "whole, interior shift":
        estimate: Callable[..., tuple[torch.Tensor, torch.Tensor]] = model_module.estimate_shift

        def interior(t: torch.Tensor, r: torch.Tensor, **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
            return estimate(t[..., top : top + h, left : left + w], r[..., top : top + h, left : left + w], **kw)

        model_module.estimate_shift = interior  # type: ignore[assignment]
        try:
            s = model.stem(xp)
        finally:
            model_module.estimate_shift = estimate  # type: ignore[assignment]
    else:
        s = model.stem(xp)
    prob = torch.softmax(model.decoder(model.encoder(s)), 1)[:, 1, top : top + h, left : left + w]
    return prob[0].numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("data", type=Path, help="a synth-dataset root (data set layout)")
    ap.add_argument("--splits", nargs="+", default=["valid", "test"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = model_from_checkpoint(args.checkpoint)
    model.eval()
    print(f"{args.checkpoint} (stem {model.stem_name}) on {args.data}")
    print("| split | computation | pixel AP | image AUROC |\n|---|---|---|---|")
    for split in args.splits:
        es = load_eval_set(args.data, split)
        if es is None:
            raise SystemExit(f"whole_gap: no labelled '{split}' images in {args.data}")
        h, w = es.images[0].image.shape[1:]
        tiling = tiling_for("strip", h, w)
        with torch.no_grad():
            rows = {"tiled": heatmaps(model, es, tiling, torch.device("cpu"))}
            for variant in ("whole", "whole, tiled stem", "whole, interior shift"):
                xs = [torch.from_numpy(scale_input(e.image[None])) for e in es.images]
                rows[variant] = [_whole(model, x, tiling, variant) for x in xs]
        for name, maps in rows.items():
            r = score_maps(maps, es)
            print(f"| {split} ({len(es)}) | {name} | {r['pixel_ap']:.4f} | {r['image_auroc']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
