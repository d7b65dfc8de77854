"""Training patches: index -> (image, patch) on the fly, crop first, then synthesise.

No patch list is precomputed: ``index`` decomposes into an image number and a
patch number of the shared tiling, so the data set costs O(images) memory and
validation sees exactly the patches deployment will. Decoded images sit in a
small LRU cache (per worker process).

Training images are clean: 3 channels (target, ref1, ref2), a 2-channel (test,
template) pair -> (t, r, r), or a single-channel golden template -> (img, img, img);
the recipe's nuisances then make the three views differ (:func:`bgsdk.io.read_image`
with ``single="replicate"``). Their size sets the geometry (:func:`resolve_geometry`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from bgsdk.contract import scale_input
from bgsdk.errors import InputError
from bgsdk.io import image_shape, read_image
from bgsdk.tiling import CUSTOM, IMAGE_TYPES, Patch, Tiling, image_type_for, tiling_for

from .model import DOWNSAMPLE
from .recipe import Recipe, RecipeError, get_recipe
from .synth import SynthResult, sample_rng, synthesize

__all__ = ["PatchDataset", "ImageCache", "resolve_geometry", "read_training_image"]


def read_training_image(path: Path) -> np.ndarray:
    """A clean training image as ``(3,H,W)``: a single-channel golden template stands for all three views."""
    return read_image(path, single="replicate")


def resolve_geometry(
    files: Sequence[str | Path], image_type: str | None = None, image_size: tuple[int, int] | None = None
) -> tuple[str, tuple[int, int]]:
    """``(image type, (height, width))`` of a training run: from ``image_size``, else the images' own size.

    Every training image must have that size (one image of another size is an
    :class:`InputError` naming it and both sizes). ``image_type`` None: the named type
    of that size (strip, square, mvtec), else ``custom``; a named type is tiled at the
    data's size with its own patch.
    """
    if not files:
        raise InputError("training data", "no training images")
    first = Path(files[0])
    size = tuple(image_size) if image_size is not None else image_shape(first)
    for f in files:
        hw = image_shape(f)
        if hw != size:
            where = "--image-size" if image_size is not None else f"the first training image ({first.name})"
            raise InputError(
                f, f"image is {hw[0]}x{hw[1]}, but {where} is {size[0]}x{size[1]}: all training images need one size"
            )
    h, w = int(size[0]), int(size[1])
    kind = image_type_for(h, w) if image_type is None else image_type
    if kind != CUSTOM and kind not in IMAGE_TYPES:
        raise InputError(
            "--image-type", f"unknown image type {kind!r}; choose one of {sorted(IMAGE_TYPES)} or {CUSTOM}"
        )
    try:
        tiling_for(kind, h, w)
    except ValueError as exc:
        raise InputError(first, str(exc)) from None
    return kind, (h, w)


class ImageCache:
    """Least-recently-used cache of decoded ``(3,H,W)`` images."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[Path, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, path: Path) -> np.ndarray:
        img = self._items.get(path)
        if img is not None:
            self._items.move_to_end(path)
            self.hits += 1
            return img
        self.misses += 1
        img = read_training_image(path)
        if self.capacity:
            self._items[path] = img
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return img

    def __len__(self) -> int:
        return len(self._items)


def reflect_padding(height: int, width: int, multiple: int = DOWNSAMPLE) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` reflect padding that brings ``height x width`` to multiples of ``multiple``.

    Split as evenly as possible (the extra pixel of an odd total goes to the bottom/right), so neither
    border sees much more mirrored context than the other: 976x176 -> 992x192 is (8, 8, 8, 8). Reflect
    padding needs each pad to be smaller than the side it mirrors; every pad is < ``multiple``.
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


def _pad_reflect(
    image: np.ndarray, mask: np.ndarray, weight: np.ndarray, hard: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A crop reflect-padded to multiples of 32 (:func:`reflect_padding`); mask, weight and hard-negative
    maps zero-padded, so the mirrored border carries no loss."""
    top, bottom, left, right = reflect_padding(*image.shape[1:])
    pads = ((0, 0), (top, bottom), (left, right))
    return (
        np.pad(image, pads, mode="reflect"),
        np.pad(mask, pads),
        np.pad(weight, pads),
        np.pad(hard, pads),
    )


class PatchDataset(Dataset):
    """Synthetic-defect training patches from clean images.

    Each item is ``{"input": (3,P,P) float32 in 0..1, "mask": (1,P,P) float32, "weight": (1,P,P)
    float32, "hard": (1,P,P) float32}`` -- the loss weight is the recipe's ``hard_negative_weight`` on
    the footprints of not-labelled defects, its ``weak_defect_weight`` on the GT pixels of weak
    labelled defects and 1 elsewhere; ``hard`` is 1 on those footprints outside the mask (what
    ``loss.top_background_loss`` leaves out).
    Samples are a pure function of (seed, epoch, index): call :meth:`set_epoch`
    each epoch (before the loader's workers start) to get fresh defects.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        image_type: str = "strip",
        cache_size: int = 64,
        recipe: Recipe | None = None,
        seed: int = 0,
        image_size: tuple[int, int] | None = None,
        repeats: int = 1,
    ) -> None:
        if not files:
            raise ValueError("PatchDataset needs at least one image")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.files = [Path(f) for f in files]
        self.image_type = image_type
        h, w = image_size if image_size is not None else (None, None)
        self.tiling: Tiling = tiling_for(image_type, h, w)
        self.patches: list[Patch] = list(self.tiling.patches())
        self.recipe = recipe or get_recipe("seed")
        self.seed = int(seed)
        self.epoch = 0
        self.cache = ImageCache(cache_size)
        # Each patch position is visited `repeats` times an epoch, each time with other defects:
        # more optimiser steps per epoch without more images (the index still seeds the defects).
        self.repeats = int(repeats)
        ch, cw = self.crop_shape
        if ch > self.tiling.height or cw > self.tiling.width:
            raise RecipeError(
                f"recipe key 'crop_size' = {list(self.recipe.crop_size)} does not fit the {image_type!r} "
                f"images ({self.tiling.height}x{self.tiling.width})"
            )
        self.crop_recipe = self._scaled_recipe()

    @property
    def patch_size(self) -> int:
        return self.tiling.patch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files) * len(self.patches) * self.repeats

    def locate(self, index: int) -> tuple[Path, Patch]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patches")
        image_index, patch_index = divmod(index % (len(self.files) * len(self.patches)), len(self.patches))
        return self.files[image_index], self.patches[patch_index]

    def image(self, path: Path) -> np.ndarray:
        img = self.cache.get(path)
        expected = (self.tiling.height, self.tiling.width)
        if img.shape[1:] != expected:
            raise InputError(
                path,
                f"image is {img.shape[1]}x{img.shape[2]}, but the {self.image_type!r} tiling expects "
                f"{expected[0]}x{expected[1]}",
            )
        return img

    def synthesize(self, index: int) -> SynthResult:
        """Item ``index`` as the synthesiser made it (image 0..255, mask, defects, hard negatives)."""
        path, patch = self.locate(index)
        img = self.image(path)
        p = self.tiling.patch
        ch, cw = self.crop_shape
        rng = sample_rng(self.seed, self.epoch, index)
        y, x = patch.y + (p - ch) // 2, patch.x + (p - cw) // 2
        if self.recipe.crop_jitter:  # drawn only when asked: jitter 0 keeps the exact stream of earlier runs
            j = int(self.recipe.crop_jitter)
            dy, dx = rng.integers(-j, j + 1, size=2)
            y, x = y + int(dy), x + int(dx)
        y = int(np.clip(y, 0, img.shape[1] - ch))
        x = int(np.clip(x, 0, img.shape[2] - cw))
        crop = img[:, y : y + ch, x : x + cw]
        return synthesize(crop, rng, self.crop_recipe)

    def _scaled_recipe(self) -> Recipe:
        """The recipe a crop is synthesised with: its defect counts scaled from the patch to the crop's area,
        so that a larger crop carries the patch recipe's defect density (the same recipe for patch crops)."""
        ch, cw = self.crop_shape
        scale = ch * cw / float(self.tiling.patch**2)
        if scale <= 1.0:
            return self.recipe

        def scaled(lo_hi: tuple[int, int]) -> list[int]:
            return [int(round(v * scale)) for v in lo_hi]

        knobs = {"num_defects_range": scaled(self.recipe.num_defects_range)}
        knobs["target_range"] = scaled(self.recipe.target_range)
        return Recipe.from_dict(knobs, base=self.recipe)

    @property
    def crop_shape(self) -> tuple[int, int]:
        """(height, width) of a training crop: the recipe's ``crop_size``, or the tiling's patch."""
        ch, cw = (int(v) for v in self.recipe.crop_size)
        return (ch, cw) if ch else (self.tiling.patch, self.tiling.patch)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Numpy view of item ``index``: ((3,P,P) float32 0..255, (P,P) bool)."""
        r = self.synthesize(index)
        return r.image, r.mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        r = self.synthesize(index)
        crop = scale_input(r.image)
        weight = np.ones((1, *r.mask.shape), np.float32)
        hard = np.zeros_like(r.mask) if r.hard is None else r.hard & ~r.mask
        if self.recipe.hard_negative_weight != 1.0:
            weight[0][hard] = np.float32(self.recipe.hard_negative_weight)
        if r.weak is not None and self.recipe.weak_defect_weight != 1.0:
            weight[0][r.weak & r.mask] = np.float32(self.recipe.weak_defect_weight)
        mask = r.mask[None].astype(np.float32)
        hard_f = hard[None].astype(np.float32)
        if self.recipe.crop_padding == "reflect":
            crop, mask, weight, hard_f = _pad_reflect(crop, mask, weight, hard_f)
        return {
            "input": torch.from_numpy(crop),
            "mask": torch.from_numpy(mask),
            "weight": torch.from_numpy(weight),
            "hard": torch.from_numpy(hard_f),
        }
