"""Value checks on an image that *can* be run but probably should not be.

A valid file with nonsense values (negative or 1e30 pixels, a blank frame, the
target stored twice) gives a heatmap that looks like an answer. The readers
accept such files -- the format is fine -- so the :class:`~bgsdk._segmenter.Segmenter`
checks the values it is about to run and warns (:class:`~bgsdk.errors.InputWarning`),
or, with ``strict=True``, refuses the image (:class:`~bgsdk.errors.InputError`).

Declared input range (docs/sdk.md): every dtype is mapped onto 0..255 by
:mod:`bgsdk.io` -- float taken as is (expected 0..255), uint8 as is, uint16
divided by 257 -- so the check is the same for all: 0 <= value <= 255.
Only float input can leave that range.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VALUE_RANGE", "CHANNELS", "value_problems"]

#: What every channel is expected to hold after :func:`bgsdk.io.to_chw`.
VALUE_RANGE = (0.0, 255.0)
CHANNELS = ("target", "ref1", "ref2")


def value_problems(img: np.ndarray) -> list[str]:
    """Reasons why ``img`` ((3,H,W) float32 0..255, finite) looks wrong; ``[]`` if none.

    Costs a few passes over the image (min/max per channel, two equality tests),
    well under 1 ms for a 976x176 strip.
    """
    problems: list[str] = []
    lo_all, hi_all = float(img.min()), float(img.max())
    lo, hi = VALUE_RANGE
    if lo_all < lo:
        n = int(np.count_nonzero(img < lo))
        problems.append(f"{n} value(s) below {lo:g} (min {lo_all:.6g}); inputs are expected in {lo:g}..{hi:g}")
    if hi_all > hi:
        n = int(np.count_nonzero(img > hi))
        problems.append(
            f"{n} value(s) above {hi:g} (max {hi_all:.6g}); float inputs are taken as {lo:g}..{hi:g}, not rescaled"
        )
    mins, maxs = img.min(axis=(1, 2)), img.max(axis=(1, 2))
    constant = [f"{CHANNELS[c]} ({float(mins[c]):g})" for c in range(3) if mins[c] == maxs[c]]
    if constant:
        problems.append(f"constant channel(s): {', '.join(constant)}: a blank or saturated frame?")
    target = img[0]
    for c in (1, 2):
        if mins[0] != maxs[0] and np.array_equal(target, img[c]):
            problems.append(
                f"target is identical to {CHANNELS[c]}: the same frame stored twice? "
                "(nothing can differ from that reference)"
            )
    return problems
