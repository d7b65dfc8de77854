"""``bgsdk bench``: median latency and throughput of a model through the SDK."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ._options import (
    batch_size_option,
    command,
    common_options,
    device_option,
    model_or_default,
    open_segmenter,
    provider_option,
    setup_logging,
    threads_option,
)

__all__ = ["bench_cmd"]


@command("bench")
@click.argument("model", required=False, type=click.Path(path_type=Path))
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
@device_option()
@threads_option()
@provider_option
@common_options
def bench_cmd(
    model: Path | None,
    repeat: int,
    warmup: int,
    batch_size: int,
    input_path: Path | None,
    device: str,
    threads: int | None,
    providers: tuple[str, ...],
    verbose: int,
    quiet: bool,
) -> None:
    """Median latency and throughput of MODEL through the SDK (preprocessing included).

    MODEL: an ONNX model file [default: the model shipped with bgsdk].
    """
    setup_logging(verbose, quiet)
    model = model_or_default(model)
    from .._bench import benchmark
    from ..io import read_image

    seg = open_segmenter(model, device, providers, threads)
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
