"""``bgsdk run``: segment images with one model; write heatmaps, masks, overlays, defects.csv, results.jsonl.

Exit codes: 0 every image written; 1 some images failed (each is reported, the
rest are written); 2 a usage/model error, or the first bad image with ``--fail-fast``.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

from .._run_outputs import HEATMAP_SUFFIX, MASK_SUFFIX, OVERLAY_SUFFIX
from ..errors import InputWarning
from ..io import IMAGE_SUFFIXES, list_images
from ._options import (
    UserError,
    batch_size_option,
    open_segmenter,
    operating_point_options,
    out_dir_option,
    png_option,
    progress_enabled,
    provider_option,
    setup_logging,
    threads_option,
    verbosity_options,
    verify_option,
)

if TYPE_CHECKING:
    from .._result import Outcome

__all__ = ["run_cmd", "collect_inputs"]

log = logging.getLogger("bgsdk.cli")


def _warnings_as_lines() -> None:
    """Input warnings as one ``bgsdk: warning: <file>: ...`` line each, not Python's two-line format."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        from tqdm import tqdm

        tqdm.write(f"bgsdk: warning: {message}", file=sys.stderr)

    warnings.simplefilter("always", InputWarning)
    warnings.showwarning = show


def collect_inputs(inputs: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Files as given (in order), folders expanded to their image files (sorted).

    A named file that is missing or not an image stays in the list, so it is
    reported as that file's error without stopping the others. Two inputs that
    would write the same output name are a usage error.
    """
    paths: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = list_images(p)
            if not found:
                log.warning("%s: no image files (%s)", p, ", ".join(IMAGE_SUFFIXES))
            paths.extend(found)
        else:
            paths.append(p)
    if not paths:
        raise UserError(f"no image files found in {', '.join(str(p) for p in inputs)}")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen and seen[p.stem] != p:
            raise UserError(f"{seen[p.stem]} and {p} would both write {p.stem}{HEATMAP_SUFFIX}; rename one")
        seen[p.stem] = p
    return paths


@click.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_dir_option("Output folder (created if missing).")
@png_option(
    f"Write <stem>{MASK_SUFFIX} and <stem>{OVERLAY_SUFFIX} (grey target, red defect pixels, yellow defect boxes)."
)
@operating_point_options
@batch_size_option("Images per model call (1 is fastest on CPU, measured; try more on a GPU).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first unreadable image (exit 2) instead of skipping it.")
@click.option(
    "--strict",
    is_flag=True,
    help="Treat suspicious pixel values (outside 0..255, constant channel, target = a reference) as bad "
    "images instead of warnings.",
)
@verify_option
@provider_option
@threads_option()
@click.option(
    "--server",
    default=None,
    metavar="URL",
    help="Run on a Triton server (http://HOST:8000 or grpc://HOST:8001); MODEL is then the model's "
    "name there (needs bgsdk[triton]).",
)
@verbosity_options
def run_cmd(
    model: Path,
    inputs: tuple[Path, ...],
    out_dir: Path,
    png: bool,
    threshold: float | None,
    min_area: int | None,
    batch_size: int,
    fail_fast: bool,
    strict: bool,
    verify: bool,
    providers: tuple[str, ...],
    threads: int | None,
    server: str | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Segment INPUT files/folders; write heatmaps, masks, overlays, defects.csv and results.jsonl to --out.

    MODEL is a model file, or with --server the model's name on a Triton server.
    """
    _warnings_as_lines()
    setup_logging(verbose, quiet)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --out exists and is not a folder")
    paths = collect_inputs(inputs)
    seg = open_segmenter(model, providers, threads, server, strict=strict, verify=verify)
    op = seg.operating_point
    if not op.calibrated and threshold is None:
        log.warning("%s: model has no calibrated operating point; using threshold %g", model, op.threshold)
    t0 = time.perf_counter()
    outcomes = seg.iter_batch(
        paths,
        batch_size=batch_size,
        on_error="raise" if fail_fast else "return",
        threshold=threshold,
        min_area=min_area,
    )
    ok, failed, flagged = _write_outcomes(paths, outcomes, out_dir, png, quiet)
    elapsed = time.perf_counter() - t0
    if not quiet:
        rate = f"{elapsed / max(ok, 1):.3f} s/image" if ok else "no image run"
        t_used = threshold if threshold is not None else op.threshold
        a_used = min_area if min_area is not None else op.min_area
        click.echo(
            f"bgsdk run: {ok} of {len(paths)} image(s) written to {out_dir} in {elapsed:.1f} s ({rate}); "
            f"{flagged} fail, {ok - flagged} pass (threshold {t_used:.4g}, min area {a_used}); {failed} failed"
        )
    if failed:
        sys.exit(1)


def _write_outcomes(
    paths: list[Path], outcomes: Iterator[Outcome], out_dir: Path, png: bool, quiet: bool
) -> tuple[int, int, int]:
    """Write each image's outputs as its result arrives (progress bar on a terminal); ``(ok, failed, flagged)``."""
    from tqdm import tqdm

    from .._result import ErrorResult
    from .._run_outputs import RunWriter
    from ..io import read_image

    ok = failed = flagged = 0
    last = time.perf_counter()
    with (
        RunWriter(out_dir, png) as writer,
        tqdm(
            total=len(paths), unit="img", disable=not progress_enabled(quiet), file=sys.stderr, dynamic_ncols=True
        ) as bar,
    ):
        for path, res in zip(paths, outcomes):
            now = time.perf_counter()
            ms, last = (now - last) * 1e3, now
            if isinstance(res, ErrorResult):  # res.ok is False exactly for these
                failed += 1
                tqdm.write(f"bgsdk: skipped {res.error}", file=sys.stderr)
                writer.add(path, res, ms)
            else:
                writer.add(path, res, ms, read_image(path) if png else None)
                ok += 1
                flagged += int(res.verdict == "fail")
                log.info("%s: %s, score %.4f, %d defect(s)", path, res.verdict, res.score, len(res.defects))
            bar.update(1)
            last = time.perf_counter()
    return ok, failed, flagged
