"""PyTorch sliding-window inference: THE reference for the full-image ONNX model.

The ONNX builder composes the same computation out of native ops (Slice, one
batched patch-model call, Softmax, centre crops, Concat) and is verified against
this function to 1e-5, and training validation uses it so validation numbers are
the numbers of the deployed model. So it stays deliberately plain: every patch of
``tiling.patches()`` goes through the model, softmax over the 2 logits, defect
channel, and only the patch's keep region is written, at its ``out`` position.
Patch layout and crops come from :mod:`bgsdk.tiling` and nowhere else.

:func:`whole_image` is the reference of the whole-strip build
(``build-model --mode whole``): the stem's maps are computed tile by tile exactly
as the tiled mode computes them (:class:`TiledStem`, the same tiling), then the
network's body runs once over the whole strip as it is -- no padding (its pools
round up, :mod:`bgtrain.model`), no overlaps recomputed. The export traces the
same module (:class:`WholeStrip`), so graph and reference share one definition.
Why tiles for the stem only: one registration over the whole strip, or one over a
reflect-padded strip, drew false alarms over the strip's interior and along its
edges that no tile shows (docs/experiments/2026-12-07-whole-strip-edges.md).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from bgsdk.contract import scale_input
from bgsdk.tiling import Patch, Tiling

from .model import level_sizes

__all__ = ["sliding_window", "heatmap_numpy", "TiledStem", "WholeStrip", "whole_image", "full_image"]


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


class TiledStem(nn.Module):
    """``(N,3,H,W)`` -> the stem's maps ``(N,C,H,W)``, computed per tile of ``tiling`` and stitched by its
    centre crops: pixel for pixel what the tiled mode's stem computes (one registration per tile). ``C`` is
    the stem's ``out_channels`` (3 for a stem without one: the plain network's identity)."""

    def __init__(self, stem: nn.Module, tiling: Tiling) -> None:
        super().__init__()
        self.stem = stem
        self.tiling = tiling
        self.channels = int(getattr(stem, "out_channels", 3))  # a static count: an export reads no traced shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tiling
        patches = list(t.patches())
        # patch-major (patch 0 of every image, then patch 1, ...): one stem call on all tiles of all images
        maps = self.stem(torch.cat([x[:, :, p.row.start : p.row.stop, p.col.start : p.col.stop] for p in patches]))
        grid = maps.reshape(len(patches), -1, self.channels, t.patch, t.patch)
        rows = []
        for r, row in enumerate(t.rows):
            cols = [
                grid[r * len(t.cols) + c, :, :, row.keep_start : row.keep_stop, col.keep_start : col.keep_stop]
                for c, col in enumerate(t.cols)
            ]
            rows.append(torch.cat(cols, dim=3))
        return torch.cat(rows, dim=2)


class WholeStrip(nn.Module):
    """``(N,3,H,W)`` -> logits ``(N,2,H,W)``: :class:`TiledStem`, then the UNet's body once over the strip.

    Shares the UNet's modules (no copy); its submodules are named ``stem``, ``encoder`` and ``decoder`` like
    the UNet's, so an exported graph's node names (``/stem/...``) mean the same in both modes.
    """

    def __init__(self, model: nn.Module, tiling: Tiling) -> None:
        super().__init__()
        stem, encoder, decoder = model.stem, model.encoder, model.decoder
        assert isinstance(stem, nn.Module) and isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module)
        self.stem = TiledStem(stem, tiling)
        self.encoder = encoder
        self.decoder = decoder
        self._channels_last = bool(getattr(model, "channels_last", lambda: False)())
        self._sizes = level_sizes(tiling.height, tiling.width)  # Python ints: an export reads no traced shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x.contiguous())
        if self._channels_last:
            s = s.contiguous(memory_format=torch.channels_last)
        return self.decoder(self.encoder(s), self._sizes)


def whole_image(model: nn.Module, images: torch.Tensor, tiling: Tiling, batch: int = 1) -> torch.Tensor:
    """``(N,3,H,W)`` already divided by 255 -> ``(N,H,W)`` defect probability, one body pass per image:
    :class:`WholeStrip` (the stem per tile of ``tiling``, the body over the strip as it is)."""
    h, w = images.shape[-2], images.shape[-1]
    if (h, w) != (tiling.height, tiling.width):
        raise ValueError(f"images are {h}x{w} but the tiling is for {tiling.height}x{tiling.width}")
    net = WholeStrip(model, tiling).train(model.training)  # shares the model's modules: restore its mode
    return full_image(net, images, batch)


def full_image(net: nn.Module, images: torch.Tensor, batch: int = 1) -> torch.Tensor:
    """``(N,3,H,W)`` -> ``(N,H,W)`` defect probability of a network that maps whole images to 2 logits.

    Softmax over the 2 logits, defect channel. ``batch`` images per call (a memory knob only). Eval mode,
    no gradients; the network's previous train/eval mode is restored afterwards.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N,3,H,W), got {tuple(images.shape)}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    n, _, h, w = images.shape
    out = torch.zeros((n, h, w), dtype=images.dtype, device=images.device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for i in range(0, n, batch):
                logits = net(images[i : i + batch])
                if logits.ndim != 4 or logits.shape[1] != 2 or tuple(logits.shape[2:]) != (h, w):
                    raise ValueError(f"model must map (B,3,H,W) to (B,2,H,W) logits, got {tuple(logits.shape)}")
                out[i : i + batch] = torch.softmax(logits, dim=1)[:, 1].to(out.dtype)
    finally:
        net.train(was_training)
    return out
