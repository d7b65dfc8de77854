"""``bgsdk synth``: the command lives in :mod:`bgtrain.synth_dataset`; loaded only when it runs."""

from __future__ import annotations

from ._lazy import LazyCommand

__all__ = ["synth_cmd"]

synth_cmd = LazyCommand(
    "synth",
    "bgtrain.synth_dataset:cli",
    extra="train",
    short_help="Write a synthetic data set (train/valid/test strips, masks, defect annotations).",
)
