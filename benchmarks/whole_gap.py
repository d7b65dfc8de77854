"""Where a whole-strip computation loses AP against the tiled mode: the input stem, the padding, or the body?

Command (docs/model-card.md, docs/experiments/)::

    .venv/bin/python benchmarks/whole_gap.py CHECKPOINT DATA_ROOT [--splits valid test] [--variants ...] [--edges]

Why: the whole-strip build first ran the UNet once over the strip reflect-padded to multiples of 32
(:func:`bgtrain.dataset.reflect_padding`), instead of on 128-px patches that need no padding. Three things
changed at once: the stem estimates one registration over the whole (padded) strip, where the mirrored
padding moves the opposite way; the strip's edges meet mirrored content instead of the convolutions' zero
padding that every training patch had at its border; and every layer sees context beyond 128 px. Scored
with PyTorch on the same strips (``bgtrain.validate.score_maps``):

* ``tiled``          -- the deployed tiled computation (``bgtrain.infer.sliding_window``);
* ``whole``          -- the deployed whole-strip computation (``bgtrain.infer.whole_image``): the stem per
  tile as in the tiled mode, the body once over the strip as it is (its pools round up);
* ``whole, reflect-padded`` -- the first whole-strip build: the strip reflect-padded, the UNet once, cropped;
The remaining variants change one thing of ``whole, reflect-padded``, except the ``unpadded`` ones:

* ``whole, tiled stem`` -- the stem's maps computed tile by tile exactly as in the tiled mode and stitched
  by the tiling's centre crops, then the UNet body over the whole strip;
* ``whole, interior shift`` -- the stem over the whole strip, its shift estimated without the padding;
* ``whole, input zero-padded`` / ``whole, input edge-replicated`` -- the strip padded with zeros / its
  edge pixels instead of its mirror image before the stem;
* ``whole, stem maps reflect-padded`` / ``whole, stem maps zero-padded`` -- the stem on the strip as it
  is (no padding, as every tile), its maps padded for the body;
* ``whole, 128-row bands`` -- the whole-strip computation on overlapping bands of 128 rows and the strip's
  full width, stitched by the centre crops of ``bgsdk.tiling.plan_axis``: a tile's height of context, the
  whole strip's width and padding;
* ``whole, stem per 128-row band`` -- the stem on overlapping 128-row bands of the padded strip (one
  registration per band), its maps blended across the overlaps with weights that fall towards each band's
  ends, then the body over the whole strip: a registration that follows a drift along the strip, with the
  whole strip's edges and context; ``..., unpadded``: the bands cut from the strip itself (no mirrored
  columns in the stem's input), the blended maps then reflect-padded.
* ``whole, unpadded`` -- the stem once over the strip as it is, the body on it without padding;
  ``..., stem per 128-row band``: the stem as in ``whole, stem per 128-row band, unpadded`` instead
  (``whole`` has the stem per tile).

``--skip`` leaves images out by their index in the split (e.g. the few that dominate a set's false alarms).
``--edges`` adds where each computation's false alarms are: pixels above 0.5 outside the defect masks,
summed per band of 16 columns (strips are 176 px wide: the first and last bands are the strip's long edges).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bgsdk.contract import scale_input
from bgsdk.tiling import Tiling, plan_axis, tiling_for
from bgtrain import model as model_module
from bgtrain.checkpoint import model_from_checkpoint
from bgtrain.dataset import reflect_padding as whole_padding
from bgtrain.infer import TiledStem, whole_image
from bgtrain.model import UNet
from bgtrain.validate import EvalSet, heatmaps, load_eval_set, score_maps

VARIANTS = (
    "whole",
    "whole, reflect-padded",
    "whole, tiled stem",
    "whole, interior shift",
    "whole, input zero-padded",
    "whole, input edge-replicated",
    "whole, stem maps reflect-padded",
    "whole, stem maps zero-padded",
    "whole, 128-row bands",
    "whole, stem per 128-row band",
    "whole, stem per 128-row band, unpadded",
    "whole, unpadded",
    "whole, unpadded, stem per 128-row band",
)
DEFAULT_VARIANTS = VARIANTS[:3]
EDGE_BAND = 16


def _stem_bands(model: UNet, xp: torch.Tensor, rows: int = 128) -> torch.Tensor:
    """The stem's maps of overlapping row bands of ``xp``, blended: weight 1 + distance to the band's end."""
    acc: torch.Tensor | None = None
    total = torch.zeros((1, 1, xp.shape[2], 1))
    for span in plan_axis(xp.shape[2], rows, min_overlap=32):
        s = model.stem(xp[:, :, span.start : span.stop])
        y = torch.arange(span.stop - span.start, dtype=s.dtype)
        w = (1.0 + torch.minimum(y, y.flip(0))).view(1, 1, -1, 1)
        if acc is None:
            acc = torch.zeros((xp.shape[0], s.shape[1], *xp.shape[2:]))
        acc[:, :, span.start : span.stop] += w * s
        total[:, :, span.start : span.stop] += w
    assert acc is not None
    return acc / total


def _stem_maps(model: UNet, x: torch.Tensor, tiling: Tiling, variant: str, pads: tuple[int, ...]) -> torch.Tensor:
    """The stem's maps at the padded size, computed as ``variant`` says."""
    top, bottom, left, right = pads
    h, w = x.shape[2:]
    lrtb = (left, right, top, bottom)
    if variant == "whole, tiled stem":
        s = model.stem(F.pad(x, lrtb, mode="reflect"))
        s[:, :, top : top + h, left : left + w] = TiledStem(model.stem, tiling)(x)
        return s
    if variant == "whole, interior shift":
        estimate: Callable[..., tuple[torch.Tensor, torch.Tensor]] = model_module.estimate_shift

        def interior(t: torch.Tensor, r: torch.Tensor, **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
            return estimate(t[..., top : top + h, left : left + w], r[..., top : top + h, left : left + w], **kw)

        model_module.estimate_shift = interior  # type: ignore[assignment]
        try:
            return model.stem(F.pad(x, lrtb, mode="reflect"))
        finally:
            model_module.estimate_shift = estimate  # type: ignore[assignment]
    if variant == "whole, input zero-padded":
        return model.stem(F.pad(x, lrtb))
    if variant == "whole, input edge-replicated":
        return model.stem(F.pad(x, lrtb, mode="replicate"))
    if variant == "whole, stem maps reflect-padded":
        return F.pad(model.stem(x), lrtb, mode="reflect")
    if variant == "whole, stem maps zero-padded":
        return F.pad(model.stem(x), lrtb)
    if variant == "whole, stem per 128-row band":
        return _stem_bands(model, F.pad(x, lrtb, mode="reflect"))
    if variant == "whole, stem per 128-row band, unpadded":
        return F.pad(_stem_bands(model, x), lrtb, mode="reflect")
    return model.stem(F.pad(x, lrtb, mode="reflect"))  # "whole, reflect-padded": the first whole-strip build


def _whole(model: UNet, x: torch.Tensor, tiling: Tiling, variant: str) -> np.ndarray:
    """Defect probability ``(H,W)`` of the whole-strip computation, with stem and padding as ``variant`` says."""
    _, _, h, w = x.shape
    pads = whole_padding(h, w)
    top, _, left, _ = pads
    s = _stem_maps(model, x, tiling, variant, pads)
    prob = torch.softmax(model.decoder(model.encoder(s)), 1)[:, 1, top : top + h, left : left + w]
    return prob[0].numpy()


def _unpadded(model: UNet, x: torch.Tensor, tiling: Tiling, variant: str) -> np.ndarray:
    """The UNet's body on the strip as it is (its pools round up), after the stem once or per row band."""
    s = _stem_bands(model, x) if variant.endswith("band") else model.stem(x)
    return torch.softmax(model.body(s), 1)[0, 1].numpy()


def _bands(model: UNet, x: torch.Tensor, tiling: Tiling, rows: int = 128) -> np.ndarray:
    """The deployed whole-strip computation on bands of ``rows`` rows, stitched by their centre crops."""
    h, w = x.shape[2:]
    out = np.zeros((h, w), np.float32)
    for span in plan_axis(h, rows, min_overlap=32):
        band = _whole(model, x[:, :, span.start : span.stop], tiling, "whole, reflect-padded")
        out[span.out_start : span.out_stop] = band[span.keep_start : span.keep_stop]
    return out


def _edge_profile(maps: list[np.ndarray], es: EvalSet) -> list[int]:
    """False-alarm pixels (> 0.5, outside the defect masks) per band of ``EDGE_BAND`` columns."""
    w = maps[0].shape[1]
    cols = np.zeros(w)
    for hm, e in zip(maps, es.images):
        fa = hm > 0.5
        if e.mask is not None:
            fa &= ~e.mask
        cols += fa.sum(0)
    edges = list(range(0, w, EDGE_BAND)) + [w]
    return [int(cols[a:b].sum()) for a, b in zip(edges, edges[1:])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("data", type=Path, help="a synth-dataset root (data set layout)")
    ap.add_argument("--splits", nargs="+", default=["valid", "test"])
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS), metavar="VARIANT")
    ap.add_argument("--edges", action="store_true", help="false-alarm pixels per band of 16 columns")
    ap.add_argument(
        "--skip", nargs="+", type=int, default=[], metavar="I", help="leave out the split's images with these indices"
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = model_from_checkpoint(args.checkpoint)
    model.eval()
    print(f"{args.checkpoint} (stem {model.stem_name}) on {args.data}")
    print("| split | computation | pixel AP | image AUROC |" + (" false alarms per 16 columns |" if args.edges else ""))
    print("|---|---|---|---|" + ("---|" if args.edges else ""))
    for split in args.splits:
        es = load_eval_set(args.data, split)
        if es is None:
            raise SystemExit(f"whole_gap: no labelled '{split}' images in {args.data}")
        if args.skip:
            skip = set(args.skip)
            es = replace(es, images=[e for i, e in enumerate(es.images) if i not in skip])
        h, w = es.images[0].image.shape[1:]
        tiling = tiling_for("strip", h, w)
        with torch.no_grad():
            rows = {"tiled": heatmaps(model, es, tiling, torch.device("cpu"))}
            xs = [torch.from_numpy(scale_input(e.image[None])) for e in es.images]
            for variant in args.variants:
                if variant == "whole":
                    rows[variant] = [whole_image(model, x, tiling)[0].numpy() for x in xs]
                elif variant.startswith("whole, unpadded"):
                    rows[variant] = [_unpadded(model, x, tiling, variant) for x in xs]
                elif variant == "whole, 128-row bands":
                    rows[variant] = [_bands(model, x, tiling) for x in xs]
                else:
                    rows[variant] = [_whole(model, x, tiling, variant) for x in xs]
        for name, maps in rows.items():
            r = score_maps(maps, es)
            edges = f" {' '.join(str(v) for v in _edge_profile(maps, es))} |" if args.edges else ""
            print(f"| {split} ({len(es)}) | {name} | {r['pixel_ap']:.4f} | {r['image_auroc']:.4f} |{edges}", flush=True)


if __name__ == "__main__":
    main()
