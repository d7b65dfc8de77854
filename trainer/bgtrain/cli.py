"""``bgsdk train DATA -o OUT_DIR`` and its alias ``train-model`` (``python -m bgtrain``, ``torchrun -m bgtrain``).

Options have dashed names (``--batch-size``, ``--num-defects-range``); every
spelling of the research scripts still works (``--training_dataset_path DATA``,
``--checkpoint_path``, ``--bs``, ``--num_defects_range``, ...): ``bgsdk train --help``
hides them, ``train-model --help`` lists them.
"""

from __future__ import annotations

from pathlib import Path

import click

from bgsdk.cli._lazy import alias_command
from bgsdk.cli._options import LegacyOption, UserError, command, common_options, run_cli, setup_logging, writable_dir
from bgsdk.tiling import CUSTOM, IMAGE_TYPES

from .ema import DEFAULT_EMA_DECAY
from .model import DEFAULT_STEM, STEMS
from .precision import PRECISIONS
from .recipe import AUTO_PATCHES_PER_EPOCH, DEFAULT_RECIPE, PRESETS

__all__ = ["train_command", "train_model_command", "main"]


def _opt(name: str, *more: str, legacy: tuple[str, ...] = (), **kw):
    """``--dashed-name`` (plus ``more`` names); the research spelling ``--under_scored`` and ``legacy`` are hidden."""
    dashed = name.replace("_", "-")
    old = ([f"--{name}"] if dashed != name else []) + list(legacy)
    return click.option(f"--{dashed}", *more, name, cls=LegacyOption, legacy=old, **kw)


def _recipe(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--recipe NAME`` (a preset) or ``--recipe FILE`` (a JSON file of knobs; a path is kept as given)."""
    if value in PRESETS or Path(value).is_file():
        return value
    raise click.BadParameter(f"{value!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor an existing JSON file")


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """cpu | cuda[:N] | auto; asking for CUDA where torch has none names the way out on the command line."""
    if value not in ("cpu", "auto") and not (value == "cuda" or value.startswith("cuda:")):
        raise click.BadParameter(f"{value!r}: use cpu, cuda (or cuda:N) or auto")
    if value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"--device {value}: torch sees no CUDA device here; use --device auto (CUDA if available, "
                "else CPU) or --device cpu"
            )
    return value


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


@command("train")
@click.argument("data", metavar="DATA", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--data",
    "--training-dataset-path",
    "data_option",
    cls=LegacyOption,
    legacy=("--training_dataset_path",),
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    hidden=True,
    help="The data set root, as an option instead of the DATA argument.",
)
@click.option(
    "-o",
    "--out",
    "checkpoint_path",
    cls=LegacyOption,
    legacy=("--checkpoint_path", "--checkpoint-path"),
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for best.pt, last.pt, metrics.jsonl and summary.json (created if missing).",
)
@click.option(
    "--batch-size",
    "bs",
    cls=LegacyOption,
    legacy=("--bs",),
    default=16,
    show_default=True,
    type=click.IntRange(1),
    help="Global batch size (split across processes).",
)
@_opt("lr", default=1e-3, show_default=True, type=click.FloatRange(0, min_open=True), help="Adam learning rate.")
@_opt("epochs", default=30, show_default=True, type=click.IntRange(1), help="Epochs; LR drops x0.2 at 80% and 90%.")
@_opt(
    "recipe",
    default=DEFAULT_RECIPE,
    show_default=True,
    metavar="NAME|FILE",
    callback=_recipe,
    help="Defect synthesis: a preset, robust (weak/shaped defects, every odd-die-out case, imaging nuisances) "
    'or seed (the research synthesis), or a JSON file of recipe knobs ({"base": "robust", "missing_prob": 0.4}). '
    "See docs/data.md.",
)
@_opt(
    "recipe_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON object of recipe knobs overriding the --recipe preset, e.g. {"missing_prob": 0.4}.',
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
    "estimate, up to 2 px); registered = tolerant on the references registered onto the target (whole-pixel "
    "search up to 7 px, then sub-pixel Lucas-Kanade) plus how far to trust each registration; plain = the 3 "
    "dies (DRAEM).",
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
    default=None,
    type=click.Choice(sorted(IMAGE_TYPES) + [CUSTOM]),
    help="Image geometry [default: from the images' size]: strip 976x176 (128 px patches), square 256x256, "
    "mvtec 1024x1024 (256 px); any other size is custom (128 px patches, 256 from 1024x1024 up).",
)
@_opt(
    "image_size",
    nargs=2,
    type=click.IntRange(1),
    default=None,
    metavar="H W",
    help="Image size every training image must have [default: the images' own size; they must share one].",
)
@_opt(
    "img_format",
    default="any",
    show_default=True,
    type=click.Choice(["tiff", "png", "jpg", "any"]),
    help="Which training files to use (any: every image file in train/good).",
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
@_opt(
    "device",
    default="auto",
    show_default=True,
    metavar="[cpu|cuda|auto]",
    callback=_device,
    help="Where training runs: cpu, cuda (or cuda:N; fails without CUDA) or auto (cuda if available, else cpu).",
)
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
@common_options
def train_command(verbose: int, quiet: bool, **opts) -> None:
    """Train the defect-segmentation UNet on the clean images of DATA with synthetic defects.

    \b
    bgsdk train data/ -o ckpt/ --width 16 --epochs 10
    torchrun --nproc_per_node=2 -m bgtrain data/ -o ckpt/     (several processes)

    DATA is a data set root (DATA/train/good; optional DATA/valid or DATA/test with
    DATA/ground_truth, e.g. from `bgsdk synth`). Validates on full images of valid/ (or
    test/) after each epoch -- image AUROC, pixel AUROC, pixel AP -- next to the
    double-detection baseline, and keeps the best (by pixel AP) and last checkpoints of
    the weights' moving average (--ema-decay) in OUT_DIR. Next: `bgsdk build OUT_DIR/best.pt -o model.onnx`.
    """
    from .train import TrainConfig, train

    setup_logging(verbose, quiet)
    _settle(click.get_current_context(), opts)
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()}
    if opts["image_size"] is not None:
        opts["image_size"] = tuple(opts["image_size"])
    stop_after = opts.pop("stop_after")
    cfg = TrainConfig(**opts)
    train(cfg, progress=not quiet, echo=(lambda s: None) if quiet else click.echo, stop_after=stop_after)


def _settle(ctx: click.Context, opts: dict) -> None:
    """The new and the research spellings of DATA, -o, --image-size and --recipe FILE, as TrainConfig fields."""
    data, data_opt = opts.pop("data"), opts.pop("data_option")
    if data is not None and data_opt is not None:
        raise click.UsageError("DATA given twice (as an argument and as --training_dataset_path)")
    if data is None and data_opt is None:
        raise click.UsageError("missing DATA: the data set root (DATA/train/good with clean images)")
    opts["training_dataset_path"] = data if data is not None else data_opt
    if opts["checkpoint_path"] is None:
        if ctx.command.name == "train":
            raise click.UsageError("missing -o/--out: the folder for best.pt, last.pt and the metrics")
        opts["checkpoint_path"] = Path("checkpoints")  # train-model's default, kept for old command lines
    writable_dir(Path(opts["checkpoint_path"]), "-o/--out", create=False)  # training creates it
    if opts["recipe"] not in PRESETS:  # a recipe file (the callback checked it exists)
        if opts["recipe_file"] is not None:
            raise click.UsageError("--recipe FILE and --recipe-file: give the file once")
        opts["recipe_file"], opts["recipe"] = Path(opts["recipe"]), DEFAULT_RECIPE
    if opts["num_defects_range"] is not None:
        opts["num_defects_range"] = tuple(opts["num_defects_range"])
        lo, hi = opts["num_defects_range"]
        if lo > hi:
            raise click.BadParameter(f"min {lo} > max {hi}", param_hint="--num-defects-range")


#: ``train-model``: the same command under its older name, research spellings listed in --help.
train_model_command = alias_command(train_command, "train-model", "bgsdk train", show_legacy=True)


def main(argv: list[str] | None = None) -> None:
    """Console script ``train-model`` (and ``python -m bgtrain``): an alias of ``bgsdk train``."""
    run_cli(train_model_command, argv, "train-model")
