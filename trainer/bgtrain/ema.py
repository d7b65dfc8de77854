"""An exponential moving average of the weights: the model that is validated and saved.

Why: Adam at a constant 1e-3 on batches of 16 freshly synthesised patches leaves the raw weights
jittering, and the validation pixel AP of consecutive epochs of one run swings by up to 0.2
(docs/experiments/2026-11-28-weight-averaging.md), so ``best.pt`` picks a lucky epoch and ``last.pt`` may be an
unlucky one. The average over the last few hundred steps (BatchNorm statistics included) removes
most of that jitter at no training cost. The raw weights keep training untouched: with or without
the average, a seed gives the same optimiser trajectory.

Built on :class:`torch.optim.swa_utils.AveragedModel`; only the decay schedule is ours: the
warm-up ``min(decay, (1 + n) / (10 + n))`` (as in timm's ``ModelEmaV2`` and TensorFlow's
``ExponentialMovingAverage``) so the first epochs are not dominated by the random initial weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.optim.swa_utils import AveragedModel

__all__ = ["DEFAULT_EMA_DECAY", "decay_at", "make_ema"]

# About the last 500 steps (~2 epochs of the 216-step demo epochs): long enough to smooth the jitter,
# short enough that the saved average is of the low-LR end of training. docs/experiments/2026-11-28-weight-averaging.md.
DEFAULT_EMA_DECAY = 0.998


def decay_at(decay: float, n_averaged: int) -> float:
    """The decay used for the update after ``n_averaged`` earlier ones (warm-up, then ``decay``)."""
    return min(decay, (1.0 + n_averaged) / (10.0 + n_averaged))


def _ema_update(decay: float) -> Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], torch.Tensor | int], None]:
    def update(averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], n: torch.Tensor | int) -> None:
        d = decay_at(decay, int(n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(list(averaged), list(current), 1.0 - d)
        else:  # BatchNorm's num_batches_tracked: a counter, not something to average
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An averaged copy of ``model`` (parameters and buffers); call ``update_parameters(model)`` each step."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=_ema_update(decay), use_buffers=True)
