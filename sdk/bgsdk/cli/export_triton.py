"""``bgsdk export-triton``: a Triton Inference Server model repository for a model (ONNX Runtime backend)."""

from __future__ import annotations

from pathlib import Path

import click

from ._options import UserError, setup_logging, threads_option, verbosity_options

__all__ = ["export_triton_cmd"]


def _gpu_list(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(g) for g in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected GPU ids like 0,1, got {text!r}", param_hint="--gpus") from None


@click.command("export-triton")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("repo_dir", type=click.Path(file_okay=False, path_type=Path))
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
@verbosity_options
def export_triton_cmd(
    model: Path,
    repo_dir: Path,
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
    """Write a Triton model repository for MODEL: REPO_DIR/NAME/config.pbtxt + NAME/1/model.onnx.

    Serve it with the official Triton container (ONNX Runtime backend), see docs/serving.md.
    """
    setup_logging(verbose, quiet)
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
