"""One error hierarchy for everything a user can get wrong.

Integrators catch ``BgsdkError`` once; the CLI turns any of them into a one-line
message and exit code 2. Every message names the offending file (or "array")
and the problem, so a production log line is enough to act on.

bgtrain and bgbuild extend this hierarchy (``CheckpointError``, ``BuildError``);
they define no error roots of their own. :func:`check_file` is the one
"is this a usable file" check (missing, a directory, empty) they all use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = [
    "BgsdkError",
    "SourceError",
    "InputError",
    "ModelError",
    "UserError",
    "check_file",
    "BgsdkWarning",
    "InputWarning",
    "ChannelOrderWarning",
]


class BgsdkError(Exception):
    """Base class of every error bgsdk (and bgtrain, bgbuild) raises on purpose."""


class SourceError(BgsdkError):
    """An error about one file (or in-memory array): ``<source>: <problem>``."""

    #: What ``source`` says when no file is involved.
    default_source = "input"

    def __init__(self, source: str | os.PathLike[str] | None, problem: str) -> None:
        self.source = os.fspath(source) if source is not None else self.default_source
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class InputError(SourceError, ValueError):
    """An input image (file or array) cannot be used."""

    default_source = "array"


class ModelError(SourceError):
    """A model file cannot be loaded or does not fit the bgsdk contract."""

    default_source = "model"


class UserError(BgsdkError):
    """A problem the user can fix on the command line (bad option combination, bad folder, ...)."""


def check_file(path: Path, error: Callable[[Path, str], BgsdkError], kind: str, name: str = "file") -> None:
    """Raise ``error(path, ...)`` unless ``path`` is an existing, non-empty file.

    ``kind`` completes "is a directory, not ..." (e.g. "an image file"); ``name`` is
    what the file is called in "... not found" / "... is empty".
    """
    if not path.exists():
        raise error(path, f"{name} not found")
    if path.is_dir():
        raise error(path, f"is a directory, not {kind}")
    if path.stat().st_size == 0:
        raise error(path, f"{name} is empty (0 bytes)")


class BgsdkWarning(UserWarning):
    """Base class of every warning bgsdk issues on purpose."""


class InputWarning(BgsdkWarning):
    """An image that can be run but whose values look wrong (out of range, blank, duplicated).

    ``Segmenter(..., strict=True)`` turns each of these into an :class:`InputError`.
    """


class ChannelOrderWarning(BgsdkWarning):
    """A channel-last uint8 3-channel array passed without ``channel_order``: OpenCV (B,G,R) or PIL (R,G,B)?

    It is read as target, ref1, ref2 (``channel_order="trr"``); the warning is given
    once per ``Segmenter``. Not an :class:`InputWarning`: ``strict=True`` does not refuse it.
    """
