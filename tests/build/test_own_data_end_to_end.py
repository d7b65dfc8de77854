"""From a user's own data to a verified model: 640x640 grey golden-template pairs, their folder names, boxes.

train (size from the data, single-die templates) -> build (size from the checkpoint, verified, calibrated on
clean templates) -> SDK (refs=) -> evaluate (FROC next to double detection). Tiny width and steps: this checks
the plumbing and the numbers' bookkeeping, not the model's quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bgbuild.build import BuildOptions, build_model
from bgsdk import Segmenter
from bgsdk.cli.evaluate import run_evaluation
from bgsdk.evaluate.evaluation import DOUBLE_DETECTION
from bgsdk.tiling import tiling_for_size
from bgtrain.checkpoint import load_checkpoint
from bgtrain.cli import main as train_main
from bgtrain.train import TrainConfig, train
from tests.helpers.cli import invoke
from tests.helpers.pcb import SIZE, make_pcb_dataset

pytestmark = pytest.mark.slow


def test_own_data_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    data = make_pcb_dataset(tmp_path / "pcb")
    # A size the images do not have is a one-line error naming an image.
    code, _, err = invoke(train_main, capsys, "--training_dataset_path", data.root, "--image-size", 600, 600)
    assert code == 2 and "board0.png: image is 640x640, but --image-size is 600x600" in err.strip().splitlines()[-1]

    lines: list[str] = []
    cfg = TrainConfig(
        training_dataset_path=str(data.root),
        checkpoint_path=str(tmp_path / "ck"),
        width=4,
        epochs=1,
        max_steps_per_epoch=2,
        repeats=1,
        device="cpu",
    )
    res = train(cfg, progress=False, echo=lines.append)
    ckpt, info = load_checkpoint(res.last_checkpoint)
    tiling = tiling_for_size(SIZE, SIZE)
    assert (info.image_type, info.image_size, info.patch) == ("custom", (SIZE, SIZE), 128)
    assert ckpt["tiling"]["row_positions"] == tiling.row_positions == [0, 85, 170, 256, 341, 426, 512]
    assert any("validation on test/ (6 images)" in ln for ln in lines)

    said: list[str] = []
    model = tmp_path / "model.onnx"
    # All 49 patches in one call: the default chunked graph (17 calls) takes onnxsim ~20 s more on 2 cores,
    # and chunking is covered by the build tests.
    opts = BuildOptions(verify_images=1, patch_batch=None)
    report = build_model(res.last_checkpoint, model, opts, lambda s, m: said.append(m))
    assert report.verification.passed and report.num_patches == 49
    assert (report.contract.height, report.contract.width) == (SIZE, SIZE)
    assert list(report.contract.row_positions) == tiling.row_positions
    op_line = next(m for m in said if m.startswith("threshold"))
    assert "single-die template(s) given the training recipe's imaging nuisances" in op_line

    seg = Segmenter(model)
    assert seg.image_size == (SIZE, SIZE)
    test = data.root / "test" / "open" / "o0000_test.png"
    r = seg.run(test, refs=[test.with_name("o0000_temp.png")])
    assert r.heatmap.shape == (SIZE, SIZE) and np.isfinite(r.heatmap).all()

    printed: list[str] = []
    ev = run_evaluation(
        [model], data.root, json_out=tmp_path / "e.json", html_out=tmp_path / "r.html", echo=printed.append
    )
    np.testing.assert_array_equal(ev.methods[0].heatmaps[ev.dataset.samples.index(_sample(ev, test))], r.heatmap)
    table = printed[0]
    row = next(ln for ln in table.splitlines() if ln.startswith("FROC recall @ 1 FA/image "))
    assert len(row.split()) == len("FROC recall @ 1 FA/image".split()) + 2  # model and double detection
    n_open = sum(len(b) for k, b in data.boxes.items() if k.startswith("o"))
    n_short = sum(len(b) for k, b in data.boxes.items() if k.startswith("s"))
    summary = json.loads((tmp_path / "e.json").read_text())["methods"]
    dd = next(m for m in summary if m["name"] == DOUBLE_DETECTION)["froc"]
    assert dd["n_boxes"] == n_open + n_short and dd["n_images"] == 6
    assert {c: v["n_boxes"] for c, v in dd["per_class"].items()} == {"1": n_open, "short": n_short}
    # Every defect differs from its template by >= 40 grey levels, the noise by far less: double detection
    # finds all boxes without a false alarm -- only if the pairs, the box files and COCO all line up.
    assert dd["recall"]["0.5"] == 1.0
    assert summary[0]["froc"]["recall"]["1"] is not None
    assert 'id="froc"' in (tmp_path / "r.html").read_text()


def _sample(ev, path: Path):
    return next(s for s in ev.dataset.samples if s.path == path)
