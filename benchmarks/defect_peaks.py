"""Per-defect peak scores of a checkpoint on an annotated split: which defects a model misses, by amplitude.

Command: ``.venv/bin/python benchmarks/defect_peaks.py CHECKPOINT DATA [--split test]``

For every annotated defect of the split (labelled ``target``/``missing`` and the not-labelled kinds),
prints its signed amplitude and the heatmap's maximum over its footprint box (the rule
:func:`bgtrain.validate.defect_rates` counts with), sorted by |amplitude| per kind; ``*`` marks the
ones above the split's best-F1 pixel threshold. Heatmaps come from the deployed tiling in PyTorch.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bgtrain.checkpoint import model_from_checkpoint
from bgtrain.validate import heatmaps, load_eval_set, score_maps


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


if __name__ == "__main__":
    main()
