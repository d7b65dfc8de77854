"""``bgsdk evaluate``: score models next to double detection on labelled strips; JSON and HTML reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import click

from ._options import provider_option, setup_logging, threads_option, verbosity_options

if TYPE_CHECKING:
    from ..evaluate.evaluation import Evaluation

__all__ = ["evaluate_cmd", "run_evaluation"]

F = TypeVar("F", bound=Callable[..., Any])


def _file_out_option(flag: str, dest: str, help: str) -> Callable[[F], F]:
    """An optional output file (``None`` when not given)."""
    return click.option(flag, dest, type=click.Path(dir_okay=False, path_type=Path), default=None, help=help)


@click.command("evaluate")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, help="Split of a SPEC-layout DATA_DIR.")
@click.option(
    "--masks",
    "masks_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Masks folder for a flat folder of strips [default: DATA_DIR/masks].",
)
@_file_out_option("--json", "json_out", "Also write every number to this JSON file.")
@_file_out_option("--html", "html_out", "Also write a self-contained HTML report (tables, curves, pictures).")
@click.option(
    "--max-images",
    type=click.IntRange(min=0),
    default=12,
    show_default=True,
    help="Images pictured in the HTML report (worst first).",
)
@provider_option
@threads_option()
@verbosity_options
def evaluate_cmd(
    models: tuple[Path, ...],
    data_dir: Path,
    split: str,
    masks_dir: Path | None,
    json_out: Path | None,
    html_out: Path | None,
    max_images: int,
    providers: tuple[str, ...],
    threads: int | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Score MODEL(s) next to double detection on labelled strips in DATA_DIR (SPEC layout or strips + masks)."""
    setup_logging(verbose, quiet)
    run_evaluation(
        list(models),
        data_dir,
        split=split,
        masks_dir=masks_dir,
        json_out=json_out,
        html_out=html_out,
        max_images=max_images,
        providers=list(providers) or None,
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
    max_images: int = 12,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    echo: Any = None,
) -> Evaluation:
    """What ``bgsdk evaluate`` does: load, score, print the table, write JSON/HTML (atomically)."""
    import json

    from ..errors import InputError
    from ..evaluate.evaluation import Evaluation, evaluate_models, format_table, load_dataset
    from ..io import atomic_write

    for mp in models:
        if not Path(mp).is_file():
            raise InputError(mp, "model file not found")
    ds = load_dataset(Path(data_dir), split, masks_dir)
    ev = Evaluation(ds, evaluate_models([Path(m) for m in models], ds, threads, providers))
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
    return ev
