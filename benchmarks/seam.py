"""How far inside a patch the network's output stops depending on the patch border (the patch-overlap choice).

A patch sees zero padding where a whole-image pass sees the neighbouring pixels, so
near a patch border the tiled output differs from the whole-image output. Stitching
keeps only pixels at least ``overlap // 2`` inside their patch; this script measures
the error as a function of that margin. For every patch of a zero-overlap grid over a
640x640 image (and its 128 px patch), it compares the patch model's output with one
whole-image forward pass (640 = 20 x 32: no padding) at each pixel, binned by the
pixel's distance to the nearest patch border that lies inside the image.

Reported per margin: the mean and max |difference| of the defect logit
(``logit1 - logit0``, scale-free) and of the defect probability, on a smooth
random texture and on uniform noise; then the margins the layouts keep: the
research strip (11 px rows, 40 px columns), and a 32 px minimum overlap (>= 16 px).

    python benchmarks/seam.py [--checkpoint best.pt] [--size 640] [--patch 128]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

MARGINS = (0, 1, 2, 4, 6, 8, 11, 16, 21, 24, 32, 40, 48, 63)


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    simd = [f for f in ("avx2", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return f"{model}; {' '.join(simd) or 'no avx2'}"


def inputs(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """(3,H,W) 0..255: a smooth texture (three dies, small independent noise) and uniform noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6.0)
    base = 40 + 170 * (base - base.min()) / (np.ptp(base) + 1e-9)
    smooth = np.stack([base + rng.normal(0, 2, base.shape) for _ in range(3)]).clip(0, 255)
    noise = rng.uniform(0, 255, (3, size, size))
    return {"smooth": smooth.astype(np.float32), "noise": noise.astype(np.float32)}


def margin_map(size: int, patch: int, y: int, x: int) -> np.ndarray:
    """Per patch pixel: distance to the nearest patch border that is not also the image border."""
    r = np.arange(patch)
    top = np.where(y == 0, np.inf, r)
    bottom = np.where(y + patch == size, np.inf, patch - 1 - r)
    left = np.where(x == 0, np.inf, r)
    right = np.where(x + patch == size, np.inf, patch - 1 - r)
    rows = np.minimum(top, bottom)[:, None]
    cols = np.minimum(left, right)[None, :]
    return np.minimum(rows, cols)


def measure(model: torch.nn.Module, img: np.ndarray, patch: int) -> dict[int, tuple[float, float, float, float]]:
    """margin -> (mean |dlogit|, max |dlogit|, mean |dprob|, max |dprob|)."""
    size = img.shape[1]
    x = torch.from_numpy(img / np.float32(255))[None]
    with torch.no_grad():
        whole = model(x)[0]
    d_logit = {m: [] for m in MARGINS}
    d_prob = {m: [] for m in MARGINS}
    for y in range(0, size - patch + 1, patch):
        for x0 in range(0, size - patch + 1, patch):
            with torch.no_grad():
                part = model(x[:, :, y : y + patch, x0 : x0 + patch])[0]
            ref = whole[:, y : y + patch, x0 : x0 + patch]
            dl = ((part[1] - part[0]) - (ref[1] - ref[0])).abs().numpy()
            dp = (torch.softmax(part, 0)[1] - torch.softmax(ref, 0)[1]).abs().numpy()
            mm = margin_map(size, patch, y, x0)
            for m in MARGINS:
                sel = mm == m
                if sel.any():
                    d_logit[m].append(dl[sel])
                    d_prob[m].append(dp[sel])
    out = {}
    for m in MARGINS:
        if d_logit[m]:
            a, b = np.concatenate(d_logit[m]), np.concatenate(d_prob[m])
            out[m] = (float(a.mean()), float(a.max()), float(b.mean()), float(b.max()))
    return out


def load_model(checkpoint: Path | None, width: int) -> tuple[torch.nn.Module, str]:
    if checkpoint is not None:
        from bgtrain.checkpoint import model_from_checkpoint

        model, info = model_from_checkpoint(checkpoint)
        return model.eval(), f"{checkpoint} (width {info.width}, stem {info.stem}, epoch {info.epoch})"
    from bgtrain.model import UNet

    torch.manual_seed(0)
    return UNet(base_width=width).eval(), f"random init, width {width}, stem plain"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--width", type=int, default=8, help="UNet width without --checkpoint")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, what = load_model(args.checkpoint, args.width)
    print(f"cpu: {cpu_flags()}; python {platform.python_version()}, torch {torch.__version__}")
    print(f"model: {what}; image {args.size}x{args.size}, patch {args.patch}")
    for name, img in inputs(args.size).items():
        res = measure(model, img, args.patch)
        far = res[max(res)][0]
        print(
            f"\n{name}: margin px | mean |dlogit| | max |dlogit| | mean |dprob| | max |dprob| | mean vs margin {max(res)}"
        )
        for m, (ml, xl, mp, xp) in res.items():
            print(f"  {m:3d} | {ml:.2e} | {xl:.2e} | {mp:.2e} | {xp:.2e} | x{ml / max(far, 1e-12):.1f}")


if __name__ == "__main__":
    main()
