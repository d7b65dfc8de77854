from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from bgsdk._dataset_layout import labelled_split, load_annotations, training_images
from bgsdk.io import read_image, read_mask
from bgtrain.synth_dataset import main as synth_main


def test_layout_and_content(demo_root):
    train = training_images(demo_root)
    assert len(train) == 4
    annotations = {split: load_annotations(demo_root, split) for split in ("valid", "test")}
    kinds: set[str] = set()
    for split in ("valid", "test"):
        samples = labelled_split(demo_root, split)
        assert len(samples) == 4
        for s in samples:
            img = read_image(s.path)
            assert img.shape == (3, 976, 176) and 0 <= img.min() and img.max() <= 255
            m = read_mask(s.mask_path) if s.defective else np.zeros((976, 176), bool)
            assert m.shape == (976, 176) and m.any() == s.defective
            defects = annotations[split][s.path.stem]
            assert len(defects) >= 2  # every strip carries not-labelled defects, good ones too
            for d in defects:
                y0, x0, y1, x1 = d["box"]
                # The mask is exactly the labelled defects: each is in it, no distractor touches it.
                assert m[y0:y1, x0:x1].any() == d["labelled"] == (d["kind"] in ("target", "missing"))
                kinds.add(d["kind"])
            assert s.defective == any(d["labelled"] for d in defects)
    # Stored production layout: 4 channels, channel-first, float32.
    import tifffile

    raw = tifffile.imread(train[0])
    assert raw.shape == (4, 976, 176) and raw.dtype == np.float32
    summary = json.loads((demo_root / "dataset.json").read_text())
    assert summary["counts"]["train/good"] == 4
    assert kinds >= {"target", "ref1", "ref2", "all"}  # the rest need more strips than this tiny set


def test_valid_backgrounds_include_kinds_no_training_image_uses(tmp_path):
    from bgtrain.background import HOLDOUT_KINDS, TRAIN_KINDS
    from bgtrain.synth_dataset import make_dataset

    s = make_dataset(tmp_path / "h", 1, 0, 2, seed=1, progress=False, eval_backgrounds="holdout")
    assert set(s["eval_backgrounds"]) == set(HOLDOUT_KINDS) and not set(HOLDOUT_KINDS) & set(TRAIN_KINDS)


def test_every_annotated_strip_records_its_background(tmp_path):
    # Per-kind accuracy (benchmarks/defect_peaks.py) needs each evaluation strip's background kind and
    # misregistration; training strips have no annotations and get no entry.
    from bgtrain.background import HOLDOUT_KINDS
    from bgtrain.synth_dataset import make_dataset

    s = make_dataset(tmp_path / "h", 2, 3, 4, seed=2, progress=False, eval_backgrounds="holdout")
    recorded = json.loads((tmp_path / "h" / "dataset.json").read_text())["backgrounds"]
    assert recorded == s["backgrounds"]
    assert sorted(recorded) == [f"test/test_{i:04d}" for i in range(4)] + [f"valid/valid_{i:04d}" for i in range(3)]
    assert {v["kind"] for v in recorded.values()} <= set(HOLDOUT_KINDS)
    assert all(0.05 <= v["misregistration"] <= 0.6 for v in recorded.values())


def test_photograph_sets_are_photographs_with_every_defect_case(tmp_path):
    from bgtrain.synth_dataset import make_dataset

    s = make_dataset(tmp_path / "p", 1, 0, 4, seed=3, progress=False, eval_backgrounds="photographs")
    assert {v["kind"] for v in s["backgrounds"].values()} == {"photograph"}
    ann = json.loads((tmp_path / "p" / "annotations" / "test.json").read_text())
    assert {"ref1", "ref2", "all"} <= {d["kind"] for ds in ann.values() for d in ds}  # not-labelled cases too
    imgs = [read_image(path) for path in sorted((tmp_path / "p" / "test").rglob("*.tiff"))]
    for img in imgs:
        same = np.corrcoef(img[0].ravel(), img[1].ravel())[0, 1]
        others = max(abs(np.corrcoef(img[0].ravel(), o[0].ravel())[0, 1]) for o in imgs if o is not img)
        assert same > 0.6 and same > others + 0.2  # every die shows the strip's own photograph (plus noise)
        assert 0.5 < np.abs(img[0] - img[1]).mean() < 15


def test_nominal_eval_level_stays_inside_the_issue_ranges(tmp_path):
    # --eval-level nominal: the defect kinds of the hard sets, with |a| 12-100 and sub-pixel shifts only
    # (the ranges the accuracy criteria give for held-out strips); the default level reaches outside them.
    out = tmp_path / "n"
    r = subprocess.run(
        [sys.executable, "-m", "bgtrain.synth_dataset", str(out), "--n-train", "1", "--n-valid", "0"]
        + ["--n-test", "12", "--seed", "5", "--eval-level", "nominal", "-q"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["eval_level"] == "nominal"
    assert all(0.05 <= v["misregistration"] <= 0.3 for v in summary["backgrounds"].values())
    ann = load_annotations(out, "test")
    amps = [abs(d["amplitude"]) for ds in ann.values() for d in ds]
    assert len(amps) > 30 and 12 <= min(amps) and max(amps) <= 100
    assert {"target", "ref1", "ref2", "all"} <= {d["kind"] for ds in ann.values() for d in ds}
    for ds in ann.values():
        for d in ds:
            y0, x0, y1, x1 = d["box"]
            assert max(y1 - y0, x1 - x0) <= 9
    from bgtrain.synth_dataset import make_dataset

    hard = make_dataset(tmp_path / "h", 1, 0, 12, seed=5, progress=False)
    hard_amps = [abs(d["amplitude"]) for ds in load_annotations(tmp_path / "h", "test").values() for d in ds]
    assert hard["eval_level"] == "hard" and (min(hard_amps) < 12 or max(hard_amps) > 100)


def test_views_differ_slightly_but_share_the_pattern(demo_root):
    img = read_image(training_images(demo_root)[0])
    diff = np.abs(img[0] - img[1])
    assert 0.5 < diff.mean() < 15  # noise + misregistration, not identical, not unrelated
    assert np.corrcoef(img[0].ravel(), img[1].ravel())[0, 1] > 0.8


def test_reproducible(tmp_path):
    from bgtrain.synth_dataset import make_dataset

    make_dataset(tmp_path / "a", 1, 2, 0, seed=4, progress=False)
    make_dataset(tmp_path / "b", 1, 2, 0, seed=4, progress=False)
    for rel in ["train/good/train_0000.tiff", "valid/bright_spots/valid_0001.tiff"]:
        np.testing.assert_array_equal(read_image(tmp_path / "a" / rel), read_image(tmp_path / "b" / rel))


def test_cli_ok_and_user_error(tmp_path):
    out = tmp_path / "d"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bgtrain.synth_dataset",
            str(out),
            "--n-train",
            "1",
            "--n-valid",
            "2",
            "--n-test",
            "0",
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert (out / "train/good/train_0000.tiff").exists()
    r = subprocess.run(
        [sys.executable, "-m", "bgtrain.synth_dataset", str(out), "--n-train", "0"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "error" in r.stderr and "Traceback" not in r.stderr


def test_help_mentions_layout(capsys):
    try:
        synth_main(["--help"])
    except SystemExit as e:
        assert e.code in (0, None)
    assert "ground_truth" in capsys.readouterr().out


def test_cli_train_backgrounds_is_recorded(tmp_path):
    import json

    from bgtrain.background import EVAL_KINDS

    out = tmp_path / "d"
    args = [sys.executable, "-m", "bgtrain.synth_dataset", str(out), "--n-train", "1", "--n-valid", "0"]
    r = subprocess.run(args + ["--n-test", "0", "--train-backgrounds", "classic", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "dataset.json").read_text())["train_backgrounds"] == list(EVAL_KINDS)
    r = subprocess.run(args + ["--train-backgrounds", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "--train-backgrounds" in r.stderr and "Traceback" not in r.stderr
