"""``bgsdk run / inspect / bench`` through the console-script entry point (bgsdk.cli.main).

Going through ``main`` (not click's CliRunner) also exercises ``bgsdk.cli._options.run_cli``:
user errors must come out as one ``bgsdk <cmd>: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import csv
import json
import re
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from bgsdk import Segmenter
from bgsdk._overlay import overlay_rgb
from bgsdk.cli import main
from bgsdk.io import read_image
from tests.helpers.cli import invoke as invoke_cli
from tests.helpers.models import SdkEnv, random_strip, strip_contract_json


def invoke(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    return invoke_cli(main, capsys, *argv)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if re.match(r"bgsdk [a-z-]+: error: ", line)]


def test_run_writes_heatmaps_masks_overlays_and_tables(sdk_env: SdkEnv, tmp_path, capsys):
    out = tmp_path / "out"
    extra = tmp_path / "extra.tiff"
    tifffile.imwrite(extra, random_strip(11))
    code, stdout, err = invoke(
        capsys,
        "run",
        sdk_env.strip_model,
        sdk_env.root / "strips",
        extra,
        "--out",
        out,
        "--batch-size",
        "2",
        "--threshold",
        "0.4",
        "--min-area",
        "2",
    )
    assert code == 0, err
    seg = Segmenter(sdk_env.strip_model)
    sources = [*sdk_env.strips, extra]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    with open(out / "defects.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["file", "id", "x", "y", "x0", "y0", "x1", "y1", "area", "peak", "mean", "polarity"]
    for src, row in zip(sources, rows):
        heat = tifffile.imread(out / f"{src.stem}.heatmap.tiff")
        assert heat.dtype == np.float32
        expected = seg.run(src, threshold=0.4, min_area=2)
        np.testing.assert_array_equal(heat, expected.heatmap)
        png = np.asarray(Image.open(out / f"{src.stem}.overlay.png"))
        np.testing.assert_array_equal(png, overlay_rgb(read_image(src), expected.heatmap, 0.4, expected.defects))
        mask = np.asarray(Image.open(out / f"{src.stem}.mask.png"))
        np.testing.assert_array_equal(mask > 0, expected.mask())
        assert row["file"] == str(src) and row["verdict"] == expected.verdict and row["ok"] is True
        assert row["n_defects"] == len(expected.defects) and row["score"] == pytest.approx(expected.score)
        assert (row["threshold"], row["min_area"], row["error"]) == (0.4, 2, None) and row["ms"] > 0
        mine = [r for r in table if r["file"] == str(src)]
        assert [int(r["area"]) for r in mine] == [d.area for d in expected.defects]
        assert [r["polarity"] for r in mine] == [d.polarity for d in expected.defects]
    assert sum(r["n_defects"] for r in rows) == len(table) > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s.stem}{suffix}" for s in sources for suffix in (".heatmap.tiff", ".mask.png", ".overlay.png")]
        + ["defects.csv", "results.jsonl"]
    )  # nothing else: no temp files left behind
    assert "4 of 4 image(s) written" in stdout and "0 failed" in stdout
    assert "100%" not in err and "\r" not in err  # stderr is not a terminal here: no progress bar


def _grey_dies(folder, names, seed):
    folder.mkdir(parents=True, exist_ok=True)
    dies = np.rint(random_strip(seed, channels=len(names))).astype(np.uint8)
    for name, die in zip(names, dies):
        Image.fromarray(die, "L").save(folder / name)
    return dies


def test_run_with_refs_matches_templates_by_name(sdk_env, tmp_path, capsys):
    tests, temps, out = tmp_path / "tests", tmp_path / "temps", tmp_path / "out"
    t1 = _grey_dies(tests, ["00041000_test.png"], 1)
    r1 = _grey_dies(temps, ["00041000_temp.png"], 2)
    t2 = _grey_dies(tests, ["b.png"], 3)
    r2 = _grey_dies(temps, ["b.png"], 4)
    code, stdout, err = invoke(capsys, "run", sdk_env.strip_model, tests, "--refs", temps, "--out", out, "--png")
    assert code == 0, err
    seg = Segmenter(sdk_env.strip_model)
    for stem, t, r in (("00041000_test", t1, r1), ("b", t2, r2)):
        expected = seg.run(t[0], refs=[r[0]])
        np.testing.assert_array_equal(tifffile.imread(out / f"{stem}.heatmap.tiff"), expected.heatmap)
        png = np.asarray(Image.open(out / f"{stem}.overlay.png"))
        img = np.stack([t[0], r[0], r[0]]).astype(np.float32)
        np.testing.assert_array_equal(png, overlay_rgb(img, expected.heatmap, expected.threshold, expected.defects))
    assert "2 of 2 image(s) written" in stdout
    _grey_dies(tests, ["c_test.png"], 5)
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, tests, "--refs", temps, "--out", out)
    assert code == 2 and error_lines(err) == [
        f"bgsdk run: error: --refs {temps}: 1 of 3 input(s) have no reference image there (e.g. c_test.png: "
        "looked for c_test.* or <key>_temp/_template/_ref/_golden.*)"
    ]
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, tests / "b.png", "--out", out, "--exist-ok")
    assert code == 1 and "b.png: is a single-channel image: give its reference image(s) too" in err


def test_run_skips_a_bad_file_and_exits_1(sdk_env, tmp_path, capsys):
    bad = tmp_path / "bad.tiff"
    bad.write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path / "out"
    code, stdout, err = invoke(capsys, "run", sdk_env.strip_model, sdk_env.strips[0], bad, sdk_env.strips[1], "-o", out)
    assert code == 1
    assert (out / "strip0.heatmap.tiff").exists() and (out / "strip1.heatmap.tiff").exists()
    assert not (out / "bad.heatmap.tiff").exists()
    assert f"bgsdk run: skipped {bad}" in err
    assert "2 of 3 image(s)" in stdout and "1 failed" in stdout
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["ok"] for r in rows] == [True, False, True]
    assert rows[1]["error"].startswith(f"{bad}: ") and rows[1]["verdict"] is None


def test_run_missing_input_is_exit_2_before_anything_runs(sdk_env, tmp_path, capsys):
    missing = tmp_path / "missing.tiff"
    out = tmp_path / "o"
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, sdk_env.strips[0], missing, "-o", out)
    assert code == 2
    assert error_lines(err) == [f"bgsdk run: error: {missing}: input not found"]
    assert not out.exists()  # nothing written, not even the folder


def test_run_fail_fast_is_one_line_exit_2(sdk_env, tmp_path, capsys):
    bad = tmp_path / "bad.tiff"
    bad.write_bytes(b"II*\x00 not really a tiff")
    code, _, err = invoke(
        capsys, "run", sdk_env.strip_model, bad, sdk_env.strips[0], "--out", tmp_path / "o", "--fail-fast", "-q"
    )
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"bgsdk run: error: {bad}: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "{patch}", "{strip}", "--out", "{tmp}/o"], "patch model"),
        (["run", "{tmp}/none.onnx", "{strip}", "--out", "{tmp}/o"], "model file not found"),
        (["run", "{model}", "{strip}", "--out", "{tmp}/o", "--provider", "cuda"], "not available"),
        (["run", "{model}", "{strip}", "--out", "{tmp}/o", "--threshold", "2"], "threshold"),
        (["run", "{model}", "{strip}", "{tmp}/sub/strip0.tiff", "--out", "{tmp}/o"], "would both write"),
        (["run", "{model}", "{tmp}/emptydir", "--out", "{tmp}/o"], "no image files"),
        (["run", "{model}", "{strip}"], "--out"),
        (["inspect", "{tmp}/junk.onnx"], "cannot be loaded as an ONNX model"),
        (["bench", "{patch}"], "patch model"),
    ],
)
def test_user_errors_are_one_line_exit_2(sdk_env, tmp_path, capsys, args, fragment):
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "sub" / "strip0.tiff", random_strip(0))
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    subst = {"patch": sdk_env.patch_model, "strip": sdk_env.strips[0], "tmp": tmp_path, "model": sdk_env.strip_model}
    code, _, err = invoke(capsys, *(a.format(**subst) for a in args))
    assert code == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


def test_pngs_need_no_pillow_and_no_png_skips_them(sdk_env, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` raise ImportError
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "--out", tmp_path / "o", "-q")
    assert code == 0, err
    assert (tmp_path / "o" / "strip0.overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "--out", tmp_path / "n", "--no-png")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["defects.csv", "results.jsonl", "strip0.heatmap.tiff"]


def test_inspect_prints_contract_metadata_and_signatures(sdk_env, capsys):
    code, out, err = invoke(capsys, "inspect", sdk_env.strip_model)
    assert code == 0, err
    assert "input      tensor(float)  [N, 3, 976, 176]" in out
    assert "output     tensor(float)  [N, 3, 976, 176]" in out
    assert '"row_positions": [0, 106, 212, 318, 424, 530, 636, 742, 848]' in out
    assert "note: plain text value" in out and '"name": "sdk_models"' in out
    assert "check:    ok -- 976x176 image, 18 patches of 128x128" in out

    code, out, _ = invoke(capsys, "inspect", sdk_env.strip_model, "--json")
    report = json.loads(out)
    assert code == 0 and report["check"] == "ok"
    assert report["metadata_props"]["bgsdk.contract"] == json.loads(strip_contract_json())
    assert report["inputs"] == [{"name": "input", "type": "tensor(float)", "shape": ["N", 3, 976, 176]}]


def test_inspect_shows_a_model_that_does_not_fit_then_fails(sdk_env, capsys):
    code, out, err = invoke(capsys, "inspect", sdk_env.patch_model)
    assert code == 2
    assert "logits     tensor(float)  [B, 2, 128, 128]" in out  # still shown
    assert len(error_lines(err)) == 1 and "patch model" in err


def test_bench_reports_latency_throughput_provider_threads(sdk_env, capsys):
    code, out, err = invoke(
        capsys, "bench", sdk_env.strip_model, "--repeat", "2", "--warmup", "0", "--batch-size", "2", "--threads", "1"
    )
    assert code == 0, err
    assert "provider:   CPUExecutionProvider" in out
    assert "threads:    1" in out
    assert "batch size: 2" in out
    assert "ms per call" in out and "images/s" in out


def test_version_and_help(capsys):
    code, out, _ = invoke(capsys, "--version")
    assert code == 0 and "bgsdk" in out
    code, out, _ = invoke(capsys, "run", "--help")
    assert code == 0 and "--batch-size" in out and "--png" in out


def test_training_summary_names_the_weight_average():
    from bgsdk.cli.inspect import training_summary

    base = {"recipe": {"name": "robust"}, "stem": "tolerant", "width": 16, "epoch": 7, "seed": 1}
    assert training_summary({**base, "ema_decay": 0.998}) == (
        "recipe robust, stem tolerant, width 16, epoch 7, seed 1, weight average (EMA decay 0.998)"
    )
    assert training_summary({**base, "ema_decay": 0.0}) == "recipe robust, stem tolerant, width 16, epoch 7, seed 1"
    assert training_summary(None) == "unknown (no bgsdk.training metadata)"
