"""The model card's seed table: the default training over several seeds, each build variant, three sets.

One command regenerates the table in docs/model-card.md ("Three training seeds")::

    .venv/bin/python benchmarks/model_card.py all --root runs/card [--seeds 0 1 2]

Steps (each skips what ``ROOT`` already holds, so a stopped run resumes; ``prepare``, ``train``,
``build`` and ``score`` run one step alone):

* ``prepare`` -- the evaluation sets with ``bgsdk synth``: ``demo`` (the data `make demo-train` and
  `make release-model` train on: 64 training strips and its 24-strip test split, seed 0), ``imaging``
  (96 strips imaged like a real line: whole-pixel misregistration, per-die blur and exposure) and
  ``nominal`` (96 strips of background kinds no training strip uses, nominal defects);
* ``train`` -- `make demo-train`'s training (``bgsdk train demo -o seedS --width 16 --epochs 6 --seed S``)
  for every seed;
* ``build`` -- each seed's ``best.pt`` as the tiled fp32 build (what `make demo-train` ships), tiled INT8
  (what `make release-model` ships) and the whole-strip fp32 build (``--mode whole``), calibrated on the
  demo set's valid split;
* ``score`` -- ``bgsdk evaluate`` of every build on every set next to double detection, then the markdown
  table: pixel AP / image AUROC / FROC recall at 1 false alarm per image per seed and build, and the
  whole-strip and INT8 changes against tiled fp32.

Commands run one after the other: two trainings or evaluations side by side on a 2-core machine
oversubscribe its cores and are many times slower than one after the other.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, cpu_info  # noqa: E402


def _make_var(name: str) -> list[str]:
    """A ``NAME := ...`` line of the Makefile: the demo's synth and train options have one source."""
    m = re.search(rf"^{name}\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert m is not None, f"Makefile: no {name} := line"
    return shlex.split(m.group(1))


def _without_seed(opts: list[str]) -> list[str]:
    i = opts.index("--seed")
    return opts[:i] + opts[i + 2 :]


SETS = {
    "demo": _make_var("DEMO_SYNTH"),
    "imaging": ["--n-train", "1", "--n-valid", "0", "--n-test", "96", "--eval-level", "imaging", "--seed", "9006"],
    "nominal": [
        *("--n-train", "1", "--n-valid", "0", "--n-test", "96"),
        *("--eval-level", "nominal", "--eval-backgrounds", "holdout", "--seed", "9004"),
    ],
}
LABELS = {
    "demo": "demo test split (24 strips)",
    "imaging": "imaging level (96 strips)",
    "nominal": "nominal, unseen backgrounds (96 strips)",
}
TRAIN = _without_seed(_make_var("DEMO_TRAIN"))  # make demo-train / make release-model, each seed in turn
VARIANTS = {
    "tiled_fp32": [],
    "tiled_int8": ["--quantize"],
    "whole_fp32": ["--mode", "whole"],
    "whole_int8": ["--mode", "whole", "--quantize"],
}


def bgsdk(*args: str | Path) -> None:
    """``bgsdk ARGS`` from this interpreter's environment; a failure stops the run."""
    exe = shutil.which("bgsdk", path=str(Path(sys.executable).parent)) or "bgsdk"
    cmd = [exe, *map(str, args)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def prepare(root: Path) -> None:
    for name, opts in SETS.items():
        if not (root / "data" / name / "test").is_dir():
            bgsdk("synth", root / "data" / name, *opts, "-q")


def train(root: Path, seeds: list[int]) -> None:
    for s in seeds:
        if not (root / f"seed{s}" / "summary.json").is_file():
            bgsdk("train", root / "data" / "demo", "-o", root / f"seed{s}", *TRAIN, "--seed", s)


def build(root: Path, seeds: list[int]) -> None:
    for s in seeds:
        for variant, opts in VARIANTS.items():
            out = root / "builds" / f"s{s}_{variant}.onnx"
            if not out.is_file():
                bgsdk("build", root / f"seed{s}" / "best.pt", "-o", out, "--data", root / "data" / "demo", *opts)


def evaluate(root: Path, seeds: list[int]) -> None:
    models = [a for s in seeds for v in VARIANTS for a in ("-m", root / "builds" / f"s{s}_{v}.onnx")]
    for name in SETS:
        if not (root / "eval" / name / "evaluation.json").is_file():
            bgsdk("evaluate", root / "data" / name, *models, "-o", root / "eval" / name, "--threads", "2")


def _cells(m: dict[str, Any]) -> str:
    froc = m.get("froc") or {}
    fr = froc.get("recall", {}).get("1")
    return f"{m['pixel_ap']:.3f} / {m['image_auroc']:.3f} / " + ("-" if fr is None else f"{fr:.2f}")


def table(root: Path, seeds: list[int]) -> str:
    """Markdown: per set, double detection, then per seed the three builds and the changes against tiled fp32."""
    lines = [
        "| set | method | tiled fp32 | tiled INT8 | whole fp32 | whole INT8 | INT8 - fp32 AP (tiled / whole) "
        "| whole - tiled AP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SETS:
        methods = json.loads((root / "eval" / name / "evaluation.json").read_text())["methods"]
        by = {m["name"]: m for m in methods}
        base = next(m for m in methods if m["kind"] == "baseline")
        lines.append(f"| {LABELS[name]} | double detection | {_cells(base)} | | | | | |")
        diffs: dict[str, list[float]] = {"int8": [], "whole_int8": [], "whole": []}
        for s in seeds:
            t, q, w, wq = (by[f"s{s}_{v}.onnx"] for v in VARIANTS)
            diffs["int8"].append(q["pixel_ap"] - t["pixel_ap"])
            diffs["whole_int8"].append(wq["pixel_ap"] - w["pixel_ap"])
            diffs["whole"].append(w["pixel_ap"] - t["pixel_ap"])
            lines.append(
                f"| | seed {s} | {_cells(t)} | {_cells(q)} | {_cells(w)} | {_cells(wq)} | "
                f"{diffs['int8'][-1]:+.4f} / {diffs['whole_int8'][-1]:+.4f} | {diffs['whole'][-1]:+.3f} |"
            )
        aps = [by[f"s{s}_tiled_fp32.onnx"]["pixel_ap"] for s in seeds]
        mean = statistics.mean(aps)
        lines.append(
            f"| | mean of {len(seeds)} | AP {mean:.3f} (range {max(aps) - min(aps):.3f}) | | | | "
            f"{statistics.mean(diffs['int8']):+.4f} / {statistics.mean(diffs['whole_int8']):+.4f} | "
            f"{statistics.mean(diffs['whole']):+.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=["all", "prepare", "train", "build", "score"])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = ap.parse_args()
    print(f"# {cpu_info()}", flush=True)
    steps = ["prepare", "train", "build", "score"] if args.step == "all" else [args.step]
    if "prepare" in steps:
        prepare(args.root)
    if "train" in steps:
        train(args.root, args.seeds)
    if "build" in steps:
        build(args.root, args.seeds)
    if "score" in steps:
        evaluate(args.root, args.seeds)
        md = table(args.root, args.seeds)
        print("\ncells: pixel AP / image AUROC / FROC recall at 1 false alarm per image\n" + md)
        if args.markdown:
            args.markdown.write_text(md + "\n")


if __name__ == "__main__":
    main()
