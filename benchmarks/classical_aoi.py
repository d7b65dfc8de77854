"""A classical AOI baseline: register, subtract, take the minimum over references, open -- scored next to
double detection (and optionally built models) on a labelled data set.

Command (results in docs/model-card.md)::

    .venv/bin/python benchmarks/classical_aoi.py DATA [--split test] [--model model.onnx ...] [--block-rows 128]

Why: double detection ``min(|T-R1|, |T-R2|)`` assumes registered dies; on a real line, with dies off by
pixels, it fires along every pattern edge, so beating it says little. What an AOI machine does instead is
the yardstick here (:func:`classical_aoi`): each reference registered to the target by windowed
cross-correlation within +-8 px and upsampled phase correlation for the sub-pixel rest
(``skimage.registration.phase_cross_correlation``), resampled (``scipy.ndimage.shift``),
``|T - R|`` per reference, the minimum over references (a defect differs from both), then a grey opening
(``scipy.ndimage.grey_opening``, 5x5 by default) that removes the thin residue registration leaves along
edges (and defects smaller than the structuring element -- the classical trade-off). ``--block-rows``
registers each band of that many rows on its own (misregistration drifts along a strip). Scored with the
SDK's metrics (``bgsdk.evaluate.metrics``): pixel AP and AUROC, image AUROC, best F1; other benchmark scripts can
import :func:`classical_aoi`.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["register_reference", "classical_aoi", "score", "main"]


def register_reference(
    target: np.ndarray, reference: np.ndarray, upsample: int = 20, max_shift: int = 8
) -> tuple[np.ndarray, tuple[float, float]]:
    """``reference`` resampled onto ``target`` (bilinear, edges replicated) and the ``(dy, dx)`` applied.

    Cross-correlation (FFT) of mean-removed, Hann-windowed dies (the window keeps the crop edges'
    wrap-around out of it and favours small shifts), searched like an AOI machine does: the whole-pixel
    peak only within ``+-max_shift`` px (a periodic pattern has equal peaks a period apart, stripes a ridge
    along their direction: the global peak of whitened phase correlation sat up to 200 px away on such
    strips), then ``skimage.registration.phase_cross_correlation`` (upsampled, not whitened) on the
    whole-pixel-aligned pair for the sub-pixel rest (ignored if it jumps by more than a pixel)."""
    from skimage.registration import phase_cross_correlation

    h, w = target.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    t = (target - target.mean()) * window
    r = (reference - reference.mean()) * window
    cross = np.fft.fft2(t) * np.conj(np.fft.fft2(r))
    corr = np.real(np.fft.ifft2(cross))
    k = np.arange(-max_shift, max_shift + 1)
    local = corr[np.ix_(k % h, k % w)]
    iy, ix = np.unravel_index(int(np.argmax(local)), local.shape)
    whole = np.array([k[iy], k[ix]], dtype=np.float64)
    coarse = ndimage.shift(reference.astype(np.float64), whole, order=0, mode="nearest")
    with warnings.catch_warnings():  # its error estimate (unused) warns on a flat die
        warnings.filterwarnings("ignore", message="Could not determine RMS error")
        rest, _, _ = phase_cross_correlation(
            t, (coarse - coarse.mean()) * window, upsample_factor=upsample, normalization=None
        )
    shift = whole + (rest if np.abs(rest).max() <= 1.0 else 0.0)
    moved = ndimage.shift(reference.astype(np.float64), shift, order=1, mode="nearest")
    return moved, (float(shift[0]), float(shift[1]))


def classical_aoi(image: np.ndarray, opening: int = 5, block_rows: int | None = None, upsample: int = 20) -> np.ndarray:
    """``(3,H,W)`` target/ref1/ref2 (0..255) -> ``(H,W)`` float32 heatmap in grey levels.

    ``min over refs |T - registered R|``, grey-opened with an ``opening`` x ``opening`` square (1 = none).
    ``block_rows``: register bands of that many rows separately (default: the whole image at once).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"image must be (3,H,W) target/ref1/ref2, got shape {img.shape}")
    h = img.shape[1]
    step = block_rows or h
    diff = np.empty(img.shape[1:], np.float64)
    for y0 in range(0, h, step):
        band = img[:, y0 : y0 + step]
        t = band[0]
        per_ref = [np.abs(t - register_reference(t, band[c], upsample)[0]) for c in (1, 2)]
        diff[y0 : y0 + step] = np.minimum(*per_ref)
    out = ndimage.grey_opening(diff, size=(opening, opening)) if opening > 1 else diff
    return out.astype(np.float32)


def score(
    heatmaps: list[np.ndarray], masks: list, defective: list[bool], boxes: list | None = None
) -> dict[str, float | None]:
    """The SDK's numbers for one method (no second implementation of AP or FROC here).

    With ``boxes`` (one list per image, as ``bgsdk evaluate`` reads them) also the FROC recall at 1 false
    alarm per image, the model card's third cell."""
    from bgsdk.evaluate.froc import froc_curve
    from bgsdk.evaluate.metrics import best_f1_threshold, evaluate

    m = evaluate(heatmaps, masks, defective)
    best = best_f1_threshold(heatmaps, masks) if any(defective) else None
    froc = froc_curve(heatmaps, boxes) if boxes is not None and any(boxes) else None
    return {
        "pixel_ap": m.pixel_ap,
        "pixel_auroc": m.pixel_auroc,
        "image_auroc": m.image_auroc,
        "best_f1": None if best is None else best.f1,
        "froc_recall_1": None if froc is None else froc.recall_at(1.0),
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def main() -> None:
    from bgsdk.evaluate.evaluation import load_dataset
    from bgsdk.io import read_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "data", type=Path, help="a labelled data set (the data set layout of docs/data.md, e.g. bgsdk synth's)"
    )
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", type=Path, nargs="*", default=[], help="built models to score alongside")
    ap.add_argument("--opening", type=int, default=5, help="side of the grey opening's square (1 = none)")
    ap.add_argument("--block-rows", type=int, default=None, help="register bands of this many rows separately")
    a = ap.parse_args()
    ds = load_dataset(a.data, a.split)
    defective = [s.defective for s in ds.samples]
    maps: dict[str, list[np.ndarray]] = {"double detection": [np.asarray(b) for b in ds.baseline]}
    seconds: dict[str, float] = {"double detection": float("nan")}
    images = [read_image(s.path) for s in ds.samples]
    t0 = time.perf_counter()
    maps["classical AOI"] = [classical_aoi(im, a.opening, a.block_rows) for im in images]
    seconds["classical AOI"] = (time.perf_counter() - t0) / len(images)
    for path in a.model:
        from bgsdk import Segmenter

        seg = Segmenter(path)
        t0 = time.perf_counter()
        maps[path.name] = [seg.run(im).heatmap for im in images]
        seconds[path.name] = (time.perf_counter() - t0) / len(images)
    rows = {name: score(m, ds.masks, defective, ds.boxes) for name, m in maps.items()}
    dd = rows["double detection"]
    print(f"{a.data} split {a.split}: {len(images)} strips, {ds.n_defect_images} with defects")
    print(f"classical AOI: opening {a.opening}x{a.opening}, registration per {a.block_rows or 'image'} rows")
    print(
        "| method | pixel AP | vs double detection | pixel AUROC | image AUROC | best F1 "
        "| FROC recall at 1 FA/image | s per strip |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ratio = f"{r['pixel_ap'] / dd['pixel_ap']:.2f}x" if r["pixel_ap"] and dd["pixel_ap"] else "-"
        cells = [_fmt(r["pixel_ap"]), ratio, _fmt(r["pixel_auroc"]), _fmt(r["image_auroc"]), _fmt(r["best_f1"])]
        cells.append(_fmt(r["froc_recall_1"]))
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds[name]:.3f} |")


if __name__ == "__main__":
    main()
