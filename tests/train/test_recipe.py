"""Recipes as data: presets, JSON overrides, one-line errors that name the key."""

from __future__ import annotations

import json

import pytest

from bgtrain.recipe import DEFAULT_RECIPE, PRESETS, Recipe, RecipeError, get_recipe, load_recipe


def test_seed_preset_is_spec_section_2():
    r = get_recipe("seed")
    assert (r.defect_prob, r.num_defects_range, r.target_range) == (0.5, (3, 8), (1, 2))
    assert r.amplitudes == (-80.0, -60.0, 60.0, 80.0) and r.shapes == "seed" and r.mask_threshold == 0.1
    assert r.missing_prob == 0 and r.distractor_weights[:2] == (0.0, 0.0)  # distractors always in the target too
    assert r.nuisance_prob == 0 and not r.swap_refs and not r.flips


def test_default_is_robust():
    assert DEFAULT_RECIPE == "robust" and set(PRESETS) == {"seed", "robust"}


def test_dict_round_trip():
    for r in PRESETS.values():
        assert Recipe.from_dict(r.to_dict()) == r
        assert Recipe.from_dict(json.loads(r.to_json())) == r


def test_file_overrides_single_knobs(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"missing_prob": 0.4, "amplitude_range": [20, 90]}))
    r = load_recipe("robust", f)
    assert r.missing_prob == 0.4 and r.amplitude_range == (20.0, 90.0)
    assert r.noise_std == get_recipe("robust").noise_std and r.name == "robust+mine"
    f.write_text(json.dumps({"base": "seed", "num_defects_range": [4, 10]}))
    r = load_recipe("robust", f)
    assert r.num_defects_range == (4, 10) and r.amplitudes == get_recipe("seed").amplitudes


@pytest.mark.parametrize(
    "knobs, key",
    [
        ({"missing_prb": 0.3}, "missing_prb"),
        ({"missing_prob": 1.5}, "missing_prob"),
        ({"num_defects_range": [5, 2]}, "num_defects_range"),
        ({"amplitude_range": [0, 50]}, "amplitude_range"),
        ({"shapes": "squares"}, "shapes"),
        ({"max_footprint": 8}, "max_footprint"),
        ({"flips": "yes"}, "flips"),
        ({"distractor_weights": [1, 1]}, "distractor_weights"),
        ({"top_background_weight": -1.0}, "top_background_weight"),
        ({"top_background_weight": 25.0}, "top_background_weight"),
    ],
)
def test_bad_knobs_name_the_key(tmp_path, knobs, key):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(knobs))
    with pytest.raises(RecipeError) as info:
        load_recipe("robust", f)
    msg = str(info.value)
    assert key in msg and "\n" not in msg and str(f) in msg


def test_bad_files(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe("robust", tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(RecipeError, match="not a JSON recipe"):
        load_recipe("robust", tmp_path / "x.json")
    (tmp_path / "y.json").write_text("[1, 2]")
    with pytest.raises(RecipeError, match="JSON object"):
        load_recipe("robust", tmp_path / "y.json")
    with pytest.raises(RecipeError, match="unknown recipe 'fancy'"):
        get_recipe("fancy")
