"""``bgsdk batch``: inspect a whole folder into one output folder, here or on a Ray cluster; restartable."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._options import (
    batch_size_option,
    command,
    common_options,
    device_option,
    model_or_default,
    operating_point_options,
    ort_device,
    out_dir_option,
    png_option,
    setup_logging,
    threads_option,
    writable_dir,
)
from .run import collect_inputs, split_model

if TYPE_CHECKING:
    from ..serving.bulk import BulkOptions, BulkSummary

__all__ = ["batch_cmd"]


@command("batch")
@click.argument("args", metavar="INPUTS...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-m",
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="The model file [default: a first argument ending in .onnx, else the model shipped with bgsdk].",
)
@out_dir_option(
    "Output folder: per-image outputs and results.jsonl (as bgsdk run). Rerun into the same folder to "
    "finish an interrupted job: images already done are skipped."
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run on Ray: --ray alone starts a local instance, --ray auto / --ray ray://HOST:10001 joins a cluster.",
)
@click.option("--actors", type=click.IntRange(min=1), default=1, show_default=True, help="--ray: actor pool size.")
@click.option(
    "--cpus-per-actor",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="--ray: CPUs each actor reserves.",
)
@click.option(
    "--gpus-per-actor",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="--ray: GPUs each actor reserves (> 0 runs it on CUDA).",
)
@click.option(
    "--files-per-task",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Files handed to a worker at once (also how often results.jsonl is flushed).",
)
@batch_size_option()
@device_option(
    "Where each session runs: cpu, cuda or auto (cuda if available, else cpu); with --ray, auto leaves it "
    "to --gpus-per-actor."
)
@threads_option("ONNX Runtime intra-op threads per session.")
@png_option("Write mask and overlay PNGs (as bgsdk run).")
@operating_point_options
@common_options
def batch_cmd(
    args: tuple[Path, ...],
    model: Path | None,
    out_dir: Path,
    ray_address: str | None,
    actors: int,
    cpus_per_actor: float,
    gpus_per_actor: float,
    files_per_task: int,
    batch_size: int,
    device: str,
    threads: int | None,
    png: bool,
    threshold: float | None,
    min_area: int | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Inspect image files/folders into -o, here or on Ray; restartable (finished images are skipped).

    \b
    bgsdk batch strips/ -o out/                     this process, the model shipped with bgsdk
    bgsdk batch strips/ -m model.onnx -o out/ --ray  a local Ray instance (--ray auto: a cluster)

    Writes what bgsdk run writes (heatmaps, mask/overlay PNGs, results.jsonl, defects.csv). Bad files
    become error rows in results.jsonl (exit code 1), never a failed job.
    """
    setup_logging(verbose, quiet)
    from .._session import describe, open_session
    from ..serving.bulk import BulkOptions

    model, inputs = split_model(args, model, None)
    model = model_or_default(model)
    paths = collect_inputs(inputs)
    writable_dir(out_dir)
    providers, fallback = (None, False) if ray_address and device == "auto" else ort_device(device)
    describe(open_session(model), model)  # a bad model is one error line before any cluster starts
    options = BulkOptions(
        batch_size=batch_size,
        files_per_task=files_per_task,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor,
        threads=threads,
        providers=providers,
        fallback=fallback,
        png=png,
        threshold=threshold,
        min_area=min_area,
    )
    s = _run_bulk(model, paths, out_dir, options, ray_address)
    if not quiet:
        where = f"Ray ({ray_address}, {actors} actor(s))" if ray_address else "this process"
        click.echo(
            f"{click.get_current_context().command_path}: {s.ok} of {s.total - s.skipped} image(s) run on {where} in {s.seconds:.1f} s; "
            f"{s.skipped} finished earlier; {s.failed} failed; rows in {s.results}"
        )
    if s.failed:
        sys.exit(1)


def _run_bulk(
    model: Path, paths: list[Path], out_dir: Path, options: BulkOptions, ray_address: str | None
) -> BulkSummary:
    """Run the job here or on Ray (``ray_address`` not None); a Ray instance this call started is shut down."""
    from ..serving.bulk import connect_ray, run_bulk

    started = connect_ray(ray_address) if ray_address is not None else False
    try:
        return run_bulk(
            model.resolve(), [p.resolve() for p in paths], out_dir.resolve(), options, use_ray=ray_address is not None
        )
    finally:
        if started:
            import ray

            ray.shutdown()
