"""PyTorch sliding-window inference: THE reference for the full-image ONNX model.

The ONNX builder composes the same computation out of native ops (Slice, one
batched patch-model call, Softmax, centre crops, Concat) and is verified against
this function to 1e-5, and training validation uses it so validation numbers are
the numbers of the deployed model. So it stays deliberately plain: every patch of
``tiling.patches()`` goes through the model, softmax over the 2 logits, defect
channel, and only the patch's keep region is written, at its ``out`` position.
Patch layout and crops come from :mod:`bgsdk.tiling` and nowhere else.

:func:`whole_image` is the reference of the opt-in whole-strip build
(``build-model --mode whole``): the image is reflect-padded to the next
multiple of 32 (the UNet's downsampling factor), the UNet runs once on it, and
the defect probability is cropped back -- no overlaps recomputed. The padding
rule lives in :func:`whole_padding` only; the ONNX builder bakes the same
numbers into a ``Pad(mode="reflect")``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from bgsdk.contract import scale_input
from bgsdk.tiling import Patch, Tiling

__all__ = ["sliding_window", "heatmap_numpy", "whole_padding", "whole_image"]

# The UNet halves its input 5 times (bgtrain.model.DOWNSAMPLE).
WHOLE_MULTIPLE = 32


def _chunks(items: list[tuple[int, Patch]], size: int) -> Iterator[list[tuple[int, Patch]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def sliding_window(model: nn.Module, images: torch.Tensor, tiling: Tiling, patch_batch: int = 18) -> torch.Tensor:
    """``(N,3,H,W)`` already divided by 255 -> ``(N,H,W)`` defect probability.

    Patches of all images are batched together, ``patch_batch`` at a time (a
    memory knob only: the result does not depend on it). The model runs in eval
    mode without gradients; its previous train/eval mode is restored afterwards.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N,3,H,W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    if (h, w) != (tiling.height, tiling.width):
        raise ValueError(f"images are {h}x{w} but the tiling is for {tiling.height}x{tiling.width}")
    if patch_batch < 1:
        raise ValueError(f"patch_batch must be >= 1, got {patch_batch}")

    out = torch.zeros((n, h, w), dtype=images.dtype, device=images.device)
    jobs = [(i, p) for i in range(n) for p in tiling.patches()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for chunk in _chunks(jobs, patch_batch):
                batch = torch.stack(
                    [images[i, :, p.row.start : p.row.stop, p.col.start : p.col.stop] for i, p in chunk]
                )
                logits = model(batch)
                if logits.ndim != 4 or logits.shape[1] != 2 or tuple(logits.shape[2:]) != tuple(batch.shape[2:]):
                    raise ValueError(
                        f"model must map (B,3,P,P) to (B,2,P,P) logits, got {tuple(logits.shape)} "
                        f"for input {tuple(batch.shape)}"
                    )
                prob = torch.softmax(logits, dim=1)[:, 1]
                for (i, p), pr in zip(chunk, prob):
                    out[i, p.row.out_start : p.row.out_stop, p.col.out_start : p.col.out_stop] = pr[
                        p.row.keep_start : p.row.keep_stop, p.col.keep_start : p.col.keep_stop
                    ].to(out.dtype)
    finally:
        model.train(was_training)
    return out


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def heatmap_numpy(model: nn.Module, image: np.ndarray, tiling: Tiling, patch_batch: int = 18) -> np.ndarray:
    """One ``(3,H,W)`` 0..255 image -> ``(H,W)`` float32 heatmap.

    Normalises exactly like the deployment contract (float32 ``/ 255``) so the
    result is comparable with the ONNX model's channel 0.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"image must be (3,H,W) target/ref1/ref2, got shape {img.shape}")
    x = torch.from_numpy(np.ascontiguousarray(scale_input(img)))
    x = x.unsqueeze(0).to(_model_device(model))
    return sliding_window(model, x, tiling, patch_batch)[0].cpu().numpy().astype(np.float32, copy=False)


def whole_padding(height: int, width: int, multiple: int = WHOLE_MULTIPLE) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` reflect padding that brings ``height x width`` to multiples of ``multiple``.

    Split as evenly as possible (the extra pixel of an odd total goes to the
    bottom/right), so neither border sees much more mirrored context than the
    other: 976x176 -> 992x192 is (8, 8, 8, 8). Reflect padding needs each pad to
    be smaller than the side it mirrors; every pad is < ``multiple`` (32), so any
    side >= 32 works (the tiled mode's minimum, one 128 px patch, is far above).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image sides must be positive, got {height}x{width}")
    pads = []
    for side in (height, width):
        total = -side % multiple
        if total and total >= side:
            raise ValueError(f"a {side} px side is too small to reflect-pad by {total} px (needs a side > the pad)")
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


def whole_image(model: nn.Module, images: torch.Tensor, batch: int = 1) -> torch.Tensor:
    """``(N,3,H,W)`` already divided by 255 -> ``(N,H,W)`` defect probability, one UNet pass per image.

    Reflect-pad to the next multiple of 32 (:func:`whole_padding`), run the
    model, softmax over the 2 logits, defect channel, crop back to ``H x W``.
    ``batch`` images per model call (a memory knob only). Eval mode, no
    gradients; the model's previous train/eval mode is restored afterwards.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N,3,H,W), got {tuple(images.shape)}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    n, _, h, w = images.shape
    top, bottom, left, right = whole_padding(h, w)
    out = torch.zeros((n, h, w), dtype=images.dtype, device=images.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, n, batch):
                x = images[i : i + batch]
                if top or bottom or left or right:
                    x = torch.nn.functional.pad(x, (left, right, top, bottom), mode="reflect")
                logits = model(x)
                if logits.ndim != 4 or logits.shape[1] != 2 or tuple(logits.shape[2:]) != tuple(x.shape[2:]):
                    raise ValueError(
                        f"model must map (B,3,H,W) to (B,2,H,W) logits, got {tuple(logits.shape)} for input {tuple(x.shape)}"
                    )
                prob = torch.softmax(logits, dim=1)[:, 1]
                out[i : i + batch] = prob[:, top : top + h, left : left + w].to(out.dtype)
    finally:
        model.train(was_training)
    return out
