"""``train-model`` and ``visual-check`` command lines.

Option names follow the research scripts (``--num_defects_range``,
``--checkpoint_path``, ...); each also has the dashed spelling.
"""

from __future__ import annotations

from pathlib import Path

import click

from bgsdk.clikit import run_cli, setup_logging, verbosity_options
from bgsdk.tiling import IMAGE_TYPES

from .ema import DEFAULT_EMA_DECAY
from .model import DEFAULT_STEM, STEMS
from .precision import PRECISIONS
from .recipe import AUTO_PATCHES_PER_EPOCH, DEFAULT_RECIPE, PRESETS

__all__ = ["train_command", "visual_check_command", "main", "visual_main"]


def _opt(name: str, **kw):
    dashed = name.replace("_", "-")
    names = [f"--{name}"] + ([f"--{dashed}"] if dashed != name else [])
    return click.option(*names, **kw)


def _repeats(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    if value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"{value!r} is neither auto nor an integer >= 1")
    return n


@click.command(name="train-model")
@_opt(
    "training_dataset_path",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Data set root (ROOT/train/good, optional ROOT/valid or ROOT/test with ROOT/ground_truth).",
)
@_opt(
    "checkpoint_path",
    default=Path("checkpoints"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for best.pt, last.pt, metrics.jsonl and summary.json.",
)
@_opt("bs", default=16, show_default=True, type=click.IntRange(1), help="Global batch size (split across processes).")
@_opt("lr", default=1e-3, show_default=True, type=click.FloatRange(0, min_open=True), help="Adam learning rate.")
@_opt("epochs", default=30, show_default=True, type=click.IntRange(1), help="Epochs; LR drops x0.2 at 80% and 90%.")
@_opt(
    "recipe",
    default=DEFAULT_RECIPE,
    show_default=True,
    type=click.Choice(sorted(PRESETS)),
    help="Defect-synthesis preset: robust (weak/shaped defects, every odd-die-out case, imaging nuisances) "
    "or seed (SPEC section 2 exactly). See docs/data.md.",
)
@_opt(
    "recipe_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON object of recipe knobs overriding the preset, e.g. {"missing_prob": 0.4}; "base" picks the preset.',
)
@_opt(
    "stem",
    default=DEFAULT_STEM,
    show_default=True,
    type=click.Choice(list(STEMS)),
    help="Network input: compare = dies plus T-R1, T-R2 and signed double detection; tolerant = compare plus "
    "the same differences against each reference's 3x3 range (ignores <= 1 px misregistration); "
    "smooth = tolerant plus the same on 3x3-averaged dies (weak defects at the noise level); "
    "aligned = tolerant plus the target against each reference shifted onto it (per-patch translation "
    "estimate, up to 2 px); plain = the 3 dies (DRAEM).",
)
@_opt(
    "num_defects_range",
    nargs=2,
    type=click.IntRange(1),
    default=None,
    help="Min and max defects per defective patch (overrides the recipe; seed: 3 8, research run: 4 10).",
)
@_opt(
    "image_type",
    default="strip",
    show_default=True,
    type=click.Choice(sorted(IMAGE_TYPES)),
    help="Image geometry: strip 976x176 (128 px patches), square 256x256, mvtec 1024x1024 (256 px).",
)
@_opt(
    "img_format",
    default="tiff",
    show_default=True,
    type=click.Choice(["tiff", "png", "jpg", "any"]),
    help="Which training files to use.",
)
@_opt("gamma_start", default=1.0, show_default=True, type=float, help="Focal-loss gamma at the first step.")
@_opt(
    "gamma_end", default=3.0, show_default=True, type=float, help="Focal-loss gamma at the last step (cosine schedule)."
)
@_opt("cache_size", default=64, show_default=True, type=click.IntRange(0), help="Decoded images kept per worker (LRU).")
@_opt(
    "repeats",
    default="auto",
    show_default=True,
    callback=_repeats,
    help="Passes over every patch position per epoch, each with new synthetic defects: N, or auto = enough "
    f"passes for {AUTO_PATCHES_PER_EPOCH} patches an epoch (x6 for 64 strips; 1 from 384 strips up).",
)
@_opt("seed", default=0, show_default=True, type=int, help="Same seed, same data, same run -> same weights.")
@_opt(
    "width",
    default=64,
    show_default=True,
    type=click.IntRange(1),
    help="UNet base width (64 = production; 8-16 for demos).",
)
@_opt("workers", default=0, show_default=True, type=click.IntRange(0), help="DataLoader worker processes.")
@_opt("device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@_opt(
    "resume",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Continue exactly from a last.pt (optimizer, scheduler and epoch included).",
)
@_opt(
    "val_every",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Validate every N epochs (and after the last).",
)
@_opt("max_steps_per_epoch", default=None, type=click.IntRange(1), help="Cap optimiser steps per epoch (quick runs).")
@_opt(
    "stop_after",
    default=None,
    type=click.IntRange(1),
    help="Stop this invocation after N epochs (schedule still spans --epochs); continue with --resume last.pt.",
)
@_opt(
    "ema_decay",
    default=DEFAULT_EMA_DECAY,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Validate and save (best.pt, last.pt) an exponential moving average of the weights with this decay "
    "per step (0.998: about the last 500 steps); 0 = the raw weights. The optimiser's trajectory is the same.",
)
@_opt("threads", default=None, type=click.IntRange(1), help="torch CPU threads per process.")
@_opt(
    "precision",
    default="auto",
    show_default=True,
    type=click.Choice(list(PRECISIONS)),
    help="Training arithmetic: auto = bf16 autocast on CPUs with AMX or AVX-512 BF16, float32 elsewhere (and on "
    "CUDA); fp32; bf16. Loss, BatchNorm, weights and validation stay float32.",
)
@verbosity_options
def train_command(verbose: int, quiet: bool, **opts) -> None:
    """Train the defect-segmentation UNet on clean images with synthetic defects.

    Validates on full images of valid/ (or test/) after each epoch -- image AUROC,
    pixel AUROC, pixel AP -- next to the double-detection baseline, and keeps the
    best (by pixel AP) and last checkpoints of the weights' moving average
    (--ema-decay). Multi-process:
    torchrun --nproc_per_node=2 -m bgtrain --training_dataset_path DATA ...
    """
    from .train import TrainConfig, train

    setup_logging(verbose, quiet)
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()}
    if opts["num_defects_range"] is not None:
        opts["num_defects_range"] = tuple(opts["num_defects_range"])
        lo, hi = opts["num_defects_range"]
        if lo > hi:
            raise click.BadParameter(f"min {lo} > max {hi}", param_hint="--num_defects_range")
    stop_after = opts.pop("stop_after")
    cfg = TrainConfig(**opts)
    train(cfg, progress=not quiet, echo=(lambda s: None) if quiet else click.echo, stop_after=stop_after)


@click.command(name="visual-check")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the PNGs."
)
@click.option(
    "--masks",
    "mask_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of GT masks (same file stem) to outline on the heatmap.",
)
@click.option("--device", default="cpu", show_default=True)
@verbosity_options
def visual_check_command(
    checkpoint: Path,
    inputs: tuple[Path, ...],
    out_dir: Path,
    mask_dir: Path | None,
    device: str,
    verbose: int,
    quiet: bool,
) -> None:
    """Save the 7-panel figure (target, ref1, ref2, |T-R1|, |T-R2|, double detection, heatmap) per image.

    INPUTS are image files or folders of images.
    """
    import torch
    from tqdm import tqdm

    from bgsdk.io import list_images, read_image, read_mask

    from .checkpoint import model_from_checkpoint
    from .infer import heatmap_numpy
    from .layout import _find_mask
    from .visualize import seven_panel

    setup_logging(verbose, quiet)
    model, info = model_from_checkpoint(checkpoint, map_location=device)
    model.to(torch.device(device))
    files: list[Path] = []
    for p in inputs:
        files += list_images(p) if p.is_dir() else [p]
    for f in tqdm(files, desc="visual-check", unit="img", disable=quiet):
        img = read_image(f)
        tiling = info.tiling((img.shape[1], img.shape[2]))
        hm = heatmap_numpy(model, img, tiling)
        mpath = _find_mask(mask_dir, f.stem) if mask_dir else None
        mask = read_mask(mpath) if mpath else None
        seven_panel(img, hm, out_dir / f"{f.stem}.panels.png", mask=mask, title=f"{f.name}  max={hm.max():.3f}")
    if not quiet:
        click.echo(f"wrote {len(files)} figure(s) to {out_dir}")


def main(argv: list[str] | None = None) -> None:
    run_cli(train_command, argv, "train-model")


def visual_main(argv: list[str] | None = None) -> None:
    run_cli(visual_check_command, argv, "visual-check")
