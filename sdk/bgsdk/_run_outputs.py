"""What ``bgsdk run --out DIR`` writes (columns documented in docs/sdk.md).

Per image: ``<stem>.heatmap.tiff`` (float32 probability), and unless
``--no-png`` ``<stem>.mask.png`` (255 where ``heatmap > threshold``) and
``<stem>.overlay.png`` (grey target, red defect pixels, yellow defect boxes).
Per run: ``defects.csv`` (one row per defect) and ``results.jsonl`` (one row
per image, failures included). The two tables are streamed to hidden temp
files and renamed into place on :meth:`RunWriter.close`, like every other
output (no half file under a final name).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._defects import DEFECT_FIELDS
from ._overlay import mask_png, overlay_rgb, write_png
from ._result import ErrorResult, Outcome
from .io import write_tiff

__all__ = [
    "RunWriter",
    "write_image_files",
    "result_row",
    "defect_rows",
    "HEATMAP_SUFFIX",
    "MASK_SUFFIX",
    "OVERLAY_SUFFIX",
    "DEFECTS_CSV",
    "RESULTS_JSONL",
    "CSV_COLUMNS",
    "RESULT_KEYS",
]

HEATMAP_SUFFIX = ".heatmap.tiff"
MASK_SUFFIX = ".mask.png"
OVERLAY_SUFFIX = ".overlay.png"
DEFECTS_CSV = "defects.csv"
RESULTS_JSONL = "results.jsonl"
CSV_COLUMNS = ("file",) + DEFECT_FIELDS
RESULT_KEYS = ("file", "ok", "verdict", "score", "n_defects", "threshold", "min_area", "ms", "error")


@dataclass
class _Table:
    final: Path
    tmp: Path
    handle: IO[str]


def _open_table(final: Path) -> _Table:
    tmp = final.with_name(f".{final.name}.tmp")
    return _Table(final, tmp, open(tmp, "w", newline="", encoding="utf-8"))


class RunWriter:
    """Writes one run's outputs; use as a context manager (tables renamed into place on exit)."""

    def __init__(self, out_dir: Path, png: bool = True) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self.png = png
        self._defects = _open_table(out_dir / DEFECTS_CSV)
        self._results = _open_table(out_dir / RESULTS_JSONL)
        self._csv = csv.writer(self._defects.handle)
        self._csv.writerow(CSV_COLUMNS)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add(self, path: Path, res: Outcome, ms: float, image: np.ndarray | None = None) -> None:
        """Record one outcome; ``image`` (the ``(3,H,W)`` input) is needed for the overlay PNG."""
        write_image_files(self.out_dir, path, res, self.png, image)
        self.add_rows(result_row(path, res, ms), defect_rows(path, res))

    def add_rows(self, row: dict[str, Any], defects: list[list[Any]]) -> None:
        """Append one image's ``results.jsonl`` row and ``defects.csv`` rows (files written elsewhere)."""
        self._csv.writerows(defects)
        self._results.handle.write(json.dumps(row) + "\n")

    def close(self) -> None:
        for t in (self._defects, self._results):
            if not t.handle.closed:
                t.handle.close()
                os.replace(t.tmp, t.final)


def write_image_files(out_dir: Path, path: Path, res: Outcome, png: bool, image: np.ndarray | None) -> None:
    """The per-image files of one outcome (none for an ``ErrorResult``); shared with ``bgsdk batch``."""
    if isinstance(res, ErrorResult):
        return
    stem = path.stem
    write_tiff(out_dir / f"{stem}{HEATMAP_SUFFIX}", res.heatmap)
    if png:
        write_png(out_dir / f"{stem}{MASK_SUFFIX}", mask_png(res.heatmap, res.threshold))
        if image is not None:
            write_png(out_dir / f"{stem}{OVERLAY_SUFFIX}", overlay_rgb(image, res.heatmap, res.threshold, res.defects))


def result_row(path: Path, res: Outcome, ms: float) -> dict[str, Any]:
    """One ``results.jsonl`` row (keys :data:`RESULT_KEYS`, in that order)."""
    row: dict[str, Any] = {"file": str(path), "ok": res.ok, "ms": round(ms, 3)}
    if isinstance(res, ErrorResult):
        row.update(verdict=None, score=None, n_defects=None, threshold=None, min_area=None, error=str(res.error))
    else:
        row.update(
            verdict=res.verdict,
            score=res.score,
            n_defects=len(res.defects),
            threshold=res.threshold,
            min_area=res.min_area,
            error=None,
        )
    return {k: row[k] for k in RESULT_KEYS}


def defect_rows(path: Path, res: Outcome) -> list[list[Any]]:
    """``defects.csv`` rows (columns :data:`CSV_COLUMNS`) of one outcome."""
    if isinstance(res, ErrorResult):
        return []
    rows = []
    for d in res.defects:
        rec = d.to_dict()
        rows.append([str(path)] + [_cell(rec[k]) for k in DEFECT_FIELDS])
    return rows


def _cell(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v
