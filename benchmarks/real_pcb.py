"""Real images: golden-template PCB scans with hand-boxed defects (DeepPCB), scored per defect (FROC).

The synthetic sets say how the recipe generalises to patterns nobody tuned to; this says what happens on a
real product: 640x640 binarised scans of printed circuit boards, each test image next to its defect-free
golden template, six real defect kinds (open, short, mousebite, spur, spurious copper, pin hole) boxed by
hand. Used for evaluation only -- nothing in the recipe is tuned to it.

DeepPCB is public (MIT licence): clone it anywhere, then::

    .venv/bin/python benchmarks/real_pcb.py prepare DEEPPCB_CHECKOUT pcb_data [--n-train 64] [--n-test 100]
    .venv/bin/python benchmarks/real_pcb.py score pcb_data [--model model.onnx ...] [--json out.json]

``prepare`` lays the pairs out in the data set layout (docs/data.md) without converting a pixel:
``train/good/<key>.jpg`` = golden templates of the ``trainval`` split (for training on the product's own
clean images), ``test/defect/<key>_test.jpg`` beside ``<key>_temp.jpg`` (pairs of the ``test`` split,
spread evenly over it) and ``ground_truth/defect/<key>.txt`` with ``x1 y1 x2 y2 class`` boxes.

``score`` prints recall at 0.5 / 1 / 2 false alarms per image (``bgsdk.evaluate.froc``: a component hits a
box when its centroid is inside and its area is at most 4x the box) for double detection
``min(|T-R1|,|T-R2|)``, the classical AOI pipeline of ``classical_aoi.py`` (register by correlation,
subtract, grey opening 5x5) and each model, overall and per defect class. A model built for another image
size is rebuilt by the caller: ``bgsdk build CKPT -o m640.onnx --image-size 640 640``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_info  # noqa: E402
from classical_aoi import classical_aoi  # noqa: E402

CLASSES = {1: "open", 2: "short", 3: "mousebite", 4: "spur", 5: "copper", 6: "pin-hole"}


def _pairs(src: Path, split: str) -> list[tuple[Path, Path, Path]]:
    """``(test image, template, box file)`` of a DeepPCB split list (``trainval.txt`` / ``test.txt``)."""
    out = []
    for line in (src / "PCBData" / f"{split}.txt").read_text().splitlines():
        if not line.strip():
            continue
        img, ann = line.split()
        p = src / "PCBData" / img
        out.append((p.with_name(p.stem + "_test.jpg"), p.with_name(p.stem + "_temp.jpg"), src / "PCBData" / ann))
    return out


def _spread(items: list, n: int) -> list:
    """``n`` items spread evenly over the list (every board group, not the first few)."""
    idx = np.unique(np.linspace(0, len(items) - 1, min(n, len(items))).round().astype(int))
    return [items[i] for i in idx]


def prepare(src: Path, out: Path, n_train: int, n_test: int) -> None:
    train, test = out / "train" / "good", out / "test" / "defect"
    gt = out / "ground_truth" / "defect"
    for d in (train, test, gt):
        d.mkdir(parents=True, exist_ok=True)
    for _, temp, _ in _spread(_pairs(src, "trainval"), n_train):
        shutil.copyfile(temp, train / temp.name.replace("_temp", ""))
    for t, temp, ann in _spread(_pairs(src, "test"), n_test):
        shutil.copyfile(t, test / t.name)
        shutil.copyfile(temp, test / temp.name)
        rows = [r.replace(",", " ").split() for r in ann.read_text().splitlines()]
        lines = [f"{x1} {y1} {x2} {y2} {CLASSES[int(c)]}" for x1, y1, x2, y2, c in (r for r in rows if len(r) == 5)]
        (gt / (t.stem.replace("_test", "") + ".txt")).write_text("\n".join(lines) + "\n")
    print(f"{out}: {len(list(train.iterdir()))} templates in train/good, {len(list(gt.iterdir()))} test pairs")


def _table(rows: dict[str, dict]) -> None:
    points = next(iter(rows.values()))["recall"]
    print(f"{'method':<28}" + "".join(f"  recall@{k} FA/img" for k in points))
    for name, s in rows.items():
        print(f"{name:<28}" + "".join(f"  {v:>16.3f}" for v in s["recall"].values()))
    print("\nper class (recall at " + " / ".join(points) + " FA/image):")
    for name, s in rows.items():
        cells = [f"{c} {'/'.join(f'{v:.2f}' for v in e['recall'].values())}" for c, e in s["per_class"].items()]
        print(f"  {name}: " + ", ".join(cells))


def score(data: Path, models: list[Path], threads: int | None) -> dict[str, dict]:
    import bgsdk
    from bgsdk._dataset_layout import sample_image
    from bgsdk.evaluate.evaluation import load_dataset
    from bgsdk.evaluate.froc import froc_curve

    ds = load_dataset(data, split="test")
    images = [sample_image(s) for s in ds.samples]
    rows: dict[str, dict] = {}
    dd = [np.min(np.abs(x[0] - x[1:3]), axis=0) / 255.0 for x in images]
    rows["double detection"] = froc_curve(dd, ds.boxes).summary()
    aoi = [classical_aoi(x, opening=5) for x in images]
    rows["classical AOI (open 5x5)"] = froc_curve(aoi, ds.boxes).summary()
    for m in models:
        seg = bgsdk.Segmenter(m, threads=threads)
        maps = [seg.run(x).heatmap for x in images]
        rows[m.name] = froc_curve(maps, ds.boxes).summary()
    print(f"{data}: {len(images)} test pairs, {sum(len(b) for b in ds.boxes)} boxes")
    _table(rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="lay a DeepPCB checkout out as a bgsdk data set")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-test", type=int, default=100)
    s = sub.add_parser("score", help="FROC of double detection, classical AOI and models")
    s.add_argument("data", type=Path)
    s.add_argument("--model", type=Path, action="append", default=[])
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.src, a.out, a.n_train, a.n_test)
        return
    print(cpu_info())
    rows = score(a.data, a.model, a.threads)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
