"""``score-heatmaps``: score saved heatmaps against ground truth, next to the double-detection baseline.

Closes the loop of the demo (and of any deployment trial): the heatmaps come
from the *deployed* artifact through the SDK or the C++ example, not from
PyTorch, so the numbers describe what a production line would get.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from bgsdk.cli._options import run_cli, setup_logging, verbosity_options
from bgsdk.contract import scale_input
from bgsdk.errors import UserError
from bgsdk.evaluate.metrics import double_detection
from bgsdk.io import atomic_write

from .validate import load_eval_set, score_maps

__all__ = ["score_heatmaps", "main"]

HEATMAP_SUFFIX = ".heatmap.tiff"  # what `bgsdk run` writes
Scores = dict[str, Any]


def score_heatmaps(
    data_root: Path, heatmap_dir: Path, split: str = "test", figures: Path | None = None
) -> tuple[Scores, Scores]:
    """(model scores, double-detection scores) over ``split`` (see ``validate.score_maps``); optional figures."""
    import tifffile

    eval_set = load_eval_set(data_root, split)
    if eval_set is None or eval_set.split != split:
        raise UserError(f"{data_root}: no images in {split}/good or {split}/bright_spots")
    model_maps, base_maps = [], []
    for e in eval_set.images:
        hp = heatmap_dir / f"{e.sample.path.stem}{HEATMAP_SUFFIX}"
        if not hp.exists():
            raise UserError(
                f"{hp}: heatmap missing (run `bgsdk run MODEL {e.sample.path.parent} --out {heatmap_dir}` first)"
            )
        hm = np.asarray(tifffile.imread(hp), dtype=np.float32)
        model_maps.append(hm)
        base_maps.append(scale_input(double_detection(e.image)))
        if figures is not None:
            from .visualize import seven_panel

            seven_panel(
                e.image,
                hm,
                figures / f"{e.sample.path.stem}.panels.png",
                mask=e.mask,
                title=f"{e.sample.path.name}  score={hm.max():.3f}",
            )
    return score_maps(model_maps, eval_set), score_maps(base_maps, eval_set)


ROWS = [
    ("image AUROC", "image_auroc"),
    ("pixel AUROC", "pixel_auroc"),
    ("pixel AP", "pixel_ap"),
    ("best pixel F1", "best_f1"),
    ("recall, weak |a|<=40", "recall_weak"),
    ("recall, weak 12<=|a|<=40", "recall_weak12"),
    ("recall, strong", "recall_strong"),
    ("recall, missing from target", "recall_missing"),
    ("flagged: one-reference defects", "fa_one_ref"),
    ("flagged: target + one reference", "fa_target_ref"),
    ("flagged: in all three dies", "fa_all"),
]


def table(model: Scores, base: Scores) -> str:
    """The demo's result table: the deployed model next to double detection, and the AP ratio."""
    f = lambda v: "   n/a" if v is None else f"{v:6.4f}"  # noqa: E731
    lines = [f"{'':<32} {'model':>6}  {'double detection':>16}"]
    lines += [f"{name:<32} {f(model.get(k))}  {f(base.get(k)):>16}" for name, k in ROWS if k in model or k in base]
    m, b = model.get("pixel_ap"), base.get("pixel_ap")
    if m is not None and b:
        verdict = "ahead of" if m > b else "BEHIND"
        lines.append(f"pixel AP: model {m:.4f} vs double detection {b:.4f} -> {m / b:.2f}x ({verdict} the baseline)")
    return "\n".join(lines)


@click.command(name="score-heatmaps")
@click.argument("data_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("heatmap_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True, help="Which labelled split to score (test or valid).")
@click.option(
    "--figures",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also save a 7-panel PNG per image here.",
)
@click.option(
    "--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the numbers as JSON."
)
@verbosity_options
def cli(
    data_root: Path,
    heatmap_dir: Path,
    split: str,
    figures: Path | None,
    json_out: Path | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Score <stem>.heatmap.tiff files in HEATMAP_DIR against DATA_ROOT/ground_truth, next to double detection.

    Image AUROC, pixel AUROC and AP, best pixel F1 and -- where DATA_ROOT has synth-dataset
    annotations -- recall of weak/strong/missing defects and the share of not-labelled
    (reference) defects flagged, at each method's best-F1 threshold.
    """
    setup_logging(verbose, quiet)
    model, base = score_heatmaps(data_root, heatmap_dir, split, figures)
    if json_out:
        doc = {"split": split, "model": model, "double_detection": base}
        atomic_write(json_out, lambda p: p.write_text(json.dumps(doc, indent=2)))
    if not quiet:
        click.echo(
            f"{split}/: {model['n_images']} images, {model['n_defect_images']} with defects "
            "(model = the deployed ONNX through the SDK; rates at each method's best-F1 pixel threshold)"
        )
        click.echo(table(model, base))
        if figures is not None:
            click.echo(f"7-panel figures in {figures}")


def main(argv: list[str] | None = None) -> None:
    run_cli(cli, argv, "score-heatmaps")


if __name__ == "__main__":  # pragma: no cover
    main()
