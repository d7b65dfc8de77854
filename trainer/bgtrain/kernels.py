"""Eager-mode kernels of the input stems: the very numbers of the exported ops, at a fraction of the cost.

Why: the stems are parameter-free and run on every training batch, and in PyTorch's eager mode their
export-friendly forms are slow. A 3x3 MaxPool on a channel slice, and a shift written as a weighted sum of
every whole-pixel shift in range (what ONNX needs: Pad, Slice, Mul, Add, no data-dependent indexing), made
the registered stem about half of a width-16 training step. Training never exports, so while PyTorch runs
eagerly these kernels compute the same function another way:

* :func:`max3x3` -- the maximum of three row slices, then of three column slices, of the input padded by
  replicating its border (the border pixel is in every window that the padding touches, so the maximum is
  the one of the pixels inside: ``nn.MaxPool2d(3, 1, 1)``, exactly);
* :func:`interpolate_taps` -- per image and channel only the (at most two) whole-pixel shifts whose weight
  is not zero, added in the order the weighted sum adds them. The terms left out are exact zeros, so the
  result is bit for bit the weighted sum's (up to the sign of a zero).

While tracing, exporting or compiling, callers take the export forms (:func:`exporting`); tests hold
both to ``torch.equal``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["exporting", "max3x3", "interpolate_taps"]


def exporting() -> bool:
    """True while torch traces, exports or compiles the model: a graph wants the export forms (no Python
    loops over values; ``torch.compile`` fuses their element-wise ops instead)."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def max3x3(x: torch.Tensor) -> torch.Tensor:
    """``nn.MaxPool2d(3, stride=1, padding=1)(x)`` for ``(B,C,H,W)``, by slices (eager mode)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = torch.maximum(torch.maximum(p[..., :, :-2], p[..., :, 1:-1]), p[..., :, 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def interpolate_taps(padded: torch.Tensor, d: torch.Tensor, radius: int, dim: int, step: int = 1) -> torch.Tensor:
    """The weighted sum of ``bgtrain.model._interpolate`` for one shift per image and channel.

    ``padded`` (B,C,...) is padded by ``radius`` on both sides of ``dim``; ``d`` is (B,C,1,1) or (B,1,1,1).
    Tap ``j`` (``-radius, -radius + step, ..., radius``) has weight ``relu(1 - |d - j|)``, zero unless
    ``|d - j| < 1``: at most two taps count per image and channel.
    """
    size = padded.shape[dim] - 2 * radius
    b, c = padded.shape[0], padded.shape[1]
    dd = d.expand(b, c, *d.shape[2:])
    taps = list(range(-radius, radius + 1, step))
    # The weights exactly as the weighted sum computes them (j = -radius as d + radius, the others as d - j).
    weights = [torch.relu(1 - ((dd + radius) if j == -radius else (dd - j)).abs()) for j in taps]
    shape = list(padded.shape)
    shape[dim] = size
    out = padded.new_zeros(shape)
    axis = dim if dim < 0 else dim - 2  # of one image's (H, W) plane
    nonzero = torch.stack([w.reshape(b, c) != 0 for w in weights], -1).tolist()
    for i in range(b):
        for k in range(c):
            acc: torch.Tensor | None = None
            for n, j in enumerate(taps):
                if not nonzero[i][k][n]:
                    continue
                term = weights[n][i, k] * padded[i, k].narrow(axis, radius + j, size)
                acc = term if acc is None else acc + term
            if acc is not None:
                out[i, k] = acc
    return out
