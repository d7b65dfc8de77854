from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bgsdk.io import read_image
from bgtrain.background import EVAL_KINDS, HOLDOUT_KINDS, LEAVES_KINDS, TRAIN_KINDS, _render, random_pattern
from bgtrain.synth_dataset import BACKGROUNDS


def _kind(kind: str, seed: int = 5):
    return replace(random_pattern(np.random.default_rng(seed)), kind=kind, gradient=(0.0, 0.0))


def _leaves(seed: int = 5):
    return _kind("leaves", seed)


def test_leaves_view_shift_is_exact():
    # A view shifted by one pixel is the same picture moved by one pixel: misregistration between
    # dies is then only what the synthesiser asks for, not a rendering artefact.
    p = _leaves()
    a = _render(p, 160, 96, 0.0, 0.0)
    b = _render(p, 160, 96, 1.0, 1.0)
    np.testing.assert_allclose(b[:-1, :-1], a[1:, 1:], atol=1e-2)
    half = _render(p, 160, 96, 0.5, 0.0)
    assert np.abs(half - a).max() > 1.0  # a sub-pixel shift does move the edges


def test_leaves_edges_have_every_orientation_and_many_grey_levels():
    img = _render(_leaves(7), 976, 176, 0.0, 0.0)
    gy, gx = np.abs(np.diff(img, axis=0)).sum(), np.abs(np.diff(img, axis=1)).sum()
    assert 0.5 < gy / gx < 2.0  # occlusion edges are isotropic, unlike stripes
    assert len(np.unique(np.round(img, 1))) > 200  # many shapes of their own grey level
    np.testing.assert_array_equal(img, _render(_leaves(7), 976, 176, 0.0, 0.0))  # from texture_seed only


def test_validation_strips_keep_their_backgrounds():
    # Leaves and scattered spots widen what training shows; valid/test keep the kinds they had, so a seed
    # gives the same validation/test strips as before and numbers stay comparable across versions.
    assert {"leaves", "speckle"} <= set(TRAIN_KINDS) and not {"leaves", "speckle"} & set(EVAL_KINDS)
    assert set(EVAL_KINDS) < set(TRAIN_KINDS)
    assert BACKGROUNDS["mixed"] == EVAL_KINDS + HOLDOUT_KINDS
    assert not set(HOLDOUT_KINDS) & set(TRAIN_KINDS)


def test_classic_training_backgrounds_reproduce_older_data_sets(tmp_path):
    from bgtrain.synth_dataset import make_dataset

    new = make_dataset(tmp_path / "new", 3, 2, 0, seed=3, progress=False)
    old = make_dataset(tmp_path / "old", 3, 2, 0, seed=3, progress=False, train_backgrounds="classic")
    leaves = make_dataset(tmp_path / "leaves", 3, 2, 0, seed=3, progress=False, train_backgrounds="leaves")
    assert new["train_backgrounds"] == list(TRAIN_KINDS) and old["train_backgrounds"] == list(EVAL_KINDS)
    assert leaves["train_backgrounds"] == list(LEAVES_KINDS)
    # The training kinds differ; the validation strips of a seed do not.
    for stem in ("valid/good/valid_0000.tiff", "valid/bright_spots/valid_0001.tiff"):
        for other in ("old", "leaves"):
            np.testing.assert_array_equal(read_image(tmp_path / "new" / stem), read_image(tmp_path / other / stem))


def test_photo_kind_is_leaves_with_grain():
    # The "photo" ablation kind: dead leaves plus a 1/f grain, each rendered at the view's own shift.
    p = replace(_leaves(11), kind="photo")
    a = _render(p, 160, 96, 0.0, 0.0)
    leaves = _render(replace(p, kind="leaves"), 160, 96, 0.0, 0.0)
    texture = _render(replace(p, kind="texture"), 160, 96, 0.0, 0.0)
    np.testing.assert_allclose(a - p.base, 0.7 * (leaves - p.base) + 0.3 * (texture - p.base), atol=1e-6)


def _speckle(seed: int = 5, period: float = 16.0):
    return replace(_kind("speckle", seed), period_x=period)


# speckle: rendered at the view's shift; photograph: shifted in Fourier space over a margin the crop then
# cuts off, so a whole-pixel shift is exact to float precision.
@pytest.mark.parametrize(("kind", "atol"), [("speckle", 1e-2), ("photograph", 1e-6)])
def test_view_shift_is_exact_and_seeded(kind: str, atol: float):
    p = _kind(kind)
    a = _render(p, 160, 96, 0.0, 0.0)
    np.testing.assert_allclose(_render(p, 160, 96, 1.0, 1.0)[:-1, :-1], a[1:, 1:], atol=atol)
    assert np.abs(_render(p, 160, 96, 0.5, 0.0) - a).max() > 1.0
    np.testing.assert_array_equal(a, _render(_kind(kind), 160, 96, 0.0, 0.0))


def test_speckle_is_spots_of_both_polarities_spaced_by_the_period():
    from scipy import ndimage

    def spots(period: float) -> tuple[int, int]:
        p = _speckle(3, period)
        pat = (_render(p, 400, 400, 0.0, 0.0) - p.base) / p.contrast  # 0.5 = the flat background
        bright = ndimage.label(pat > 0.55)[1]
        dark = ndimage.label(pat < 0.45)[1]
        return bright, dark

    dense, sparse = spots(10.0), spots(40.0)
    assert min(dense) > 100 and min(sparse) > 5  # both polarities
    assert sum(dense) > 4 * sum(sparse)  # about 2 spots per period^2 (16x fewer at 4x the spacing; overlaps merge)


def test_ablation_background_sets_change_only_the_training_kinds():
    from collections import Counter

    assert Counter(BACKGROUNDS["leaves-heavy"])["leaves"] == 3 and set(BACKGROUNDS["leaves-heavy"]) == set(LEAVES_KINDS)
    assert BACKGROUNDS["photo"] == EVAL_KINDS + ("photo",)
    # Speckle joined the default last: the first trial's "speckle" strips are today's default ones.
    assert BACKGROUNDS["speckle"] == BACKGROUNDS["train"] == TRAIN_KINDS == LEAVES_KINDS + ("speckle",)
    rng = np.random.default_rng(0)
    drawn = Counter(random_pattern(rng, BACKGROUNDS["leaves-heavy"]).kind for _ in range(2000))
    assert 0.25 < drawn["leaves"] / 2000 < 0.35  # 3 of 10 weight units (grid counts twice)


def test_photographs_are_real_images_of_their_own():
    from bgtrain.background import PHOTOGRAPHS, _photo

    for name in PHOTOGRAPHS:
        block = _photo(name)
        assert block.shape[0] >= 600 and block.shape[1] >= 600 and 0.0 <= block.min() < block.max() <= 1.0
        np.testing.assert_array_equal(block[:, ::-1], block)  # mirrored 2x2: tiles without seams
    crops = [_render(_kind("photograph", seed), 976, 176, 0.0, 0.0) for seed in range(6)]
    assert all(len(np.unique(np.round(c, 1))) > 150 for c in crops)  # photographs, not flat fills
    assert len({float(np.round(c.mean(), 3)) for c in crops}) == 6  # each seed its own crop


def test_photographs_are_an_evaluation_set_only():
    assert BACKGROUNDS["photographs"] == ("photograph",)
    assert "photograph" not in TRAIN_KINDS + EVAL_KINDS + HOLDOUT_KINDS


def test_missing_scikit_image_is_a_clear_error(monkeypatch, tmp_path, capsys):
    """The render raises a named error; synth-dataset says it in one line, exit 2, before writing a strip."""
    import importlib.resources

    from bgtrain import background
    from bgtrain.synth_dataset import main

    def no_package(name: str):
        raise ModuleNotFoundError(f"No module named {name!r}")

    background._photo.cache_clear()
    background._photo_view.cache_clear()
    monkeypatch.setattr(importlib.resources, "files", no_package)
    try:
        with pytest.raises(background.PhotographsUnavailable, match="pip install scikit-image"):
            _render(_kind("photograph", 11), 64, 64, 0.0, 0.0)
        with pytest.raises(SystemExit) as exit_info:
            main([str(tmp_path / "out"), "--eval-backgrounds", "photographs", "-q"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("synth-dataset: error:") and "scikit-image" in err and len(err.splitlines()) == 1
        assert not (tmp_path / "out").exists()
    finally:
        background._photo.cache_clear()
