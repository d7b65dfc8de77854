"""``bgsdk build CHECKPOINT -o OUT.onnx`` (alias ``build-model``): the front end of :func:`bgbuild.build.build_model`.

Progress goes to stderr one line per stage, the summary to stdout; any user
error (bad checkpoint, bad option, failed verification) is one line
``bgsdk build: error: ...`` with exit code 2 and no output file. ``--data ROOT``
names the data set once for calibration and verification; the older per-purpose
options (``--calib-data``, ``--calibrate-data``, ``--verify-data``) still work and
take precedence for their own purpose.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bgsdk.cli._lazy import alias_command
from bgsdk.cli._options import (
    LegacyOption,
    command,
    common_options,
    run_cli,
    setup_logging,
    threads_option,
    writable_file,
)

from .calibrate_threshold import OperatingPointOptions

if TYPE_CHECKING:
    from .build import BuildOptions, BuildReport

__all__ = ["build_command", "build_model_command", "main"]


_QUANT_PARAMS = ("calib_data", "calib_count", "calib_method", "calib_defects", "quant_activations", "float_first_conv")
_GATE_PARAMS = ("max_ap_drop", "max_mean_diff")  # --quantize or --fp16
_FLAG_NAMES = {"float_first_conv": "--float-first-conv/--quantize-first-conv"}  # where not --param-name


def _data_option(flag: str, help: str):
    """A per-purpose data option of older command lines: hidden in ``bgsdk build``, listed by ``build-model``."""
    return click.option(flag, cls=LegacyOption, hidden=True, type=click.Path(path_type=Path), default=None, help=help)


@command("build")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output model file (model.onnx); model.json is written beside it.",
)
@click.option(
    "--image-size",
    nargs=2,
    type=click.IntRange(1),
    default=None,
    metavar="H W",
    help="Full image size [default: the checkpoint's image size, e.g. 976 176 for strips].",
)
@click.option(
    "--patch-batch",
    type=click.IntRange(1),
    default=None,
    metavar="K",
    help="Patches per patch-model call (1..number of patches); fewer = less memory. "
    "[default: the measured CPU default, see docs/design.md]",
)
@click.option(
    "--mode",
    type=click.Choice(["tiled", "whole"]),
    default="tiled",
    show_default=True,
    help="tiled: 18 overlapping patches, exactly as trained (the default). whole: the input stem per patch, "
    "the rest of the network once over the strip as it is (faster; pick it with numbers, see "
    "docs/design.md).",
)
@click.option(
    "--chunking",
    type=click.Choice(["unrolled", "hybrid", "loop"]),
    default="unrolled",
    show_default=True,
    help="tiled, --patch-batch below the patch count: unrolled calls sharing the weights; hybrid: only the "
    "full-resolution layers in chunks, the rest of the UNet once on all patches (as fast as one call, "
    "~2x the default's memory); or an ONNX Loop (slower in ONNX Runtime, kept for comparison).",
)
@click.option("--opset", type=click.IntRange(17, 20), default=17, show_default=True, help="ONNX opset of the model.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim (the graph is still checked and verified).")
@click.option("--keep-patch-model", is_flag=True, help="Also write OUT.patch.onnx, the patch model exactly as inlined.")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Data set root used for calibration (the operating point from its valid split; with --quantize the "
    "INT8 ranges from its train/good) and verification [default: the checkpoint's training data set if "
    "present, else synthetic strips for verification].",
)
@_data_option(
    "--verify-data",
    "Images to verify on: a data set root or a folder of images [default: --data].",
)
@click.option(
    "--verify-images",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="How many images to verify on (run as one batch).",
)
@threads_option("ONNX Runtime / torch threads for verification.")
@click.option(
    "--quantize",
    is_flag=True,
    help="Write an INT8 model (static QDQ quantization of the patch model, calibrated on real training "
    "images, verified against the fp32 model; see docs/design.md).",
)
@click.option(
    "--fp16",
    is_flag=True,
    help="Write an fp16 model, GPU-oriented (float16 patch model, float32 I/O; verified against the fp32 "
    "model on CPU like --quantize). Speed on GPUs not measured; on CPU it gains nothing (ONNX Runtime "
    "computes it in float32 there). "
    "Not combinable with --quantize.",
)
@_data_option(
    "--calib-data",
    "--quantize: calibration images, a data set root (its train/good) or a folder of images [default: --data].",
)
@click.option(
    "--calib-count",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="--quantize: calibration images (x patches per image).",
)
@click.option(
    "--calib-method",
    type=click.Choice(["auto", "minmax", "percentile", "entropy"]),
    default="auto",
    show_default=True,
    help="--quantize: how activation ranges are taken from the calibration data; auto "
    "tries minmax, then percentile, then entropy and keeps the first that passes "
    "the AP gate.",
)
@click.option(
    "--calib-defects/--no-calib-defects",
    default=True,
    show_default=True,
    help="--quantize: add the training synthesiser's defects to the calibration patches "
    "(training images are clean; the model was trained on them with synthetic defects).",
)
@click.option(
    "--float-first-conv/--quantize-first-conv",
    default=True,
    show_default=True,
    help="--quantize: run the Conv that reads the input stem's die differences in float "
    "(quantized, it rounds weak defects' contrast; measured in docs/model-card.md).",
)
@click.option(
    "--quant-activations",
    type=click.Choice(["uint8", "int8"]),
    default="uint8",
    show_default=True,
    help="--quantize: activation type (uint8 = U8S8, fastest on x86; int8 = S8S8).",
)
@click.option(
    "--max-ap-drop",
    type=click.FloatRange(0.0, 1.0),
    default=0.02,
    show_default=True,
    help="--quantize/--fp16: fail if the INT8/fp16 pixel AP is lower than fp32's by more than this "
    "(labelled held images).",
)
@click.option(
    "--max-mean-diff",
    type=click.FloatRange(0.0),
    default=None,
    help="--quantize/--fp16: fail if mean |INT8/fp16 - fp32| of the heatmap exceeds this "
    "[default: 0.01 for --quantize, 0.001 for --fp16].",
)
@click.option(
    "--triton-repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Also write a Triton model repository DIR/bgsdk/{config.pbtxt,1/model.onnx} for the built model "
    "(defaults of `bgsdk export-triton`; use that command for other settings).",
)
@_data_option(
    "--calibrate-data",
    "Labelled images for the operating point: a data set (its valid split) or strips + masks/ [default: --data].",
)
@click.option(
    "--target-recall",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Operating point: the highest threshold with at least this pixel recall [default: best F1].",
)
@click.option(
    "--max-false-alarms",
    type=click.FloatRange(0.0),
    default=None,
    help="Operating point: the lowest threshold with at most this many false alarms per image.",
)
@click.option(
    "--min-area", type=click.IntRange(1), default=None, help="Smallest defect in pixels [default: calibrated]."
)
@common_options
def build_command(
    checkpoint: Path,
    out: Path,
    mode: str,
    threads: int | None,
    triton_repo: Path | None,
    verbose: int,
    quiet: bool,
    **_options: Any,  # the rest reach BuildOptions through the context (_build_options)
) -> None:
    """Build the self-contained full-image ONNX model from a training CHECKPOINT.

    \b
    bgsdk build ckpt/best.pt -o model.onnx --data data/
    bgsdk build ckpt/best.pt -o model_int8.onnx --data data/ --quantize

    Exports the UNet patch model, composes the full-image graph around it with
    native ONNX ops (slice patches, one patch-model call, defect probability =
    softmax channel 1 as the sigmoid of the folded head, centre crops, stitch,
    two zero channels), simplifies and checks it, verifies it against the
    PyTorch sliding-window reference (max |diff| <= 1e-5) and writes it atomically
    with its contract in the metadata and a model.json manifest.

    With --quantize the written model is INT8: the patch model is quantized
    (calibrated on real training images), composed the same way, and verified
    against the fp32 model on held images (heatmap |diff|, pixel AP, image
    AUROC); if the AP drops by more than --max-ap-drop nothing is written.

    With --fp16 the written model runs its patch model in float16 (GPU-oriented;
    input and output stay float32, Softmax and stitching stay float32) and is
    verified against the fp32 model the same way. No speed-up has been measured:
    no GPU was available.
    """
    import time

    import torch

    from .build import build_model

    setup_logging(verbose, quiet)
    params = click.get_current_context().params
    _check_combinations(params)
    _settle_data(params)
    writable_file(out, "-o/--out")
    if threads:
        torch.set_num_threads(threads)

    def progress(stage: str, msg: str) -> None:
        if not quiet:
            click.echo(f"[{stage}] {msg}", err=True)

    t0 = time.perf_counter()
    report = build_model(checkpoint, out, _build_options(params), progress)
    if triton_repo is not None:
        from bgsdk.serving.triton_repo import export_triton

        progress("triton", f"repository {export_triton(report.paths.model, triton_repo)}")
    total = time.perf_counter() - t0
    _print_summary(report, total, quiet, mode)


def _check_combinations(params: dict[str, Any]) -> None:
    """Options that only make sense with another one: a usage error (one line, exit 2), not silently ignored."""
    ctx = click.get_current_context()

    def given(names: tuple[str, ...]) -> list[str]:
        return [
            _FLAG_NAMES.get(n, f"--{n.replace('_', '-')}")
            for n in names
            if ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT)
        ]

    quantize, fp16 = params["quantize"], params["fp16"]
    if quantize and fp16:
        raise click.UsageError("--fp16 and --quantize are mutually exclusive: choose one release precision")
    if not quantize and given(_QUANT_PARAMS):
        raise click.UsageError(f"{', '.join(given(_QUANT_PARAMS))} only make(s) sense with --quantize")
    if not (quantize or fp16) and given(_GATE_PARAMS):
        raise click.UsageError(f"{', '.join(given(_GATE_PARAMS))} only make(s) sense with --quantize or --fp16")
    if params["mode"] == "whole" and given(("patch_batch", "chunking")):
        raise click.UsageError(f"{', '.join(given(('patch_batch', 'chunking')))} only make(s) sense with --mode tiled")
    if params["target_recall"] is not None and params["max_false_alarms"] is not None:
        raise click.UsageError("--target-recall and --max-false-alarms are mutually exclusive")


def _settle_data(params: dict[str, Any]) -> None:
    """--data fills each purpose's own option (calibration, INT8 calibration, verification) left unset."""
    data = params["data"]
    if data is None:
        return
    for name in ("verify_data", "calibrate_data") + (("calib_data",) if params["quantize"] else ()):
        if params[name] is None:
            params[name] = data


def _operating_point_options(p: dict[str, Any]) -> OperatingPointOptions:
    """--calibrate-data, --target-recall / --max-false-alarms (at most one; neither: best F1), --min-area."""
    rule, target = "best_f1", None
    if p["target_recall"] is not None:
        rule, target = "target_recall", p["target_recall"]
    elif p["max_false_alarms"] is not None:
        rule, target = "max_false_alarms", p["max_false_alarms"]
    return OperatingPointOptions(data=p["calibrate_data"], rule=rule, target=target, min_area=p["min_area"])


def _build_options(p: dict[str, Any]) -> BuildOptions:
    """The command's parameters as :class:`BuildOptions` (defaults that depend on other options filled in)."""
    from .build import DEFAULT_PATCH_BATCH, BuildOptions
    from .fp16 import DEFAULT_FP16_MAX_MEAN_DIFF, Fp16Options
    from .precision_gate import DEFAULT_MAX_MEAN_DIFF
    from .quantize import QuantizeOptions

    max_mean_diff = p["max_mean_diff"]
    quantize = QuantizeOptions(
        calib_data=p["calib_data"],
        calib_count=p["calib_count"],
        calib_method=p["calib_method"],
        calib_synth_defects=p["calib_defects"],
        activation_type=p["quant_activations"],
        float_first_conv=p["float_first_conv"],
        max_ap_drop=p["max_ap_drop"],
        max_mean_diff=DEFAULT_MAX_MEAN_DIFF if max_mean_diff is None else max_mean_diff,
    )
    fp16 = Fp16Options(
        max_ap_drop=p["max_ap_drop"],
        max_mean_diff=DEFAULT_FP16_MAX_MEAN_DIFF if max_mean_diff is None else max_mean_diff,
    )
    return BuildOptions(
        operating_point=_operating_point_options(p),
        image_size=tuple(p["image_size"]) if p["image_size"] else None,  # type: ignore[arg-type]
        patch_batch=DEFAULT_PATCH_BATCH if p["patch_batch"] is None else p["patch_batch"],
        chunking=p["chunking"],
        mode=p["mode"],
        opset=p["opset"],
        simplify=not p["no_simplify"],
        keep_patch_model=p["keep_patch_model"],
        verify_data=p["verify_data"],
        verify_images=p["verify_images"],
        threads=p["threads"],
        quantize=quantize if p["quantize"] else None,
        fp16=fp16 if p["fp16"] else None,
    )


def _print_summary(report: BuildReport, total: float, quiet: bool, mode: str) -> None:
    """Warnings always; unless --quiet, one line on what was built (and one on INT8/fp16)."""
    for w in report.warnings:
        click.echo(f"{click.get_current_context().command_path}: warning: {w}", err=True)
    if not quiet:
        v = report.verification
        c = report.contract
        click.echo(
            f"built {report.paths.model}: {report.size_bytes / 1e6:.1f} MB, {report.nodes} nodes, "
            f"input/output (N,3,{c.height},{c.width}), "
            + (
                f"{report.num_patches} patches, patch batch {report.patch_batch}; "
                if mode == "tiled"
                else "whole-strip mode; "
            )
            + f"verification max |diff| {v.max_abs_diff:.3g} on {v.n_images} {v.source} image(s); "
            f"build time {total:.1f}s"
        )
        if report.quantization is not None:
            q = report.quantization
            click.echo(
                f"INT8: {q.settings['activations']} activations / int8 per-channel weights, "
                f"{q.settings['calibration_method']} calibration on {q.settings['calibration_patches']} "
                f"{'strips' if mode == 'whole' else 'patches'}; "
                f"{q.verification.summary()}; {q.fp32_size_bytes / 1e6:.1f} MB fp32 -> {report.size_bytes / 1e6:.1f} MB"
            )
        if report.precision is not None:
            p = report.precision
            click.echo(
                f"fp16 (GPU-oriented, speed not measured): float16 patch model, float32 I/O; "
                f"{p.verification.summary()}; {p.fp32_size_bytes / 1e6:.1f} MB fp32 -> {report.size_bytes / 1e6:.1f} MB"
            )


#: ``build-model``: the same command under its older name, every older option listed in --help.
build_model_command = alias_command(build_command, "build-model", "bgsdk build", show_legacy=True)


def main(argv: list[str] | None = None) -> None:
    """Console script ``build-model``: an alias of ``bgsdk build``."""
    run_cli(build_model_command, argv, "build-model")


if __name__ == "__main__":  # pragma: no cover
    main()
