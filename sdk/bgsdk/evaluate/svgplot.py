"""Tiny inline-SVG charts for the HTML report (no matplotlib: the runtime stays slim).

Only what the report needs: line charts on [0,1]x[0,1] axes (PR and ROC curves)
and a histogram. Output is a ``<svg>`` string to paste into HTML.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

import numpy as np

__all__ = ["PALETTE", "line_chart", "histogram"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f")
_W, _H, _L, _R, _T, _B = 420, 320, 52, 12, 28, 44


def _axes(
    title: str, xlabel: str, ylabel: str, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]]
) -> list[str]:
    pw, ph = _W - _L - _R, _H - _T - _B
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<rect x="{_L}" y="{_T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>',
    ]
    for v, lab in xticks:
        x = _L + v * pw
        parts.append(
            f'<line x1="{x:.1f}" y1="{_T + ph}" x2="{x:.1f}" y2="{_T + ph + 4}" stroke="#444"/>'
            f'<text x="{x:.1f}" y="{_T + ph + 16}" text-anchor="middle">{escape(lab)}</text>'
        )
    for v, lab in yticks:
        y = _T + ph - v * ph
        parts.append(
            f'<line x1="{_L - 4}" y1="{y:.1f}" x2="{_L}" y2="{y:.1f}" stroke="#444"/>'
            f'<line x1="{_L}" y1="{y:.1f}" x2="{_L + pw}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{_L - 7}" y="{y + 4:.1f}" text-anchor="end">{escape(lab)}</text>'
        )
    parts.append(
        f'<text x="{_L + pw / 2}" y="{_H - 8}" text-anchor="middle">{escape(xlabel)}</text>'
        f'<text transform="translate(13,{_T + ph / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>'
    )
    return parts


def _thin(x: np.ndarray, y: np.ndarray, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= n:
        return x, y
    idx = np.unique(np.linspace(0, x.size - 1, n).round().astype(int))
    return x[idx], y[idx]


def line_chart(title: str, xlabel: str, ylabel: str, series: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> str:
    """Curves with x and y in [0,1], one colour per series, legend bottom right."""
    ticks = [(v, f"{v:.1f}") for v in np.linspace(0, 1, 6)]
    parts = _axes(title, xlabel, ylabel, ticks, ticks)
    pw, ph = _W - _L - _R, _H - _T - _B
    for k, (name, xs, ys) in enumerate(series):
        x, y = _thin(np.clip(np.asarray(xs, float), 0, 1), np.clip(np.asarray(ys, float), 0, 1))
        pts = " ".join(f"{_L + a * pw:.1f},{_T + ph - b * ph:.1f}" for a, b in zip(x, y))
        colour = PALETTE[k % len(PALETTE)]
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        ly = _T + ph - 10 - 15 * (len(series) - 1 - k)
        parts.append(
            f'<line x1="{_L + pw - 150}" y1="{ly}" x2="{_L + pw - 132}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="3"/><text x="{_L + pw - 128}" y="{ly + 4}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(title: str, xlabel: str, series: Sequence[tuple[str, Sequence[float]]], bins: int = 20) -> str:
    """Overlaid histograms (counts) of several series on a shared range."""
    vals = [np.asarray(v, float) for _, v in series]
    allv = np.concatenate(vals) if vals else np.zeros(1)
    lo, hi = float(allv.min()), float(allv.max())
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts = [np.histogram(v, edges)[0] for v in vals]
    top = max(int(max((c.max() for c in counts), default=1)), 1)
    xt = [(i / 4, f"{lo + (hi - lo) * i / 4:.3g}") for i in range(5)]
    yt = [(i / 4, f"{top * i / 4:.3g}") for i in range(5)]
    parts = _axes(title, xlabel, "images", xt, yt)
    pw, ph = _W - _L - _R, _H - _T - _B
    bw = pw / bins
    for k, ((name, _), c) in enumerate(zip(series, counts)):
        colour = PALETTE[k % len(PALETTE)]
        for i, n in enumerate(c):
            if n:
                h = n / top * ph
                parts.append(
                    f'<rect x="{_L + i * bw:.1f}" y="{_T + ph - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                    f'fill="{colour}" fill-opacity="0.45" stroke="{colour}"/>'
                )
        ly = _T + 12 + 15 * k
        parts.append(
            f'<rect x="{_L + pw - 150}" y="{ly - 8}" width="12" height="10" fill="{colour}"/>'
            f'<text x="{_L + pw - 133}" y="{ly + 1}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
