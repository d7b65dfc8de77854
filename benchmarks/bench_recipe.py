"""Ablation of the synthesis recipe: which parts of ``robust`` earn their keep, on data nobody tuned to.

Every row trains the same UNet (same width, budget and data) with ``train-model``,
changing only the recipe (or the network's input stem, or its step budget), then scores its
``best.pt`` -- tiled exactly like the deployed model -- on five sets next to
double detection:

* ``test``     -- synth-dataset test split: mixed backgrounds (2 kinds no training image
                  uses), defects wider than any recipe, every odd-die-out case;
* ``unseen``   -- synth-dataset with *only* unseen backgrounds, another seed;
* ``seed-val`` / ``robust-val`` -- clean strips of another seed with defects (and, for
                  robust, nuisances) drawn by each recipe itself;
* ``valid``    -- the split train-model selected ``best.pt`` on (optimistic; shown for reference);
* ``big-test`` / ``big-unseen`` -- like ``test`` / ``unseen`` but 8x larger (192 strips, ~190
                  labelled defects, ~100 of them weak) and of their own seeds: made by
                  ``prepare-big``, because 24 strips hold only ~13 weak defects and a weak
                  recall measured on them moves by 0.08 per defect.
* ``big-photo`` -- 192 strips whose dies are real photographs (scikit-image's bundled ones,
                  ``synth-dataset --eval-backgrounds photographs``), the defects and nuisances of
                  ``big-test``: the photograph family of the accuracy criteria, which no training kind is.
* ``nominal-unseen`` / ``nominal-photo`` -- 192 strips each of ``big-unseen``'s backgrounds and of real
                  photographs, with defects and misregistration inside the ranges the accuracy criteria give
                  for its held-out strips (``synth-dataset --eval-level nominal``: |a| 12-100,
                  per-view shift std up to 0.3 px) instead of partly outside them.

Columns: pixel AP, image AUROC, image AUROC without the defective strips whose labelled defects are all
fainter than |a| = 12 (``image_auroc12``), and at the best-F1 pixel threshold: recall of weak
(|a| <= 40) labelled defects, of weak ones of 12 <= |a| <= 40 (without the faint ones at the noise
level) and the share of single-reference defects flagged.

    .venv/bin/python benchmarks/bench_recipe.py prepare --root runs/ablation
    .venv/bin/python benchmarks/bench_recipe.py train --root runs/ablation --rows seed robust --seeds 0 1 2
    .venv/bin/python benchmarks/bench_recipe.py score --root runs/ablation --markdown docs/_ablation.md
    .venv/bin/python benchmarks/bench_recipe.py prepare-big --root runs/ablation   # then --sets big-test big-unseen
    .venv/bin/python benchmarks/bench_recipe.py curves --root runs/ablation   # validation AP per epoch

On a lent GPU machine ``bash benchmarks/gpu_session.sh`` runs prepare/train/score with
``--device cuda`` (8 trainings at once) and ``bench_gpu.py`` in one call.

``train`` runs ``--jobs`` trainings at once with ``--threads`` torch threads each and skips
rows whose ``summary.json`` exists, so it can be stopped and resumed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bgsdk._dataset_layout import Sample
from bgsdk.contract import scale_input
from bgsdk.evaluate.metrics import double_detection
from bgsdk.tiling import tiling_for
from bgtrain.background import EVAL_KINDS
from bgtrain.checkpoint import load_checkpoint, model_from_checkpoint
from bgtrain.recipe import Recipe, get_recipe
from bgtrain.synth import apply_defects, apply_nuisances, plan_defects
from bgtrain.synth_dataset import BACKGROUNDS, annotation, make_dataset, make_image
from bgtrain.validate import EvalImage, EvalSet, heatmaps, load_eval_set, score_maps

# row -> (preset, recipe overrides, stem, extra train-model options)
# ``robust`` is what train-model did by default until 2026-11-28 (|a| 20-100, --repeats auto =
# 6 passes for 64 strips, the tolerant stem, the weight average with decay 0.998); ``robust-aligned`` =
# that with the aligned stem, the default since. ``robust-r3`` is the previous default (3
# passes, that of the dead-leaves runs), ``robust-noema`` the one before it (also the raw weights validated and
# saved), ``v2`` the one before that (also the compare stem), ``v1`` the one before that (|a| 12-100, one
# pass an epoch), which the minus-one rows were run against. Every row pins its passes (R3 = what auto
# meant until six passes were adopted), so a row means what it meant when it was measured; every row but
# ``robust``, ``robust-r3``, ``robust-r6`` and ``robust-bs8`` pins --ema-decay 0: they were measured
# before the weight average existed.
V1 = {"amplitude_range": [12.0, 100.0]}
RAW = ("--ema-decay", "0")
R3 = ("--repeats", "3")
R6 = ("--repeats", "6")
ONE_PASS = ("--repeats", "1", *RAW)
X6 = ("--repeats", "6", *RAW)
ROWS: dict[str, tuple[str, dict[str, Any], str, tuple[str, ...]]] = {
    "robust": ("robust", {}, "tolerant", ()),
    "robust-r3": ("robust", {}, "tolerant", R3),
    "robust-r6": ("robust", {}, "tolerant", R6),  # = robust since six passes were adopted
    "robust-r12": ("robust", {}, "tolerant", ("--repeats", "12")),  # 4x the patches of robust-r3
    "robust-hn15": ("robust", {"hard_negative_weight": 1.5}, "tolerant", R6),  # half the hard-negative push
    "robust-smooth": ("robust", {}, "smooth", ()),  # + tolerant comparison of 3x3-averaged dies
    "robust-aligned": ("robust", {}, "aligned", ()),  # train-model's default since 2026-11-28
    # 352x160 training crops (3.4x a patch's pixels, 2 passes: 1.15x the default's pixels), for whole-strip builds
    "aligned-c352": ("robust", {"crop_size": [352, 160]}, "aligned", ("--repeats", "2")),
    # CE on each patch's top 0.5% plain-background pixels (loss.top_background_loss), not adopted
    "robust-top1": ("robust", {"top_background_weight": 1.0}, "tolerant", ()),
    "robust-a15": ("robust", {"amplitude_range": [15.0, 100.0]}, "tolerant", R6),  # weaker defects in training
    "robust-bs8": ("robust", {}, "tolerant", (*R3, "--bs", "8")),  # 2x the optimiser steps, same patches
    "robust-noema": ("robust", {}, "tolerant", (*R3, *RAW)),
    "robust-x6": ("robust", {}, "tolerant", X6),
    "robust-g1": ("robust", {}, "tolerant", (*R3, "--gamma_end", "1")),
    "robust-g0": ("robust", {}, "tolerant", (*R3, "--gamma_start", "0", "--gamma_end", "0")),
    "v2": ("robust", {}, "compare", (*R3, *RAW)),
    "v2-x1": ("robust", {}, "compare", ONE_PASS),
    "v2-x6": ("robust", {}, "compare", X6),
    "v2-weakw3": ("robust", {"weak_defect_weight": 3.0}, "compare", (*R3, *RAW)),
    "v2-j16": ("robust", {"crop_jitter": 16}, "compare", (*R3, *RAW)),
    "v2-a12": ("robust", V1, "compare", (*R3, *RAW)),
    "v2-a40": ("robust", {"amplitude_range": [40.0, 100.0]}, "compare", (*R3, *RAW)),
    "seed": ("seed", {}, "compare", ONE_PASS),
    # train-model's first defaults (research-code recipe, raw dies in, one pass, no weight average):
    # the model whose held-out numbers the accuracy criteria quote, to tell how an evaluation set compares with those
    "seed-plain": ("seed", {}, "plain", ONE_PASS),
    "v1": ("robust", V1, "compare", ONE_PASS),
    "v1-weak": ("robust", {"amplitude_range": [40.0, 100.0]}, "compare", ONE_PASS),
    "v1-shapes": (
        "robust",
        {**V1, "shapes": "seed", "line_prob": 0.0, "cluster_prob": 0.0, "edge_prob": 0.0},
        "compare",
        ONE_PASS,
    ),
    "v1-refonly": (
        "robust",
        {**V1, "missing_prob": 0.0, "distractor_weights": [0.0, 0.0, 1.0, 1.0, 1.0]},
        "compare",
        ONE_PASS,
    ),
    "v1-nuisances": ("robust", {**V1, "nuisance_prob": 0.0}, "compare", ONE_PASS),
    "v1-plainstem": ("robust", V1, "plain", ONE_PASS),
    "v1-noweight": ("robust", {**V1, "hard_negative_weight": 1.0}, "compare", ONE_PASS),
    "v1-lr3e-3": ("robust", V1, "compare", (*ONE_PASS, "--lr", "3e-3")),
}
COLUMNS = ("pixel_ap", "image_auroc", "image_auroc12", "recall_weak", "recall_weak12", "fa_one_ref")


def prepare(root: Path, n_train: int, n_eval: int, train_backgrounds: str = "train") -> None:
    """Training data (with valid/test) and the unseen-background set, each its own seed.

    ``train_backgrounds="classic"``: training strips without dead leaves, as before those joined the training kinds.
    """
    make_dataset(root / "data", n_train, n_eval, n_eval, seed=0, progress=False, train_backgrounds=train_backgrounds)
    make_dataset(root / "unseen", 1, 0, n_eval, seed=777, progress=False, eval_backgrounds="holdout")
    print(f"data in {root / 'data'} and {root / 'unseen'}")


# The large evaluation sets: name -> (seed, synth-dataset --eval-backgrounds). Seeds no other set uses.
BIG_SETS = {
    "big-test": (9001, "mixed", "hard"),
    "big-unseen": (9002, "holdout", "hard"),
    "big-photo": (9003, "photographs", "hard"),
    # synth-dataset --eval-level nominal: the ranges the accuracy criteria give for their held-out strips
    "nominal-unseen": (9004, "holdout", "nominal"),
    "nominal-photo": (9005, "photographs", "nominal"),
}
SETS = ("test", "unseen", "seed-val", "robust-val", "valid", *BIG_SETS)


def prepare_big(root: Path, n: int, names: list[str]) -> None:
    """The large evaluation sets: ``test``'s and ``unseen``'s backgrounds, and real photographs.

    A set whose folder exists is kept (the sets are deterministic), so adding one is cheap.
    """
    for name, (seed, backgrounds, level) in BIG_SETS.items():
        if name not in names:
            continue
        if (root / name / "dataset.json").exists():
            print(f"{root / name}: exists, kept")
            continue
        make_dataset(root / name, 1, 0, n, seed=seed, progress=False, eval_backgrounds=backgrounds, eval_level=level)
        print(f"{n} strips in {root / name}")


def _train_one(
    root: Path, row: str, seed: int, epochs: int, width: int, threads: int, device: str, deadline: float
) -> str:
    out = root / "runs" / f"{row}_s{seed}"
    if (out / "summary.json").exists():
        return f"{out.name}: done before"
    if time.monotonic() > deadline:
        return f"{out.name}: skipped (past --deadline-s)"
    preset, overrides, stem, extra = ROWS[row]
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bgtrain",
        "--training_dataset_path",
        str(root / "data"),
        "--checkpoint_path",
        str(out),
        "--width",
        str(width),
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--recipe",
        preset,
        "--stem",
        stem,
        "--threads",
        str(threads),
        "--device",
        device,
        "-q",
        *extra,
    ]
    if overrides:
        (out / "recipe.json").write_text(json.dumps(overrides))
        cmd += ["--recipe-file", str(out / "recipe.json")]
    t0 = time.perf_counter()
    with open(out / "train.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return f"{out.name}: {time.perf_counter() - t0:.0f} s"


def train(
    root: Path,
    rows: list[str],
    seeds: list[int],
    epochs: int,
    width: int,
    jobs: int,
    threads: int,
    device: str = "cpu",
    deadline_s: float | None = None,
) -> None:
    """Seed-major order (every row's first seed before any second seed), so a deadline leaves whole rows."""
    todo = [(r, s) for s in seeds for r in rows]
    deadline = time.monotonic() + (deadline_s if deadline_s is not None else float("inf"))
    with ThreadPoolExecutor(jobs) as pool:
        for msg in pool.map(lambda rs: _train_one(root, rs[0], rs[1], epochs, width, threads, device, deadline), todo):
            print(msg, flush=True)


def recipe_set(recipe: Recipe, n: int, seed: int) -> EvalSet:
    """Clean strips of another seed with defects drawn by ``recipe`` itself (a recipe's own validation set).

    Defect counts are scaled from a 128x128 patch to the strip's area; half the strips
    get labelled defects, all get the recipe's distractors and nuisances.
    """
    t = tiling_for("strip")
    scale = max(1, round(t.height * t.width / (t.patch * t.patch) / 2))
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        img = make_image(rng, t.height, t.width, False, distractors=False, kinds=EVAL_KINDS)[0][:3]
        lo, hi = recipe.num_defects_range
        tlo, thi = (max(recipe.target_range[0], 1), max(recipe.target_range[1], 1)) if i % 2 else (0, 0)
        r = Recipe.from_dict(
            {
                "defect_prob": 1.0,
                "num_defects_range": [lo * scale, hi * scale],
                "target_range": [tlo * scale, thi * scale],
            },
            base=recipe,
        )
        if sum(r.distractor_weights) == 0 and not i % 2:
            r = Recipe.from_dict({"num_defects_range": [1, 1], "target_range": [1, 1], "defect_prob": 0.0}, base=r)
        defects = plan_defects(img[0], rng, r)
        img, mask = apply_defects(img, defects, r.mask_threshold)
        img = apply_nuisances(img, rng, r)
        ann = [annotation(d, r.mask_threshold) for d in defects]
        images.append(
            EvalImage(
                Sample(Path(f"{recipe.name}_{i:03d}"), bool(mask.any()), None), img, mask if mask.any() else None, ann
            )
        )
    return EvalSet(f"{recipe.name}-val", images, annotated=True)


def eval_sets(root: Path, n: int, names: list[str]) -> dict[str, EvalSet]:
    make = {
        "test": lambda: load_eval_set(root / "data", "test"),
        "unseen": lambda: load_eval_set(root / "unseen", "test"),
        "seed-val": lambda: recipe_set(get_recipe("seed"), n, seed=101),
        # pinned to |a| 12-100 (the v1 range) so the set stays the one docs/experiments/ scored
        "robust-val": lambda: recipe_set(Recipe.from_dict(V1, base=get_recipe("robust")), n, seed=202),
        "valid": lambda: load_eval_set(root / "data", "valid"),
        **{name: (lambda name=name: load_eval_set(root / name, "test")) for name in BIG_SETS},
    }
    sets = {k: make[k]() for k in names}
    return {k: v for k, v in sets.items() if v is not None}


_SETS: dict[str, EvalSet] = {}  # filled before the scoring pool forks; children only read it


def _score_run(args: tuple[Path, str, int, bool]) -> tuple[str, dict[str, dict[str, Any]]]:
    ckpt, device, threads, raw = args
    torch.set_num_threads(threads)
    model, info = model_from_checkpoint(ckpt, map_location=device)
    if raw:  # the weights a weight-averaged run trained on, beside the average it saved
        model.load_state_dict(load_checkpoint(ckpt, map_location=device)[0]["raw_model_state_dict"])
    model.to(torch.device(device))
    tiling = info.tiling()
    return ckpt.parent.name, {
        k: score_maps(heatmaps(model, s, tiling, torch.device(device)), s) for k, s in _SETS.items()
    }


def score(
    root: Path,
    n: int,
    names: list[str],
    out_json: Path | None,
    markdown: Path | None,
    device: str = "cpu",
    jobs: int = 1,
    threads: int = 2,
    checkpoint: str = "best",
) -> None:
    """Score every run's ``best.pt`` (or ``last.pt``); ``jobs`` forked processes (CUDA first touched in children).

    ``last-raw``: the raw weights in the ``last.pt`` of runs trained with ``--ema-decay`` (others skipped).
    """
    _SETS.clear()
    _SETS.update(eval_sets(root, n, names))
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    rows["double detection"] = {
        k: score_maps([scale_input(double_detection(e.image)) for e in s.images], s) for k, s in _SETS.items()
    }
    raw = checkpoint == "last-raw"
    ckpts = [
        r.parent / ("last.pt" if raw else f"{checkpoint}.pt") for r in sorted((root / "runs").glob("*/summary.json"))
    ]
    if raw:
        ckpts = [c for c in ckpts if c.exists() and "raw_model_state_dict" in torch.load(c, weights_only=True)]
    todo = [(c, device, threads, raw) for c in ckpts if c.exists()]
    with multiprocessing.get_context("fork").Pool(max(1, jobs)) as pool:
        for name, per_set in pool.imap_unordered(_score_run, todo):
            rows[name] = per_set
            print(f"scored {name}", flush=True)
    rows = {"double detection": rows.pop("double detection"), **dict(sorted(rows.items()))}
    if out_json:
        out_json.write_text(json.dumps(rows, indent=1))
    text = table(rows, list(_SETS))
    print(text)
    if markdown:
        markdown.write_text(text)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(rows: dict[str, dict[str, dict[str, Any]]], sets: list[str]) -> str:
    head = "| run | " + " | ".join(f"{s} {c}" for s in sets for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (1 + len(sets) * len(COLUMNS))]
    for name, per_set in rows.items():
        cells = [_fmt(per_set.get(s, {}).get(c)) for s in sets for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curves(root: Path) -> None:
    """Validation pixel AP per epoch of every run, how much it jumps between epochs, and the epoch best.pt took."""
    for summary in sorted((root / "runs").glob("*/summary.json")):
        log = [json.loads(line) for line in (summary.parent / "metrics.jsonl").read_text().splitlines() if line]
        ap = [h["pixel_ap"] for h in log if h.get("pixel_ap") is not None]
        if not ap:
            continue
        jumps = [abs(b - a) for a, b in zip(ap[3:], ap[4:], strict=False)]  # from epoch 4 on: past the warm-up
        best = int(np.argmax(ap))
        print(
            f"{summary.parent.name:<20} " + " ".join(f"{v:.3f}" for v in ap) + f" | mean |jump| from epoch 4 "
            f"{np.mean(jumps) if jumps else float('nan'):.3f} | best.pt = epoch {best + 1} ({ap[best]:.3f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "prepare-big", "train", "score", "curves"])
    ap.add_argument("--root", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=24, help="images per evaluation set")
    ap.add_argument("--n-big", type=int, default=192, help="prepare-big: images per large evaluation set")
    ap.add_argument(
        "--train-backgrounds",
        choices=sorted(BACKGROUNDS),
        default="train",
        help="prepare: training strip kinds (synth-dataset --train-backgrounds); leaves = without scattered spots "
        "(rows measured before spots joined); classic = without dead leaves either (rows before those); "
        "leaves-heavy, photo: ablations of 2026-11-28; speckle = train (its first name)",
    )
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="torch device for training and scoring (cpu, cuda)")
    ap.add_argument("--deadline-s", type=float, default=None, help="start no new training after this many seconds")
    ap.add_argument(
        "--sets",
        nargs="+",
        default=list(SETS),
        choices=list(SETS),
        help="score: sets to score; prepare-big: sets to make",
    )
    ap.add_argument(
        "--checkpoint",
        choices=["best", "last", "last-raw"],
        default="best",
        help="score: best.pt (chosen on the validation split), last.pt (the final epoch) or, for --ema-decay "
        "runs, the raw (not averaged) weights of the final epoch",
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    a = ap.parse_args()
    if a.step == "prepare":
        prepare(a.root, a.n_train, a.n_eval, a.train_backgrounds)
    elif a.step == "prepare-big":
        prepare_big(a.root, a.n_big, [s for s in a.sets if s in BIG_SETS])
    elif a.step == "curves":
        curves(a.root)
    elif a.step == "train":
        train(a.root, a.rows, a.seeds, a.epochs, a.width, a.jobs, a.threads, a.device, a.deadline_s)
    else:
        score(a.root, a.n_eval, a.sets, a.json, a.markdown, a.device, a.jobs, a.threads, a.checkpoint)


if __name__ == "__main__":
    main()
