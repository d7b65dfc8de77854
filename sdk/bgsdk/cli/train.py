"""``bgsdk train``: the command lives in :mod:`bgtrain.cli` (torch); loaded only when it runs."""

from __future__ import annotations

from ._lazy import LazyCommand

__all__ = ["train_cmd"]

train_cmd = LazyCommand(
    "train",
    "bgtrain.cli:train_command",
    extra="train",
    short_help="Train the defect-segmentation UNet on a data set (needs bgsdk[train]).",
)
