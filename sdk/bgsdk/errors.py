"""One error hierarchy for everything a user can get wrong.

Integrators catch ``BgsdkError`` once; the CLI turns any of them into a one-line
message and exit code 2. Every message names the offending file (or "array")
and the problem, so a production log line is enough to act on.
"""

from __future__ import annotations

import os


class BgsdkError(Exception):
    """Base class of every error bgsdk raises on purpose."""


class InputError(BgsdkError, ValueError):
    """An input image (file or array) cannot be used."""

    def __init__(self, source: str | os.PathLike[str] | None, problem: str) -> None:
        self.source = os.fspath(source) if source is not None else "array"
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ModelError(BgsdkError):
    """A model file cannot be loaded or does not fit the bgsdk contract."""

    def __init__(self, source: str | os.PathLike[str] | None, problem: str) -> None:
        self.source = os.fspath(source) if source is not None else "model"
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class BgsdkWarning(UserWarning):
    """Base class of every warning bgsdk issues on purpose."""


class InputWarning(BgsdkWarning):
    """An image that can be run but whose values look wrong (out of range, blank, duplicated).

    ``Segmenter(..., strict=True)`` turns each of these into an :class:`InputError`.
    """
