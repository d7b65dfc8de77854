"""A UNet with hand-set weights that implements the double-detection baseline.

Why: an accuracy gate (INT8/fp16 builds) tests nothing unless the model really
detects defects, and training one takes minutes. This UNet's weights compute
``sigmoid(gain * min(|T-R1|, |T-R2|) - offset)`` (inputs in 0..1): encoder
block 0 computes |T-R1| and |T-R2|, the last decoder stage their minimum, the
head a logit that grows with it; everything else is zero. Its fp32 pixel AP
therefore equals the numpy double-detection baseline (bgsdk.evaluate.metrics), an
independent reference, and its activations grow with the defect amplitude, so a
badly calibrated quantization range visibly clips defects. Used by the build
tests and benchmarks/bench_int8.py.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .model import UNet

__all__ = ["double_detection_unet"]


def _conv(block: nn.Module, index: int) -> nn.Conv2d:
    layer = cast(nn.Sequential, block)[index]
    assert isinstance(layer, nn.Conv2d) and layer.bias is not None
    return layer


def _zero(m: UNet) -> None:
    """All convs zero; every BatchNorm the identity: (x - 0) / sqrt(1 - eps + eps) * 1 + 0."""
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            mod.weight.zero_()
            if mod.bias is not None:
                mod.bias.zero_()
        elif isinstance(mod, nn.BatchNorm2d):
            assert mod.running_mean is not None and mod.running_var is not None
            mod.running_mean.zero_()
            mod.running_var.fill_(1.0 - mod.eps)
            mod.weight.fill_(1.0)
            mod.bias.zero_()


def double_detection_unet(width: int = 4, gain: float = 20.0, offset: float = 3.0) -> UNet:
    """A UNet computing sigmoid(gain * min(|T-R1|, |T-R2|) - offset) (inputs in 0..1), all else zero."""
    m = UNet(base_width=width).eval()
    with torch.no_grad():
        _zero(m)
        c1, c2 = _conv(m.encoder.blocks[0], 0), _conv(m.encoder.blocks[0], 3)
        for o, (pos, neg) in enumerate([(0, 1), (1, 0), (0, 2), (2, 0)]):  # relu(T-R1), relu(R1-T), ...
            c1.weight[o, pos, 1, 1], c1.weight[o, neg, 1, 1] = 1.0, -1.0
        c2.weight[0, 0, 1, 1] = c2.weight[0, 1, 1, 1] = 1.0  # a = |T-R1|
        c2.weight[1, 2, 1, 1] = c2.weight[1, 3, 1, 1] = 1.0  # b = |T-R2|
        last = m.decoder.blocks[4]  # input: [upsampled (width ch), skip = encoder block 0 (width ch)]
        l0, l3 = _conv(last, 0), _conv(last, 3)
        l0.weight[0, width + 0, 1, 1] = 1.0  # a
        l0.weight[1, width + 0, 1, 1], l0.weight[1, width + 1, 1, 1] = 1.0, -1.0  # relu(a - b)
        l3.weight[0, 0, 1, 1], l3.weight[0, 1, 1, 1] = 1.0, -1.0  # a - relu(a - b) = min(a, b)
        head = m.decoder.head
        assert head.bias is not None
        head.weight[1, 0, 1, 1] = gain
        head.bias[1] = -offset
    return m
