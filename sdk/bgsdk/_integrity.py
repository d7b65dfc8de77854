"""Integrity of a release model: its bytes against the sha256 in the ``model.json`` beside it.

``build-model`` writes ``model.onnx`` and ``model.json``; the manifest records
``model_sha256`` and ``model_bytes`` of the exact bytes written. A model copied
to a line machine can be damaged (a truncated transfer) or replaced; with
``Segmenter(path, verify=True)`` or ``bgsdk inspect --verify`` such a file is
refused before ONNX Runtime sees it. The hash is taken over the same bytes that
are then handed to ONNX Runtime, so nothing can change between check and load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["IntegrityError", "Manifest", "manifest_path_for", "read_manifest", "verify_bytes"]

# A manifest is a few kB; anything much larger is not one (and is not read whole).
MAX_MANIFEST_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class IntegrityError(ValueError):
    """The model does not match its manifest, or the manifest is missing or unusable."""


@dataclass(frozen=True)
class Manifest:
    path: Path
    model_sha256: str
    model_bytes: int | None
    content: dict[str, Any]


def manifest_path_for(model_path: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.json`` (the rule ``build-model`` writes by)."""
    return Path(model_path).with_suffix(".json")


def read_manifest(model_path: str | os.PathLike[str]) -> Manifest:
    """The manifest beside ``model_path``, checked for the fields integrity needs."""
    mpath = manifest_path_for(model_path)
    if not mpath.is_file():
        raise IntegrityError(f"cannot verify: no manifest {mpath.name} beside the model (build-model writes one)")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"cannot verify: {mpath.name} is larger than {MAX_MANIFEST_BYTES} bytes, not a manifest")
    try:
        content = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"cannot verify: {mpath.name} is not valid JSON ({exc})") from None
    if not isinstance(content, dict):
        raise IntegrityError(f"cannot verify: {mpath.name} is not a JSON object")
    sha = content.get("model_sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise IntegrityError(f"cannot verify: {mpath.name} has no valid 'model_sha256'")
    size = content.get("model_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise IntegrityError(f"cannot verify: {mpath.name} has an invalid 'model_bytes' ({size!r})")
    return Manifest(mpath, sha, size, content)


def verify_bytes(model_path: str | os.PathLike[str], data: bytes) -> Manifest:
    """Check ``data`` (the model file's bytes) against its manifest; raise :class:`IntegrityError`."""
    manifest = read_manifest(model_path)
    if manifest.model_bytes is not None and manifest.model_bytes != len(data):
        raise IntegrityError(
            f"integrity check failed: the file has {len(data)} bytes, {manifest.path.name} says "
            f"{manifest.model_bytes} (truncated or replaced after build); refusing to load it"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest.model_sha256:
        raise IntegrityError(
            f"integrity check failed: sha256 {actual[:16]}... does not match {manifest.path.name} "
            f"({manifest.model_sha256[:16]}...): the file was changed after build; refusing to load it"
        )
    return manifest
