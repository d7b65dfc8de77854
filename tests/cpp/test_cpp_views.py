"""``bgsdk_cpp`` takes what the model says and the views however they come.

The image size and channel count come from the model (its input shape and ``bgsdk.contract``),
here 384x160 instead of the strip's 976x176, both for a stand-in and for a model that
``build-model`` made from a tiny UNet. The views come as one file with target, ref1, ref2; as a
golden-template pair (2 channels: target, template, the template standing in for both
references); or as separate single-channel files. Every heatmap is compared with
``bgsdk.Segmenter`` run on the ``(3,H,W)`` array those views mean (max |diff| <= 1e-5).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import bgsdk
from bgsdk.contract import Contract
from bgsdk.tiling import tiling_for
from tests.helpers import REPO
from tests.helpers.heatmaps import margin_threshold
from tests.helpers.models import make_full_model, random_strip

sys.path.insert(0, str(REPO / "cpp_example"))
import cpp_harness  # noqa: E402

H, W = 384, 160
TOL = 1e-5


def contract_json(h: int = H, w: int = W, **kw: object) -> str:
    return Contract.from_tiling(tiling_for("strip", h, w), **kw).to_json()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cpp_views")


@pytest.fixture(scope="module")
def model(work: Path) -> Path:
    return make_full_model(work / "m384.onnx", H, W, contract_json=contract_json(), seed=3)


@pytest.fixture(scope="module")
def views() -> dict[str, np.ndarray]:
    """Target, two references and a golden template: (H,W) float32 each, all different."""
    four = random_strip(21, channels=4, hw=(H, W))
    return {"target": four[0], "ref1": four[1], "ref2": four[2], "template": four[3]}


def sdk_heatmap(model: Path, chw: np.ndarray) -> np.ndarray:
    return np.asarray(bgsdk.Segmenter(str(model)).run(np.ascontiguousarray(chw, dtype=np.float32)).heatmap)


def pair(views: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([views["target"], views["template"]])


def filled(views: dict[str, np.ndarray]) -> np.ndarray:
    """What a golden-template pair means for a 3-channel model: (target, template, template)."""
    return np.stack([views["target"], views["template"], views["template"]])


def run_ok(binary: Path, *args: object) -> cpp_harness.CppRun:
    r = cpp_harness.run_cpp(binary, *args)
    assert r.returncode == 0 and r.stderr == "", (r.stdout, r.stderr)
    return r


def run_fails(binary: Path, *args: object) -> str:
    r = cpp_harness.run_cpp(binary, *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines and lines[-1].startswith("bgsdk_cpp: error: "), (r.stdout, r.stderr)
    return lines[-1]


def test_the_pair_reference_is_sensitive_to_both_reference_channels(model: Path, views: dict[str, np.ndarray]):
    """Guards the checks below: the template in only one reference channel would change the heatmap."""
    for other in ("ref1", "target"):
        one_ref = np.stack([views["target"], views["template"], views[other] + 1])
        assert np.abs(sdk_heatmap(model, filled(views)) - sdk_heatmap(model, one_ref)).max() > 1e-3, other


def test_size_comes_from_the_model(binary: Path, model: Path, views: dict[str, np.ndarray], work: Path):
    chw = np.stack([views["target"], views["ref1"], views["ref2"]])
    tifffile.imwrite(work / "three.tif", chw, photometric="minisblack")
    r = run_ok(binary, model, work / "three.tif", work / "three.npy")
    assert np.abs(np.load(work / "three.npy") - sdk_heatmap(model, chw)).max() <= TOL
    assert np.load(work / "three.npy").shape == (H, W)
    assert f"takes 3x{H}x{W}" in r.stdout


@pytest.mark.parametrize("layout", ["chw", "hwc", "raw"])
def test_golden_template_pair_in_one_file(
    binary: Path, model: Path, views: dict[str, np.ndarray], work: Path, layout: str
):
    two = pair(views)
    extra: list[str] = []
    if layout == "chw":
        path = work / "pair_chw.tif"
        tifffile.imwrite(path, two, photometric="minisblack")
    elif layout == "hwc":
        path = work / "pair_hwc.tif"
        tifffile.imwrite(path, np.ascontiguousarray(np.moveaxis(two, 0, -1)), photometric="minisblack")
    else:
        path = work / "pair.f32"
        two.astype("<f4").tofile(path)
        extra = ["--raw-shape", f"2,{H},{W}"]
    out = work / f"pair_{layout}.npy"
    r = run_ok(binary, *extra, model, path, out)
    assert np.abs(np.load(out) - sdk_heatmap(model, filled(views))).max() <= TOL
    assert "target + golden template" in r.stdout


def _single_channel_files(views: dict[str, np.ndarray], names: list[str], folder: Path, raw: bool) -> list[Path]:
    paths = []
    for i, name in enumerate(names):
        if raw:
            p = folder / f"{name}.f32"
            views[name].astype("<f4").tofile(p)
        else:
            p = folder / f"{name}.tif"
            # (H,W), (1,H,W) and (H,W,1): all one channel.
            arr = [views[name], views[name][None], views[name][..., None]][i % 3]
            tifffile.imwrite(p, arr, photometric="minisblack")
        paths.append(p)
    return paths


@pytest.mark.parametrize("raw", [False, True], ids=["tiff", "raw"])
def test_views_in_separate_files(binary: Path, model: Path, views: dict[str, np.ndarray], work: Path, raw: bool):
    folder = work / f"separate_{raw}"
    folder.mkdir()
    extra = ["--raw-shape", f"{H},{W}"] if raw else []
    three = _single_channel_files(views, ["target", "ref1", "ref2"], folder, raw)
    r = run_ok(binary, *extra, model, *three, folder / "three.npy")
    expected = sdk_heatmap(model, np.stack([views["target"], views["ref1"], views["ref2"]]))
    assert np.abs(np.load(folder / "three.npy") - expected).max() <= TOL
    assert "3 files" in r.stdout
    swapped = run_ok(binary, *extra, model, three[0], three[2], three[1], folder / "swapped.npy")
    assert swapped.returncode == 0 and np.abs(np.load(folder / "swapped.npy") - expected).max() > 1e-3

    two = _single_channel_files(views, ["target", "template"], folder, raw)
    run_ok(binary, *extra, model, *two, folder / "two.npy")
    assert np.abs(np.load(folder / "two.npy") - sdk_heatmap(model, filled(views))).max() <= TOL


def test_built_model_of_another_size(binary: Path, views: dict[str, np.ndarray], work: Path):
    """A real build-model artifact (tiny UNet, 18-patch graph, full metadata) at 384x160."""
    from bgbuild import BuildOptions, build_model
    from bgtrain.checkpoint import save_checkpoint
    from tests.helpers.build import tiny_unet

    ckpt = save_checkpoint(work / "tiny.pt", tiny_unet(seed=1), image_type="strip", image_size=(H, W), epoch=0, seed=0)
    built = work / "built" / "model.onnx"
    build_model(ckpt, built, BuildOptions(verify_images=1))
    three = np.stack([views["target"], views["ref1"], views["ref2"]])
    tifffile.imwrite(work / "built_three.tif", three, photometric="minisblack")
    tifffile.imwrite(work / "built_pair.tif", pair(views), photometric="minisblack")
    for name, expected_input in [("built_three", three), ("built_pair", filled(views))]:
        run_ok(binary, "--verify", built, work / f"{name}.tif", work / f"{name}.npy")
        expected = sdk_heatmap(built, expected_input)
        assert expected.std() > 1e-4, "the tiny UNet's heatmap should not be flat"
        assert np.abs(np.load(work / f"{name}.npy") - expected).max() <= TOL, name


def test_pair_defects_equal_the_sdks(binary: Path, model: Path, views: dict[str, np.ndarray], work: Path):
    """Polarity compares the target with the references the model saw: the template, twice."""
    path = work / "pair_defects.tif"
    tifffile.imwrite(path, pair(views), photometric="minisblack")
    run_ok(binary, model, path, work / "pair_defects.npy")
    expected_map = sdk_heatmap(model, filled(views))
    threshold = margin_threshold(expected_map, np.load(work / "pair_defects.npy"), 0.99)
    out = work / "pair_defects.json"
    run_ok(binary, "--defects-json", out, "--threshold", repr(threshold), model, path, work / "d.npy")
    got = json.loads(out.read_text())["defects"]
    sdk = bgsdk.Segmenter(str(model)).run(filled(views), threshold=threshold).defects
    assert len(sdk) > 3 and len(got) == len(sdk)
    assert {d.polarity for d in sdk} == {"bright", "dark"}, "the check needs both polarities"
    for g, e in zip(got, (d.to_dict() for d in sdk)):
        assert [g[k] for k in ("x0", "y0", "x1", "y1", "area", "polarity")] == [
            e[k] for k in ("x0", "y0", "x1", "y1", "area", "polarity")
        ]


def test_size_from_the_contract_when_the_input_shape_is_dynamic(binary: Path, views: dict[str, np.ndarray], work: Path):
    dyn = make_full_model(work / "dyn.onnx", "H", "W", contract_json=contract_json(), seed=4)  # type: ignore[arg-type]
    chw = np.stack([views["target"], views["ref1"], views["ref2"]])
    tifffile.imwrite(work / "dyn.tif", chw, photometric="minisblack")
    run_ok(binary, dyn, work / "dyn.tif", work / "dyn.npy")
    assert np.abs(np.load(work / "dyn.npy") - sdk_heatmap(dyn, chw)).max() <= TOL
    big = work / "big.tif"
    tifffile.imwrite(big, random_strip(1, 3), photometric="minisblack")
    msg = run_fails(binary, dyn, big, work / "never.npy")
    assert f"{big}: image is 976x176" in msg and f"(?, 3, {H}, {W})" in msg

    nothing = make_full_model(work / "nothing.onnx", "H", "W", seed=4)  # type: ignore[arg-type]
    msg = run_fails(binary, nothing, work / "dyn.tif", work / "never.npy")
    assert f"{nothing}: " in msg and "no fixed image size" in msg
    assert not (work / "never.npy").exists()


def test_two_channel_model(binary: Path, views: dict[str, np.ndarray], work: Path):
    """The channel count is the model's: a model that takes (target, template) gets exactly that."""
    import onnxruntime as ort

    contract = contract_json(input_channels=("target", "template"))
    m2 = make_full_model(work / "two.onnx", H, W, contract_json=contract, seed=5, channels=2)
    path = work / "two_in.tif"
    tifffile.imwrite(path, pair(views), photometric="minisblack")
    run_ok(binary, m2, path, work / "two.npy")
    session = ort.InferenceSession(str(m2), providers=["CPUExecutionProvider"])
    expected = session.run(["output"], {"input": pair(views)[None] / np.float32(255)})[0][0, 0]
    assert np.abs(np.load(work / "two.npy") - expected).max() <= TOL

    three = work / "three_for_two.tif"
    tifffile.imwrite(three, filled(views), photometric="minisblack")
    msg = run_fails(binary, m2, three, work / "never.npy")
    assert f"{three}: image has 3 channels" in msg and "takes 2 (target and a golden template)" in msg

    lying = make_full_model(work / "lying.onnx", H, W, contract_json=contract, seed=5)  # 3-channel input
    msg = run_fails(binary, lying, path, work / "never.npy")
    assert f"{lying}: contract input_channels count 2 disagrees with the input shape (?, 3, {H}, {W})" in msg


def test_view_errors(binary: Path, model: Path, views: dict[str, np.ndarray], work: Path):
    folder = work / "view_errors"
    folder.mkdir()
    t, r1 = folder / "t.tif", folder / "r1.tif"
    tifffile.imwrite(t, views["target"])
    tifffile.imwrite(r1, views["ref1"][:-8])
    msg = run_fails(binary, model, t, r1, t, folder / "o.npy")
    assert f"{r1}: image is {H - 8}x{W} but {t} is {H}x{W}" in msg

    rgb = folder / "rgb.tif"
    tifffile.imwrite(rgb, filled(views), photometric="minisblack")
    msg = run_fails(binary, model, t, rgb, folder / "o.npy")
    assert f"{rgb}: expected one channel (H,W) per file" in msg and f"(3, {H}, {W})" in msg

    t_raw, short = folder / "t.f32", folder / "short.f32"
    views["target"].astype("<f4").tofile(t_raw)
    views["target"][:10].astype("<f4").tofile(short)
    msg = run_fails(binary, "--raw-shape", f"{H},{W}", model, t_raw, short, folder / "o.npy")
    assert f"{short}: size" in msg and "does not match --raw-shape" in msg

    usage = run_fails(binary, model, t, t, t, t, folder / "o.npy")
    assert "MODEL TARGET REF1 REF2 OUTPUT" in usage and "got 6 argument(s)" in usage
    assert not (folder / "o.npy").exists()
