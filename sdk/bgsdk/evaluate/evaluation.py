"""``bgsdk evaluate``: score one or more models, next to double detection, on labelled strips.

Data (:func:`discover`):

* the data set layout -- ``ROOT/<split>/{good,bright_spots}`` with masks in
  ``ROOT/ground_truth/bright_spots`` (``split`` default ``test``); or
* a folder of strips with a folder of masks (``--masks DIR``, default
  ``DATA_DIR/masks``): every strip needs a mask with its stem; an all-zero mask
  is a good image. Without any masks folder every strip is taken as good (said
  in the notes).

A missing or unreadable mask is an :class:`~bgsdk.errors.InputError` naming the
file. A data set without defective images still gives false alarms per image,
false rejects and latency; the numbers that need defects are ``None`` and the
``notes`` say so.

Every method (each model at its own operating point, and double detection
``min(|T-R1|,|T-R2|)/255`` at its best-F1 point on this data -- an oracle
threshold, stated as such) gets the same numbers: pixel AP/AUROC, image AUROC,
F1 at the operating point and best F1, per-defect recall by size and contrast,
false alarms per image, verdict rates and latency; and each model's pixel AP as a
multiple of double detection's. On a synthetic data set (``bgsdk synth``: with
``annotations/<split>.json``) also recall of weak, strong and missing defects and
the share of reference-only defects flagged, at each method's best-F1 threshold
(:mod:`bgsdk.evaluate.defect_kinds`); and the FROC table
(:mod:`bgsdk.evaluate.froc`: recall at 0.5/1/2 false alarms per image, per class) on the
data set's boxes (or its mask components' bounding boxes).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._dataset_layout import (
    DEFECT,
    GOOD,
    GT_DIR,
    find_mask,
    labelled_split,
    load_annotations,
    sample_image,
    sample_mask,
)
from .._operating_point import OperatingPoint, PointMetrics, calibrate, point_metrics
from ..annotations import Box, mask_to_boxes
from ..errors import InputError
from ..io import list_images
from .defect_kinds import defect_rates, image_auroc_without_faint
from .froc import FrocCurve, froc_curve
from .metrics import (
    GroundTruthDefect,
    SegMetrics,
    ThresholdPoint,
    best_f1_threshold,
    detect_defects,
    double_detection,
    evaluate,
    recall_by_bins,
)

__all__ = [
    "EvalSample",
    "Dataset",
    "MethodResult",
    "Evaluation",
    "discover",
    "load_dataset",
    "evaluate_models",
    "AREA_BINS",
    "CONTRAST_BINS",
    "DOUBLE_DETECTION",
    "table_rows",
    "format_table",
    "verdict_lines",
    "KIND_ROWS",
]

#: Per-defect recall bins: ground-truth area in pixels, and contrast (peak double detection, grey levels).
AREA_BINS = (1.0, 10.0, 30.0, float("inf"))
CONTRAST_BINS = (0.0, 20.0, 40.0, 80.0, float("inf"))
DOUBLE_DETECTION = "double detection"


@dataclass(frozen=True)
class EvalSample:
    path: Path
    mask_path: Path | None
    defective: bool
    boxes: tuple[Box, ...] | None = None  # box annotations (bgsdk._dataset_layout)
    refs: tuple[Path, ...] = ()  # a test image's separate template(s)
    kind: str = ""  # its folder: good or the defect kind


@dataclass
class Dataset:
    """Labelled strips in memory: masks, double-detection maps and ground-truth defects (with contrast)."""

    root: Path
    layout: str
    samples: list[EvalSample]
    masks: list[np.ndarray | None]
    baseline: list[np.ndarray]
    gt_contrast: list[list[float | None]]
    notes: list[str] = field(default_factory=list)
    boxes: list[list[Box]] = field(default_factory=list)  # ground-truth boxes per image (FROC)
    #: Per image, the synthesised defects of ``annotations/<split>.json`` (``None``: no annotations).
    defects: list[list[dict[str, Any]]] | None = None

    @property
    def n_defect_images(self) -> int:
        return sum(1 for m in self.masks if m is not None and bool(m.any()))


def discover(
    data_dir: Path, split: str = "test", masks_dir: Path | None = None
) -> tuple[str, list[EvalSample], list[str]]:
    """``(layout description, samples, notes)``; raises ``InputError`` for a bad folder or a missing mask."""
    if not data_dir.is_dir():
        raise InputError(data_dir, "data folder not found")
    notes: list[str] = []
    if (data_dir / split).is_dir() or (data_dir / GT_DIR).is_dir():
        found = labelled_split(data_dir, split)
        if not found:
            raise InputError(
                data_dir / split, f"no images in {split}/{GOOD} or a defect folder (e.g. {split}/{DEFECT})"
            )
        samples = [EvalSample(s.path, s.mask_path, s.defective, s.boxes, s.refs, s.kind) for s in found]
        return f"data set layout, split {split!r}", samples, notes
    images = list_images(data_dir)
    if not images:
        raise InputError(data_dir, "no image files (and not the data set layout: no train/valid/test folders)")
    mdir = masks_dir if masks_dir is not None else data_dir / "masks"
    if not mdir.is_dir():
        if masks_dir is not None:
            raise InputError(masks_dir, "masks folder not found")
        notes.append(f"no masks folder ({mdir}): all {len(images)} image(s) taken as good")
        return "folder of strips, no masks", [EvalSample(p, None, False) for p in images], notes
    samples = []
    for p in images:
        m = find_mask(mdir, p.stem)
        if m is None:
            raise InputError(mdir / f"{p.stem}{p.suffix}", f"mask missing for {p.name} (same file stem expected)")
        samples.append(EvalSample(p, m, True))  # `defective` is settled once the mask is read
    return f"folder of strips with masks in {mdir}", samples, notes


def load_dataset(data_dir: Path, split: str = "test", masks_dir: Path | None = None) -> Dataset:
    """Read every mask and image once (double detection, ground-truth contrast); images are not kept."""
    layout, samples, notes = discover(data_dir, split, masks_dir)
    masks: list[np.ndarray | None] = []
    baseline, contrasts, checked, boxes = [], [], [], []
    for s in samples:
        img = sample_image(s)
        mask = sample_mask(s, img.shape[1:])
        boxes.append(list(s.boxes) if s.boxes is not None else mask_to_boxes(mask, s.kind) if mask is not None else [])
        defective = s.defective if "data set layout" in layout else bool(mask is not None and mask.any())
        if mask is not None and not mask.any():
            mask = None if not defective else mask
        dd = double_detection(img) / np.float32(255.0)
        gt = detect_defects([dd], [mask], 0.5, images=[img]) if mask is not None else []
        masks.append(mask)
        baseline.append(dd)
        contrasts.append([g.contrast for g in gt])
        checked.append(EvalSample(s.path, s.mask_path, defective, s.boxes, s.refs, s.kind))
    ds = Dataset(data_dir, layout, checked, masks, baseline, contrasts, notes, boxes)
    ann = load_annotations(data_dir, split) if layout.startswith("data set layout") else None
    if ann is not None:
        ds.defects = [list(ann.get(s.path.stem, [])) for s in checked]
    if ds.n_defect_images == 0:
        ds.notes.append(
            "no defective images: pixel AP, pixel AUROC, image AUROC, F1, best F1 and per-defect recall "
            "need defective images with masks and are not computed; false alarms, false rejects and latency are"
        )
    elif ds.n_defect_images == len(samples):
        ds.notes.append("no good images: image AUROC and the false-reject rate are not computed")
    return ds


@dataclass
class MethodResult:
    """One column of the comparison: a model (or double detection) and its numbers on the data set."""

    name: str
    kind: str  # "model" or "baseline"
    heatmaps: list[np.ndarray]
    latencies_ms: list[float]
    point: OperatingPoint
    seg: SegMetrics
    at_point: PointMetrics
    best: ThresholdPoint | None
    gt: list[GroundTruthDefect]
    card: dict[str, Any] = field(default_factory=dict)
    #: Per-kind rates of synthesised defects at the best-F1 threshold (``None``: no annotations).
    by_kind: dict[str, Any] | None = None
    froc: FrocCurve | None = None  # per-defect detection on the boxes (None: no boxes)

    def recall_bins(self, key: str) -> list[dict[str, Any]]:
        edges = AREA_BINS if key == "area" else CONTRAST_BINS
        return [
            {
                "low": b.low,
                "high": None if b.high == float("inf") else b.high,
                "n": b.n,
                "detected": b.detected,
                "recall": b.recall,
            }
            for b in recall_by_bins(self.gt, key, edges)
        ]

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (no arrays)."""
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        pm = self.at_point.to_dict()
        return {
            "name": self.name,
            "kind": self.kind,
            "operating_point": {
                "threshold": self.point.threshold,
                "min_area": self.point.min_area,
                "calibrated": self.point.calibrated,
                "rule": self.point.rule,
                "note": self.point.note,
            },
            "pixel_ap": self.seg.pixel_ap,
            "pixel_auroc": self.seg.pixel_auroc,
            "image_auroc": self.seg.image_auroc,
            "f1_at_operating_point": pm["pixel_f1"],
            "best_f1": None if self.best is None else self.best.f1,
            "best_f1_threshold": None if self.best is None else self.best.threshold,
            "defect_recall": pm["defect_recall"],
            "defect_recall_by_area": self.recall_bins("area") if self.gt else [],
            "defect_recall_by_contrast": self.recall_bins("contrast") if self.gt else [],
            "false_alarms_per_image": pm["false_alarms_per_image"],
            "image_recall": pm["image_recall"],
            "false_reject_rate": pm["false_reject_rate"],
            "at_operating_point": pm,
            "latency_ms": {
                "median": float(np.median(lat)) if lat.size else None,
                "p95": float(np.percentile(lat, 95)) if lat.size else None,
                "per_image": [round(x, 3) for x in self.latencies_ms],
            },
            "model_card": self.card,
            "synthetic_defects": self.by_kind,
            "froc": None if self.froc is None else self.froc.summary(),
        }


def _score(
    name: str,
    kind: str,
    ds: Dataset,
    heatmaps: list[np.ndarray],
    lat: list[float],
    point: OperatingPoint,
    card: dict[str, Any],
) -> MethodResult:
    labels = [s.defective for s in ds.samples]
    seg = evaluate(heatmaps, ds.masks, labels)
    at_point = point_metrics(heatmaps, ds.masks, point.threshold, point.min_area)
    best = best_f1_threshold(heatmaps, ds.masks) if ds.n_defect_images else None
    gt = detect_defects(heatmaps, ds.masks, point.threshold)
    flat_contrast = [c for per in ds.gt_contrast for c in per]
    gt = [
        GroundTruthDefect(g.image_index, g.area, g.peak, g.detected, c, g.centroid, g.bbox)
        for g, c in zip(gt, flat_contrast)
    ]
    froc = froc_curve(heatmaps, ds.boxes) if any(ds.boxes) else None
    return MethodResult(
        name, kind, heatmaps, lat, point, seg, at_point, best, gt, card, _kind_rates(ds, heatmaps, best), froc
    )


def _kind_rates(ds: Dataset, heatmaps: list[np.ndarray], best: ThresholdPoint | None) -> dict[str, Any] | None:
    """Recall/false-alarm rates per kind of synthesised defect at the best-F1 threshold (as training validation)."""
    if ds.defects is None or best is None:
        return None
    out: dict[str, Any] = {"threshold": best.threshold, "threshold_rule": "best pixel F1 on this data"}
    out.update(defect_rates(heatmaps, ds.defects, best.threshold))
    auroc, n_faint = image_auroc_without_faint(heatmaps, ds.defects, [s.defective for s in ds.samples])
    out.update(image_auroc12=auroc, n_faint_only=n_faint)
    return out


def _recipe(training: Any) -> str | None:
    """The synthesis recipe's name from ``bgsdk.training`` (models from before recipes: ``seed``)."""
    if not isinstance(training, dict):
        return None
    recipe = training.get("recipe")
    if isinstance(recipe, dict):
        return str(recipe.get("name", "?"))
    return "seed (trained before recipes existed)" if recipe is None else str(recipe)


def _mode(build: Any) -> str | None:
    """How the graph runs its patches, from the ``bgsdk.build`` metadata."""
    if not isinstance(build, dict) or "patch_batch" not in build:
        return None
    k, n = build.get("patch_batch"), build.get("num_patches")
    return f"all {n} patches in one call" if k == n else f"patches in chunks of {k} (of {n})"


def model_card(path: Path, seg: Any) -> dict[str, Any]:
    """What the report shows about a model: size, sha256, metadata summary, operating point."""
    import json

    data = path.read_bytes()
    meta = dict(seg.info.metadata)

    def js(key: str) -> Any:
        try:
            return json.loads(meta[key]) if key in meta else None
        except ValueError:
            return meta[key]

    training, build = js("bgsdk.training") or {}, js("bgsdk.build") or {}
    precision = "fp32"
    if "bgsdk.quantization" in meta:
        precision = "int8"
    elif "bgsdk.precision" in meta:
        precision = str((js("bgsdk.precision") or {}).get("precision", "fp16"))

    def pick(d: Any, *ks: str) -> Any:
        return next((d[k] for k in ks if isinstance(d, dict) and k in d), None)

    return {
        "file": str(path),
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "producer_version": meta.get("bgsdk.producer_version"),
        "recipe": _recipe(training),
        "stem": pick(training, "stem"),
        "width": pick(training, "width", "base_width"),
        "mode": _mode(build),
        "epoch": pick(training, "epoch"),
        "precision": precision,
        "operating_point": seg.operating_point.summary(),
        "providers": seg.providers,
    }


def evaluate_models(
    models: Sequence[Path],
    ds: Dataset,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    fallback: bool = False,
) -> list[MethodResult]:
    """Every model at its own operating point, then double detection (oracle best-F1 point on this data)."""
    from .._segmenter import Segmenter

    out = []
    for mp in models:
        seg = Segmenter(mp, providers=list(providers) if providers else None, threads=threads, fallback=fallback)
        first = ds.samples[0]
        seg.run(first.path, refs=list(first.refs) or None)  # warm-up: the first call pays ORT's lazy initialisation
        heatmaps, lat = [], []
        for s in ds.samples:
            t0 = time.perf_counter()
            r = seg.run(s.path, refs=list(s.refs) or None)
            lat.append((time.perf_counter() - t0) * 1e3)
            heatmaps.append(np.array(r.heatmap, copy=True))
        out.append(_score(mp.name, "model", ds, heatmaps, lat, seg.operating_point, model_card(mp, seg)))
    lat = []
    for s in ds.samples:  # the baseline's own cost, image read included like the models'
        t0 = time.perf_counter()
        double_detection(sample_image(s))
        lat.append((time.perf_counter() - t0) * 1e3)
    point = calibrate(ds.baseline, ds.masks, data={"source": str(ds.root)})
    note = "calibrated on this data (oracle: optimistic for the baseline)"
    point = OperatingPoint(
        point.threshold,
        point.min_area,
        True,
        point.rule,
        point.target,
        f"{note}; {point.note}" if point.note else note,
        point.data,
        point.metrics,
    )
    out.append(_score(DOUBLE_DETECTION, "baseline", ds, ds.baseline, lat, point, {}))
    return out


@dataclass
class Evaluation:
    dataset: Dataset
    methods: list[MethodResult]

    def to_json(self) -> dict[str, Any]:
        ds = self.dataset
        return {
            "data": {
                "root": str(ds.root),
                "layout": ds.layout,
                "n_images": len(ds.samples),
                "n_defect_images": ds.n_defect_images,
            },
            "notes": list(ds.notes),
            "methods": [m.summary() for m in self.methods],
        }


def _f(v: Any, fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _bins_text(bins: list[dict[str, Any]], unit: str) -> list[tuple[str, str]]:
    out = []
    for b in bins:
        hi = "inf" if b["high"] is None else f"{b['high']:g}"
        out.append(
            (
                f"defect recall, {unit} [{b['low']:g}, {hi})",
                "n/a (0 defects)" if not b["n"] else f"{b['recall']:.3f} ({b['detected']}/{b['n']})",
            )
        )
    return out


def table_rows(methods: Sequence[MethodResult]) -> list[tuple[str, list[str]]]:
    """The comparison table: ``(row label, one cell per method)``; the same rows in text, JSON-less and HTML."""
    sums = [m.summary() for m in methods]
    rows: list[tuple[str, list[str]]] = [
        (
            "operating point (threshold / min area)",
            [
                f"{s['operating_point']['threshold']:.4g} / {s['operating_point']['min_area']}"
                + ("" if s["operating_point"]["calibrated"] else " (uncalibrated)")
                for s in sums
            ],
        ),
        ("pixel AP", [_f(s["pixel_ap"]) for s in sums]),
        ("pixel AUROC", [_f(s["pixel_auroc"]) for s in sums]),
        ("image AUROC", [_f(s["image_auroc"]) for s in sums]),
        ("pixel F1 at operating point", [_f(s["f1_at_operating_point"]) for s in sums]),
        (
            "best pixel F1 (threshold)",
            [_f(s["best_f1"]) + ("" if s["best_f1"] is None else f" ({s['best_f1_threshold']:.4g})") for s in sums],
        ),
        ("defect recall", [_f(s["defect_recall"], ".3f") for s in sums]),
    ]
    rows += _ratio_rows(sums) + _kind_rows(sums)
    per_bin: dict[str, list[str]] = {}
    for s in sums:
        for label, cell in _bins_text(s["defect_recall_by_area"], "area px") + _bins_text(
            s["defect_recall_by_contrast"], "contrast"
        ):
            per_bin.setdefault(label, []).append(cell)
    rows += [(k, v) for k, v in per_bin.items() if len(v) == len(sums)]
    rows += _froc_rows(sums)
    rows += [
        ("false alarms per image", [_f(s["false_alarms_per_image"], ".3f") for s in sums]),
        ("defective images failed (image recall)", [_f(s["image_recall"], ".3f") for s in sums]),
        ("good images failed (false rejects)", [_f(s["false_reject_rate"], ".3f") for s in sums]),
        (
            "latency median / p95 (ms)",
            [f"{_f(s['latency_ms']['median'], '.1f')} / {_f(s['latency_ms']['p95'], '.1f')}" for s in sums],
        ),
    ]
    return rows


#: Rows for data sets with synthesised-defect annotations: (label, key in ``synthetic_defects``).
KIND_ROWS = (
    ("recall, weak defects |a|<=40", "recall_weak"),
    ("recall, weak defects 12<=|a|<=40", "recall_weak12"),
    ("recall, strong defects |a|>40", "recall_strong"),
    ("recall, defects missing from the target", "recall_missing"),
    ("flagged: defects in one reference only", "fa_one_ref"),
    ("flagged: defects in target + one reference", "fa_target_ref"),
    ("flagged: defects in all three dies", "fa_all"),
    ("image AUROC without faint-only strips", "image_auroc12"),
)


def _kind_rows(sums: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Per-kind rates at each method's best-F1 threshold (synthetic data sets only)."""
    if not any(s["synthetic_defects"] for s in sums):
        return []
    rows = []
    for label, key in KIND_ROWS:
        cells = []
        for s in sums:
            k = s["synthetic_defects"] or {}
            n = k.get(f"n_{key}")
            cells.append(_f(k.get(key), ".3f") + ("" if n is None else f" (of {n})"))
        rows.append((label if key == "image_auroc12" else f"{label} (best-F1 threshold)", cells))
    return rows


def _ratio_rows(sums: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Pixel AP as a multiple of double detection's: does the model earn its keep?"""
    base = next((s["pixel_ap"] for s in sums if s["kind"] == "baseline"), None)
    if not base:
        return []
    return [
        (
            "pixel AP / double detection's",
            [_f(None if s["pixel_ap"] is None else s["pixel_ap"] / base, ".2f") + "x" for s in sums],
        )
    ]


def verdict_lines(evaluation: Evaluation) -> list[str]:
    """One line per model: its pixel AP against double detection's, and whether it is ahead."""
    sums = [m.summary() for m in evaluation.methods]
    base = next((s["pixel_ap"] for s in sums if s["kind"] == "baseline"), None)
    out = []
    for s in sums:
        m = s["pixel_ap"]
        if s["kind"] == "model" and m is not None and base:
            verdict = "ahead of" if m > base else "BEHIND"
            out.append(
                f"pixel AP: {s['name']} {m:.4f} vs double detection {base:.4f} -> {m / base:.2f}x ({verdict} the baseline)"
            )
    return out


def _froc_rows(sums: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """FROC recall at each false-alarm rate, overall then per class (absent without boxes)."""
    frocs: list[dict[str, Any]] = [s["froc"] for s in sums if s.get("froc")]
    if not frocs or len(frocs) != len(sums):
        return []
    first = frocs[0]
    rows = []
    for key in first["recall"]:
        rows.append((f"FROC recall @ {key} FA/image", [_f(f["recall"][key], ".3f") for f in frocs]))
    points = " / ".join(first["recall"])
    for cls, entry in first["per_class"].items():
        cells = [" / ".join(_f(v, ".3f") for v in f["per_class"][cls]["recall"].values()) for f in frocs]
        rows.append((f"FROC recall @ {points} FA/image, {cls or 'no class'} ({entry['n_boxes']} boxes)", cells))
    return rows


def format_table(evaluation: Evaluation) -> str:
    """Plain-text table for the terminal."""
    names = [m.name for m in evaluation.methods]
    rows = table_rows(evaluation.methods)
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(n), *(len(r[1][k]) for r in rows)) for k, n in enumerate(names)]

    def line(label: str, cells: list[str]) -> str:
        return "  ".join([label.ljust(w0)] + [c.rjust(w) for c, w in zip(cells, widths)])

    ds = evaluation.dataset
    head = [f"data: {ds.root} ({ds.layout}): {len(ds.samples)} image(s), {ds.n_defect_images} defective"]
    head += [f"note: {n}" for n in ds.notes]
    return "\n".join(head + [line("", names)] + [line(a, b) for a, b in rows] + verdict_lines(evaluation))
