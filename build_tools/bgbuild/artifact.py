"""The release artifact: metadata in the model, a manifest beside it, atomic writes.

``model.onnx`` carries in its ``metadata_props`` everything a consumer needs
(the contract: image size, patch size, positions, crops, normalisation, channel
meaning) plus provenance (producer version, checkpoint sha256, training
metadata, build options). ``model.json`` beside it adds what cannot live
inside the file: the model's own sha256 and the verification result.
All files are serialised in memory first and then written with
:func:`bgsdk.io.atomic_write`, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import onnx

from bgsdk import __version__
from bgsdk.contract import (
    BUILD_KEY,
    CHECKPOINT_SHA_KEY,
    CONTRACT_KEY,
    PRECISION_KEY,
    PRODUCER_VERSION_KEY,
    QUANTIZATION_KEY,
    TRAINING_KEY,
    Contract,
)
from bgsdk.io import atomic_write_many

__all__ = [
    "PRODUCER_NAME",
    "ArtifactPaths",
    "set_metadata",
    "set_quantization_metadata",
    "set_precision_metadata",
    "read_metadata",
    "manifest_path_for",
    "patch_model_path_for",
    "write_artifacts",
    "sha256_bytes",
]

PRODUCER_NAME = "bgsdk build-model"
# The metadata keys live in bgsdk.contract (bgsdk inspect reads them): import them from there.


@dataclass(frozen=True)
class ArtifactPaths:
    model: Path
    manifest: Path
    patch_model: Path | None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_path_for(out: Path) -> Path:
    """``model.onnx`` -> ``model.json``."""
    return out.with_suffix(".json")


def patch_model_path_for(out: Path) -> Path:
    """``model.onnx`` -> ``model.patch.onnx``."""
    return out.with_suffix(".patch.onnx")


def set_metadata(
    model: onnx.ModelProto,
    contract: Contract,
    *,
    checkpoint_sha256: str,
    training: Mapping[str, Any],
    build: Mapping[str, Any],
) -> None:
    """Replace ``metadata_props`` with the bgsdk keys (docs/design.md lists them)."""
    props = {
        CONTRACT_KEY: contract.to_json(),
        PRODUCER_VERSION_KEY: __version__,
        CHECKPOINT_SHA_KEY: checkpoint_sha256,
        TRAINING_KEY: json.dumps(dict(training), sort_keys=True),
        BUILD_KEY: json.dumps(dict(build), sort_keys=True),
    }
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    model.producer_name = PRODUCER_NAME
    model.producer_version = __version__
    model.doc_string = (
        "bgsdk full-image defect segmentation: input (N,3,H,W) float32 = channels/255 (target, ref1, ref2); "
        "output (N,3,H,W): channel 0 defect probability, channels 1-2 zero. See metadata 'bgsdk.contract'."
    )


def _set_json_metadata(model: onnx.ModelProto, key: str, value: Mapping[str, Any]) -> None:
    keep = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key = key
    entry.value = json.dumps(dict(value), sort_keys=True)


def set_quantization_metadata(model: onnx.ModelProto, quantization: Mapping[str, Any]) -> None:
    """Add (or replace) the ``bgsdk.quantization`` key; the other metadata stays as it is."""
    _set_json_metadata(model, QUANTIZATION_KEY, quantization)


def set_precision_metadata(model: onnx.ModelProto, precision: Mapping[str, Any]) -> None:
    """Add (or replace) the ``bgsdk.precision`` key (fp16 builds); the other metadata stays as it is."""
    _set_json_metadata(model, PRECISION_KEY, precision)


def read_metadata(model: onnx.ModelProto | str | Path) -> dict[str, Any]:
    """The bgsdk metadata of a model, JSON values decoded; ``contract`` as a :class:`Contract`."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    out: dict[str, Any] = dict(props)
    if CONTRACT_KEY in props:
        out[CONTRACT_KEY] = Contract.from_json(props[CONTRACT_KEY])
    for key in (TRAINING_KEY, BUILD_KEY, QUANTIZATION_KEY, PRECISION_KEY):
        if key in props:
            out[key] = json.loads(props[key])
    return out


def write_artifacts(
    out: str | Path,
    model_bytes: bytes,
    manifest: Mapping[str, Any],
    patch_model_bytes: bytes | None = None,
) -> ArtifactPaths:
    """Atomically write ``out``, its manifest and (optionally) the patch model.

    The manifest gets ``model_sha256`` and ``model_bytes`` of the exact bytes written.
    All files are written to temp files first and renamed only when every one is
    complete (:func:`bgsdk.io.atomic_write_many`): a failure leaves the previous files as they were.
    """
    out = Path(out)
    paths = ArtifactPaths(
        out, manifest_path_for(out), patch_model_path_for(out) if patch_model_bytes is not None else None
    )
    full_manifest = dict(manifest)
    full_manifest["model_file"] = out.name
    full_manifest["model_sha256"] = sha256_bytes(model_bytes)
    full_manifest["model_bytes"] = len(model_bytes)
    if patch_model_bytes is not None:
        full_manifest["patch_model_file"] = paths.patch_model.name  # type: ignore[union-attr]
        full_manifest["patch_model_sha256"] = sha256_bytes(patch_model_bytes)
    manifest_text = json.dumps(full_manifest, indent=2, sort_keys=True) + "\n"

    jobs: list[tuple[Path, bytes]] = []
    if patch_model_bytes is not None and paths.patch_model is not None:
        jobs.append((paths.patch_model, patch_model_bytes))
    # The model is renamed into place right before its manifest: every byte is on disk (synced) before either
    # rename, so a crash leaves the old pair or the new one (bar the instant between two renames).
    jobs += [(out, model_bytes), (paths.manifest, manifest_text.encode())]

    def writer(data: bytes) -> Callable[[Path], object]:
        return lambda tmp: tmp.write_bytes(data)

    atomic_write_many([(path, writer(data)) for path, data in jobs], durable=True)
    return paths
