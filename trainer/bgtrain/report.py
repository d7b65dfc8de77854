"""``score-heatmaps``: score saved heatmaps against ground truth, next to the double-detection baseline.

Closes the loop of the demo (and of any deployment trial): the heatmaps come
from the *deployed* artifact through the SDK or the C++ example, not from
PyTorch, so the numbers describe what a production line would get.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from bgsdk.clikit import UserError, run_cli, setup_logging, verbosity_options
from bgsdk.io import atomic_write, read_image, read_mask
from bgsdk.metrics import SegMetrics, double_detection, evaluate

from .layout import labelled_split

__all__ = ["score_heatmaps", "main"]

HEATMAP_SUFFIX = ".heatmap.tiff"  # what `bgsdk run` writes


def score_heatmaps(
    data_root: Path, heatmap_dir: Path, split: str = "test", figures: Path | None = None
) -> tuple[SegMetrics, SegMetrics]:
    """(model metrics, baseline metrics) over ``split``; optional 7-panel figures."""
    import tifffile

    samples = labelled_split(data_root, split)
    if not samples:
        raise UserError(f"{data_root}: no images in {split}/good or {split}/bright_spots")
    model_maps, base_maps, masks, labels = [], [], [], []
    for s in samples:
        hp = heatmap_dir / f"{s.path.stem}{HEATMAP_SUFFIX}"
        if not hp.exists():
            raise UserError(f"{hp}: heatmap missing (run `bgsdk run MODEL {s.path.parent} --out {heatmap_dir}` first)")
        hm = np.asarray(tifffile.imread(hp), dtype=np.float32)
        img = read_image(s.path)
        mask = read_mask(s.mask_path) if s.mask_path else None
        model_maps.append(hm)
        base_maps.append(double_detection(img) / np.float32(255.0))
        masks.append(mask)
        labels.append(s.defective)
        if figures is not None:
            from .visualize import seven_panel

            seven_panel(img, hm, figures / f"{s.path.stem}.panels.png", mask=mask,
                        title=f"{s.path.name}  score={hm.max():.3f}")
    return evaluate(model_maps, masks, labels), evaluate(base_maps, masks, labels)


def _row(name: str, m: SegMetrics) -> str:
    f = lambda v: "  n/a " if v is None else f"{v:6.4f}"  # noqa: E731
    return f"{name:<28} {f(m.image_auroc)}  {f(m.pixel_auroc)}  {f(m.pixel_ap)}"


@click.command(name="score-heatmaps")
@click.argument("data_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("heatmap_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True, help="Which labelled split to score (test or valid).")
@click.option("--figures", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also save a 7-panel PNG per image here.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the numbers as JSON.")
@verbosity_options
def cli(data_root: Path, heatmap_dir: Path, split: str, figures: Path | None, json_out: Path | None,
        verbose: int, quiet: bool) -> None:
    """Image AUROC, pixel AUROC and pixel AP of <stem>.heatmap.tiff files in HEATMAP_DIR
    against DATA_ROOT/ground_truth, next to the double-detection baseline."""
    setup_logging(verbose, quiet)
    model, base = score_heatmaps(data_root, heatmap_dir, split, figures)
    if json_out:
        doc = {"split": split, "model": model.__dict__, "double_detection": base.__dict__}
        atomic_write(json_out, lambda p: p.write_text(json.dumps(doc, indent=2)))
    if not quiet:
        click.echo(f"{split}/: {model.n_images} images, {model.n_defect_images} with defects")
        click.echo(f"{'':<28} {'imgAUROC':>6}  {'pxAUROC':>6}  {'pixelAP':>6}")
        click.echo(_row("model (deployed ONNX, SDK)", model))
        click.echo(_row("double detection baseline", base))
        if figures is not None:
            click.echo(f"7-panel figures in {figures}")


def main(argv: list[str] | None = None) -> None:
    run_cli(cli, argv, "score-heatmaps")


if __name__ == "__main__":  # pragma: no cover
    main()
