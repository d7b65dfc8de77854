"""``bgsdk evaluate``: numbers vs independent computation, folders without defects, mask errors, -o, figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tifffile

from bgsdk.cli import main
from bgsdk.evaluate.metrics import average_precision, double_detection, roc_auc
from bgsdk.io import read_image, read_mask
from tests.helpers.cli import invoke as invoke_cli
from tests.helpers.models import SdkEnv, make_double_detection_model, make_strip_model


def invoke(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    return invoke_cli(main, capsys, *argv)


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("bgsdk evaluate: error:")]


@pytest.mark.slow
def test_evaluate_spec_layout_matches_independent_metrics(demo_root: Path, sdk_env: SdkEnv, tmp_path, capsys):
    second = make_strip_model(tmp_path / "second.onnx", seed=3)
    code, out, err = invoke(capsys, "evaluate", sdk_env.strip_model, second, demo_root, "--json", tmp_path / "e.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    names = [m["name"] for m in report["methods"]]
    assert names == ["strip.onnx", "second.onnx", "double detection"]
    assert "double detection" in out and "pixel AP" in out and "second.onnx" in out
    # Independent: raw ORT on tifffile-decoded strips, pooled pixels, sklearn-equivalent metrics.
    sess = ort.InferenceSession(str(sdk_env.strip_model), providers=["CPUExecutionProvider"])
    paths = sorted((demo_root / "test" / "good").glob("*.tiff")) + sorted(
        (demo_root / "test" / "bright_spots").glob("*.tiff")
    )
    labels, scores, dd_scores, img_labels, img_scores = [], [], [], [], []
    for p in paths:
        img = tifffile.imread(p)[:3].astype(np.float32)
        hm = sess.run(["output"], {"input": img[None] / np.float32(255)})[0][0, 0]
        defective = p.parent.name == "bright_spots"
        m = read_mask(demo_root / "ground_truth" / "bright_spots" / p.name) if defective else np.zeros(hm.shape, bool)
        labels.append(m.ravel())
        scores.append(hm.ravel())
        dd_scores.append((double_detection(img) / np.float32(255)).ravel())
        img_labels.append(defective)
        img_scores.append(float(hm.max()))
    y = np.concatenate(labels)
    model = report["methods"][0]
    assert model["pixel_ap"] == pytest.approx(average_precision(y, np.concatenate(scores)), abs=1e-9)
    assert model["pixel_auroc"] == pytest.approx(roc_auc(y, np.concatenate(scores)), abs=1e-9)
    assert model["image_auroc"] == pytest.approx(roc_auc(np.array(img_labels), np.array(img_scores)), abs=1e-9)
    assert report["methods"][2]["pixel_ap"] == pytest.approx(average_precision(y, np.concatenate(dd_scores)), abs=1e-6)
    assert model["operating_point"]["calibrated"] is False and model["operating_point"]["threshold"] == 0.5
    assert model["model_card"]["sha256"] and len(model["latency_ms"]["per_image"]) == len(paths)
    assert report["data"]["n_defect_images"] == 2 and report["notes"] == []


def test_evaluate_folder_without_defective_images(sdk_env: SdkEnv, tmp_path, capsys):
    # Data set layout with only good test images.
    root = tmp_path / "good_only"
    (root / "test" / "good").mkdir(parents=True)
    for s in sdk_env.strips:
        shutil.copy(s, root / "test" / "good" / s.name)
    code, out, err = invoke(
        capsys, "evaluate", sdk_env.strip_model, root, "--json", tmp_path / "g.json", "--html", tmp_path / "g.html"
    )
    assert code == 0, err
    assert "no defective images" in out and "not computed" in out
    rep = json.loads((tmp_path / "g.json").read_text())
    m = rep["methods"][0]
    assert m["pixel_ap"] is None and m["best_f1"] is None and m["defect_recall"] is None
    assert m["false_alarms_per_image"] is not None and m["false_reject_rate"] is not None
    assert "not drawn" in (tmp_path / "g.html").read_text()
    # A flat folder of strips with no masks folder: all good, said so.
    code, out, err = invoke(capsys, "evaluate", sdk_env.strip_model, sdk_env.root / "strips")
    assert code == 0, err
    assert "all 3 image(s) taken as good" in out


def _flat(tmp_path: Path, sdk_env: SdkEnv) -> Path:
    root = tmp_path / "flat"
    (root / "masks").mkdir(parents=True)
    for i, s in enumerate(sdk_env.strips):
        shutil.copy(s, root / s.name)
        m = np.zeros((976, 176), np.uint8)
        if i == 0:
            m[100:104, 50:55] = 255
        tifffile.imwrite(root / "masks" / s.name, m)
    return root


def test_evaluate_flat_folder_with_masks(sdk_env: SdkEnv, tmp_path, capsys):
    root = _flat(tmp_path, sdk_env)
    code, _, err = invoke(capsys, "evaluate", sdk_env.strip_model, root, "--json", tmp_path / "f.json")
    assert code == 0, err
    rep = json.loads((tmp_path / "f.json").read_text())
    assert rep["data"]["n_images"] == 3 and rep["data"]["n_defect_images"] == 1  # all-zero masks = good images
    assert rep["methods"][0]["defect_recall"] is not None


@pytest.mark.parametrize("problem", ["corrupt", "missing", "wrong_size"])
def test_bad_mask_is_one_line_naming_the_file(sdk_env: SdkEnv, tmp_path, capsys, problem):
    root = _flat(tmp_path, sdk_env)
    target = root / "masks" / sdk_env.strips[1].name
    if problem == "corrupt":
        target.write_bytes(b"II*\x00 truncated")
    elif problem == "missing":
        target.unlink()
    else:
        tifffile.imwrite(target, np.zeros((10, 10), np.uint8))
    code, _, err = invoke(capsys, "evaluate", sdk_env.strip_model, root)
    assert code == 2
    lines = errors(err)
    assert len(lines) == 1 and str(target) in lines[0], err
    assert "Traceback" not in err


def test_spec_layout_defect_image_without_mask(demo_root: Path, sdk_env: SdkEnv, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    victim = sorted((root / "ground_truth" / "bright_spots").glob("test_*"))[0]
    victim.unlink()
    code, _, err = invoke(capsys, "evaluate", sdk_env.strip_model, root)
    assert code == 2 and len(errors(err)) == 1 and victim.stem in errors(err)[0]


def test_read_image_of_panels_shape(sdk_env: SdkEnv):
    from bgsdk.evaluate.panels import seven_panel

    img = read_image(sdk_env.strips[0])
    rgb = seven_panel(img, np.zeros((976, 176), np.float32))
    assert rgb.shape == (488, 7 * 88 + 6 * 4, 3) and rgb.dtype == np.uint8


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
def test_a_double_detection_model_scores_exactly_as_the_baseline(demo_root: Path, tmp_path, capsys):
    """The model-side numbers (ONNX through the SDK) against the baseline's (numpy): the same heatmaps up to
    float rounding must give the same table, per-kind rates of the synthesised defects included."""
    dd = make_double_detection_model(tmp_path / "dd.onnx")
    out = tmp_path / "eval"
    code, stdout, err = invoke(capsys, "evaluate", demo_root, "-m", dd, "-o", out, "--figures")
    assert code == 0, err
    report = json.loads((out / "evaluation.json").read_text())
    model, base = report["methods"]
    assert (model["name"], base["name"]) == ("dd.onnx", "double detection")
    for key in ("pixel_ap", "pixel_auroc", "image_auroc", "best_f1"):
        assert model[key] == pytest.approx(base[key], abs=1e-6), key
    mk, bk = model["synthetic_defects"], base["synthetic_defects"]
    assert mk["threshold"] == pytest.approx(bk["threshold"], abs=1e-6)
    rates = [k for k in mk if k.startswith(("recall", "fa_", "n_"))]
    assert {k: mk[k] for k in rates} == {k: bk[k] for k in rates}
    assert mk["n_recall"] > 0 and mk["n_fa_one_ref"] + mk["n_fa_target_ref"] + mk["n_fa_all"] > 0
    # What score-heatmaps printed is in the table: the ratio to double detection and the per-kind rows.
    assert "pixel AP: dd.onnx" in stdout and "-> 1.00x (" in stdout
    for row in (
        "recall, weak defects |a|<=40",
        "recall, defects missing from the target",
        "flagged: defects in one reference only",
    ):
        assert row in stdout, row
    # -o: JSON, HTML and one full-resolution 7-panel figure per image.
    assert "<table" in (out / "report.html").read_text()
    figs = sorted((out / "figures").glob("*.panels.png"))
    assert [f.name.removesuffix(".panels.png") for f in figs] == sorted(p.stem for p in demo_root.glob("test/*/*.tiff"))
    assert _png_size(figs[0]) == (7 * 176 + 6 * 4, 976)


def test_kind_rates_match_an_independent_count(demo_root: Path, sdk_env: SdkEnv, tmp_path, capsys):
    code, _, err = invoke(capsys, "evaluate", demo_root, "-m", sdk_env.strip_model, "--json", tmp_path / "e.json")
    assert code == 0, err
    model = json.loads((tmp_path / "e.json").read_text())["methods"][0]
    t = model["synthetic_defects"]["threshold"]
    ann = json.loads((demo_root / "annotations" / "test.json").read_text())
    sess = ort.InferenceSession(str(sdk_env.strip_model), providers=["CPUExecutionProvider"])
    found: dict[str, list[bool]] = {}
    for p in sorted(demo_root.glob("test/*/*.tiff")):
        img = tifffile.imread(p)[:3].astype(np.float32)
        hm = sess.run(["output"], {"input": img[None] / np.float32(255)})[0][0, 0]
        for d in ann.get(p.stem, []):
            y0, x0, y1, x1 = d["box"]
            found.setdefault(d["kind"], []).append(bool(hm[y0:y1, x0:x1].max() > t))
    missing = found.get("missing", [])
    assert model["synthetic_defects"]["n_recall_missing"] == len(missing)
    if missing:
        assert model["synthetic_defects"]["recall_missing"] == pytest.approx(np.mean(missing))
    one_ref = found.get("ref1", []) + found.get("ref2", [])
    assert model["synthetic_defects"]["n_fa_one_ref"] == len(one_ref)
    if one_ref:
        assert model["synthetic_defects"]["fa_one_ref"] == pytest.approx(np.mean(one_ref))


def test_evaluate_default_model_and_usage_errors(demo_root: Path, sdk_env: SdkEnv, tmp_path, capsys, monkeypatch):
    shipped = tmp_path / "pkg" / "default.onnx"
    shipped.parent.mkdir()
    shutil.copyfile(sdk_env.strip_model, shipped)
    monkeypatch.setattr("bgsdk._default_model._packaged_file", lambda: shipped)
    code, out, err = invoke(capsys, "evaluate", demo_root, "-o", tmp_path / "e")
    assert code == 0, err
    assert [m["name"] for m in json.loads((tmp_path / "e" / "evaluation.json").read_text())["methods"]] == [
        "default.onnx",
        "double detection",
    ]
    code, _, err = invoke(capsys, "evaluate", demo_root, "--figures")
    assert code == 2 and errors(err) == ["bgsdk evaluate: error: --figures writes into OUT_DIR/figures: add -o OUT_DIR"]
    code, _, err = invoke(capsys, "evaluate", tmp_path / "nowhere")
    assert code == 2 and errors(err) == [f"bgsdk evaluate: error: {tmp_path / 'nowhere'}: data folder not found"]
