from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bgsdk._dataset_layout import labelled_split
from bgsdk.evaluate.metrics import double_detection
from bgsdk.io import read_image, write_tiff
from bgtrain.report import score_heatmaps


def test_scoring_double_detection_heatmaps_reproduces_the_baseline(demo_root, tmp_path):
    for s in labelled_split(demo_root, "test"):
        write_tiff(tmp_path / f"{s.path.stem}.heatmap.tiff", double_detection(read_image(s.path)) / np.float32(255))
    model, base = score_heatmaps(demo_root, tmp_path, "test")
    assert model == base
    assert model["n_images"] == 4 and model["n_defect_images"] == 2
    assert model["recall"] is not None and model["n_fa_one_ref"] + model["n_fa_target_ref"] + model["n_fa_all"] > 0
    # Its CLI: JSON and figures.
    figs = tmp_path / "figs"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bgtrain.report",
            str(demo_root),
            str(tmp_path),
            "--figures",
            str(figs),
            "--json-out",
            str(tmp_path / "m.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "double detection" in r.stdout and "1.00x" in r.stdout
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["model"]["pixel_ap"] == pytest.approx(base["pixel_ap"])
    assert len(list(figs.glob("*.panels.png"))) == 4


def test_missing_heatmap_is_a_one_line_error(demo_root, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "bgtrain.report", str(demo_root), str(tmp_path)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "heatmap missing" in r.stderr and "Traceback" not in r.stderr
