"""bgtrain: synthetic-defect data, the UNet and its training loop (needs torch)."""

from bgsdk import __version__

__all__ = ["__version__"]
