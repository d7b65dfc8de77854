"""``bgsdk evaluate``: score models next to double detection on labelled strips; JSON, HTML and figures.

The one scorer of the project, torch-free: the numbers come from the deployed ONNX
model through the SDK, so they describe what a production line gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import click

from ._options import (
    command,
    common_options,
    device_option,
    model_or_default,
    ort_device,
    out_dir_option,
    provider_option,
    setup_logging,
    threads_option,
    writable_dir,
    writable_file,
)

if TYPE_CHECKING:
    from ..evaluate.evaluation import Evaluation

__all__ = ["evaluate_cmd", "run_evaluation", "JSON_NAME", "HTML_NAME", "FIGURES_DIR"]

#: What ``-o OUT_DIR`` receives.
JSON_NAME = "evaluation.json"
HTML_NAME = "report.html"
FIGURES_DIR = "figures"


def _models_and_data(args: tuple[Path, ...], models: tuple[Path, ...]) -> tuple[list[Path], Path]:
    """``DATA`` is the last positional; positionals before it are models (the older form)."""
    *positional, data = args
    return [*positional, *models], data


def _file_option(flag: str, dest: str, help: str) -> Callable[[Any], Any]:
    return click.option(flag, dest, type=click.Path(dir_okay=False, path_type=Path), default=None, help=help)


@command("evaluate")
@click.argument("args", metavar="DATA", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A model to score; repeat to compare several [default: the model shipped with bgsdk].",
)
@out_dir_option(
    f"Output folder: {JSON_NAME} (every number), {HTML_NAME} (tables, curves, pictures) and, with "
    f"--figures, {FIGURES_DIR}/. Without it only the table is printed.",
    required=False,
)
@click.option(
    "--figures",
    is_flag=True,
    help=f"Also write the 7-panel figure of every image (target, ref1, ref2, |T-R1|, |T-R2|, double detection, "
    f"heatmap; yellow boxes: defects found, green: ground truth) to OUT_DIR/{FIGURES_DIR}/ (needs -o).",
)
@click.option("--split", default="test", show_default=True, help="Split of a DATA folder in the data set layout.")
@click.option(
    "--masks",
    "masks_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Masks folder for a flat folder of strips [default: DATA/masks].",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=0),
    default=12,
    show_default=True,
    help="Images pictured in the HTML report (worst first).",
)
@device_option()
@threads_option()
@provider_option
@_file_option("--json", "json_out", f"Also write every number to this JSON file (as -o's {JSON_NAME}).")
@_file_option("--html", "html_out", f"Also write the HTML report to this file (as -o's {HTML_NAME}).")
@common_options
def evaluate_cmd(
    args: tuple[Path, ...],
    models: tuple[Path, ...],
    out_dir: Path | None,
    figures: bool,
    split: str,
    masks_dir: Path | None,
    max_images: int,
    device: str,
    threads: int | None,
    providers: tuple[str, ...],
    json_out: Path | None,
    html_out: Path | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Score models next to double detection on the labelled strips in DATA.

    \b
    bgsdk evaluate data/ -o eval/                    the model shipped with bgsdk
    bgsdk evaluate data/ -m a.onnx -m b.onnx -o eval/  compare models
    bgsdk evaluate a.onnx data/ --json e.json         (older form: models before DATA)

    DATA: the data set layout (SPLIT/good, SPLIT/bright_spots, ground_truth/bright_spots) or a folder of
    strips with masks/. Prints pixel AP/AUROC, image AUROC, F1, per-defect recall, false alarms and
    latency per method, each model's pixel AP as a multiple of double detection's and, on a data set
    from `bgsdk synth`, recall of weak/strong/missing defects and the share of reference-only defects
    flagged.
    """
    setup_logging(verbose, quiet)
    model_list, data = _models_and_data(args, models)
    if figures and out_dir is None:
        raise click.UsageError("--figures writes into OUT_DIR/figures: add -o OUT_DIR")
    if out_dir is not None:
        writable_dir(out_dir)
        json_out, html_out = json_out or out_dir / JSON_NAME, html_out or out_dir / HTML_NAME
    for f in (json_out, html_out):
        if f is not None:
            writable_file(f, "--json/--html")
    chosen, fallback = ort_device(device, providers)
    run_evaluation(
        [model_or_default(m) for m in model_list] or [model_or_default(None)],
        data,
        split=split,
        masks_dir=masks_dir,
        json_out=json_out,
        html_out=html_out,
        figures_dir=out_dir / FIGURES_DIR if figures and out_dir is not None else None,
        max_images=max_images,
        providers=chosen,
        fallback=fallback,
        threads=threads,
        echo=None if quiet else click.echo,
    )


def run_evaluation(
    models: Sequence[Path],
    data_dir: Path,
    *,
    split: str = "test",
    masks_dir: Path | None = None,
    json_out: Path | None = None,
    html_out: Path | None = None,
    figures_dir: Path | None = None,
    max_images: int = 12,
    providers: Sequence[str] | None = None,
    fallback: bool = False,
    threads: int | None = None,
    echo: Any = None,
) -> Evaluation:
    """What ``bgsdk evaluate`` does: load, score, print the table, write JSON/HTML/figures (atomically)."""
    import json

    from ..errors import InputError
    from ..evaluate.evaluation import Evaluation, evaluate_models, format_table, load_dataset
    from ..io import atomic_write

    for mp in models:
        if not Path(mp).is_file():
            raise InputError(mp, "model file not found")
    ds = load_dataset(Path(data_dir), split, masks_dir)
    ev = Evaluation(ds, evaluate_models([Path(m) for m in models], ds, threads, providers, fallback))
    if echo is not None:
        echo(format_table(ev))
    if json_out is not None:
        text = json.dumps(ev.to_json(), indent=2, allow_nan=False)
        atomic_write(json_out, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
        if echo is not None:
            echo(f"json: {json_out}")
    if html_out is not None:
        from ..evaluate.html_report import write_report

        write_report(ev, html_out, max_images)
        if echo is not None:
            echo(f"report: {html_out}")
    if figures_dir is not None:
        from ..evaluate.figures import write_figures

        n = len(write_figures(ev, figures_dir))
        if echo is not None:
            echo(f"figures: {n} 7-panel PNG(s) in {figures_dir}")
    return ev
