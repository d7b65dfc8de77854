"""``bgsdk inspect``: a model's contract, metadata, signatures and operating point, checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._integrity import manifest_path_for
from ..contract import PRECISION_KEY, QUANTIZATION_KEY  # written by bgsdk build --quantize / --fp16
from ..errors import ModelError
from ._options import command, common_options, model_or_default, setup_logging, verify_option

if TYPE_CHECKING:
    from .._session import ModelInfo

__all__ = ["inspect_cmd", "quantization_summary", "precision_summary", "training_summary"]


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
    """``bgsdk._operating_point`` in one line (uncalibrated for older models, the problem if unreadable)."""
    from .._operating_point import OperatingPoint

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
        recipe.get("name", "seed (the research synthesis, before recipes existed)") if isinstance(recipe, dict) else "?"
    )
    ema = training.get("ema_decay")
    weights = f", weight average (EMA decay {ema:g})" if isinstance(ema, (int, float)) and ema > 0 else ""
    return (
        f"recipe {name}, stem {training.get('stem', 'plain')}, width {training.get('width', '?')}, "
        f"epoch {training.get('epoch', '?')}, seed {training.get('seed', '?')}{weights}"
    )


def _signature(args: Any) -> list[dict[str, Any]]:
    return [{"name": a.name, "type": a.type, "shape": list(a.shape) if a.shape is not None else None} for a in args]


@command("inspect")
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@verify_option
@common_options
def inspect_cmd(model: Path | None, as_json: bool, verify: bool, verbose: int, quiet: bool) -> None:
    """Print MODEL's contract, metadata and input/output signatures, and check it.

    MODEL: an ONNX model file [default: the model shipped with bgsdk].
    """
    setup_logging(verbose, quiet)
    model = model_or_default(model)
    from .._session import describe, open_session

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
    from .._session import format_shape

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
