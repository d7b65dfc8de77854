"""Focal loss and its gamma schedule (the research code's given numbers).

Defects cover a tiny fraction of a patch, so plain cross-entropy is dominated by
easy background pixels. The focal factor ``(1-pt)**gamma`` down-weights pixels
the model already gets right, and ``alpha`` (0.75 on the defect class) rebalances
the two classes. Gamma starts at 1 (close to CE, easy to start learning) and is
raised with a cosine to 3 (focus on the hard pixels late in training).

The formula is DRAEM's ``FocalLoss`` with a float ``alpha``, ``balance_index=1``
and ``smooth=1e-5``::

    q     = one_hot(target) clamped to [smooth/(C-1), 1-smooth]
    pt    = sum_c q_c * p_c + smooth
    loss  = mean(-alpha_t * (1 - pt)**gamma * log(pt))

but evaluated in log space from ``log_softmax`` so it stays finite (with finite
gradients) for arbitrarily confident logits and for any ``gamma >= 0``. For two
classes ``1 - pt == (1 - 2*smooth) * p_other`` exactly, which is what is used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["gamma_at", "FocalLoss", "top_background_loss", "TOP_BACKGROUND_FRACTION", "TOP_BACKGROUND_MARGIN"]


def gamma_at(step: int | float, total_steps: int | float, gamma_start: float = 1.0, gamma_end: float = 3.0) -> float:
    """Cosine schedule ``g0 + (g1-g0) * (1 - cos(pi*t/T)) / 2``, ``t`` clamped to ``[0, T]``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    t = min(max(float(step), 0.0), float(total_steps))
    return gamma_start + (gamma_end - gamma_start) * (1.0 - math.cos(math.pi * t / float(total_steps))) / 2.0


class FocalLoss(nn.Module):
    """Two-class focal loss on softmax logits; ``alpha`` weights the defect class (channel 1)."""

    def __init__(self, alpha: float = 0.75, smoothing: float = 1e-5) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not 0.0 <= smoothing < 0.5:
            raise ValueError(f"smoothing must be in [0, 0.5), got {smoothing}")
        self.alpha = float(alpha)
        self.smoothing = float(smoothing)

    def forward(
        self, logits: torch.Tensor, mask: torch.Tensor, gamma: float, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``logits`` (B,2,H,W), ``mask`` (B,1,H,W) 0/1 (> 0.5 is defect) -> scalar mean loss.

        ``weight`` (B,1,H,W), optional: per-pixel factors (hard negatives weigh more).
        """
        if logits.ndim != 4 or logits.shape[1] != 2:
            raise ValueError(f"logits must be (B,2,H,W), got {tuple(logits.shape)}")
        b, _, h, w = logits.shape
        if tuple(mask.shape) != (b, 1, h, w):
            raise ValueError(f"mask must be (B,1,H,W) = {(b, 1, h, w)} to match the logits, got {tuple(mask.shape)}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")

        s = self.smoothing
        logp = torch.log_softmax(logits, dim=1)
        is_defect = mask[:, 0] > 0.5
        logp_t = torch.where(is_defect, logp[:, 1], logp[:, 0])
        logp_o = torch.where(is_defect, logp[:, 0], logp[:, 1])

        if s > 0:
            # log(pt) = log((1-s) p_t + s p_o + s), a log-sum-exp of three terms.
            log_s = math.log(s)
            terms = torch.stack(
                [logp_t + math.log1p(-s), logp_o + log_s, torch.full_like(logp_t, log_s)],
                dim=0,
            )
            log_pt = torch.logsumexp(terms, dim=0)
        else:
            log_pt = logp_t
        # (1-pt)**gamma = exp(gamma * log((1-2s) p_o)): finite value and gradient even where p_o underflows.
        focal = torch.exp(gamma * (logp_o + math.log1p(-2.0 * s)))
        alpha_t = torch.where(
            is_defect,
            torch.tensor(self.alpha, dtype=logits.dtype, device=logits.device),
            torch.tensor(1.0 - self.alpha, dtype=logits.dtype, device=logits.device),
        )
        loss = -(alpha_t * focal * log_pt)
        if weight is not None:
            if tuple(weight.shape) != (b, 1, h, w):
                raise ValueError(f"weight must be (B,1,H,W) = {(b, 1, h, w)}, got {tuple(weight.shape)}")
            loss = loss * weight[:, 0]
        return loss.mean()


# The share of a patch's pixels that top_background_loss scores (0.5%: 82 of a 128x128 training patch,
# a few false-alarm blobs), and how far from a labelled defect's mask a pixel must be to count
# as plain background (the mask ends at 10% of a defect's peak; its rim is still the defect).
TOP_BACKGROUND_FRACTION = 0.005
TOP_BACKGROUND_MARGIN = 2


def top_background_loss(
    logits: torch.Tensor,
    mask: torch.Tensor,
    hard: torch.Tensor,
    fraction: float = TOP_BACKGROUND_FRACTION,
    margin: int = TOP_BACKGROUND_MARGIN,
) -> torch.Tensor:
    """Cross-entropy towards background on each patch's highest-scoring plain-background pixels.

    Why: a strip's defect score is its heatmap's maximum, so the few background pixels that
    score highest (pattern edges under misregistration, dot lattices) decide whether a good
    strip passes, and they are what holds pixel AP down on unseen backgrounds. The focal loss
    gives such a pixel almost no weight (``0.25 * p**gamma``: 0.007 at p=0.3, gamma=3) because
    it is rare. Here the top ``fraction`` of each patch's plain-background pixels get a plain
    cross-entropy, normalised per pixel of the patch like the focal mean, so a weight of 1
    puts them back at cross-entropy strength. Plain background = not within ``margin`` px of
    a labelled defect's mask and not a not-labelled defect's footprint (``hard``), which the
    recipe's ``hard_negative_weight`` already covers. A patch with no such pixel adds 0.

    ``logits`` (B,2,H,W), ``mask`` and ``hard`` (B,1,H,W) 0/1 -> scalar.
    """
    b, _, h, w = logits.shape
    for name, t in (("mask", mask), ("hard", hard)):
        if tuple(t.shape) != (b, 1, h, w):
            raise ValueError(f"{name} must be (B,1,H,W) = {(b, 1, h, w)} to match the logits, got {tuple(t.shape)}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    near = F.max_pool2d(mask, 2 * margin + 1, stride=1, padding=margin) if margin > 0 else mask
    excluded = ((near > 0.5) | (hard > 0.5)).flatten(1)
    margin_logit = (logits[:, 1] - logits[:, 0]).flatten(1)  # log(p / (1-p)) of the defect class
    k = max(1, int(round(fraction * h * w)))
    top = margin_logit.masked_fill(excluded, float("-inf")).topk(k, dim=1).values
    valid = torch.isfinite(top)
    # -log(1-p) = softplus(logit margin); masked-out slots (fewer than k plain pixels) add nothing.
    ce = torch.where(valid, F.softplus(torch.where(valid, top, torch.zeros_like(top))), torch.zeros_like(top))
    return ce.sum() / float(b * h * w)
