"""``synth-dataset``: write a complete demo data set in the SPEC section 1 layout.

Training images are clean. Validation/test defect images carry target-only
defects whose shapes and strengths are drawn *wider* than the training
synthesiser's two given shapes (other sizes, sigmas, amplitudes, both signs), so
validation measures generalisation rather than recall of the training recipe.
Every image, good or not, also carries distractor defects copied into one or
both references -- background the model must learn to ignore.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from bgsdk.clikit import progress_enabled, run_cli, setup_logging, verbosity_options
from bgsdk.io import atomic_write, write_tiff
from bgsdk.tiling import IMAGE_TYPES

from .background import random_pattern, render_views
from .layout import DEFECT, GOOD, GT_DIR
from .synth import BOTH, REF1, REF2, Defect, DefectShape, apply_defects

__all__ = ["EvalDefectConfig", "make_image", "make_dataset", "main"]


@dataclass(frozen=True)
class EvalDefectConfig:
    """Defects of validation/test images: deliberately not the training recipe."""

    target_range: tuple[int, int] = (1, 3)
    distractor_range: tuple[int, int] = (1, 4)
    size_range: tuple[int, int] = (3, 7)
    sigma_range: tuple[float, float] = (0.7, 2.0)
    amplitude_range: tuple[float, float] = (35.0, 90.0)


def _random_shape(rng: np.random.Generator, cfg: EvalDefectConfig) -> DefectShape:
    lo, hi = cfg.size_range
    h, w = (int(v) | 1 for v in rng.integers(lo, hi + 1, size=2))  # odd sides: centred peak
    sy, sx = rng.uniform(*cfg.sigma_range, size=2)
    return DefectShape(h, w, float(sy), float(sx))


def _place(rng, h, w, shape, occupied) -> tuple[int, int] | None:
    for _ in range(50):
        y = int(rng.integers(0, h - shape.h + 1))
        x = int(rng.integers(0, w - shape.w + 1))
        region = occupied[max(y - 2, 0) : y + shape.h + 2, max(x - 2, 0) : x + shape.w + 2]
        if not region.any():
            region[...] = True
            return y, x
    return None


def make_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    defective: bool,
    distractors: bool = True,
    cfg: EvalDefectConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Defect]]:
    """One (4,H,W) float32 sample (channel 3 = an unused mask plane), its GT mask and defects."""
    cfg = cfg or EvalDefectConfig()
    img = render_views(random_pattern(rng), height, width, rng)
    occupied = np.zeros((height, width), dtype=bool)
    defects: list[Defect] = []
    n_target = int(rng.integers(cfg.target_range[0], cfg.target_range[1] + 1)) if defective else 0
    n_distract = int(rng.integers(cfg.distractor_range[0], cfg.distractor_range[1] + 1)) if distractors else 0
    for i in range(n_target + n_distract):
        shape = _random_shape(rng, cfg)
        where = _place(rng, height, width, shape, occupied)
        if where is None:
            continue
        amp = float(rng.uniform(*cfg.amplitude_range)) * float(rng.choice([-1.0, 1.0]))
        target_only = i < n_target
        refs = 0 if target_only else int(rng.choice([REF1, REF2, BOTH]))
        defects.append(Defect(where[0], where[1], shape, amp, target_only, refs))
    img, mask = apply_defects(img, defects)
    full = np.concatenate([img, np.zeros((1, height, width), np.float32)], axis=0)
    return full, mask, defects


def make_dataset(
    out_dir: str | Path,
    n_train: int = 16,
    n_valid: int = 8,
    n_test: int = 8,
    seed: int = 0,
    image_type: str = "strip",
    progress: bool = True,
) -> dict[str, object]:
    """Write the data set; return a summary (also saved as ``OUT_DIR/dataset.json``)."""
    from tqdm import tqdm

    t = IMAGE_TYPES[image_type]
    root = Path(out_dir)
    gt_dir = root / GT_DIR / DEFECT
    jobs: list[tuple[str, str, bool]] = [("train", f"train_{i:04d}", False) for i in range(n_train)]
    for split, n in (("valid", n_valid), ("test", n_test)):
        # First half good, second half defective (at least one of each when n >= 2).
        n_bad = n - n // 2
        jobs += [(split, f"{split}_{i:04d}", i >= n - n_bad) for i in range(n)]
    counts: dict[str, int] = {}
    n_defects = 0
    defect_pixels = 0
    ss = np.random.SeedSequence(seed)
    for (split, stem, defective), child in zip(
        tqdm(jobs, desc="synth-dataset", unit="img", disable=not progress), ss.spawn(len(jobs))
    ):
        rng = np.random.default_rng(child)
        img, mask, defects = make_image(rng, t.height, t.width, defective, distractors=split != "train")
        sub = DEFECT if defective else GOOD
        write_tiff(root / split / sub / f"{stem}.tiff", img)
        if defective:
            write_tiff(gt_dir / f"{stem}.tiff", (mask * 255).astype(np.uint8))
            n_defects += sum(d.target_only for d in defects)
            defect_pixels += int(mask.sum())
        key = f"{split}/{sub}"
        counts[key] = counts.get(key, 0) + 1
    summary = {
        "root": str(root),
        "image_type": image_type,
        "image_size": [t.height, t.width],
        "seed": seed,
        "counts": counts,
        "target_only_defects": n_defects,
        "defect_pixels": defect_pixels,
    }
    atomic_write(root / "dataset.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
    return summary


@click.command(name="synth-dataset")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n-train", default=16, show_default=True, type=click.IntRange(1), help="Clean training images.")
@click.option("--n-valid", default=8, show_default=True, type=click.IntRange(0), help="Validation images (half with defects).")
@click.option("--n-test", default=8, show_default=True, type=click.IntRange(0), help="Test images (half with defects).")
@click.option("--seed", default=0, show_default=True, type=int, help="Makes the data set reproducible.")
@click.option("--image-type", default="strip", show_default=True, type=click.Choice(sorted(IMAGE_TYPES)))
@verbosity_options
def cli(out_dir: Path, n_train: int, n_valid: int, n_test: int, seed: int, image_type: str, verbose: int, quiet: bool) -> None:
    """Write a synthetic demo data set to OUT_DIR.

    Layout: train/good (clean), valid/{good,bright_spots}, test/{good,bright_spots},
    ground_truth/bright_spots (masks, uint8 0/255). Images are 4-channel float32
    TIFFs, channel-first: target, ref1, ref2 and an unused mask plane.
    """
    setup_logging(verbose, quiet)
    s = make_dataset(out_dir, n_train, n_valid, n_test, seed, image_type, progress=progress_enabled(quiet))
    if not quiet:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(s["counts"].items()))
        click.echo(
            f"wrote {sum(s['counts'].values())} {image_type} images to {out_dir} ({parts}); "
            f"{s['target_only_defects']} target-only defects, {s['defect_pixels']} defect pixels"
        )


def main(argv: list[str] | None = None) -> None:
    run_cli(cli, argv, "synth-dataset")


if __name__ == "__main__":  # pragma: no cover
    main()
