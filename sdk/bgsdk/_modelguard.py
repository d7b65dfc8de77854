"""Checks on an ONNX file's bytes *before* ONNX Runtime is given them.

An ONNX tensor may keep its values in another file ("external data": a
``location`` entry in ``TensorProto.external_data``). A hostile model can point
that at ``../../etc/shadow``, an absolute path, or a symlink leaving the model's
folder, and the runtime would read it. Recent ONNX Runtime versions check this
themselves, older ones (which ``bgsdk`` allows) do not, so the SDK checks every
reference first -- by path only, without opening the target.

The runtime SDK must not depend on the ``onnx`` package, so this walks the
protobuf *wire format* directly, descending only into the messages that can hold
a ``TensorProto`` (graphs, nodes, attributes, functions, training info, sparse
tensors) and skipping every other field by its length. Field numbers are those
of ``onnx.proto`` (ModelProto.graph = 7, GraphProto.initializer = 5, ...). A
file whose wire format breaks (truncated, corrupt) is reported here too, with
the byte offset, before ONNX Runtime's less specific message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator

__all__ = [
    "MAX_DEPTH",
    "WireError",
    "ExternalDataError",
    "GuardedModel",
    "external_data_locations",
    "check_external_data",
    "check_model_bytes",
]

# Nested subgraphs (If/Loop bodies) deeper than this are refused; protobuf's own limit is 100.
MAX_DEPTH = 64

# What each message kind contains that matters here: field number -> message kind.
# Fields not listed are skipped by wire type and length.
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "function": {7: "node", 11: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_EXTERNAL_DATA = 13  # TensorProto.external_data: repeated StringStringEntryProto {key = 1, value = 2}


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated or corrupt)."""


class ExternalDataError(ValueError):
    """An external-data reference points outside the model's folder."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(f"varint runs past the end of its message at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError(f"varint longer than 10 bytes at byte {pos}")


def _skip_group(buf: memoryview, pos: int, end: int, field: int, depth: int) -> int:
    """Skip a (deprecated, but legal) group up to its END_GROUP tag."""
    for f, wt, _, stop in _fields(buf, pos, end, depth + 1, group=field):
        if wt == 4 and f == field:
            return stop
    raise WireError(f"group {field} is not closed")


def _fields(
    buf: memoryview, pos: int, end: int, depth: int = 0, group: int | None = None
) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field, wire_type, start, stop)``; for wire type 2, start..stop is the payload."""
    if depth > MAX_DEPTH:
        raise WireError(f"messages nested deeper than {MAX_DEPTH} levels")
    while pos < end:
        tag_at = pos
        tag, pos = _varint(buf, pos, end)
        field, wt = tag >> 3, tag & 7
        if field == 0:
            raise WireError(f"field number 0 at byte {tag_at}")
        if wt == 0:
            _, pos = _varint(buf, pos, end)
            yield field, wt, pos, pos
        elif wt == 1 or wt == 5:
            size = 8 if wt == 1 else 4
            if pos + size > end:
                raise WireError(f"field {field} at byte {tag_at} runs past the end of its message")
            pos += size
            yield field, wt, pos, pos
        elif wt == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {field} at byte {tag_at} declares {length} bytes but only {end - pos} are left")
            yield field, wt, pos, pos + length
            pos += length
        elif wt == 3:
            pos = _skip_group(buf, pos, end, field, depth)
        elif wt == 4:
            if group is None:
                raise WireError(f"unexpected end-group tag at byte {tag_at}")
            yield field, wt, pos, pos
            return
        else:
            raise WireError(f"invalid wire type {wt} at byte {tag_at}")
    if group is not None:
        raise WireError(f"group {group} is not closed")


def _entry(buf: memoryview, start: int, stop: int, depth: int) -> tuple[str | None, str | None]:
    key = value = None
    for f, wt, s, e in _fields(buf, start, stop, depth):
        if wt == 2 and f in (1, 2):
            text = bytes(buf[s:e]).decode("utf-8", errors="replace")
            key, value = (text, value) if f == 1 else (key, text)
    return key, value


def _walk(buf: memoryview, start: int, stop: int, kind: str, depth: int, out: list[str]) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"messages nested deeper than {MAX_DEPTH} levels")
    children = _SCHEMA.get(kind, {})
    for f, wt, s, e in _fields(buf, start, stop, depth):
        if wt != 2:
            continue
        if kind == "tensor":
            if f == _TENSOR_EXTERNAL_DATA:
                key, value = _entry(buf, s, e, depth + 1)
                if key == "location":
                    out.append(value or "")
        elif f in children:
            _walk(buf, s, e, children[f], depth + 1, out)


def external_data_locations(data: bytes | memoryview) -> list[str]:
    """Every external-data ``location`` in a serialized ``ModelProto`` (in file order).

    Conservative: a tensor's ``location`` counts whatever its ``data_location``
    says. Raises :class:`WireError` for bytes that are not a protobuf message.
    """
    buf = memoryview(data)
    out: list[str] = []
    _walk(buf, 0, len(buf), "model", 0, out)
    return out


def _location_problem(folder: Path, location: str) -> str | None:
    """Why ``location`` may not be read, or ``None``; looks at paths only, never opens the target."""
    if not location:
        return "is empty"
    if "\x00" in location:
        return "contains a NUL byte"
    if "\\" in location or PureWindowsPath(location).drive:
        return "is a Windows path (backslash or drive letter)"
    pure = PurePosixPath(location)
    if pure.is_absolute():
        return "is an absolute path"
    if ".." in pure.parts:
        return "goes up with '..'"
    base = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(base, location))  # resolves symlinks; opens nothing
    if os.path.commonpath([base, target]) != base:
        return f"resolves (through a symlink) to {target}, outside the model's folder"
    return None


def check_external_data(model_path: str | os.PathLike[str], locations: list[str]) -> str | None:
    """The first external-data reference that leaves the model's folder, as a message; else ``None``."""
    folder = Path(model_path).parent
    for loc in locations:
        problem = _location_problem(folder, loc)
        if problem is not None:
            return (
                f"refused: external data location {loc!r} {problem} (only files inside the model's folder are allowed)"
            )
    return None


@dataclass(frozen=True)
class GuardedModel:
    """A model file's bytes, read once, with its external-data references (already checked)."""

    data: bytes
    external_locations: tuple[str, ...]


def check_model_bytes(path: str | os.PathLike[str], data: bytes) -> GuardedModel:
    """Walk ``data`` (the bytes of the model file ``path``) and check its external data.

    Raises :class:`WireError` for a malformed file and :class:`ExternalDataError`
    for a reference outside the folder (the caller words both as a ``ModelError``).
    The caller hands ``data`` itself to ONNX Runtime, so what was checked is what runs.
    """
    locations = external_data_locations(data)
    problem = check_external_data(path, locations)
    if problem is not None:
        raise ExternalDataError(problem)
    return GuardedModel(data, tuple(locations))
