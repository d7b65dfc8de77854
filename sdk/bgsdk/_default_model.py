"""The model shipped inside the package: what ``bgsdk.Segmenter()`` and ``bgsdk run`` use when none is named.

A release wheel carries ``bgsdk/models/default.onnx`` as package data (found with
:mod:`importlib.resources`, so it works from a wheel, an editable install or a zip).
A source checkout or a slim build may have none: asking for it is then a
:class:`NoDefaultModelError` that says how to get a model, never a bare "file not found".
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import ModelError

__all__ = ["DEFAULT_MODEL_NAME", "NoDefaultModelError", "default_model_path"]

DEFAULT_MODEL_NAME = "default.onnx"
_MESSAGE = "no model named and no default model shipped in this installation (build one with bgsdk build)"


class NoDefaultModelError(ModelError):
    """No model was named and this installation ships no default model."""

    def __init__(self, looked_at: Path) -> None:
        super().__init__(looked_at, _MESSAGE)
        self.args = (_MESSAGE,)

    def __str__(self) -> str:
        return _MESSAGE


def _packaged_file() -> Path:
    """Where the shipped model lives: ``bgsdk/models/default.onnx`` inside the installed package."""
    return Path(str(resources.files("bgsdk").joinpath("models").joinpath(DEFAULT_MODEL_NAME)))


def default_model_path() -> Path:
    """The shipped model's path; :class:`NoDefaultModelError` if this installation has none."""
    path = _packaged_file()
    if not path.is_file():
        raise NoDefaultModelError(path)
    return path
