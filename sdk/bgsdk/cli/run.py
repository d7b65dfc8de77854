"""``bgsdk run``: segment images with one model; write heatmaps, masks, overlays, defects.csv, results.jsonl.

Exit codes: 0 every image written; 1 some images failed (each is reported, the
rest are written); 2 a usage/model error, a missing input, an output folder that
holds an earlier run (without ``--exist-ok``), or the first bad image with ``--fail-fast``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import click

from .._run_outputs import DEFECTS_CSV, HEATMAP_SUFFIX, MASK_SUFFIX, OVERLAY_SUFFIX, RESULTS_JSONL
from ..io import IMAGE_SUFFIXES, list_images
from ._options import (
    UserError,
    batch_size_option,
    command,
    common_options,
    device_option,
    model_or_default,
    open_segmenter,
    operating_point_options,
    out_dir_option,
    png_option,
    progress_enabled,
    provider_option,
    setup_logging,
    threads_option,
    verify_option,
    writable_dir,
)

if TYPE_CHECKING:
    from .._result import Outcome

__all__ = ["run_cmd", "collect_inputs", "split_model", "earlier_outputs"]

log = logging.getLogger("bgsdk.cli")

_MODEL_SUFFIX = ".onnx"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_OUTPUT_SUFFIXES = (HEATMAP_SUFFIX, MASK_SUFFIX, OVERLAY_SUFFIX)


def split_model(args: tuple[Path, ...], model: Path | None, server: str | None) -> tuple[Path | None, list[Path]]:
    """``(model, inputs)`` from the positional arguments and ``-m``.

    A first positional that ends in ``.onnx`` (or a checkpoint suffix, refused later
    with its own message) is the model; with ``--server`` and no ``-m`` the first
    positional is the model's name on the server. No model at all: ``None`` (the
    shipped default).
    """
    rest = list(args)
    if model is None and rest:
        first = rest[0]
        if server is not None or first.suffix.lower() in (_MODEL_SUFFIX, *_CHECKPOINT_SUFFIXES):
            model, rest = first, rest[1:]
    if not rest:
        raise click.UsageError("no INPUTS: name image files or folders to run")
    extra = [p for p in rest if p.suffix.lower() == _MODEL_SUFFIX]
    if extra:
        raise click.UsageError(f"{extra[0]}: a second model among the inputs (one model per run; -m names it)")
    return model, rest


def collect_inputs(inputs: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Files as given (in order), folders expanded to their image files (sorted).

    A named input that does not exist is a usage error (exit 2) before anything runs.
    A file that exists but cannot be read stays in the list, so it is reported as
    that file's error without stopping the others. Two inputs that would write the
    same output name are a usage error.
    """
    paths: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = list_images(p)
            if not found:
                log.warning("%s: no image files (%s)", p, ", ".join(IMAGE_SUFFIXES))
            paths.extend(found)
        elif not p.exists():
            raise UserError(f"{p}: input not found")
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


def earlier_outputs(out_dir: Path) -> list[Path]:
    """Files of an earlier ``bgsdk run`` in ``out_dir``: its tables and per-image outputs (nothing else)."""
    if not out_dir.is_dir():
        return []
    tables = {DEFECTS_CSV, RESULTS_JSONL, f".{DEFECTS_CSV}.tmp", f".{RESULTS_JSONL}.tmp"}
    return sorted(
        p
        for p in out_dir.iterdir()
        if p.is_file() and (p.name in tables or any(p.name.endswith(s) for s in _OUTPUT_SUFFIXES))
    )


def _prepare_out_dir(out_dir: Path, exist_ok: bool) -> None:
    """Refuse to mix two runs in one folder; with ``--exist-ok`` remove the earlier run's files first."""
    writable_dir(out_dir)
    earlier = earlier_outputs(out_dir)
    if earlier and not exist_ok:
        raise UserError(
            f"{out_dir}: holds the outputs of an earlier run ({len(earlier)} file(s), e.g. {earlier[0].name}); "
            "choose another -o folder, or add --exist-ok to replace them"
        )
    for p in earlier:
        p.unlink()
    if earlier:
        log.info("%s: removed %d file(s) of an earlier run (--exist-ok)", out_dir, len(earlier))


@command("run")
@click.argument("args", metavar="[MODEL.onnx] INPUTS...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-m",
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="The model file (or with --server its name there) [default: a first argument ending in .onnx, "
    "else the model shipped with bgsdk].",
)
@out_dir_option(
    "Output folder (created if missing). One run per folder: a folder holding an earlier run's outputs is "
    "refused unless --exist-ok."
)
@click.option(
    "--exist-ok",
    is_flag=True,
    help="Reuse an -o folder that holds an earlier run: its heatmaps, masks, overlays, defects.csv and "
    "results.jsonl are deleted first (other files are left alone), so the two runs never mix.",
)
@png_option(
    f"Write <stem>{MASK_SUFFIX} and <stem>{OVERLAY_SUFFIX} (grey target, red defect pixels, yellow defect boxes)."
)
@operating_point_options
@batch_size_option("Images per model call (1 is fastest on CPU, measured; try more on a GPU).")
@device_option()
@threads_option()
@click.option(
    "--refs",
    "refs_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Folder of reference images (golden templates) for single-die INPUTS, matched by file name: the "
    "same stem, else <key>_test -> <key>_temp/_template/_ref/_golden. Once: the template is both references; "
    "twice: ref1 and ref2.",
)
@click.option("--fail-fast", is_flag=True, help="Stop at the first unreadable image (exit 2) instead of skipping it.")
@click.option(
    "--strict",
    is_flag=True,
    help="Treat suspicious pixel values (outside 0..255, constant channel, target = a reference) as bad "
    "images instead of warnings.",
)
@verify_option
@provider_option
@click.option(
    "--server",
    default=None,
    metavar="URL",
    help="Run on a Triton server (http://HOST:8000 or grpc://HOST:8001); the model is then named by its "
    "name there (-m NAME or the first argument; needs bgsdk[triton]).",
)
@common_options
def run_cmd(
    args: tuple[Path, ...],
    model: Path | None,
    out_dir: Path,
    exist_ok: bool,
    png: bool,
    threshold: float | None,
    min_area: int | None,
    batch_size: int,
    device: str,
    threads: int | None,
    refs_dirs: tuple[Path, ...],
    fail_fast: bool,
    strict: bool,
    verify: bool,
    providers: tuple[str, ...],
    server: str | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Segment image files/folders; write heatmaps, masks, overlays, defects.csv and results.jsonl to -o.

    \b
    bgsdk run strips/ -o out/                   the model shipped with bgsdk
    bgsdk run model.onnx strips/ a.tiff -o out/ a model of your own (or -m model.onnx)

    Exit codes: 0 all images written; 1 some images could not be read (each is
    reported and listed in results.jsonl, the others are written); 2 a usage or
    model error, a missing input, or an -o folder holding an earlier run.
    """
    setup_logging(verbose, quiet)
    prog = click.get_current_context().command_path
    model, inputs = split_model(args, model, server)
    if server is None:
        model = model_or_default(model)
    assert model is not None
    paths = collect_inputs(inputs)
    refs = match_ref_dirs(paths, refs_dirs) if refs_dirs else None
    _prepare_out_dir(out_dir, exist_ok)
    seg = open_segmenter(model, device, providers, threads, server, strict=strict, verify=verify)
    op = seg.operating_point
    if not op.calibrated and threshold is None:
        log.warning("%s: model has no calibrated operating point; using threshold %g", model, op.threshold)
    t0 = time.perf_counter()
    outcomes = seg.iter_batch(
        paths,
        batch_size=batch_size,
        on_error="raise" if fail_fast else "return",
        refs=refs,
        threshold=threshold,
        min_area=min_area,
    )
    ok, failed, flagged = _write_outcomes(paths, outcomes, out_dir, png, quiet, prog, refs)
    elapsed = time.perf_counter() - t0
    if not quiet:
        rate = f"{elapsed / max(ok, 1):.3f} s/image" if ok else "no image run"
        t_used = threshold if threshold is not None else op.threshold
        a_used = min_area if min_area is not None else op.min_area
        click.echo(
            f"{prog}: {ok} of {len(paths)} image(s) written to {out_dir} in {elapsed:.1f} s ({rate}); "
            f"{flagged} fail, {ok - flagged} pass (threshold {t_used:.4g}, min area {a_used}); {failed} failed"
        )
    if failed:
        sys.exit(1)


def match_ref_dirs(paths: list[Path], refs_dirs: tuple[Path, ...]) -> list[list[Path]]:
    """Each input's reference file(s) from the ``--refs`` folders (the data set layout's ``match_refs`` rule).

    An input without a match in a folder is a usage error: how many, and one example.
    """
    from .._dataset_layout import TEMPLATE_SUFFIXES, match_refs

    if len(refs_dirs) > 2:
        raise UserError(f"--refs given {len(refs_dirs)} times: one folder (the template) or two (ref1, ref2)")
    per_input: list[list[Path]] = [[] for _ in paths]
    for folder in refs_dirs:
        if not folder.is_dir():
            raise UserError(f"--refs {folder}: folder not found")
        matched, _ = match_refs(paths, list_images(folder))
        missing = [p for p, r in zip(paths, matched) if r is None]
        if missing:
            raise UserError(
                f"--refs {folder}: {len(missing)} of {len(paths)} input(s) have no reference image there (e.g. "
                f"{missing[0].name}: looked for {missing[0].stem}.* or <key>{'/'.join(TEMPLATE_SUFFIXES)}.*)"
            )
        for lst, r in zip(per_input, matched):
            if r is not None:  # always, after the check above
                lst.append(r)
    return per_input


def _write_outcomes(
    paths: list[Path],
    outcomes: Iterator[Outcome],
    out_dir: Path,
    png: bool,
    quiet: bool,
    prog: str,
    refs: list[list[Path]] | None = None,
) -> tuple[int, int, int]:
    """Write each image's outputs as its result arrives (progress bar on a terminal); ``(ok, failed, flagged)``."""
    from tqdm import tqdm

    from .._result import ErrorResult
    from .._run_outputs import RunWriter
    from ..io import combine, read_image

    ok = failed = flagged = 0
    last = time.perf_counter()
    with (
        RunWriter(out_dir, png) as writer,
        tqdm(
            total=len(paths), unit="img", disable=not progress_enabled(quiet), file=sys.stderr, dynamic_ncols=True
        ) as bar,
    ):
        for k, (path, res) in enumerate(zip(paths, outcomes)):
            now = time.perf_counter()
            ms, last = (now - last) * 1e3, now
            if isinstance(res, ErrorResult):  # res.ok is False exactly for these
                failed += 1
                tqdm.write(f"{prog}: skipped {res.error}", file=sys.stderr)
                writer.add(path, res, ms)
            else:
                image = (combine(path, refs[k], str(path)) if refs else read_image(path)) if png else None
                writer.add(path, res, ms, image)
                ok += 1
                flagged += int(res.verdict == "fail")
                log.info("%s: %s, score %.4f, %d defect(s)", path, res.verdict, res.score, len(res.defects))
            bar.update(1)
            last = time.perf_counter()
    return ok, failed, flagged
