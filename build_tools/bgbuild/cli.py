"""``build-model CHECKPOINT -o OUT.onnx``: the command-line front end of :func:`bgbuild.build.build_model`.

Progress goes to stderr one line per stage, the summary to stdout; any user
error (bad checkpoint, bad option, failed verification) is one line
``build-model: error: ...`` with exit code 2 and no output file.
"""

from __future__ import annotations

from pathlib import Path

import click

from bgsdk.clikit import run_cli, setup_logging, verbosity_options

__all__ = ["build_command", "main"]


@click.command(name="build-model")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output model file (model.onnx); model.json is written beside it.")
@click.option("--image-size", nargs=2, type=click.IntRange(1), default=None, metavar="H W",
              help="Full image size [default: the checkpoint's image size, e.g. 976 176 for strips].")
@click.option("--patch-batch", type=click.IntRange(1), default=None, metavar="K",
              help="Patches per patch-model call (1..number of patches); fewer = less memory. "
                   "[default: the measured CPU default, see docs/benchmarks.md]")
@click.option("--opset", type=click.IntRange(17, 20), default=17, show_default=True, help="ONNX opset of the model.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim (the graph is still checked and verified).")
@click.option("--keep-patch-model", is_flag=True, help="Also write OUT.patch.onnx, the patch model exactly as inlined.")
@click.option("--verify-data", type=click.Path(path_type=Path), default=None,
              help="Images to verify on: a data set root or a folder of images "
                   "[default: the checkpoint's training data set if present, else synthetic strips].")
@click.option("--verify-images", type=click.IntRange(1), default=2, show_default=True,
              help="How many images to verify on (run as one batch).")
@click.option("--threads", type=click.IntRange(1), default=None, help="ONNX Runtime / torch threads for verification.")
@verbosity_options
def build_command(
    checkpoint: Path,
    out: Path,
    image_size: tuple[int, int] | None,
    patch_batch: int | None,
    opset: int,
    no_simplify: bool,
    keep_patch_model: bool,
    verify_data: Path | None,
    verify_images: int,
    threads: int | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Build the self-contained full-image ONNX model from a training CHECKPOINT.

    Exports the UNet patch model, composes the full-image graph around it with
    native ONNX ops (slice patches, one patch-model call, softmax, centre crops,
    stitch, two zero channels), simplifies and checks it, verifies it against the
    PyTorch sliding-window reference (max |diff| <= 1e-5) and writes it atomically
    with its contract in the metadata and a model.json manifest.
    """
    import time

    import torch

    from .build import DEFAULT_PATCH_BATCH, BuildOptions, build_model

    setup_logging(verbose, quiet)
    if threads:
        torch.set_num_threads(threads)
    options = BuildOptions(
        image_size=tuple(image_size) if image_size else None,  # type: ignore[arg-type]
        patch_batch=DEFAULT_PATCH_BATCH if patch_batch is None else patch_batch,
        opset=opset,
        simplify=not no_simplify,
        keep_patch_model=keep_patch_model,
        verify_data=verify_data,
        verify_images=verify_images,
        threads=threads,
    )

    def progress(stage: str, msg: str) -> None:
        if not quiet:
            click.echo(f"[{stage}] {msg}", err=True)

    t0 = time.perf_counter()
    report = build_model(checkpoint, out, options, progress)
    total = time.perf_counter() - t0
    for w in report.warnings:
        click.echo(f"build-model: warning: {w}", err=True)
    if not quiet:
        v = report.verification
        c = report.contract
        click.echo(
            f"built {report.paths.model}: {report.size_bytes / 1e6:.1f} MB, {report.nodes} nodes, "
            f"input/output (N,3,{c.height},{c.width}), {report.num_patches} patches, patch batch {report.patch_batch}; "
            f"verification max |diff| {v.max_abs_diff:.3g} on {v.n_images} {v.source} image(s); "
            f"build time {total:.1f}s"
        )


def main(argv: list[str] | None = None) -> None:
    run_cli(build_command, argv, "build-model")


if __name__ == "__main__":  # pragma: no cover
    main()
