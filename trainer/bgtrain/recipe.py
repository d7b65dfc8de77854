"""Synthesis recipes: every knob of the defect synthesiser as data, with named presets.

A recipe decides what the model is ever shown, so it is the most important
training choice: the label is defined *relative to the references* (the odd die
out is the defective one) and the network only learns that rule if it sees every
case the rule separates. Two presets:

* ``seed`` -- the research code's synthesis (two Gaussian kernels, amplitudes +-60/+-80,
  distractors always copied into the target as well, perfectly aligned dies).
  Kept so the research numbers stay reproducible.
* ``robust`` -- continuous weak-to-strong amplitudes, a family of shapes (rotated
  anisotropic Gaussians, short scratches, spot clusters) placed on pattern edges
  too, structural defects (blobs, bites and spurs on edges, cuts and bridges at the
  pattern's own levels: see ``structural.py``), every odd-die-out case (a target *missing* what both references show is a
  defect; a defect in one reference only is not), and per-die imaging nuisances
  applied after the defects (sub- and whole-pixel misregistration with slow local variation, gain,
  offset, noise, ramps, focus differences, binarisation, JPEG-like compression, vignetting), and
  golden-template pairs (both references the same image).

A recipe is saved in checkpoints, ``summary.json`` and the built model's metadata.
``--recipe-file`` overrides single knobs of a preset; an unknown key or an
out-of-range value is a one-line :class:`RecipeError` that names the key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from bgsdk.errors import BgsdkError

# The weak/faint split and the labelled kinds are the evaluation's definitions (one source).
from bgsdk.evaluate.defect_kinds import FAINT_AMPLITUDE, LABELLED_KINDS, WEAK_AMPLITUDE

__all__ = [
    "Recipe",
    "RecipeError",
    "PRESETS",
    "DEFAULT_RECIPE",
    "get_recipe",
    "load_recipe",
    "DIE_KINDS",
    "LABELLED_KINDS",
    "WEAK_AMPLITUDE",
    "FAINT_AMPLITUDE",
]

# Where a synthetic defect is, as (target, ref1, ref2). The first two are defects by the
# odd-die-out rule (the target differs from both references); the rest are background.
DIE_KINDS: dict[str, tuple[bool, bool, bool]] = {
    "target": (True, False, False),
    "missing": (False, True, True),
    "ref1": (False, True, False),
    "ref2": (False, False, True),
    "target_ref1": (True, True, False),
    "target_ref2": (True, False, True),
    "all": (True, True, True),
}
DISTRACTOR_KINDS = ("ref1", "ref2", "target_ref1", "target_ref2", "all")


# defects in one crop: a patch's recipe has at most a few dozen; a larger crop gets the patch counts scaled
# by its area (PatchDataset.crop_recipe), about 10x for a whole 976x176 strip
MAX_DEFECTS = 4096


class RecipeError(BgsdkError):
    """A recipe file or override that is not valid."""


@dataclass(frozen=True)
class Recipe:
    """All knobs of the synthesiser. Grey levels are on the 0..255 image scale."""

    name: str = "custom"
    # --- how many defects, and which kinds -----------------------------------------------
    defect_prob: float = 0.5  # a patch gets synthetic defects at all
    num_defects_range: tuple[int, int] = (3, 8)  # defects (all kinds) in a defective patch
    target_range: tuple[int, int] = (1, 2)  # of which labelled defects (0 allows distractor-only patches)
    missing_prob: float = 0.0  # a labelled defect is missing from the target but in both references
    # weights of the non-defect kinds, in DISTRACTOR_KINDS order
    distractor_weights: tuple[float, float, float, float, float] = (0.0, 0.0, 1.0, 1.0, 1.0)
    copy_jitter: float = 0.0  # relative amplitude change of a defect's copy in another die
    # loss weight of the pixels of not-labelled defects (hard negatives; 1 = plain focal loss)
    hard_negative_weight: float = 1.0
    # loss weight of the pixels of labelled defects with |a| <= WEAK_AMPLITUDE (1 = plain focal loss)
    weak_defect_weight: float = 1.0
    # weight of a plain cross-entropy on each patch's highest-scoring plain-background pixels
    # (loss.TOP_BACKGROUND_FRACTION of them; not near a labelled defect, not a not-labelled one):
    # pushes down the strongest false alarms, which set a good strip's score (0 = off)
    top_background_weight: float = 0.0
    # a training crop is shifted by up to this many px from its patch position (inside the image):
    # more background contexts from the same strips (0 = the tiling's positions exactly)
    crop_jitter: int = 0
    # (height, width) of a training crop, centred on its patch position and kept inside the image;
    # (0, 0) = the tiling's patch. Larger crops show the network the context a whole-strip build gives it.
    # The defect counts above are per patch: a larger crop gets them per patch area (same density)
    crop_size: tuple[int, int] = (0, 0)
    # "reflect": each crop is reflect-padded to multiples of 32 (bgtrain.dataset.reflect_padding), the
    # padding without loss -- what the whole-strip build showed the network at a strip's edges until it ran
    # the strip unpadded (kept to reproduce docs/experiments/); "none": crops are multiples of 32
    crop_padding: str = "none"
    # --- amplitude ----------------------------------------------------------------------------
    amplitudes: tuple[float, ...] = (-80.0, -60.0, 60.0, 80.0)  # discrete set; () = continuous
    amplitude_range: tuple[float, float] = (20.0, 100.0)  # |a|, log-uniform (weak ones common)
    # --- shapes and placement -----------------------------------------------------------------
    shapes: str = "seed"  # "seed" (the two given kernels) or "family"
    sigma_range: tuple[float, float] = (0.5, 2.5)
    max_aspect: float = 3.0
    max_footprint: int = 9
    line_prob: float = 0.0  # share of short scratches in the family
    cluster_prob: float = 0.0  # share of 2-4 spot clusters
    edge_prob: float = 0.0  # a defect is placed on a pattern edge (by gradient), else uniformly
    mask_threshold: float = 0.1  # GT = kernel > threshold * kernel peak
    # --- structural defects (structural.py): the pattern itself broken, at full contrast -------
    structural_prob: float = 0.0  # share of defects that are structural (blob, edge bite/spur, cut/bridge)
    structural_size: tuple[int, int] = (3, 25)  # px: a blob's or bite's diameter; widest run a band crosses
    # --- imaging nuisances, per die, after the defects ---------------------------------------
    nuisance_prob: float = 0.0
    misregistration: float = 0.0  # max |shift| of each reference vs the target, px
    gain: float = 0.0  # max relative gain change per die
    offset: float = 0.0  # max offset per die
    noise_std: float = 0.0  # max Gaussian noise std per die
    shot_noise: float = 0.0  # max shot-noise factor: std = f * sqrt(I)
    ramp: float = 0.0  # max illumination ramp across a patch
    blur_prob: float = 0.0
    blur_sigma: float = 0.8  # max blur sigma of a blurred die
    # whole-pixel misregistration of real lines: a crop's references get, each, a smooth shift field of a
    # global shift up to shift_max px (whole-pixel or not) plus a slow variation across the crop of up to
    # shift_warp px; on top of the sub-pixel `misregistration`
    shift_prob: float = 0.0
    shift_max: float = 0.0
    shift_warp: float = 0.0
    # binarised scans: the dies thresholded at a level between the target's grey levels (edges jitter by a
    # pixel between dies); the crop's defects are then strong enough to cross the threshold
    binarize_prob: float = 0.0
    jpeg_prob: float = 0.0  # a die goes through 8x8 block-DCT quantisation (JPEG-like compression)
    jpeg_quality_min: int = 40  # its quality, uniform in [jpeg_quality_min, 95]
    vignetting: float = 0.0  # max relative brightness falloff towards a die's corners (random centre)
    # golden template: ref2 is ref1, the same image twice (kinds in one reference only become two-reference
    # ones); like the nuisances, only when nuisance_prob > 0
    golden_prob: float = 0.0
    # --- label-preserving symmetries ----------------------------------------------------------
    swap_refs: bool = False
    flips: bool = False  # flips and transposes, all dies and the mask alike

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Recipe | None = None, source: str = "recipe") -> Recipe:
        """``base`` (default: the field defaults) with the knobs of ``data``; errors name the key."""
        known = {f.name: f for f in fields(cls)}
        for key in data:
            if key not in known:
                raise RecipeError(f"{source}: unknown recipe key {key!r} (known: {', '.join(sorted(known))})")
        start = base if base is not None else cls()
        values: dict[str, Any] = {}
        for key, value in data.items():
            current = getattr(start, key)
            values[key] = _coerce(key, value, current, source)
        try:
            return replace(start, **values)
        except RecipeError as exc:
            raise RecipeError(f"{source}: {exc}") from None


def _coerce(key: str, value: Any, current: Any, source: str) -> Any:
    bad = RecipeError(f"{source}: recipe key {key!r} has value {value!r}, expected a value like {current!r}")
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise bad
        return tuple(type(current[0])(v) if current else float(v) for v in value)
    if isinstance(current, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if isinstance(current, int) and not float(value).is_integer():
            raise bad
        return type(current)(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise bad
        return value
    raise bad  # pragma: no cover


def _check(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise RecipeError(f"recipe key {key!r} = {value!r} is out of range: {rule}")


def _validate(r: Recipe) -> None:
    probabilities: tuple[str, ...] = ("defect_prob", "missing_prob", "line_prob", "cluster_prob", "edge_prob")
    probabilities += ("nuisance_prob", "blur_prob", "shift_prob", "binarize_prob", "jpeg_prob", "golden_prob")
    for key in probabilities:
        v = getattr(r, key)
        _check(0.0 <= v <= 1.0, key, v, "must be in [0, 1]")
    _check(r.line_prob + r.cluster_prob <= 1.0, "line_prob", r.line_prob, "line_prob + cluster_prob must be <= 1")
    lo, hi = r.num_defects_range
    _check(
        len(r.num_defects_range) == 2 and 1 <= lo <= hi <= MAX_DEFECTS,
        "num_defects_range",
        r.num_defects_range,
        f"1 <= lo <= hi <= {MAX_DEFECTS}",
    )
    tlo, thi = r.target_range
    _check(len(r.target_range) == 2 and 0 <= tlo <= thi, "target_range", r.target_range, "0 <= lo <= hi")
    _check(
        len(r.distractor_weights) == len(DISTRACTOR_KINDS) and min(r.distractor_weights) >= 0,
        "distractor_weights",
        r.distractor_weights,
        f"{len(DISTRACTOR_KINDS)} weights >= 0 ({', '.join(DISTRACTOR_KINDS)})",
    )
    _check(
        thi >= 1 or sum(r.distractor_weights) > 0,
        "distractor_weights",
        r.distractor_weights,
        "all zero, and target_range allows no labelled defects: nothing to synthesise",
    )
    _check(all(abs(a) <= 255 and a != 0 for a in r.amplitudes), "amplitudes", r.amplitudes, "non-zero, |a| <= 255")
    alo, ahi = r.amplitude_range
    _check(0 < alo <= ahi <= 255, "amplitude_range", r.amplitude_range, "0 < lo <= hi <= 255")
    _check(r.shapes in ("seed", "family"), "shapes", r.shapes, "'seed' or 'family'")
    _check(5 <= r.jpeg_quality_min <= 95, "jpeg_quality_min", r.jpeg_quality_min, "in [5, 95]")
    slo, shi = r.sigma_range
    _check(0.3 <= slo <= shi <= 5.0, "sigma_range", r.sigma_range, "0.3 <= lo <= hi <= 5")
    _check(1.0 <= r.max_aspect <= 10.0, "max_aspect", r.max_aspect, "in [1, 10]")
    _check(3 <= r.max_footprint <= 15 and r.max_footprint % 2 == 1, "max_footprint", r.max_footprint, "odd, 3..15")
    _check(0.0 < r.mask_threshold < 1.0, "mask_threshold", r.mask_threshold, "in (0, 1)")
    _check(r.hard_negative_weight >= 1.0, "hard_negative_weight", r.hard_negative_weight, "must be >= 1")
    _check(r.weak_defect_weight >= 1.0, "weak_defect_weight", r.weak_defect_weight, "must be >= 1")
    _check(0 <= r.crop_jitter <= 64 and int(r.crop_jitter) == r.crop_jitter, "crop_jitter", r.crop_jitter, "0..64 px")
    _check(r.crop_padding in ("none", "reflect"), "crop_padding", r.crop_padding, "'none' or 'reflect'")
    size = tuple(r.crop_size)
    step = 32 if r.crop_padding == "none" else 1
    _check(
        len(size) == 2 and (size == (0, 0) or all(32 <= v <= 1024 and v % step == 0 for v in size)),
        "crop_size",
        r.crop_size,
        "[0, 0] (the patch) or [height, width] in 32..1024, multiples of 32 (the UNet's downsampling) "
        "unless crop_padding is 'reflect'",
    )
    limits = {
        "copy_jitter": 0.9,
        "hard_negative_weight": 20.0,
        "weak_defect_weight": 20.0,
        "top_background_weight": 20.0,
        "misregistration": 2.0,
        "gain": 0.5,
        "offset": 60.0,
        "noise_std": 30.0,
        "shot_noise": 3.0,
        "ramp": 60.0,
        "blur_sigma": 3.0,
        "shift_max": 8.0,
        "shift_warp": 2.0,
        "vignetting": 0.5,
    }
    for key, top in limits.items():
        v = getattr(r, key)
        _check(0.0 <= v <= top, key, v, f"must be in [0, {top}]")
    _validate_structural(r)


def _validate_structural(r: Recipe) -> None:
    _check(0.0 <= r.structural_prob <= 1.0, "structural_prob", r.structural_prob, "must be in [0, 1]")
    lo, hi = (tuple(r.structural_size) + (0, 0))[:2]
    _check(
        len(r.structural_size) == 2 and 3 <= lo <= hi <= 48,
        "structural_size",
        r.structural_size,
        "[lo, hi] px with 3 <= lo <= hi <= 48",
    )


SEED = Recipe(name="seed")

ROBUST = Recipe(
    name="robust",
    defect_prob=0.8,
    num_defects_range=(3, 10),
    target_range=(0, 3),
    missing_prob=0.25,
    distractor_weights=(0.25, 0.25, 0.15, 0.15, 0.2),
    copy_jitter=0.15,
    hard_negative_weight=3.0,
    amplitudes=(),
    # |a| 20-100: 12-100 (57% weak) trained worse on every held-out set at the same budget, 40-100
    # lost weak recall; docs/experiments/ (GPU ablation, 3 seeds each). Evaluation sets go down to 8.
    amplitude_range=(20.0, 100.0),
    shapes="family",
    sigma_range=(0.5, 2.5),
    max_aspect=3.0,
    max_footprint=9,
    line_prob=0.15,
    cluster_prob=0.15,
    edge_prob=0.5,
    structural_prob=0.35,
    structural_size=(3, 25),
    nuisance_prob=0.85,
    misregistration=0.5,
    gain=0.15,
    offset=12.0,
    noise_std=3.0,
    shot_noise=0.3,
    ramp=8.0,
    # focus differences between dies; whole-pixel misregistration, binarised scans, compression and
    # vignetting of real lines, and golden-template pairs (docs/data.md)
    blur_prob=0.4,
    blur_sigma=1.5,
    shift_prob=0.6,
    shift_max=4.0,
    shift_warp=0.75,
    binarize_prob=0.15,
    jpeg_prob=0.2,
    jpeg_quality_min=40,
    vignetting=0.15,
    golden_prob=0.1,
    swap_refs=True,
    flips=True,
)

PRESETS: dict[str, Recipe] = {"seed": SEED, "robust": ROBUST}
DEFAULT_RECIPE = "robust"
# The step budget chosen with the default recipe: train-model --repeats auto visits at least this
# many patches an epoch. 64 strips x 18 patches x 3 passes beat 1 pass on every held-out set; with
# dead-leaves training backgrounds 6 passes beat 3 on test and robust-val for every seed (GPU and CPU),
# and on the 192-strip test and unseen-background sets for every CPU seed (docs/experiments/).
# Data sets of 384+ strips get one pass.
AUTO_PATCHES_PER_EPOCH = 6912


def get_recipe(name: str) -> Recipe:
    try:
        return PRESETS[name]
    except KeyError:
        raise RecipeError(f"unknown recipe {name!r}; presets: {', '.join(sorted(PRESETS))}") from None


def load_recipe(name: str = DEFAULT_RECIPE, file: str | Path | None = None) -> Recipe:
    """Preset ``name``, with the knobs of a JSON ``file`` on top (``{"base": ...}`` picks the preset)."""
    if file is None:
        return get_recipe(name)
    path = Path(file)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{path}: not a JSON recipe ({exc})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe file must hold a JSON object of knobs")
    base = get_recipe(str(data.pop("base", name)))
    data.setdefault("name", f"{base.name}+{path.stem}")
    return Recipe.from_dict(data, base=base, source=str(path))
