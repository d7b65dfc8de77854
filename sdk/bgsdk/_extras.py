"""Optional dependencies (extras): import on first use, with a one-line install hint when missing.

The runtime SDK stays numpy + onnxruntime + tifffile; Triton's client and Ray
are only imported by the code paths that need them (``bgsdk[triton]``,
``bgsdk[ray]``), never by ``import bgsdk``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import BgsdkError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(BgsdkError, ImportError):
    """An optional dependency of one feature is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(f"{feature} needs the {module!r} package: pip install 'bgsdk[{extra}]'")


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingExtraError` naming ``bgsdk[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the package is there but one of *its* dependencies is broken: show that
        raise MissingExtraError(module, extra, feature) from exc
