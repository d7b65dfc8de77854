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

Last, *what limits image AUROC* (image score = the heatmap's maximum, as bgsdk.evaluate.metrics scores it): the
AUROC with the defective strips whose strongest labelled defect is faint or weak left out; per background
kind (``dataset.json`` of synth-dataset records each strip's kind and misregistration) the strips' pixel
AP and image AUROC, and the good strips' highest scores; the same by band of the background's
misregistration std (the evaluation sets draw up to 0.6 px per die, the accuracy criteria's held-out strips at most
+-0.5 px); and where the highest-scoring good strips peak (in a not-labelled defect's box, or on the
background), with how noisy each one's comparison is (std of the target minus the aligned reference), and
the image AUROC without an 8 px border band (do false alarms gather at strip edges?).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from bgsdk.evaluate.metrics import average_precision, roc_auc
from bgtrain.checkpoint import model_from_checkpoint
from bgtrain.model import AlignedStem, estimate_shift, shift_bilinear
from bgtrain.recipe import DISTRACTOR_KINDS, FAINT_AMPLITUDE, WEAK_AMPLITUDE
from bgtrain.validate import EvalSet, heatmaps, image_auroc_without_faint, load_eval_set, score_maps


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
    image_level(maps, es, _backgrounds(a.data, a.split))


# |a| band edges of the per-band recall; the weak/strong split is validation's (weak = |a| <= WEAK_AMPLITUDE).
BAND_EDGES = (FAINT_AMPLITUDE, 20.0, 30.0, WEAK_AMPLITUDE, 60.0)


def band_of(amplitude: float) -> str:
    """The |a| band's name; bands are half-open [lo, hi) except that WEAK_AMPLITUDE itself counts as weak."""
    a = abs(amplitude)
    lo = 0.0
    for hi in BAND_EDGES:
        if a < hi or (hi == WEAK_AMPLITUDE and a == hi):
            return f"{lo:g}-{hi:g}"
        lo = hi
    return f">{lo:g}"


def ap_breakdown(maps: list[np.ndarray], es: EvalSet, thr: float) -> None:
    """Pixel AP with each kind of negative pixel left out of the ranking."""
    labels, scores, ring, distractor = [], [], [], []
    for hm, e in zip(maps, es.images):
        mask = _mask(e.mask, hm.shape)
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
    found: dict[str, list[bool]] = {band_of(e - 1e-3): [] for e in BAND_EDGES} | {band_of(256.0): []}
    for kind, rows in peaks.items():
        if kind in DISTRACTOR_KINDS:
            continue
        for amp, peak in rows:
            found[band_of(amp)].append(peak > thr)
    print("recall of labelled defects by |a|: " + ", ".join(f"{b}: {sum(v)}/{len(v)}" for b, v in found.items()))


def _backgrounds(data: str, split: str) -> dict[str, dict[str, float | str]]:
    """stem -> {"kind", "misregistration"} from synth-dataset's dataset.json ({} for older data sets)."""
    path = Path(data) / "dataset.json"
    recorded = json.loads(path.read_text()).get("backgrounds", {}) if path.is_file() else {}
    return {key.split("/", 1)[1]: v for key, v in recorded.items() if key.startswith(f"{split}/")}


def image_level(maps: list[np.ndarray], es: EvalSet, backgrounds: dict[str, dict[str, float | str]]) -> None:
    """What limits image AUROC: faint defective strips, or good strips that score high, and where."""
    score = np.array([float(hm.max()) for hm in maps])
    bad = np.array([e.sample.defective for e in es.images])
    print(f"image AUROC {_auroc(bad, score):.3f}; leaving out the defective strips whose strongest labelled defect is")
    for lo in (FAINT_AMPLITUDE, 20.0, WEAK_AMPLITUDE):
        auroc, left_out = image_auroc_without_faint(maps, es, below=lo)
        print(f"  |a| < {lo:g}: {left_out:3d} strips -> image AUROC {float('nan') if auroc is None else auroc:.3f}")
    stems = [e.sample.path.stem for e in es.images]
    if not all(s in backgrounds for s in stems):
        print("(no per-strip backgrounds in dataset.json: regenerate the data set to see them by kind)")
        return
    kind = np.array([str(backgrounds[s]["kind"]) for s in stems])
    misreg = np.array([float(backgrounds[s]["misregistration"]) for s in stems])
    _by_group("background kind", maps, es, score, bad, kind)
    edges = (0.0, 0.2, 0.4, 0.6, np.inf)
    names = np.array([f"{lo:.1f}-{hi:.1f} px" for lo, hi in zip(edges[:-1], edges[1:])])
    band = names[np.digitize(misreg, edges[1:-1])]
    _by_group("misregistration std", maps, es, score, bad, band)
    inner = np.array([float(hm[EDGE:-EDGE, EDGE:-EDGE].max()) for hm in maps])
    print(f"image AUROC with each strip's maximum taken {EDGE} px inside its edges: {_auroc(bad, inner):.4f}")
    noise = np.array([_difference_std(e.image) for e in es.images])
    print(
        "highest-scoring good strips: score, background, misregistration, std of the target minus the aligned "
        f"ref1 (median over good strips {np.median(noise[~bad]):.1f}), where the maximum is"
    )
    for i in sorted(np.flatnonzero(~bad), key=lambda j: -score[j])[:10]:
        where = _where(maps[i], es.images[i].defects)
        print(f"  {stems[i]} {score[i]:.2f} {kind[i]:9s} {misreg[i]:.2f} px  std {noise[i]:.1f}  {where}")


def _by_group(
    title: str, maps: list[np.ndarray], es: EvalSet, score: np.ndarray, bad: np.ndarray, group: np.ndarray
) -> None:
    print(f"by {title}: strips, pixel AP, image AUROC, good strips' highest scores (median / max)")
    for k in sorted(set(group)):
        sel = np.flatnonzero(group == k)
        labels = np.concatenate([_mask(es.images[i].mask, maps[i].shape).ravel() for i in sel])
        ap = average_precision(labels, np.concatenate([maps[i].ravel() for i in sel])) if labels.any() else float("nan")
        auroc = _auroc(bad[sel], score[sel])
        good = score[sel][~bad[sel]]
        tail = f"{np.median(good):.2f} / {good.max():.2f}" if good.size else "-"
        print(f"  {k:11s} {len(sel):3d}  AP {ap:.3f}  AUROC {auroc:.3f}  good {tail}")


EDGE = 8  # px: a strip's border band, to see whether false alarms gather at its edges


def _difference_std(image: np.ndarray) -> float:
    """Grey-level std of target minus ref1 aligned to it (the aligned stem's estimate, over the strip).

    How noisy a strip's comparison is: where a faint defect stops standing out of the noise.
    """
    x = torch.from_numpy(image[None, :2] / 255.0).float()
    t, r = x[:, 0:1], x[:, 1:2]
    dx, dy = estimate_shift(t, r)
    d = (t - shift_bilinear(r, dx, dy, AlignedStem.radius))[..., EDGE:-EDGE, EDGE:-EDGE]
    return float(255.0 * d.std())


def _auroc(bad: np.ndarray, score: np.ndarray) -> float:
    """Image AUROC; nan when the strips are all good or all defective (small sets, one kind)."""
    return roc_auc(bad, score) if 0 < bad.sum() < len(bad) else float("nan")


def _mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return mask if mask is not None else np.zeros(shape, bool)


def _where(hm: np.ndarray, defects: list[dict[str, object]] | None) -> str:
    y, x = np.unravel_index(int(np.argmax(hm)), hm.shape)
    for d in defects or []:
        y0, x0, y1, x1 = d["box"]  # type: ignore[misc]
        if y0 - 2 <= y < y1 + 2 and x0 - 2 <= x < x1 + 2:
            return f"({y},{x}) in a {d['kind']} defect's box (a={float(d['amplitude']):+.0f})"  # type: ignore[arg-type]
    return f"({y},{x}) on the background; {int((hm > 0.5 * hm.max()).sum())} px above half of it"


if __name__ == "__main__":
    main()
