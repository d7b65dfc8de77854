"""``bgsdk build``: the command lives in :mod:`bgbuild.cli` (torch, onnx); loaded only when it runs."""

from __future__ import annotations

from ._lazy import LazyCommand

__all__ = ["build_cmd"]

build_cmd = LazyCommand(
    "build",
    "bgbuild.cli:build_command",
    extra="build",
    short_help="Build the verified full-image model.onnx from a training checkpoint (needs bgsdk[build]).",
)
