"""``bgsdk`` command line: ``run``, ``inspect``, ``bench``, ``evaluate``.

click and tqdm are runtime dependencies; ``--png`` also needs the ``images`` extra (Pillow).
User errors are one line ``bgsdk: error: ...`` and exit code 2 (bgsdk.clikit).

``bgsdk run`` exit codes: 0 every image written; 1 some images failed (each is
reported, the rest are written); 2 a usage/model error, or the first bad image
with ``--fail-fast``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import click

from . import __version__
from .clikit import (
    UserError,
    batch_size_option,
    operating_point_options,
    out_dir_option,
    png_option,
    progress_enabled,
    provider_option,
    run_cli,
    setup_logging,
    threads_option,
    verbosity_options,
    verify_option,
)
from .contract import PRECISION_KEY, QUANTIZATION_KEY  # written by build-model --quantize / --fp16
from .errors import InputWarning, ModelError
from .integrity import manifest_path_for
from .io import IMAGE_SUFFIXES, list_images
from .run_outputs import HEATMAP_SUFFIX, MASK_SUFFIX, OVERLAY_SUFFIX

if TYPE_CHECKING:
    from .result import Outcome
    from .session import ModelInfo

__all__ = ["cli", "main", "collect_inputs", "HEATMAP_SUFFIX", "MASK_SUFFIX", "OVERLAY_SUFFIX"]

log = logging.getLogger("bgsdk.cli")

F = TypeVar("F", bound=Callable[..., Any])


def _segmenter(
    model: Path, providers: tuple[str, ...], threads: int | None, server: str | None = None, **kw: bool
) -> Any:
    if server is not None:  # MODEL is the model's name on a Triton server
        from .triton_client import TritonSegmenter

        if providers or threads or any(kw.values()):
            raise UserError("--provider/--threads/--strict/--verify do not apply with --server (the server's business)")
        return TritonSegmenter(server, str(model))
    from .segmenter import Segmenter

    return Segmenter(model, providers=list(providers) or None, threads=threads, **kw)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bgsdk")
def cli() -> None:
    """Run a bgsdk full-image defect model (ONNX) on strip images."""


@cli.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_dir_option("Output folder (created if missing).")
@png_option(
    f"Write <stem>{MASK_SUFFIX} and <stem>{OVERLAY_SUFFIX} (grey target, red defect pixels, yellow defect boxes)."
)
@operating_point_options
@batch_size_option("Images per model call (1 is fastest on CPU, measured; try more on a GPU).")
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
    refs_dirs: tuple[Path, ...],
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
    refs = match_ref_dirs(paths, refs_dirs) if refs_dirs else None
    seg = _segmenter(model, providers, threads, server, strict=strict, verify=verify)
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
    ok, failed, flagged = _write_outcomes(paths, outcomes, out_dir, png, quiet, refs)
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


def match_ref_dirs(paths: list[Path], refs_dirs: tuple[Path, ...]) -> list[list[Path]]:
    """Each input's reference file(s) from the ``--refs`` folders (:func:`bgsdk.layout.match_refs`).

    An input without a match in a folder is a usage error: how many, and one example.
    """
    from .layout import TEMPLATE_SUFFIXES, match_refs

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
    refs: list[list[Path]] | None = None,
) -> tuple[int, int, int]:
    """Write each image's outputs as its result arrives (progress bar on a terminal); ``(ok, failed, flagged)``."""
    from tqdm import tqdm

    from .io import combine, read_image
    from .result import ErrorResult
    from .run_outputs import RunWriter

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
                tqdm.write(f"bgsdk: skipped {res.error}", file=sys.stderr)
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


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pretty(value: Any, indent: str = "") -> str:
    """Indented JSON, but short lists (positions, crops) stay on one line."""
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {_pretty(v, inner)}" for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list):
        flat = json.dumps(value)
        if len(flat) <= 100 or not any(isinstance(v, (dict, list)) for v in value):
            return flat
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _pretty(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value)


def quantization_summary(value: Any) -> list[str]:
    """Human lines for the ``bgsdk.quantization`` metadata (INT8 models); [] if absent or unreadable."""
    if not isinstance(value, dict):
        return []
    s, cal, v = value.get("settings") or {}, value.get("calibration") or {}, value.get("verification") or {}
    lines = [
        f"{s.get('format', '?')} INT8: {s.get('activations', '?')} activations, {s.get('weights', '?')} weights; "
        f"{s.get('scope', '')}",
        f"calibration: {s.get('calibration_method', '?')} on {cal.get('patches', '?')} patches of "
        f"{cal.get('images', '?')} image(s) ({cal.get('source', '?')})",
    ]
    if v:
        lines.append(_verification_line(v, "int8"))
    return lines


def _verification_line(v: dict[str, Any], other: str) -> str:
    """One line for a ``verification`` section (INT8 or fp16 vs fp32); ``other`` is the key prefix."""

    def num(key: str, fmt: str = ".4f") -> str:
        x = v.get(key)
        return format(x, fmt) if isinstance(x, (int, float)) else "-"

    verdict = "passed" if v.get("passed") else "FAILED"
    line = (
        f"verified vs fp32 ({verdict}; {v.get('gate', '')}) on {v.get('n_images', '?')} image(s): "
        f"max |diff| {num('max_abs_diff', '.3g')}, mean {num('mean_abs_diff', '.3g')}"
    )
    if v.get("labelled"):
        line += (
            f"; pixel AP {num('fp32_pixel_ap')} -> {num(other + '_pixel_ap')}; "
            f"image AUROC {num('fp32_image_auroc')} -> {num(other + '_image_auroc')}"
        )
    return line


def precision_summary(value: Any) -> list[str]:
    """Human lines for the ``bgsdk.precision`` metadata (fp16 models); [] if absent or unreadable."""
    if not isinstance(value, dict):
        return []
    s, v = value.get("settings") or {}, value.get("verification") or {}
    lines = [
        f"{value.get('precision', '?')} (float16 patch model, float32 I/O): {s.get('scope', '')}",
        f"target: {s.get('target', '?')}",
    ]
    if s.get("verification_scope"):
        lines.append(f"note: {s['verification_scope']}")
    if v:
        lines.append(_verification_line(v, "fp16") + f" [{v.get('device', '?')}]")
    return lines


def _operating_point_line(props: dict[str, str]) -> str:
    """``bgsdk.operating_point`` in one line (uncalibrated for older models, the problem if unreadable)."""
    from .operating_point import OperatingPoint

    try:
        return OperatingPoint.from_metadata(props).summary()
    except (ValueError, TypeError) as exc:
        return f"INVALID ({exc})"


def training_summary(training: Any) -> str:
    """One line: the synthesis recipe, network stem, width and weight averaging the model was trained with."""
    if not isinstance(training, dict):
        return "unknown (no bgsdk.training metadata)"
    recipe = training.get("recipe") or {}
    name = (
        recipe.get("name", "seed (SPEC section 2; trained before recipes existed)") if isinstance(recipe, dict) else "?"
    )
    ema = training.get("ema_decay")
    weights = f", weight average (EMA decay {ema:g})" if isinstance(ema, (int, float)) and ema > 0 else ""
    return (
        f"recipe {name}, stem {training.get('stem', 'plain')}, width {training.get('width', '?')}, "
        f"epoch {training.get('epoch', '?')}, seed {training.get('seed', '?')}{weights}"
    )


def _signature(args: Any) -> list[dict[str, Any]]:
    return [{"name": a.name, "type": a.type, "shape": list(a.shape) if a.shape is not None else None} for a in args]


@cli.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@verify_option
@verbosity_options
def inspect_cmd(model: Path, as_json: bool, verify: bool, verbose: int, quiet: bool) -> None:
    """Print MODEL's contract, metadata and input/output signatures, and check it."""
    setup_logging(verbose, quiet)
    from .session import describe, open_session

    session = open_session(model, verify=verify)
    meta = session.get_modelmeta()
    props = dict(meta.custom_metadata_map)
    try:
        info = describe(session, model)
        problem = None
    except ModelError as exc:
        info, problem = None, exc
    report = {
        "path": str(model),
        "size_bytes": model.stat().st_size,
        "producer": meta.producer_name,
        "graph": meta.graph_name,
        "inputs": _signature(session.get_inputs()),
        "outputs": _signature(session.get_outputs()),
        "metadata_props": {k: _parse_value(v) for k, v in sorted(props.items())},
        "check": "ok" if problem is None else problem.problem,
        "integrity": "sha256 matches " + manifest_path_for(model).name if verify else "not checked (--verify)",
    }
    quant = _parse_value(props[QUANTIZATION_KEY]) if QUANTIZATION_KEY in props else None
    report["quantization"] = quant if isinstance(quant, dict) else None
    prec = _parse_value(props[PRECISION_KEY]) if PRECISION_KEY in props else None
    report["precision"] = prec if isinstance(prec, dict) else None
    report["operating_point_summary"] = _operating_point_line(props)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        _echo_inspect(report, model, session, props, info)
    if problem is not None:
        raise problem


def _echo_inspect(
    report: dict[str, Any], model: Path, session: Any, props: dict[str, str], info: ModelInfo | None
) -> None:
    """``bgsdk inspect`` as text: the same facts as ``--json``, grouped for a person."""
    from .session import format_shape

    meta = session.get_modelmeta()
    click.echo(f"model:    {model} ({report['size_bytes'] / 1e6:.2f} MB)")
    click.echo(f"producer: {meta.producer_name or '-'}   graph: {meta.graph_name or '-'}")
    click.echo(f"integrity: {report['integrity']}")
    for title, args in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        click.echo(f"{title}:")
        for a in args:
            click.echo(f"  {a.name:<10} {a.type:<14} {format_shape(a.shape)}")
    click.echo("metadata_props:" + ("" if props else " (none)"))
    for k, v in report["metadata_props"].items():
        text = _pretty(v, "  ") if isinstance(v, (dict, list)) else str(v)
        click.echo(f"  {k}: {text}")
    plines = precision_summary(report["precision"])
    if plines:
        click.echo("precision: " + plines[0])
        for line in plines[1:]:
            click.echo(f"  {line}")
    click.echo(f"operating point: {_operating_point_line(props)}")
    qlines = quantization_summary(report["quantization"])
    click.echo("quantization: " + (qlines[0] if qlines else ("none" if plines else "none (fp32 model)")))
    for line in qlines[1:]:
        click.echo(f"  {line}")
    click.echo("training: " + training_summary(report["metadata_props"].get("bgsdk.training")))
    if info is not None:
        if info.contract is not None:
            c = info.contract
            n_patches = len(c.row_positions) * len(c.col_positions)
            how = (
                f"{c.height}x{c.width} image, {n_patches} patches of {c.patch}x{c.patch} "
                f"({len(c.row_positions)} rows x {len(c.col_positions)} cols)"
            )
        else:
            how = f"no contract metadata; {info.height}x{info.width} taken from the input shape"
        batch = "dynamic" if info.batch is None else f"fixed {info.batch}"
        click.echo(f"check:    ok -- {how}, input = pixels / {info.input_scale:g}, batch {batch}")


@cli.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--repeat", type=click.IntRange(min=1), default=10, show_default=True, help="Timed runs (median reported)."
)
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Untimed runs first.")
@batch_size_option()
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Image to run [default: random pixels of the model's size].",
)
@provider_option
@threads_option()
@verbosity_options
def bench_cmd(
    model: Path,
    repeat: int,
    warmup: int,
    batch_size: int,
    input_path: Path | None,
    providers: tuple[str, ...],
    threads: int | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Median latency and throughput of MODEL through the SDK."""
    setup_logging(verbose, quiet)
    from .bench import benchmark
    from .io import read_image

    seg = _segmenter(model, providers, threads)
    image = read_image(input_path) if input_path is not None else None
    r = benchmark(seg, batch_size=batch_size, repeat=repeat, warmup=warmup, image=image)
    thr = str(threads) if threads else f"ORT default (one per physical core; {os.cpu_count()} logical CPUs)"
    click.echo(f"model:      {model}")
    click.echo(f"provider:   {', '.join(r.providers)}")
    click.echo(f"threads:    {thr}")
    click.echo(f"batch size: {batch_size}   repeats: {repeat} (+{warmup} warm-up)")
    click.echo(
        f"latency:    median {r.median_s * 1e3:.1f} ms per call (min {min(r.latencies_s) * 1e3:.1f}, "
        f"max {max(r.latencies_s) * 1e3:.1f}); {r.per_image_s * 1e3:.1f} ms per image"
    )
    click.echo(f"throughput: {r.throughput:.2f} images/s")


def _file_out_option(flag: str, dest: str, help: str) -> Callable[[F], F]:
    """An optional output file (``None`` when not given)."""
    return click.option(flag, dest, type=click.Path(dir_okay=False, path_type=Path), default=None, help=help)


@cli.command("evaluate")
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
    from .evaluation import run_evaluation

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


def _add_scale_commands() -> None:
    from .cli_scale import batch_cmd, export_triton_cmd

    cli.add_command(export_triton_cmd)
    cli.add_command(batch_cmd)


_add_scale_commands()


def main(argv: list[str] | None = None) -> None:
    """Console script ``bgsdk``."""
    run_cli(cli, argv, prog_name="bgsdk")


if __name__ == "__main__":  # pragma: no cover
    main()
