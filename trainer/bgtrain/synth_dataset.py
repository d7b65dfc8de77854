"""``bgsdk synth OUT_DIR`` (alias ``synth-dataset``): write a complete demo data set in the data set layout (docs/data.md).

Training images are clean (defects are synthesised on the fly by the training
recipe). Validation/test images are built so their numbers mean something for
new data: another random stream, backgrounds partly of kinds no training image
uses (``HOLDOUT_KINDS``), stronger misregistration, and defects drawn *wider*
than any training recipe (other amplitudes, sizes, shapes), in every case the
odd-die-out rule separates -- labelled: in the target only, or missing from the
target while both references show it; not labelled: in one reference only, in
the target and one reference, in all three dies. Each defect is listed with its
kind, amplitude and box in ``ROOT/annotations/<split>.json`` so validation can
report recall and false alarms per kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

import click
import numpy as np
from scipy import ndimage

from bgsdk._dataset_layout import ANNOTATIONS_DIR, DEFECT, GOOD, GT_DIR
from bgsdk.cli._lazy import alias_command
from bgsdk.cli._options import command, common_options, progress_enabled, run_cli, setup_logging
from bgsdk.io import atomic_write, write_tiff
from bgsdk.tiling import IMAGE_TYPES

from .background import (
    EVAL_KINDS,
    HOLDOUT_KINDS,
    LEAVES_KINDS,
    TRAIN_KINDS,
    TRAIN_MISREGISTRATION,
    PatternParams,
    PhotographsUnavailable,
    add_noise,
    check_photographs,
    random_pattern,
    render_views,
)
from .recipe import Recipe
from .synth import Defect, apply_defects, plan_defects

__all__ = [
    "EVAL_RECIPE",
    "EVAL_LEVELS",
    "IMAGING_LEVELS",
    "ImagingLevel",
    "NOMINAL_RECIPE",
    "BACKGROUNDS",
    "make_image",
    "make_dataset",
    "annotation",
    "main",
]

# Defects of validation/test images: every kind, and knobs partly outside the training ranges.
EVAL_RECIPE = Recipe(
    name="eval",
    defect_prob=1.0,
    missing_prob=0.3,
    distractor_weights=(1.0, 1.0, 1.0, 1.0, 1.0),
    copy_jitter=0.1,
    amplitudes=(),
    amplitude_range=(8.0, 120.0),
    shapes="family",
    sigma_range=(0.4, 3.0),
    max_aspect=4.0,
    max_footprint=11,
    line_prob=0.2,
    cluster_prob=0.15,
    edge_prob=0.5,
)
# The same kinds of defect inside the ranges the accuracy criteria give for held-out strips (|a| 12-100, sigma 0.5-2.5,
# aspect <= 3, footprints <= 9, per-die shifts of a few tenths of a pixel): ``--eval-level nominal``. It
# tells a model's shortfall on the hard sets apart from theirs being harder than the data it will meet.
NOMINAL_RECIPE = Recipe.from_dict(
    {
        "name": "eval-nominal",
        "amplitude_range": [12.0, 100.0],
        "sigma_range": [0.5, 2.5],
        "max_aspect": 3.0,
        "max_footprint": 9,
    },
    base=EVAL_RECIPE,
)


@dataclass(frozen=True)
class ImagingLevel:
    """What a real line does to the dies on top of a level's defects and sub-pixel misregistration:
    each reference misregistered by whole pixels (a global shift uniform in +-``shift_max`` px per axis that
    drifts by up to +-``drift`` px from one end of the strip to the other), every die with its own focus
    (Gaussian blur, sigma uniform in 0..``blur_sigma``) and exposure (gain 1 +- ``gain``, offset +-``offset``
    grey levels). The references are resampled by cubic splines over a margin the strip is then cut from,
    so their borders carry real pattern; defects move with their die (they go in first)."""

    shift_max: float = 3.0
    drift: float = 0.5
    blur_sigma: float = 1.2
    gain: float = 0.15
    offset: float = 12.0


# eval level -> (defect recipe, range of the per-view misregistration std in px) of valid/test strips
EVAL_LEVELS: dict[str, tuple[Recipe, tuple[float, float]]] = {
    "hard": (EVAL_RECIPE, (0.05, 0.6)),
    "nominal": (NOMINAL_RECIPE, (0.05, 0.3)),
    # the nominal defects on strips imaged as a real line images them: whole-pixel misregistration up to
    # 3.5 px, per-die blur and exposure differences (``--eval-level imaging``)
    "imaging": (NOMINAL_RECIPE, (0.05, 0.3)),
}
# levels with imaging differences beyond the sub-pixel misregistration of the rendering
IMAGING_LEVELS: dict[str, ImagingLevel] = {"imaging": ImagingLevel()}
LABELLED_RANGE = (1, 3)  # labelled defects per defective image
DISTRACTOR_RANGE = (2, 5)  # not-labelled defects per image (good ones too)
# Which backgrounds each split draws from: "train" = the training kinds (scattered spots since
# 2026-11-28), "mixed" = training kinds and unseen kinds. "leaves" = the training kinds of the
# days before spots joined, "classic" = those before dead leaves joined them (to reproduce older rows
# of docs/experiments/). Ablation sets (docs/experiments/): "leaves-heavy" draws dead leaves 3x as often (a kind
# listed three times is drawn three times as often); "photo" swaps them for dead leaves with a 1/f grain;
# "speckle" is the first name of today's "train" (the very same strips).
# "photographs": real photographs only (background.PHOTOGRAPHS; evaluation sets, needs scikit-image).
BACKGROUNDS = {
    "train": TRAIN_KINDS,
    "leaves": LEAVES_KINDS,
    "classic": EVAL_KINDS,
    "leaves-heavy": LEAVES_KINDS + ("leaves", "leaves"),
    "photo": EVAL_KINDS + ("photo",),
    "speckle": TRAIN_KINDS,
    "mixed": EVAL_KINDS + HOLDOUT_KINDS,
    "holdout": HOLDOUT_KINDS,
    "photographs": ("photograph",),
}


def annotation(d: Defect, mask_threshold: float) -> dict[str, Any]:
    """JSON record of one defect: kind, label, amplitude, shape and footprint box [y0,x0,y1,x1)."""
    rows = np.flatnonzero((d.kernel > mask_threshold).any(axis=1))
    cols = np.flatnonzero((d.kernel > mask_threshold).any(axis=0))
    return {
        "kind": d.kind,
        "labelled": d.labelled,
        "amplitude": round(float(d.amplitude), 2),
        "shape": d.shape,
        "box": [d.y + int(rows[0]), d.x + int(cols[0]), d.y + int(rows[-1]) + 1, d.x + int(cols[-1]) + 1],
    }


def _eval_defects(
    rng: np.random.Generator, target: np.ndarray, defective: bool, recipe: Recipe = EVAL_RECIPE
) -> list[Defect]:
    n_label = int(rng.integers(LABELLED_RANGE[0], LABELLED_RANGE[1] + 1)) if defective else 0
    n_other = int(rng.integers(DISTRACTOR_RANGE[0], DISTRACTOR_RANGE[1] + 1))
    r = Recipe.from_dict({"num_defects_range": [n_label + n_other] * 2, "target_range": [n_label] * 2}, base=recipe)
    return plan_defects(target, rng, r)


def make_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    defective: bool,
    distractors: bool = True,
    kinds: tuple[str, ...] = TRAIN_KINDS,
    misregistration: tuple[float, float] = TRAIN_MISREGISTRATION,
    recipe: Recipe = EVAL_RECIPE,
    imaging: ImagingLevel | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Defect], PatternParams]:
    """One (4,H,W) float32 sample (channel 3 = an unused mask plane), its GT mask, defects and background.

    Defects go in before the sensor noise, so they are as noisy as their die. The background's
    parameters come back so a data set can record each strip's kind and misregistration: accuracy
    per background kind is what says which patterns a model has not learnt. ``imaging`` adds a real
    line's imaging differences (:class:`ImagingLevel`); without it the draws are what they always were.
    """
    if imaging is not None:
        return _image_like_a_line(rng, height, width, defective, distractors, kinds, misregistration, recipe, imaging)
    p = random_pattern(rng, kinds, misregistration)
    img = render_views(p, height, width, rng, noise=False)
    defects = _eval_defects(rng, img[0], defective, recipe) if (defective or distractors) else []
    img, mask = apply_defects(img, defects, recipe.mask_threshold)
    img = add_noise(img, p, rng)
    full = np.concatenate([img, np.zeros((1, height, width), np.float32)], axis=0)
    return full, mask, defects, p


def _image_like_a_line(
    rng: np.random.Generator,
    height: int,
    width: int,
    defective: bool,
    distractors: bool,
    kinds: tuple[str, ...],
    misregistration: tuple[float, float],
    recipe: Recipe,
    level: ImagingLevel,
) -> tuple[np.ndarray, np.ndarray, list[Defect], PatternParams]:
    """:func:`make_image` for an :class:`ImagingLevel`: rendered with a margin, defects in, each reference
    moved by its drifting whole-pixel shift, every die blurred and exposed on its own, cut, noise added."""
    m = int(np.ceil(level.shift_max + level.drift)) + 4
    p = random_pattern(rng, kinds, misregistration)
    big = render_views(p, height + 2 * m, width + 2 * m, rng, noise=False)
    defects = _eval_defects(rng, big[0, m:-m, m:-m], defective, recipe) if (defective or distractors) else []
    placed = [replace(d, y=d.y + m, x=d.x + m) for d in defects]
    big, mask = apply_defects(big, placed, recipe.mask_threshold)
    rows = np.linspace(-0.5, 0.5, height + 2 * m)[:, None]
    grid = np.mgrid[0 : height + 2 * m, 0 : width + 2 * m].astype(np.float64)
    for c in (1, 2):
        shift = rng.uniform(-level.shift_max, level.shift_max, size=2)
        drift = rng.uniform(-level.drift, level.drift, size=2)
        coords = [grid[a] + shift[a] + drift[a] * 2 * rows for a in range(2)]
        big[c] = ndimage.map_coordinates(big[c].astype(np.float64), coords, order=3, mode="mirror")
    for c in range(3):
        sigma = rng.uniform(0.0, level.blur_sigma)
        die = ndimage.gaussian_filter(big[c].astype(np.float64), sigma) if sigma > 0.05 else big[c]
        gain, offset = 1.0 + rng.uniform(-level.gain, level.gain), rng.uniform(-level.offset, level.offset)
        big[c] = gain * die + offset
    img = np.clip(big[:, m:-m, m:-m], 0.0, 255.0).astype(np.float32)
    img = add_noise(img, p, rng)
    full = np.concatenate([img, np.zeros((1, height, width), np.float32)], axis=0)
    return full, mask[m:-m, m:-m], defects, p


def _jobs(n_train: int, n_valid: int, n_test: int) -> list[tuple[str, str, bool]]:
    """``(split, stem, defective)`` per image, in the order they are generated (one seed each)."""
    jobs: list[tuple[str, str, bool]] = [("train", f"train_{i:04d}", False) for i in range(n_train)]
    for split, n in (("valid", n_valid), ("test", n_test)):
        # First half good, second half defective (at least one of each when n >= 2).
        n_bad = n - n // 2
        jobs += [(split, f"{split}_{i:04d}", i >= n - n_bad) for i in range(n)]
    return jobs


def make_dataset(
    out_dir: str | Path,
    n_train: int = 64,
    n_valid: int = 24,
    n_test: int = 24,
    seed: int = 0,
    image_type: str = "strip",
    progress: bool = True,
    eval_backgrounds: str = "mixed",
    train_backgrounds: str = "train",
    eval_level: str = "hard",
) -> dict[str, object]:
    """Write the data set; return a summary (also saved as ``OUT_DIR/dataset.json``)."""
    from tqdm import tqdm

    t = IMAGE_TYPES[image_type]
    root = Path(out_dir)
    gt_dir = root / GT_DIR / DEFECT
    jobs = _jobs(n_train, n_valid, n_test)
    eval_recipe, eval_misregistration = EVAL_LEVELS[eval_level]
    counts: dict[str, int] = {}
    kinds: dict[str, int] = {}
    backgrounds: dict[str, dict[str, Any]] = {}  # "split/stem" of each annotated strip -> its background
    annotations: dict[str, dict[str, list[dict[str, Any]]]] = {"valid": {}, "test": {}}
    ss = np.random.SeedSequence(seed)
    for (split, stem, defective), child in zip(
        tqdm(jobs, desc="synth-dataset", unit="img", disable=not progress), ss.spawn(len(jobs))
    ):
        rng = np.random.default_rng(child)
        held_out = split != "train"
        img, mask, defects, pattern = make_image(
            rng,
            t.height,
            t.width,
            defective,
            distractors=held_out,
            kinds=BACKGROUNDS[eval_backgrounds if held_out else train_backgrounds],
            misregistration=eval_misregistration if held_out else TRAIN_MISREGISTRATION,
            recipe=eval_recipe,
            imaging=IMAGING_LEVELS.get(eval_level) if held_out else None,
        )
        sub = DEFECT if defective else GOOD
        write_tiff(root / split / sub / f"{stem}.tiff", img)
        if defective:
            write_tiff(gt_dir / f"{stem}.tiff", (mask * 255).astype(np.uint8))
        if held_out:
            annotations[split][stem] = [annotation(d, eval_recipe.mask_threshold) for d in defects]
            backgrounds[f"{split}/{stem}"] = {
                "kind": pattern.kind,
                "misregistration": round(pattern.misregistration, 4),
            }
            for d in defects:
                kinds[d.kind] = kinds.get(d.kind, 0) + 1
        key = f"{split}/{sub}"
        counts[key] = counts.get(key, 0) + 1
    for split, ann in annotations.items():
        if ann:
            _write_json(root / ANNOTATIONS_DIR / f"{split}.json", ann)
    summary = {
        "root": str(root),
        "image_type": image_type,
        "image_size": [t.height, t.width],
        "seed": seed,
        "train_backgrounds": list(BACKGROUNDS[train_backgrounds]),
        "eval_backgrounds": list(BACKGROUNDS[eval_backgrounds]),
        "eval_level": eval_level,
        "counts": counts,
        "defects_by_kind": kinds,
        "backgrounds": backgrounds,
    }
    _write_json(root / "dataset.json", summary)
    return summary


def _write_json(path: Path, data: object) -> None:
    text = json.dumps(data, indent=1)
    atomic_write(path, lambda p: p.write_text(text))


FC = TypeVar("FC", bound=Callable[..., Any])


def _backgrounds_option(flag: str, default: str, help: str) -> Callable[[FC], FC]:
    return click.option(flag, default=default, show_default=True, type=click.Choice(sorted(BACKGROUNDS)), help=help)


@command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n-train", default=64, show_default=True, type=click.IntRange(1), help="Clean training images.")
@click.option(
    "--n-valid", default=24, show_default=True, type=click.IntRange(0), help="Validation images (half with defects)."
)
@click.option(
    "--n-test", default=24, show_default=True, type=click.IntRange(0), help="Test images (half with defects)."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Makes the data set reproducible.")
@click.option("--image-type", default="strip", show_default=True, type=click.Choice(sorted(IMAGE_TYPES)))
@_backgrounds_option(
    "--eval-backgrounds",
    "mixed",
    "Backgrounds of valid/test: mixed = the periodic and texture training kinds plus kinds no training "
    "image uses; holdout = only unseen kinds (for generalisation checks); photographs = real photographs "
    "(needs scikit-image).",
)
@_backgrounds_option(
    "--train-backgrounds",
    "train",
    "Backgrounds of the training strips: train = periodic kinds, 1/f texture, dead leaves and scattered "
    "spots; leaves = without the spots (the older default); classic = without dead leaves either "
    "(older still); leaves-heavy, photo = ablation sets (docs/data.md).",
)
@click.option(
    "--eval-level",
    default="hard",
    show_default=True,
    type=click.Choice(sorted(EVAL_LEVELS)),
    help="Defects and misregistration of valid/test: hard = partly outside the training ranges (|a| 8-120, "
    "sigma 0.4-3, per-view shift std up to 0.6 px); nominal = inside the ranges specified for held-out "
    "strips (|a| 12-100, sigma 0.5-2.5, shift std up to 0.3 px); imaging = nominal defects on strips imaged "
    "like a real line's (references misregistered by up to 3.5 whole px, per-die blur and exposure).",
)
@common_options
def cli(
    out_dir: Path,
    n_train: int,
    n_valid: int,
    n_test: int,
    seed: int,
    image_type: str,
    eval_backgrounds: str,
    train_backgrounds: str,
    eval_level: str,
    verbose: int,
    quiet: bool,
) -> None:
    """Write a synthetic demo data set to OUT_DIR (train on it, then score with `bgsdk evaluate OUT_DIR`).

    Layout: train/good (clean), valid/{good,bright_spots}, test/{good,bright_spots},
    ground_truth/bright_spots (masks, uint8 0/255), annotations/{valid,test}.json (every
    defect with its kind: labelled target/missing, or not-labelled ref1/ref2/target_ref1/
    target_ref2/all). Images are 4-channel float32 TIFFs, channel-first: target, ref1,
    ref2 and an unused mask plane.
    """
    setup_logging(verbose, quiet)
    if "photograph" in BACKGROUNDS[eval_backgrounds] + BACKGROUNDS[train_backgrounds]:
        try:
            check_photographs()
        except PhotographsUnavailable as exc:
            raise click.ClickException(str(exc)) from None
    s = make_dataset(
        out_dir,
        n_train,
        n_valid,
        n_test,
        seed,
        image_type,
        progress=progress_enabled(quiet),
        eval_backgrounds=eval_backgrounds,
        train_backgrounds=train_backgrounds,
        eval_level=eval_level,
    )
    if not quiet:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(s["counts"].items()))  # type: ignore[attr-defined]
        by_kind = ", ".join(f"{k} {v}" for k, v in sorted(s["defects_by_kind"].items()))  # type: ignore[attr-defined]
        click.echo(
            f"wrote {sum(s['counts'].values())} {image_type} images to {out_dir} ({parts}); "  # type: ignore[attr-defined]
            f"valid/test defects: {by_kind}"
        )


#: ``synth-dataset``: the same command under its older name.
synth_dataset_command = alias_command(cli, "synth-dataset", "bgsdk synth")


def main(argv: list[str] | None = None) -> None:
    """Console script ``synth-dataset``: an alias of ``bgsdk synth``."""
    run_cli(synth_dataset_command, argv, "synth-dataset")


if __name__ == "__main__":  # pragma: no cover
    main()
