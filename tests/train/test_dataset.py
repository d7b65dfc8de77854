from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bgsdk._dataset_layout import labelled_split, training_images
from bgsdk.errors import InputError
from bgsdk.io import read_image, write_tiff
from bgsdk.tiling import tiling_for
from bgtrain.dataset import ImageCache, PatchDataset


@pytest.fixture(scope="module")
def files(demo_root):
    return training_images(demo_root)


def test_len_and_locate(files):
    ds = PatchDataset(files, cache_size=2, seed=0)
    assert len(ds) == len(files) * 18
    path, patch = ds.locate(18 + 3)
    assert path == files[1] and patch.index == 3
    assert (patch.y, patch.x) == (106, 48)
    with pytest.raises(IndexError):
        ds.locate(len(ds))


def test_repeats_revisit_every_patch_with_other_defects(files):
    one = PatchDataset(files, seed=3)
    ds = PatchDataset(files, seed=3, repeats=3)
    n = len(files) * 18
    assert len(ds) == 3 * n
    assert ds.locate(2 * n + 5) == ds.locate(5) == one.locate(5)
    assert np.array_equal(ds.sample(7)[0], one.sample(7)[0])  # the first pass is the repeats=1 epoch
    differ = sum(not np.array_equal(ds.sample(i)[0], ds.sample(i + n)[0]) for i in range(18))
    assert differ >= 9  # same crop, fresh defects (a patch may draw none in both passes)
    with pytest.raises(ValueError, match="repeats"):
        PatchDataset(files, repeats=0)


def test_item_is_crop_of_image_plus_defects(files):
    ds = PatchDataset(files, seed=5)
    img = read_image(files[0]) / 255.0
    t = tiling_for("strip")
    seen_defect = False
    for i in range(18):
        item = ds[i]
        x, m = item["input"], item["mask"]
        assert x.shape == (3, 128, 128) and x.dtype == torch.float32
        assert m.shape == (1, 128, 128) and m.dtype == torch.float32
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        p = list(t.patches())[i]
        crop = img[:, p.y : p.y + 128, p.x : p.x + 128]
        changed = np.abs(x.numpy() - crop) > 1e-6
        if m.any():
            seen_defect = True
            # every GT pixel changed the target
            assert changed[0][m[0].numpy() > 0].all()
        # outside changed pixels the crop is exactly the image
        np.testing.assert_allclose(x.numpy()[~changed], crop[~changed], atol=1e-6)
    assert seen_defect


def test_deterministic_under_seed_and_epoch(files):
    a = PatchDataset(files, seed=1)
    b = PatchDataset(files, seed=1)
    c = PatchDataset(files, seed=2)
    same = [torch.equal(a[i]["input"], b[i]["input"]) for i in range(30)]
    assert all(same)
    assert any(not torch.equal(a[i]["input"], c[i]["input"]) for i in range(30))
    a.set_epoch(1)
    assert any(not torch.equal(a[i]["input"], b[i]["input"]) for i in range(30))


def _collect(ds, workers):
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers)
    xs, ms = [], []
    for batch in loader:
        xs.append(batch["input"])
        ms.append(batch["mask"])
    return torch.cat(xs), torch.cat(ms)


def test_two_workers_match_single_process(files):
    ds = PatchDataset(files[:2], seed=9, cache_size=4)
    x0, m0 = _collect(ds, 0)
    x2, m2 = _collect(ds, 2)
    assert torch.equal(x0, x2) and torch.equal(m0, m2)
    # No duplicated random streams across workers: distinct patches of the same image differ in defects.
    masks = [m0[i].flatten() for i in range(len(m0)) if m0[i].any()]
    assert len({tuple(torch.nonzero(m).flatten().tolist()) for m in masks}) == len(masks)


def test_lru_cache(files):
    cache = ImageCache(2)
    cache.get(files[0])
    cache.get(files[1])
    cache.get(files[0])  # hit, now most recent
    cache.get(files[2])  # evicts files[1]
    assert cache.hits == 1 and cache.misses == 3 and len(cache) == 2
    cache.get(files[0])
    assert cache.hits == 2
    cache.get(files[1])
    assert cache.misses == 4


def test_three_channel_input_and_wrong_size(tmp_path, files):
    img = read_image(files[0])
    p3 = tmp_path / "three.tiff"
    write_tiff(p3, np.moveaxis(img, 0, -1))  # 3 channels, channel-last
    ds = PatchDataset([p3], seed=0)
    assert ds[0]["input"].shape == (3, 128, 128)
    small = tmp_path / "small.tiff"
    write_tiff(small, img[:, :500])
    with pytest.raises(InputError, match="expects 976x176"):
        PatchDataset([small])[0]


def test_square_type(tmp_path):
    p = tmp_path / "sq.tiff"
    write_tiff(p, np.full((3, 256, 256), 100, np.float32))
    ds = PatchDataset([p], image_type="square")
    assert len(ds) == 1 and ds[0]["input"].shape == (3, 256, 256)


def test_layout_helpers(demo_root, tmp_path):
    valid = labelled_split(demo_root, "valid")
    assert len(valid) == 4 and sum(s.defective for s in valid) == 2
    assert all(s.mask_path is not None and s.mask_path.exists() for s in valid if s.defective)
    assert labelled_split(demo_root, "nonexistent") == []
    with pytest.raises(InputError, match="training folder not found"):
        training_images(tmp_path)


def test_loss_weights_mark_the_not_labelled_defects(files):
    from bgtrain.recipe import Recipe, get_recipe

    r = Recipe.from_dict({"nuisance_prob": 0.0, "flips": False, "swap_refs": False}, base=get_recipe("robust"))
    ds = PatchDataset(files, seed=2, recipe=r)
    seen = 0
    for i in range(18):
        item, syn = ds[i], ds.synthesize(i)
        w, m = item["weight"][0].numpy(), item["mask"][0].numpy() > 0
        assert set(np.unique(w).tolist()) <= {1.0, r.hard_negative_weight}
        hard = np.zeros_like(m)
        for d in syn.defects:
            if not d.labelled:
                hard[d.y : d.y + d.h, d.x : d.x + d.w] |= d.kernel > r.mask_threshold
        np.testing.assert_array_equal(w == r.hard_negative_weight, hard & ~m)
        np.testing.assert_array_equal(item["hard"][0].numpy() > 0.5, hard & ~m)  # what top_background_loss skips
        seen += int(hard.any())
    assert seen > 0
    assert set(np.unique(PatchDataset(files, seed=2)[0]["weight"]).tolist()) == {1.0}  # seed recipe: plain loss


def test_loss_weights_mark_the_weak_labelled_defects(files):
    """weak_defect_weight lands on the GT pixels of labelled defects with |a| <= WEAK_AMPLITUDE, nowhere else."""
    from bgtrain.recipe import WEAK_AMPLITUDE, Recipe, RecipeError, get_recipe

    knobs = {"nuisance_prob": 0.0, "flips": False, "swap_refs": False, "weak_defect_weight": 4.0}
    r = Recipe.from_dict({**knobs, "hard_negative_weight": 1.0}, base=get_recipe("robust"))
    ds = PatchDataset(files, seed=3, recipe=r)
    seen = 0
    for i in range(18):
        item, syn = ds[i], ds.synthesize(i)
        w, m = item["weight"][0].numpy(), item["mask"][0].numpy() > 0
        weak = np.zeros_like(m)
        for d in syn.defects:
            if d.labelled and abs(d.amplitude) <= WEAK_AMPLITUDE:
                weak[d.y : d.y + d.h, d.x : d.x + d.w] |= d.kernel > r.mask_threshold
        np.testing.assert_array_equal(w == 4.0, weak & m)
        assert set(np.unique(w).tolist()) <= {1.0, 4.0}
        seen += int((weak & m).any())
    assert seen > 0
    with pytest.raises(RecipeError, match="weak_defect_weight"):
        Recipe.from_dict({"weak_defect_weight": 0.5}, base=get_recipe("robust"))


def test_crop_jitter_shifts_the_crop_inside_the_image(files):
    """crop_jitter: each item is the image at its patch position shifted by <= j px, clipped inside the image."""
    from bgtrain.recipe import Recipe, get_recipe

    j = 16
    r = Recipe.from_dict(
        {"crop_jitter": j, "defect_prob": 0.0, "nuisance_prob": 0.0, "flips": False}, base=get_recipe("robust")
    )
    r = Recipe.from_dict({"swap_refs": False}, base=r)
    ds = PatchDataset(files, seed=4, recipe=r)
    img = read_image(files[0]).astype(np.float32)
    shifts = set()
    for i, p in enumerate(ds.patches):
        crop = ds.synthesize(i).image
        found = [
            (dy, dx)
            for dy in range(-j, j + 1)
            for dx in range(-j, j + 1)
            if 0 <= p.y + dy <= img.shape[1] - 128
            and 0 <= p.x + dx <= img.shape[2] - 128
            and np.array_equal(crop, img[:, p.y + dy : p.y + dy + 128, p.x + dx : p.x + dx + 128])
        ]
        assert found, f"patch {i}: not a crop within {j} px of its position"
        shifts.add(found[0])
        np.testing.assert_array_equal(crop, ds.synthesize(i).image)  # a pure function of (seed, epoch, index)
    assert len(shifts) > 3  # really shifted, and not all alike
    ds0 = PatchDataset(files, seed=4, recipe=Recipe.from_dict({"crop_jitter": 0}, base=r))
    p0 = ds0.patches[0]
    np.testing.assert_array_equal(ds0.synthesize(0).image, img[:, p0.y : p0.y + 128, p0.x : p0.x + 128])


def test_crop_size_centres_a_larger_crop_on_its_patch_inside_the_image(files):
    """crop_size: a (height, width) crop centred on the patch position, clipped inside the image; it batches."""
    from bgtrain.recipe import Recipe, RecipeError, get_recipe

    plain = {"defect_prob": 0.0, "nuisance_prob": 0.0, "flips": False, "swap_refs": False}
    r = Recipe.from_dict({**plain, "crop_size": [256, 160]}, base=get_recipe("robust"))
    ds = PatchDataset(files, seed=5, recipe=r)
    img = read_image(files[0]).astype(np.float32)
    h, w = img.shape[1:]
    assert ds.crop_shape == (256, 160)
    tops, lefts = set(), set()
    for i, p in enumerate(ds.patches):
        y = min(max(p.y - 64, 0), h - 256)  # centred: (128 - 256) // 2 above the patch, kept inside
        x = min(max(p.x - 16, 0), w - 160)
        np.testing.assert_array_equal(ds.synthesize(i).image, img[:, y : y + 256, x : x + 160])
        tops.add(y)
        lefts.add(x)
    assert 0 in tops and h - 256 in tops and len(tops) > 3 and lefts == {0, w - 160}
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["input"].shape == (4, 3, 256, 160) and batch["mask"].shape == (4, 1, 256, 160)
    with pytest.raises(RecipeError, match="crop_size"):
        PatchDataset(files, recipe=Recipe.from_dict({"crop_size": [256, 192]}, base=r))  # wider than the strip
    for bad in ([100, 160], [256, 176], [256, 0], [2048, 160], [256]):
        with pytest.raises(RecipeError, match="crop_size"):
            Recipe.from_dict({"crop_size": bad}, base=r)


def test_a_larger_crop_keeps_the_patch_recipes_defect_density(files):
    """The recipe's defect counts are per 128 px patch: a crop of 2.5 patch areas gets them x2.5 (rounded),
    a patch crop the recipe itself; the counts a crop gets follow from the scaled range."""
    from bgtrain.recipe import Recipe, get_recipe

    base = Recipe.from_dict({"num_defects_range": [4, 10], "target_range": [1, 2]}, base=get_recipe("robust"))
    patch = PatchDataset(files, recipe=base)
    assert patch.crop_recipe is base
    big = PatchDataset(files, recipe=Recipe.from_dict({"crop_size": [256, 160]}, base=base))
    assert big.crop_recipe.num_defects_range == (10, 25) and big.crop_recipe.target_range == (2, 5)
    assert big.crop_recipe.crop_size == (256, 160) and big.recipe.num_defects_range == (4, 10)
    counts = [len(big.synthesize(i).defects) for i in range(0, 18 * 4, 5)]
    assert max(counts) > 10  # more than a patch recipe allows


@pytest.mark.parametrize(
    ("h", "w", "pads"),
    [
        (976, 176, (8, 8, 8, 8)),  # the strip: 992x192
        (480, 200, (0, 0, 12, 12)),
        (129, 130, (15, 16, 15, 15)),  # odd totals: the extra pixel goes bottom/right
        (64, 96, (0, 0, 0, 0)),
    ],
)
def test_reflect_padding_reaches_the_next_multiple_of_32(h, w, pads):
    from bgtrain.dataset import reflect_padding

    top, bottom, left, right = reflect_padding(h, w)
    assert (top, bottom, left, right) == pads
    assert (h + top + bottom) % 32 == 0 and (w + left + right) % 32 == 0


def test_reflect_padding_refuses_sides_too_small_to_mirror():
    from bgtrain.dataset import reflect_padding

    with pytest.raises(ValueError, match="too small"):
        reflect_padding(10, 128)  # needs 22 rows of padding from a 10-row image
    with pytest.raises(ValueError):
        reflect_padding(0, 128)


def test_crop_padding_reflect_pads_to_multiples_of_32(files):
    """crop_padding 'reflect': a whole-image crop (976x176, not a multiple of 32) comes out reflect-padded to
    992x192 by reflect_padding's split, the interior the synthesised crop; mask, weight and hard-negative maps
    are zero in the padding (no loss there). Without it such a crop size is refused."""
    from bgtrain.dataset import reflect_padding as whole_padding
    from bgtrain.recipe import Recipe, RecipeError, get_recipe

    img = read_image(files[0]).astype(np.float32)
    h, w = img.shape[1:]
    r = Recipe.from_dict({"crop_size": [h, w], "crop_padding": "reflect"}, base=get_recipe("robust"))
    ds = PatchDataset(files, seed=2, recipe=r)
    top, bottom, left, right = whole_padding(h, w)
    item, synth = ds[3], ds.synthesize(3)
    x, mask, weight = item["input"].numpy(), item["mask"].numpy()[0], item["weight"].numpy()[0]
    assert x.shape == (3, h + top + bottom, w + left + right) == (3, 992, 192)
    np.testing.assert_array_equal(x[:, top : top + h, left : left + w], synth.image / np.float32(255.0))
    np.testing.assert_array_equal(x[:, top - 1], x[:, top + 1])  # mirrored about the first row
    np.testing.assert_array_equal(x[:, :, left + w], x[:, :, left + w - 2])  # and about the last column
    np.testing.assert_array_equal(mask[top : top + h, left : left + w], synth.mask)
    border = np.ones(mask.shape, bool)
    border[top : top + h, left : left + w] = False
    assert synth.mask.any() and not mask[border].any() and not weight[border].any()
    assert weight[~border].min() >= 1.0 and not item["hard"].numpy()[0][border].any()
    with pytest.raises(RecipeError, match="crop_size"):
        Recipe.from_dict({"crop_size": [h, w]}, base=get_recipe("robust"))
    with pytest.raises(RecipeError, match="crop_padding"):
        Recipe.from_dict({"crop_padding": "zeros"}, base=get_recipe("robust"))


def _grey_png(path, arr):
    from PIL import Image

    Image.fromarray(arr.astype(np.uint8), "L").save(path)
    return path


def test_geometry_comes_from_the_data(tmp_path, files):
    from bgtrain.dataset import resolve_geometry

    assert resolve_geometry(files) == ("strip", (976, 176))
    rng = np.random.default_rng(0)
    pngs = [_grey_png(tmp_path / f"g{i}.png", rng.integers(0, 256, (300, 450))) for i in range(3)]
    assert resolve_geometry(pngs) == ("custom", (300, 450))
    assert resolve_geometry(pngs, image_size=(300, 450)) == ("custom", (300, 450))
    assert resolve_geometry(pngs, image_type="strip") == ("strip", (300, 450))  # a named type's patch, another size
    odd = _grey_png(tmp_path / "odd.png", rng.integers(0, 256, (300, 449)))
    with pytest.raises(
        InputError, match=r"odd.png: image is 300x449, but the first training image \(g0.png\) is 300x450"
    ):
        resolve_geometry(pngs + [odd])
    with pytest.raises(InputError, match=r"g0.png: image is 300x450, but --image-size is 320x450"):
        resolve_geometry(pngs, image_size=(320, 450))
    tiny = _grey_png(tmp_path / "tiny.png", rng.integers(0, 256, (100, 450)))
    with pytest.raises(InputError, match=r"tiny.png: cannot tile a 100x450 image with 128px patches: .*smaller"):
        resolve_geometry([tiny])


def test_single_channel_templates_and_pairs_train(tmp_path):
    """A golden template is (img, img, img) and a (test, template) pair (t, r, r) before synthesis."""
    from bgtrain.recipe import Recipe, get_recipe

    rng = np.random.default_rng(1)
    grey = rng.integers(20, 230, (320, 400)).astype(np.uint8)
    one = _grey_png(tmp_path / "template.png", grey)
    pair = tmp_path / "pair.tiff"
    write_tiff(pair, np.stack([grey, 255 - grey]).astype(np.float32))
    clean = Recipe.from_dict({"defect_prob": 0.0, "nuisance_prob": 0.0}, base=get_recipe("seed"))
    ds = PatchDataset([one, pair], image_type="custom", image_size=(320, 400), recipe=clean, seed=0)
    t = ds.tiling
    assert t.patch == 128 and (t.row_positions, t.col_positions) == ([0, 96, 192], [0, 90, 181, 272])
    p = ds.patches[5]
    crop = grey[p.y : p.y + 128, p.x : p.x + 128].astype(np.float32)
    x1 = ds.sample(5)[0]
    np.testing.assert_array_equal(x1, np.stack([crop] * 3))
    x2 = ds.sample(len(ds.patches) + 5)[0]
    np.testing.assert_array_equal(x2, np.stack([crop, 255 - crop, 255 - crop]))
