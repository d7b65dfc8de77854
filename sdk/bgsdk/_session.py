"""ONNX Runtime sessions, and checking that a model file is a bgsdk full-image model.

* :func:`create_session` -- THE place an ONNX Runtime session is made (options,
  threads, providers, optimisation level), for the SDK, the build's verification
  and gate, and the benchmarks, so they all run models the same way.
* :func:`open_session` -- file checks, execution providers, then
  :func:`create_session`. Anything that fails is a :class:`~bgsdk.errors.ModelError`.
* :func:`describe` -- (kept apart so ``bgsdk inspect`` can show a model that does
  *not* fit) reads the contract from ``metadata_props`` (or, for a model
  without one, from the input shape) and checks names, element types and shapes.

Only ONNX Runtime's own API is used (no ``onnx`` package): the runtime SDK stays
numpy + onnxruntime + tifffile.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import onnxruntime as ort

from ._integrity import IntegrityError, verify_bytes
from ._modelguard import ExternalDataError, WireError, check_model_bytes
from .contract import CONTRACT_KEY, FORMAT_VERSION, Contract
from .errors import ModelError, check_file

__all__ = [
    "PROVIDER_ALIASES",
    "ProviderSpec",
    "ModelInfo",
    "resolve_providers",
    "create_session",
    "open_session",
    "describe",
    "format_shape",
]

log = logging.getLogger(__name__)

#: Short names accepted wherever a provider is asked for (CLI ``--provider`` too).
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

#: A provider name (alias or ONNX Runtime name), or ``(name, options)``.
ProviderSpec = str | tuple[str, Mapping[str, Any]]

_FLOAT = "tensor(float)"

# Written by build-model (bgbuild.artifact; bgsdk must not import bgbuild). A model
# with any of them and no contract is contradictory.
_BUILD_PRODUCER = "bgsdk build-model"
_BUILD_KEYS = frozenset({"bgsdk.producer_version", "bgsdk.checkpoint_sha256", "bgsdk.training", "bgsdk.build"})

#: The API's way past a missing or broken provider; the CLI says ``--device auto`` instead.
API_FALLBACK_HINT = "or pass fallback=True to run on what is available"

# protobuf cannot parse a message over 2 GiB; a bigger "model" is refused before it is read.
MAX_MODEL_BYTES = 2**31 - 1


@dataclass(frozen=True)
class ModelInfo:
    """Everything the SDK needs to feed the model, validated.

    ``contract`` is ``None`` for a model without ``bgsdk.contract`` metadata; the
    image size then comes from the input shape and the scale is the default 255.
    ``batch`` is ``None`` for a dynamic batch dimension, else the fixed size.
    """

    path: str
    input_name: str
    output_name: str
    height: int
    width: int
    input_scale: float
    batch: int | None
    contract: Contract | None
    metadata: Mapping[str, str] = field(default_factory=dict)


def resolve_providers(
    requested: Sequence[ProviderSpec] | str | None,
    source: str | Path | None = None,
    fallback: bool = False,
) -> list[ProviderSpec]:
    """Map aliases to ONNX Runtime names and check they exist in this build.

    Default: CPU only. A requested provider that this onnxruntime build lacks is a
    :class:`ModelError` that lists the available ones -- unless ``fallback`` is
    true, in which case it is dropped with a warning and CPU is used instead.
    Silent fallback would turn "why is production 20x slower" into a hunt.
    """
    if requested is None:
        return ["CPUExecutionProvider"]
    if isinstance(requested, str):
        requested = [requested]
    available = ort.get_available_providers()
    chosen: list[ProviderSpec] = []
    missing: list[str] = []
    for spec in requested:
        name, options = (spec, None) if isinstance(spec, str) else (spec[0], dict(spec[1]))
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            missing.append(full)
        elif options is None:
            chosen.append(full)
        else:
            chosen.append((full, options))
    if missing:
        msg = (
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime build "
            f"(available: {', '.join(available)})"
        )
        if not fallback:
            hint = ""
            if any(m in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for m in missing):
                hint = "; CUDA/TensorRT need the onnxruntime-gpu package and a GPU"
            raise ModelError(source, f"{msg}{hint}; {API_FALLBACK_HINT}")
        log.warning("%s: %s; falling back", source, msg)
    if not any((s if isinstance(s, str) else s[0]) == "CPUExecutionProvider" for s in chosen):
        if fallback or not chosen:
            chosen.append("CPUExecutionProvider")
    return chosen


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= limit else line[: limit - 3] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def create_session(
    model: str | os.PathLike[str] | bytes,
    *,
    providers: Sequence[str | tuple[str, Mapping[str, Any]]] = ("CPUExecutionProvider",),
    threads: int | None = None,
    optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    enable_fallback: bool = False,
) -> ort.InferenceSession:
    """An ONNX Runtime session for a model file or serialised model, with the project's settings.

    ``threads`` sets the intra-op pool (``None``: ONNX Runtime's default, one per physical
    core); the inter-op pool is then 1: the full-image graph is one chain, and callers
    who want parallel images use threads of their own. ORT's warnings are muted (they are
    for ORT developers). No checks and no error wrapping: :func:`open_session` adds those.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = optimization
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(
        source, sess_options=opts, providers=list(providers), enable_fallback=1 if enable_fallback else 0
    )


def open_session(
    model_path: str | os.PathLike[str],
    providers: Sequence[ProviderSpec] | str | None = None,
    threads: int | None = None,
    fallback: bool = False,
    *,
    verify: bool = False,
) -> ort.InferenceSession:
    """An ONNX Runtime session for ``model_path``; every failure is a ``ModelError``.

    ``threads`` sets ONNX Runtime's intra-op thread pool (``None``: its default,
    one per physical core). The inter-op pool is kept at 1: the full-image graph
    is one chain, and callers who want parallel images use threads of their own.
    ``verify`` checks the file against the sha256 in the ``model.json`` beside it
    (:mod:`bgsdk._integrity`). External-data references are always checked first
    (:mod:`bgsdk._modelguard`).
    """
    path = Path(model_path)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    check_file(path, ModelError, "an ONNX model file", "model file")
    chosen = resolve_providers(providers, path, fallback)
    source = _guarded_source(path, verify)
    try:
        # enable_fallback=0: ONNX Runtime's own retry prints a banner to stdout and silently changes
        # providers; bgsdk's fallback is the opt-in one above (and a clear ModelError otherwise).
        session = create_session(source, providers=chosen, threads=threads, enable_fallback=fallback)
    except Exception as exc:  # ORT raises its own (pybind) exception types
        raise ModelError(path, f"cannot be loaded as an ONNX model ({_first_line(exc)})") from exc
    _check_text_fields(session, path)
    # ORT drops a provider whose libraries fail to load (CUDA without cuDNN, ...) and
    # goes on with CPU. Make that loud too.
    active = session.get_providers()
    lost = [n for n in ((s if isinstance(s, str) else s[0]) for s in chosen) if n not in active]
    if lost:
        msg = f"execution provider(s) {', '.join(lost)} failed to initialise (active: {', '.join(active)})"
        if not fallback:
            raise ModelError(path, f"{msg}; check the CUDA/cuDNN/TensorRT installation, {API_FALLBACK_HINT}")
        log.warning("%s: %s; falling back", path, msg)
    return session


def _guarded_source(path: Path, verify: bool) -> bytes | str:
    """What ONNX Runtime is given: the checked bytes, or (external data) the checked path.

    The file is read once, its wire format walked and every external-data
    reference checked by path before ONNX Runtime opens anything; with
    ``verify`` the same bytes are hashed. A self-contained model is then loaded
    from those bytes, so what was checked is what runs.
    """
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise ModelError(
            path, f"larger than {MAX_MODEL_BYTES} bytes (protobuf's 2 GiB limit): not a loadable ONNX file"
        )
    data = path.read_bytes()
    if _is_checkpoint(path, data):
        raise ModelError(
            path, "this is a training checkpoint: build it first with `bgsdk build CHECKPOINT -o model.onnx`"
        )
    if verify:  # first: against the manifest, "truncated" or "changed" says more than any parse error
        try:
            verify_bytes(path, data)
        except IntegrityError as exc:
            raise ModelError(path, str(exc)) from None
    try:
        guarded = check_model_bytes(path, data)
    except WireError as exc:
        raise ModelError(path, f"cannot be loaded as an ONNX model (truncated or corrupt: {exc})") from None
    except ExternalDataError as exc:
        raise ModelError(path, str(exc)) from None
    if verify and guarded.external_locations:
        raise ModelError(
            path, "cannot verify: the model keeps weights in external files that its manifest does not cover"
        )
    return guarded.data if not guarded.external_locations else str(path)


# torch.save writes a zip archive (or, in old formats, a bare pickle); an ONNX file starts with a protobuf tag.
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x80\x05")


def _is_checkpoint(path: Path, data: bytes) -> bool:
    """A PyTorch training checkpoint (by name or by its first bytes) where an ONNX model belongs."""
    return path.suffix.lower() in _CHECKPOINT_SUFFIXES or data.startswith(_CHECKPOINT_MAGIC)


def _check_text_fields(session: ort.InferenceSession, path: Path) -> None:
    """Names and metadata must be UTF-8: ONNX Runtime hands them to Python as ``str``, and a
    damaged file would otherwise raise ``UnicodeDecodeError`` from whichever call reads them first."""
    try:
        meta = session.get_modelmeta()
        _ = (dict(meta.custom_metadata_map), meta.producer_name, meta.graph_name, meta.domain, meta.description)
        _ = [(a.name, a.type, a.shape) for a in (*session.get_inputs(), *session.get_outputs())]
    except UnicodeDecodeError as exc:
        raise ModelError(
            path, f"names or metadata are not valid UTF-8 (damaged file?): {exc.reason} at byte {exc.start}"
        ) from None


def format_shape(shape: Sequence[Any] | None) -> str:
    """``[N, 3, 976, 176]`` -- symbolic dims by name, unknown ones as ``?``."""
    if shape is None:
        return "[?]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _sig(args: Sequence[Any]) -> str:
    return ", ".join(f"{a.name} {a.type} {format_shape(a.shape)}" for a in args) or "none"


def _static(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _contract_problem(c: Contract) -> str | None:
    """What is wrong with a parsed contract's field types and values, or ``None``."""
    for name in ("height", "width", "patch", "format_version"):
        v = getattr(c, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return f"{name} must be a positive integer, got {v!r}"
    for name in ("input_name", "output_name"):
        if not isinstance(getattr(c, name), str) or not getattr(c, name):
            return f"{name} must be a non-empty string, got {getattr(c, name)!r}"
    scale = c.input_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        return f"input_scale must be a positive finite number, got {scale!r}"
    if len(c.input_channels) != 3 or len(c.output_channels) != 3:
        return f"expects 3 input and 3 output channels, got {len(c.input_channels)} and {len(c.output_channels)}"
    return None


def _read_contract(src: str, metadata: Mapping[str, str], producer: str) -> Contract | None:
    """The model's contract, fully checked; ``None`` only for a model that never had one.

    A model that ``build-model`` wrote (its producer name or provenance keys say
    so) always carries a contract: one without it was edited or damaged, and
    guessing its size from the input shape would hide that.
    """
    if CONTRACT_KEY not in metadata:
        build_keys = sorted(k for k in metadata if k in _BUILD_KEYS)
        if producer == _BUILD_PRODUCER or build_keys:
            why = f"keys {', '.join(build_keys)}" if build_keys else f"producer {producer!r}"
            raise ModelError(
                src,
                f"metadata says it was written by build-model ({why}) but has no {CONTRACT_KEY!r}: "
                "the file was edited or damaged",
            )
        return None
    try:
        contract = Contract.from_json(metadata[CONTRACT_KEY])
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelError(src, f"metadata {CONTRACT_KEY!r} is not a valid contract ({exc})") from None
    problem = _contract_problem(contract)
    if problem is not None:
        raise ModelError(src, f"metadata {CONTRACT_KEY!r} is not a valid contract: {problem}")
    if contract.format_version > FORMAT_VERSION:
        raise ModelError(
            src,
            f"contract format version {contract.format_version} is newer than this bgsdk understands "
            f"({FORMAT_VERSION}); upgrade bgsdk",
        )
    try:
        tiling = contract.tiling()
        keep = (
            tuple((s.keep_start, s.keep_stop) for s in tiling.rows),
            tuple((s.keep_start, s.keep_stop) for s in tiling.cols),
        )
        if (tuple(map(tuple, contract.row_keep)), tuple(map(tuple, contract.col_keep))) != keep:
            raise ValueError("recorded crop ranges (row_keep/col_keep) do not match the tiling rule")
    except (ValueError, TypeError) as exc:
        raise ModelError(src, f"metadata {CONTRACT_KEY!r} is inconsistent: {exc}") from None
    return contract


def describe(session: ort.InferenceSession, model_path: str | os.PathLike[str]) -> ModelInfo:
    """Validate a session against the bgsdk contract and return what feeding it needs."""
    src = str(model_path)
    meta = session.get_modelmeta()
    metadata = dict(meta.custom_metadata_map)
    contract = _read_contract(src, metadata, meta.producer_name)
    inp, out = _io_args(
        src, session, contract.input_name if contract else "input", contract.output_name if contract else "output"
    )
    shape = list(inp.shape) if inp.shape is not None else []
    if len(shape) != 4 or _static(shape[1]) != 3:
        raise ModelError(src, f"input {inp.name!r} has shape {format_shape(inp.shape)}, expected [N, 3, height, width]")
    h, w = _image_size(src, inp, shape, contract)
    oshape = list(out.shape) if out.shape is not None else []
    expected = [None, 3, h, w]
    if len(oshape) != 4 or any(_static(d) not in (None, e) for d, e in zip(oshape[1:], expected[1:])):
        raise ModelError(
            src,
            f"output {out.name!r} has shape {format_shape(out.shape)}, expected [N, 3, {h}, {w}] "
            "(channel 0 defect probability, channels 1-2 zeros)",
        )
    return ModelInfo(
        path=src,
        input_name=inp.name,
        output_name=out.name,
        height=h,
        width=w,
        input_scale=float(contract.input_scale) if contract else 255.0,
        batch=_static(shape[0]),
        contract=contract,
        metadata=metadata,
    )


def _io_args(src: str, session: ort.InferenceSession, input_name: str, output_name: str) -> tuple[Any, Any]:
    """The model's one input and its output by the contract's names, both float32; a patch model is named as such."""
    inputs = session.get_inputs()
    outputs = {o.name: o for o in session.get_outputs()}
    if len(inputs) != 1 or inputs[0].name != input_name:
        raise ModelError(src, f"expected exactly one input named {input_name!r}, model has: {_sig(inputs)}")
    if output_name not in outputs:
        hint = ""
        if any(o.name == "logits" or (o.shape and len(o.shape) == 4 and o.shape[1] == 2) for o in outputs.values()):
            hint = (
                " -- this looks like a patch model (2 logit channels); bgsdk runs the full-image model "
                "that build-model composes around it"
            )
        raise ModelError(src, f"no output named {output_name!r} (outputs: {_sig(list(outputs.values()))}){hint}")
    inp, out = inputs[0], outputs[output_name]
    for role, arg in (("input", inp), ("output", out)):
        if arg.type != _FLOAT:
            raise ModelError(src, f"{role} {arg.name!r} has element type {arg.type}, expected {_FLOAT} (float32)")
    return inp, out


def _image_size(src: str, inp: Any, shape: list[Any], contract: Contract | None) -> tuple[int, int]:
    """``(height, width)``: the contract's (the input shape must agree), else the input's fixed size."""
    h, w = _static(shape[2]), _static(shape[3])
    if contract is not None:
        if (h is not None and h != contract.height) or (w is not None and w != contract.width):
            raise ModelError(
                src,
                f"input {inp.name!r} has shape {format_shape(inp.shape)} but the contract says "
                f"{contract.height}x{contract.width}",
            )
        return contract.height, contract.width
    if h is None or w is None:
        raise ModelError(
            src,
            f"input {inp.name!r} has no fixed image size ({format_shape(inp.shape)}) and the model has no "
            f"{CONTRACT_KEY!r} metadata to say which size it expects",
        )
    log.info("%s: no %r metadata; image size %dx%d taken from the input shape", src, CONTRACT_KEY, h, w)
    return h, w
