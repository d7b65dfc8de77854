"""build-model end to end on a tiny UNet (width 4): parity, metadata, artifacts, failure paths.

Parity is checked twice: by the build's own verification (against
bgtrain.infer.sliding_window) and here against an independent per-patch PyTorch
reference that stitches with the strip numbers written out in tests/helpers/build.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bgbuild import BuildError, BuildOptions, VerificationError, build_model, read_metadata
from bgbuild.artifact import sha256_bytes
from bgbuild.calibrate_threshold import OperatingPointOptions
from bgbuild.cli import main as cli_main
from bgbuild.export import export_patch_model, op_counts
from bgbuild.simplify import initializer_bytes
from bgbuild.verify import select_verification_images
from bgsdk import BgsdkError, Segmenter, __version__
from bgsdk.contract import BUILD_KEY, CHECKPOINT_SHA_KEY, CONTRACT_KEY, PRODUCER_VERSION_KEY, TRAINING_KEY, Contract
from bgsdk.tiling import tiling_for
from bgtrain.checkpoint import file_sha256, save_checkpoint
from bgtrain.model import UNet
from tests.helpers.build import (
    SPEC_COL_KEEP,
    SPEC_COLS,
    SPEC_ROW_KEEP,
    SPEC_ROWS,
    WIDTH,
    spec_reference,
    tiny_unet,
)

METRICS = {"pixel_ap": 0.25, "image_auroc": 0.75}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, tiny_unet(), image_type="strip", image_size=(976, 176), epoch=3, seed=7, metrics=METRICS)
    return path


@pytest.fixture(scope="module")
def strip_build(checkpoint, demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("strip") / "model.onnx"
    report = build_model(
        checkpoint,
        out,
        BuildOptions(
            patch_batch=None,
            keep_patch_model=True,
            verify_images=3,
            operating_point=OperatingPointOptions(data=demo_root),
        ),
    )
    return report, out


@pytest.fixture(scope="module")
def small_build(checkpoint, tmp_path_factory):
    """480x200 (10 patches: 32 px minimum overlap), chunks of 3 in a Loop, opset 18, onnxsim skipped."""
    out = tmp_path_factory.mktemp("small") / "small.onnx"
    opts = BuildOptions(
        image_size=(480, 200), patch_batch=3, chunking="loop", opset=18, simplify=False, verify_images=3
    )
    return build_model(checkpoint, out, opts), out


def run_file(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["output"], {"input": x})[0]


def strips(n: int, h: int, w: int, seed: int) -> np.ndarray:
    from bgtrain.synth_dataset import make_image

    rng = np.random.default_rng(seed)
    imgs = np.stack([make_image(rng, h, w, defective=True)[0][:3] for _ in range(n)])
    return (imgs / np.float32(255.0)).astype(np.float32)


@pytest.mark.parametrize("n", [1, 3])
def test_strip_parity_with_independent_reference(strip_build, n):
    report, out = strip_build
    assert report.verification.passed and report.verification.n_images == 3
    assert report.verification.max_abs_diff <= 1e-5
    x = strips(n, 976, 176, seed=40 + n)
    y = run_file(out, x)
    ref = spec_reference(tiny_unet(), x, SPEC_ROWS, SPEC_ROW_KEEP, SPEC_COLS, SPEC_COL_KEEP)
    assert y.shape == (n, 3, 976, 176)
    assert np.abs(y[:, 0] - ref).max() <= 1e-5
    assert np.all(y[:, 1:] == 0.0)


@pytest.mark.parametrize("stem", ["compare", "smooth", "tolerant", "aligned"])
@pytest.mark.slow
def test_other_stems_build_with_parity(stem, tmp_path):
    """Every input stem train-model offers exports to native ops and stitches like the default one."""
    ckpt = tmp_path / f"{stem}.pt"
    save_checkpoint(ckpt, tiny_unet(stem=stem), image_type="strip", image_size=(976, 176), epoch=0, seed=0)
    out = tmp_path / f"{stem}.onnx"
    report = build_model(ckpt, out, BuildOptions(verify_images=1))
    assert report.verification.passed and read_metadata(out)[TRAINING_KEY]["stem"] == stem
    x = strips(1, 976, 176, seed=7)
    ref = spec_reference(tiny_unet(stem=stem), x, SPEC_ROWS, SPEC_ROW_KEEP, SPEC_COLS, SPEC_COL_KEEP)
    assert np.abs(run_file(out, x)[:, 0] - ref).max() <= 1e-5


@pytest.mark.parametrize("hw", [(130, 700), (700, 130)], ids=["very-wide", "very-tall"])
@pytest.mark.slow
def test_custom_size_builds_for_its_own_size_and_the_sdk_reads_it(hw, tmp_path):
    """A size of no named type, no side a multiple of 32: the checkpoint's size is the build's, with the
    32 px minimum overlap; the SDK takes the size from the model and matches the PyTorch reference."""
    from bgsdk.tiling import tiling_for_size
    from bgtrain.infer import heatmap_numpy

    ckpt = save_checkpoint(tmp_path / "c.pt", tiny_unet(), image_type="custom", image_size=hw, epoch=0, seed=0)
    out = tmp_path / "m.onnx"
    report = build_model(ckpt, out, BuildOptions(patch_batch=None, verify_images=1))
    t = tiling_for_size(*hw)
    assert report.verification.passed and report.num_patches == t.num_patches
    assert read_metadata(out)[CONTRACT_KEY].tiling() == t
    seg = Segmenter(out)
    assert seg.image_size == hw
    x = strips(1, *hw, seed=3)[0] * np.float32(255)
    ref = heatmap_numpy(tiny_unet(), x, t)
    assert np.abs(seg.run(x).heatmap - ref).max() <= 1e-5
    with pytest.raises(BgsdkError, match=rf"wrong image size: this model expects {hw[0]}x{hw[1]}"):
        seg.run(x[:, :-1])


@pytest.mark.parametrize("n", [1, 3])
def test_other_size_parity_with_loop_and_opset18(small_build, n):
    report, out = small_build
    t = tiling_for("strip", 480, 200)
    assert (t.row_positions, t.col_positions) == ([0, 88, 176, 264, 352], [0, 72])  # overlaps >= 32 px
    assert report.num_patches == 10 and report.patch_batch == 3 and not report.simplified
    assert report.verification.max_abs_diff <= 1e-5
    model = onnx.load(str(out))
    assert op_counts(model)["Loop"] == 1
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    x = strips(n, 480, 200, seed=50 + n)
    y = run_file(out, x)
    ref = spec_reference(
        tiny_unet(),
        x,
        t.row_positions,
        [(s.keep_start, s.keep_stop) for s in t.rows],
        t.col_positions,
        [(s.keep_start, s.keep_stop) for s in t.cols],
    )
    assert y.shape == (n, 3, 480, 200)
    assert np.abs(y[:, 0] - ref).max() <= 1e-5
    assert np.all(y[:, 1:] == 0.0)


def test_graph_is_native_ops_with_one_copy_of_the_weights(strip_build, small_build):
    report, out = strip_build
    model = onnx.load(str(out))
    ops = op_counts(model)
    for bad in ("Loop", "If", "ScatterND", "BatchNormalization", "Constant"):
        assert bad not in ops, bad
    n_params = sum(p.numel() for p in tiny_unet().parameters() if p.ndim > 1)  # conv weights (biases folded/kept)
    weights = initializer_bytes(model)
    assert weights >= 4 * n_params
    # Chunked build: same weights once (in the Loop body), not once per chunk. The two graphs' small
    # constants (the aligned stem's slice bounds and offsets, ~6 KB) differ; a second copy of the weights
    # would add all of them.
    looped = onnx.load(str(small_build[1]))
    assert abs(initializer_bytes(looped) - weights) < 0.1 * weights
    # ... and they live in the main graph (the Loop body reads them from the outer scope).
    (loop,) = [n for n in looped.graph.node if n.op_type == "Loop"]
    assert len(loop.attribute[0].g.initializer) == 0
    assert initializer_bytes(looped) - sum(onnx.numpy_helper.to_array(t).nbytes for t in looped.graph.initializer) == 0
    io = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert list(io) == ["input"] and io["input"][1:] == [3, 976, 176] and isinstance(io["input"][0], str)
    assert [o.name for o in model.graph.output] == ["output"]


def test_metadata_and_manifest_round_trip(strip_build, checkpoint):
    report, out = strip_build
    meta = read_metadata(out)
    contract = meta[CONTRACT_KEY]
    assert isinstance(contract, Contract)
    assert contract == Contract.from_json(contract.to_json())
    assert contract.tiling() == tiling_for("strip")
    assert list(contract.row_positions) == SPEC_ROWS and list(contract.col_positions) == SPEC_COLS
    assert [list(k) for k in contract.row_keep] == [list(k) for k in SPEC_ROW_KEEP]
    assert (contract.height, contract.width, contract.patch, contract.input_scale) == (976, 176, 128, 255.0)
    assert contract.output_channels[0] == "defect_probability"
    assert meta[PRODUCER_VERSION_KEY] == __version__
    assert meta[CHECKPOINT_SHA_KEY] == file_sha256(checkpoint)
    assert meta[TRAINING_KEY]["metrics"] == METRICS
    assert (meta[TRAINING_KEY]["epoch"], meta[TRAINING_KEY]["seed"], meta[TRAINING_KEY]["width"]) == (3, 7, WIDTH)
    assert meta[TRAINING_KEY]["ema_decay"] == 0.0  # no --ema-decay recorded: the raw weights
    assert meta[BUILD_KEY]["opset"] == 17 and meta[BUILD_KEY]["patch_batch"] == 18

    manifest = json.loads(out.with_suffix(".json").read_text())
    data = out.read_bytes()
    assert manifest["model_sha256"] == sha256_bytes(data) and manifest["model_bytes"] == len(data)
    assert Contract.from_json(json.dumps(manifest["contract"])) == contract
    assert manifest["verification"]["passed"] is True
    assert manifest["verification"]["max_abs_diff"] == report.verification.max_abs_diff
    assert manifest["build_options"]["keep_patch_model"] is True
    assert manifest["checkpoint_sha256"] == file_sha256(checkpoint)
    # The operating point calibrated on --calibrate-data travels in the model and the manifest.
    op = Segmenter(out).operating_point
    assert op.calibrated and op.rule == "best_f1" and op.data["n_images"] > 0
    assert manifest["operating_point"]["threshold"] == op.threshold and report.verification.passed


def test_build_without_calibration_data_is_flagged_uncalibrated(small_build):
    report, out = small_build
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["operating_point"]["calibrated"] is False
    assert "no calibration data" in manifest["operating_point"]["note"]
    assert any("operating point" in w for w in manifest["warnings"])


def test_kept_patch_model_is_the_inlined_one(strip_build):
    report, out = strip_build
    patch_path = out.with_suffix(".patch.onnx")
    assert report.paths.patch_model == patch_path and patch_path.is_file()
    pm = onnx.load(str(patch_path))
    assert "BatchNormalization" not in op_counts(pm)
    full = onnx.load(str(out))
    # the full graph inlines it with the 2-logit head folded into one taps MatMul (bgbuild.head)
    assert op_counts(pm)["Conv"] == op_counts(full)["Conv"] + 1 and op_counts(full)["MatMul"] == 1
    x = strips(1, 976, 176, seed=9)[:, :, :128, :128]
    x = np.concatenate([x, x[:, :, ::-1].copy()])
    logits = ort.InferenceSession(str(patch_path)).run(["logits"], {"input": x})[0]
    with torch.no_grad():
        ref = tiny_unet()(torch.from_numpy(x)).numpy()
    assert np.abs(logits - ref).max() < 1e-5


def test_exporter_folds_batchnorm():
    pm = export_patch_model(tiny_unet(), 128)
    ops = op_counts(pm)
    assert "BatchNormalization" not in ops and ops["Conv"] == 28
    dims = pm.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 128, 128]


# --- verification images -------------------------------------------------------------


def test_verification_image_sources(demo_root, tmp_path):
    t = tiling_for("strip")
    a = select_verification_images(t, verify_data=demo_root, count=2)
    assert a.source == "verify-data" and a.images.shape == (2, 3, 976, 176) and str(demo_root) in a.description
    b = select_verification_images(t, train_config={"training_dataset_path": str(demo_root)}, count=1)
    assert b.source == "training-dataset" and b.images.shape == (1, 3, 976, 176)
    c = select_verification_images(t, train_config={"training_dataset_path": str(tmp_path / "gone")}, count=2)
    assert c.source == "synthetic" and c.images.shape == (2, 3, 976, 176)
    assert 0 <= c.images.min() and c.images.max() <= 255
    # An explicit folder's image of another size is an error naming it and both sizes ...
    with pytest.raises(BuildError, match=r"--verify-data: .*\.tiff: image is 976x176, the model is 480x200"):
        select_verification_images(tiling_for("strip", 480, 200), verify_data=demo_root)
    # ... the training data set's are skipped (a build at another --image-size), synthetic images instead.
    d = select_verification_images(
        tiling_for("strip", 480, 200), train_config={"training_dataset_path": str(demo_root)}
    )
    assert d.source == "synthetic" and d.images.shape[2:] == (480, 200)
    with pytest.raises(BuildError, match="not found"):
        select_verification_images(t, verify_data=tmp_path / "missing")


# --- failure paths: one line, exit 2, no file ----------------------------------------------


class NotAllowed:
    """Any custom class: pickling it makes a checkpoint that weights_only loading refuses."""

    def __init__(self) -> None:
        self.x = 1


def _bad_checkpoints(tmp: Path) -> dict[str, Path]:
    good = tiny_unet().state_dict()
    base = {"img_height": 128, "img_width": 128, "image_type": "strip", "epoch": 1, "seed": 0, "width": WIDTH}
    files = {}
    files["not a checkpoint"] = tmp / "garbage.pt"
    files["not a checkpoint"].write_bytes(b"this is not a torch file" * 10)
    files["missing keys"] = tmp / "missing.pt"
    torch.save({"model_state_dict": good, "epoch": 1}, files["missing keys"])
    files["wrong shapes"] = tmp / "shapes.pt"
    torch.save({**base, "model_state_dict": UNet(base_width=8).state_dict()}, files["wrong shapes"])
    files["pickled objects"] = tmp / "pickled.pt"
    torch.save({**base, "model_state_dict": good, "metrics": NotAllowed()}, files["pickled objects"])
    files["missing file"] = tmp / "does_not_exist.pt"
    return files


def _run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        cli_main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize(
    "kind", ["not a checkpoint", "missing keys", "wrong shapes", "pickled objects", "missing file"]
)
def test_bad_checkpoint_is_one_line_exit_2_no_file(kind, tmp_path, capsys):
    ckpt = _bad_checkpoints(tmp_path)[kind]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = set(out_dir.iterdir())
    code, _, err = _run_cli([str(ckpt), "-o", str(out_dir / "model.onnx"), "-q"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build-model: error: ") and ckpt.name in lines[0]
    assert set(out_dir.iterdir()) == before


def test_bad_options_exit_2(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code, _, err = _run_cli([str(checkpoint), "-o", str(out), "--image-size", "100", "176"], capsys)
    assert code == 2 and "smaller than the patch size" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run_cli([str(checkpoint), "-o", str(out), "--patch-batch", "0"], capsys)
    assert code == 2 and "--patch-batch" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_failed_verification_leaves_no_file(checkpoint, tmp_path, monkeypatch):
    import bgtrain.infer

    real = bgtrain.infer.sliding_window
    monkeypatch.setattr(bgtrain.infer, "sliding_window", lambda *a, **k: real(*a, **k) + 1e-4)
    out = tmp_path / "m.onnx"
    with pytest.raises(VerificationError, match=r"gate score .* > 1 at image 0"):
        build_model(checkpoint, out, BuildOptions(verify_images=1, keep_patch_model=True))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_success_prints_stages_and_summary(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code, stdout, err = _run_cli(
        [str(checkpoint), "-o", str(out), "--image-size", "384", "128", "--patch-batch", "2", "--verify-images", "1"],
        capsys,
    )
    assert code == 0
    for stage in ("[load]", "[export]", "[compose]", "[check]", "[verify]", "[write]"):
        assert stage in err
    assert "max |ONNX - PyTorch|" in err and "synthetic" in err
    assert "built" in stdout and "verification max |diff|" in stdout and "build time" in stdout
    assert "4 patches, patch batch 2" in stdout  # 384 rows: 4 patches overlapping >= 32 px
    assert out.is_file() and out.with_suffix(".json").is_file() and not out.with_suffix(".patch.onnx").exists()


@pytest.mark.slow
def test_cli_hybrid_chunking_build(checkpoint, tmp_path, capsys):
    """--chunking hybrid: verified, recorded, and the same heatmap as the independent per-patch reference."""
    out = tmp_path / "hybrid.onnx"
    code, stdout, err = _run_cli(
        [str(checkpoint), "-o", str(out), "--patch-batch", "4", "--chunking", "hybrid", "--verify-images", "2"], capsys
    )
    assert code == 0, err
    assert "full-resolution layers in 5 chunks of <= 4 patches" in stdout + err
    meta = read_metadata(out)
    assert meta[BUILD_KEY]["chunking"] == "hybrid" and meta[BUILD_KEY]["patch_batch"] == 4
    model = onnx.load(str(out))
    assert op_counts(model)["Sigmoid"] == 5 and op_counts(model)["Conv"] == 5 * 5 + 22
    x = strips(2, 976, 176, seed=61)
    ref = spec_reference(tiny_unet(), x, SPEC_ROWS, SPEC_ROW_KEEP, SPEC_COLS, SPEC_COL_KEEP)
    assert np.abs(run_file(out, x)[:, 0] - ref).max() <= 1e-5
