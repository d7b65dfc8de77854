"""The self-contained HTML report of ``bgsdk evaluate --html``.

One file, nothing fetched: pictures are PNGs embedded as ``data:`` URIs
(:mod:`bgsdk._png`), charts are inline SVG (:mod:`bgsdk.evaluate.svgplot`), so it opens
anywhere and can be mailed. Sections: the metrics table, pixel precision-recall
and ROC curves of each model vs double detection, the latency histogram, a
model card per model, and 7-panel pictures of the images that went worst first
(missed defects, then false alarms). A few lines of inline script check on
load that every picture decoded and log a console error otherwise -- the
Chromium test reads the console.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from .._png import encode_png
from ..io import atomic_write
from .evaluation import Evaluation, MethodResult, table_rows
from .figures import method_panel
from .metrics import pixel_pr_curve
from .panels import PANEL_TITLES
from .svgplot import histogram, line_chart

__all__ = ["render_html", "write_report", "rank_images", "DEFAULT_MAX_IMAGES"]

DEFAULT_MAX_IMAGES = 12

_CSS = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:16px}.note{color:#8a4b00}
figure{margin:0 0 18px}figcaption{font-size:13px;margin:4px 0}
img.panel{image-rendering:pixelated;border:1px solid #ddd}.legend{font-size:12px;color:#555}
"""

_CHECK = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), ok = 0;
  imgs.forEach(function (im) {
    if (im.complete && im.naturalWidth > 0) { ok += 1; } else { console.error('image failed to load: ' + im.alt); }
  });
  document.body.setAttribute('data-images-ok', ok + '/' + imgs.length);
});
"""


def _png_uri(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb)).decode("ascii")


def _roc_points(m: MethodResult, masks: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every cut through a defect-pixel score, plus (0,0) and (1,1)."""
    all_sorted = np.sort(np.concatenate([h.ravel() for h in m.heatmaps]).astype(np.float32))
    pos = np.sort(np.concatenate([h[mk] for h, mk in zip(m.heatmaps, masks) if mk is not None]).astype(np.float32))
    t = np.unique(pos)[::-1]
    tp = pos.size - np.searchsorted(pos, t, side="left")
    pred = all_sorted.size - np.searchsorted(all_sorted, t, side="left")
    n_neg = max(all_sorted.size - pos.size, 1)
    fpr = np.concatenate([[0.0], (pred - tp) / n_neg, [1.0]])
    tpr = np.concatenate([[0.0], tp / pos.size, [1.0]])
    return fpr, tpr


def _curves(ev: Evaluation) -> str:
    ds = ev.dataset
    if ds.n_defect_images == 0:
        return '<p class="note">Precision-recall and ROC curves need defective images with masks: not drawn.</p>'
    pr, roc = [], []
    for m in ev.methods:
        _, precision, recall = pixel_pr_curve(m.heatmaps, ds.masks)
        pr.append((m.name, recall, precision))
        fpr, tpr = _roc_points(m, ds.masks)
        roc.append((m.name, fpr, tpr))
    return (
        '<div class="charts">'
        + line_chart("pixel precision-recall", "recall", "precision", pr)
        + line_chart("pixel ROC", "false-positive rate", "true-positive rate", roc)
        + "</div>"
    )


def _table(ev: Evaluation) -> str:
    head = "".join(f"<th>{escape(m.name)}</th>" for m in ev.methods)
    body = "".join(
        f"<tr><td>{escape(label)}</td>" + "".join(f'<td class="num">{escape(c)}</td>' for c in cells) + "</tr>"
        for label, cells in table_rows(ev.methods)
    )
    return f'<table id="metrics"><tr><th>metric</th>{head}</tr>{body}</table>'


def _cards(ev: Evaluation) -> str:
    out = []
    for m in ev.methods:
        if m.kind != "model":
            continue
        rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in m.card.items())
        out.append(f'<h3>{escape(m.name)}</h3><table class="card">{rows}</table>')
    return "".join(out)


@dataclass(frozen=True)
class ImageRank:
    index: int
    missed: int
    false_alarms: int
    score: float


def rank_images(m: MethodResult, masks: list[np.ndarray | None]) -> list[ImageRank]:
    """Worst first: images with missed defects (most, then lowest peak), then false alarms, then the rest."""
    from .._operating_point import point_metrics

    missed = np.zeros(len(m.heatmaps), int)
    for g in m.gt:
        missed[g.image_index] += not g.detected
    ranks = []
    for i, (h, mk) in enumerate(zip(m.heatmaps, masks)):
        fa = point_metrics([h], [mk], m.point.threshold, m.point.min_area).false_alarms
        ranks.append(ImageRank(i, int(missed[i]), fa, float(h.max())))
    return sorted(ranks, key=lambda r: (-r.missed, -r.false_alarms, -r.score if r.false_alarms else r.score))


def _pictures(ev: Evaluation, max_images: int) -> str:
    models = [m for m in ev.methods if m.kind == "model"]
    if not models or max_images <= 0:
        return ""
    m, ds = models[0], ev.dataset
    ranks = rank_images(m, ds.masks)[:max_images]
    out = [
        f'<p class="legend">Panels: {escape(", ".join(PANEL_TITLES))} ({escape(m.name)}), half resolution. '
        "Yellow boxes: defects reported at the operating point; green: ground truth. "
        f"Showing {len(ranks)} of {len(ds.samples)} image(s), worst first.</p>"
    ]
    for r in ranks:
        s = ds.samples[r.index]
        rgb, found = method_panel(m, s, r.index)
        verdict = "fail" if found else "pass"
        label = "defective" if s.defective else "good"
        cap = (
            f"{s.path.name} ({label}): {verdict}, score {r.score:.3f}, {len(found)} defect(s), "
            f"{r.missed} missed, {r.false_alarms} false alarm(s)"
        )
        out.append(
            f'<figure><figcaption>{escape(cap)}</figcaption><img class="panel" alt="{escape(s.path.name)}" '
            f'width="{rgb.shape[1]}" height="{rgb.shape[0]}" src="{_png_uri(rgb)}"></figure>'
        )
    return "".join(out)


def _froc_legend(ev: Evaluation) -> str:
    """What the FROC rows mean (they are in the metrics table when the data set has boxes or masks)."""
    froc = next((m.froc for m in ev.methods if m.froc is not None), None)
    if froc is None:
        return ""
    rule = froc.summary()["rule"]
    return (
        f'<p class="legend" id="froc">FROC: recall of the {froc.n_boxes} annotated defect(s) at most 0.5 / 1 / 2 '
        f"false alarms per image over a threshold sweep of each heatmap ({escape(rule)}); "
        "double detection is min(|T-R1|,|T-R2|)/255.</p>"
    )


def render_html(ev: Evaluation, max_images: int = DEFAULT_MAX_IMAGES, title: str = "bgsdk evaluation") -> str:
    ds = ev.dataset
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in ds.notes)
    notes += "".join(
        f'<p class="note">{escape(m.name)}: operating point {escape(m.point.note)}</p>'
        for m in ev.methods
        if m.point.note
    )
    lat = histogram("latency per image", "ms", [(m.name, m.latencies_ms) for m in ev.methods])
    parts: list[Any] = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<link rel="icon" href="data:,">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>Data: {escape(str(ds.root))} ({escape(ds.layout)}): {len(ds.samples)} image(s), "
        f"{ds.n_defect_images} defective.</p>",
        notes,
        "<h2>Metrics</h2>",
        _table(ev),
        _froc_legend(ev),
        "<h2>Curves</h2>",
        _curves(ev),
        "<h2>Latency</h2>",
        f'<div class="charts">{lat}</div>',
        "<h2>Model card</h2>",
        _cards(ev),
        "<h2>Images</h2>",
        _pictures(ev, max_images),
        f"<script>{_CHECK}</script></body></html>",
    ]
    return "".join(parts)


def write_report(ev: Evaluation, path: Path, max_images: int = DEFAULT_MAX_IMAGES) -> Path:
    """Render and write atomically."""
    html = render_html(ev, max_images)
    return atomic_write(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
