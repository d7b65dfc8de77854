"""``bgsdk export-triton``: a Triton Inference Server model repository for a model (ONNX Runtime backend)."""

from __future__ import annotations

from pathlib import Path

import click

from ._options import UserError, command, common_options, model_or_default, setup_logging, threads_option

__all__ = ["export_triton_cmd"]


def _model_and_repo(args: tuple[Path, ...], out: Path | None) -> tuple[Path, Path]:
    """``[MODEL] -o REPO_DIR``, or the older ``MODEL REPO_DIR``."""
    if out is None and len(args) == 2:
        return model_or_default(args[0]), args[1]
    if out is None:
        raise click.UsageError("missing -o/--out: the model repository folder to write")
    if len(args) > 1:
        raise click.UsageError(f"one MODEL expected, got {len(args)}: {' '.join(map(str, args))}")
    return model_or_default(args[0] if args else None), out


def _gpu_list(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(g) for g in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected GPU ids like 0,1, got {text!r}", param_hint="--gpus") from None


@command("export-triton")
@click.argument("args", metavar="[MODEL]", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The model repository folder to write (created if missing).",
)
@click.option("--name", default="bgsdk", show_default=True, help="Model name on the server (folder name in REPO_DIR).")
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Largest batch Triton may form for one model call.",
)
@click.option(
    "--queue-delay-us",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Dynamic batching: how long a request may wait for others to join its batch.",
)
@click.option("--no-dynamic-batching", is_flag=True, help="Run each request alone (no dynamic batcher).")
@click.option("--cpu-instances", type=click.IntRange(min=0), default=1, show_default=True, help="Model copies on CPU.")
@click.option(
    "--gpu-instances",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Model copies per GPU (ONNX Runtime CUDA provider inside Triton).",
)
@click.option("--gpus", default=None, metavar="IDS", help="GPU ids for --gpu-instances, e.g. 0,1 [default: all].")
@threads_option("ONNX Runtime intra-op threads per instance [default: the backend's].")
@common_options
def export_triton_cmd(
    args: tuple[Path, ...],
    out: Path | None,
    name: str,
    max_batch_size: int,
    queue_delay_us: int,
    no_dynamic_batching: bool,
    cpu_instances: int,
    gpu_instances: int,
    gpus: str | None,
    threads: int | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Write a Triton model repository for MODEL: OUT/NAME/config.pbtxt + OUT/NAME/1/model.onnx.

    \b
    bgsdk export-triton -o repo/              the model shipped with bgsdk
    bgsdk export-triton model.onnx -o repo/   a model of your own

    Serve it with the official Triton container (ONNX Runtime backend), see docs/serving.md.
    (The older form `bgsdk export-triton MODEL REPO_DIR` still works.)
    """
    setup_logging(verbose, quiet)
    model, repo_dir = _model_and_repo(args, out)
    from ..serving.triton_repo import TritonRepoOptions, export_triton

    options = TritonRepoOptions(
        name=name,
        max_batch_size=max_batch_size,
        queue_delay_us=None if no_dynamic_batching else queue_delay_us,
        cpu_instances=cpu_instances,
        gpu_instances=gpu_instances,
        gpus=_gpu_list(gpus),
        threads=threads,
    )
    try:
        options.check()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    model_dir = export_triton(model, repo_dir, options)
    if not quiet:
        click.echo(f"wrote {model_dir / 'config.pbtxt'} and {model_dir / '1' / 'model.onnx'}")
