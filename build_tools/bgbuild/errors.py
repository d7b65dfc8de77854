"""The build's own error: a user-fixable reason the artifact was not written."""

from __future__ import annotations

from bgsdk.errors import BgsdkError

__all__ = ["BuildError", "VerificationError"]


class BuildError(BgsdkError):
    """The model could not be built (bad option, bad data, failed check)."""


class VerificationError(BuildError):
    """The built model disagrees with the PyTorch reference beyond the tolerance."""
