"""Per-defect peak scores of a checkpoint on an annotated split: which defects a model misses, by amplitude.

Command: ``.venv/bin/python benchmarks/defect_peaks.py CHECKPOINT DATA [--split test]``

For every annotated defect of the split (labelled ``target``/``missing`` and the not-labelled kinds),
prints its signed amplitude and the heatmap's maximum over its footprint box (the rule
:func:`bgtrain.validate.defect_rates` counts with), sorted by |amplitude| per kind; ``*`` marks the
ones above the split's best-F1 pixel threshold. Heatmaps come from the deployed tiling in PyTorch.

Then *where pixel AP is lost*: the split's AP recomputed with one kind of negative pixel left out at a
time -- the 1-2 px ring around each mask (footprint edges), the boxes of not-labelled defects (a
reference's defect or one shared by the target), and the rest of the background (pattern edges, noise) --
and the recall of labelled defects by |amplitude| band. A large gain from leaving a kind out says that
kind of pixel outranks real defect pixels.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy import ndimage

from bgsdk.metrics import average_precision
from bgtrain.checkpoint import model_from_checkpoint
from bgtrain.recipe import DISTRACTOR_KINDS
from bgtrain.validate import EvalSet, heatmaps, load_eval_set, score_maps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("data", help="synth-dataset root with an annotated split")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, info = model_from_checkpoint(a.checkpoint)[:2]
    model.eval()
    es = load_eval_set(a.data, a.split)
    if es is None or not es.annotated:
        raise SystemExit(f"{a.data}: no annotated {a.split!r} split")
    maps = heatmaps(model, es, info.tiling(), torch.device("cpu"))
    s = score_maps(maps, es)
    thr = float(s["best_f1_threshold"])  # type: ignore[arg-type]
    print(f"{a.split}: pixel AP {s['pixel_ap']:.3f}, best-F1 threshold {thr:.3f}, weak recall {s['recall_weak']}")
    peaks: dict[str, list[tuple[float, float]]] = {}
    for hm, e in zip(maps, es.images):
        for d in e.defects or []:
            y0, x0, y1, x1 = d["box"]
            peaks.setdefault(d["kind"], []).append((float(d["amplitude"]), float(np.max(hm[y0:y1, x0:x1]))))
    for kind, rows in sorted(peaks.items()):
        rows.sort(key=lambda r: abs(r[0]))
        print(f"{kind:12s} " + " ".join(f"{amp:+.0f}:{p:.2f}{'*' if p > thr else ''}" for amp, p in rows))
    ap_breakdown(maps, es, thr)
    band_recall(peaks, thr)


AMPLITUDE_BANDS = ((0, 12), (12, 20), (20, 30), (30, 40), (40, 60), (60, 256))


def ap_breakdown(maps: list[np.ndarray], es: EvalSet, thr: float) -> None:
    """Pixel AP with each kind of negative pixel left out of the ranking."""
    labels, scores, ring, distractor = [], [], [], []
    for hm, e in zip(maps, es.images):
        mask = e.mask if e.mask is not None else np.zeros(hm.shape, bool)
        dist = ndimage.distance_transform_edt(~mask) if mask.any() else np.full(hm.shape, np.inf)
        boxes = np.zeros(hm.shape, bool)
        for d in e.defects or []:
            if not d["labelled"]:
                y0, x0, y1, x1 = d["box"]
                boxes[y0:y1, x0:x1] = True
        labels.append(mask.ravel())
        scores.append(hm.ravel())
        ring.append(((dist > 0) & (dist <= 2.5)).ravel())
        distractor.append((boxes & ~mask).ravel())
    y, p, r, b = (np.concatenate(v) for v in (labels, scores, ring, distractor))
    rest = ~y & ~r & ~b
    print(f"pixel AP {average_precision(y, p):.3f}; leaving out negatives of one kind:")
    for name, drop in (
        ("ring <= 2 px around masks", r),
        ("not-labelled defect boxes", b),
        ("rest of background", rest),
    ):
        keep = ~drop
        print(
            f"  {name:27s} {int(drop.sum()):8d} px, {int((drop & (p > thr)).sum()):5d} above threshold -> "
            f"AP {average_precision(y[keep], p[keep]):.3f}"
        )


def band_recall(peaks: dict[str, list[tuple[float, float]]], thr: float) -> None:
    """Recall of the labelled defects (target, missing) per |a| band, from the per-defect peaks."""
    found: dict[tuple[int, int], list[bool]] = {}
    for kind, rows in peaks.items():
        if kind in DISTRACTOR_KINDS:
            continue
        for amp, peak in rows:
            band = next(bd for bd in AMPLITUDE_BANDS if bd[0] <= abs(amp) < bd[1])
            found.setdefault(band, []).append(peak > thr)
    print(
        "recall of labelled defects by |a|: "
        + ", ".join(f"{lo}-{hi}: {sum(v)}/{len(v)}" for (lo, hi), v in sorted(found.items()))
    )


if __name__ == "__main__":
    main()
