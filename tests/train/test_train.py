"""Training loop: reproducibility, exact resume, checkpoints, DDP, CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bgsdk._dataset_layout import training_images
from bgtrain.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from bgtrain.train import TrainConfig, train


def _cfg(demo_root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        training_dataset_path=str(demo_root),
        checkpoint_path=str(out),
        bs=4,
        epochs=2,
        width=4,
        seed=3,
        max_steps_per_epoch=3,
        device="cpu",
        cache_size=8,
    )
    base.update(kw)
    return TrainConfig(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state_dict"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    res = train(_cfg(demo_root, out), progress=False, echo=lambda s: None)
    return out, res


def test_outputs_and_checkpoint_fields(straight_run):
    out, res = straight_run
    assert res.last_checkpoint.exists() and res.best_checkpoint is not None
    ckpt = torch.load(res.last_checkpoint, weights_only=True)  # no pickled objects
    for key in (
        "model_state_dict",
        "img_height",
        "img_width",
        "image_type",
        "epoch",
        "seed",
        "width",
        "image_size",
        "tiling",
        "metrics",
        "version",
        "optimizer_state_dict",
        "scheduler_state_dict",
        "raw_model_state_dict",  # the default weight average keeps the raw weights for --resume
        "ema_n_averaged",
    ):
        assert key in ckpt, key
    assert (ckpt["img_height"], ckpt["img_width"], ckpt["image_type"], ckpt["epoch"], ckpt["seed"], ckpt["width"]) == (
        128,
        128,
        "strip",
        1,
        3,
        4,
    )
    assert ckpt["tiling"]["row_positions"] == [0, 106, 212, 318, 424, 530, 636, 742, 848]
    hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [0, 1]
    for h in hist:
        assert h["loss"] > 0 and 0 <= h["pixel_ap"] <= 1 and 0 <= h["pixel_auroc"] <= 1
    assert hist[0]["gamma"] < hist[1]["gamma"] <= 3.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["baseline_pixel_ap"] is not None and summary["pixel_ap"] == hist[-1]["pixel_ap"]
    # the best checkpoint is a clean inference checkpoint
    best = torch.load(res.best_checkpoint, weights_only=True)
    assert "optimizer_state_dict" not in best
    model, info = model_from_checkpoint(res.best_checkpoint)
    assert info.width == 4 and not model.training


@pytest.mark.slow
def test_same_seed_same_weights(demo_root, tmp_path, straight_run):
    out, res = straight_run
    again = train(_cfg(demo_root, tmp_path), progress=False, echo=lambda s: None)
    assert _same(_weights(res.last_checkpoint), _weights(again.last_checkpoint))
    other = train(_cfg(demo_root, tmp_path / "o", seed=4, epochs=1), progress=False, echo=lambda s: None)
    assert not _same(_weights(res.last_checkpoint), _weights(other.last_checkpoint))


@pytest.mark.slow
def test_resume_equals_uninterrupted(demo_root, tmp_path, straight_run):
    _, res = straight_run
    first = train(_cfg(demo_root, tmp_path), progress=False, echo=lambda s: None, stop_after=1)
    assert torch.load(first.last_checkpoint, weights_only=True)["epoch"] == 0
    resumed = train(_cfg(demo_root, tmp_path, resume=str(first.last_checkpoint)), progress=False, echo=lambda s: None)
    assert _same(_weights(res.last_checkpoint), _weights(resumed.last_checkpoint))
    hist = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [0, 1]


class _Evil:
    """Unpickling this would run code: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_bad_checkpoints(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"model_state_dict": {}}, p)
    with pytest.raises(CheckpointError, match="missing key"):
        load_checkpoint(p)

    q = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, q)
    with pytest.raises(CheckpointError, match="pickled objects"):
        load_checkpoint(q)
    r = tmp_path / "junk.pt"
    r.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(r)
    with pytest.raises(CheckpointError, match="file not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_wrong_shapes_in_checkpoint(straight_run, tmp_path):
    _, res = straight_run
    ckpt = torch.load(res.best_checkpoint, weights_only=True)
    ckpt["width"] = 8
    p = tmp_path / "w8.pt"
    torch.save(ckpt, p)
    with pytest.raises(CheckpointError, match="do not fit a width-8 UNet"):
        model_from_checkpoint(p)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_cli_user_errors(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "bgtrain", "--training_dataset_path", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(
        [sys.executable, "-m", "bgtrain", "--training_dataset_path", str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 2 and "training folder not found" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "bgtrain", "--training_dataset_path", str(tmp_path), "--precision", "fp16"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 2 and "--precision" in r.stderr and "Traceback" not in r.stderr


def test_cli_help():
    r = subprocess.run([sys.executable, "-m", "bgtrain", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for opt in (
        "--bs",
        "--lr",
        "--epochs",
        "--num_defects_range",
        "--image_type",
        "--image-size",
        "--img_format",
        "--gamma_start",
        "--gamma_end",
        "--cache_size",
        "--seed",
        "--checkpoint_path",
        "--training_dataset_path",
        "--width",
        "--workers",
        "--device",
        "--resume",
        "--val-every",
        "--precision",
    ):
        assert opt in r.stdout, opt


def _short_run(data: Path, out: Path, epochs: int) -> list[str]:
    """``-m bgtrain`` arguments of a tiny run (width 4, batch 4, two steps per epoch)."""
    run = ["-m", "bgtrain", "--training_dataset_path", str(data), "--checkpoint_path", str(out), "--bs", "4"]
    return run + ["--epochs", str(epochs), "--width", "4", "--max-steps-per-epoch", "2"]


@pytest.mark.slow
def test_ddp_two_processes_cpu(demo_root, tmp_path):
    out = tmp_path / "ddp"
    import socket

    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        *_short_run(demo_root, out, epochs=1),
        "--device",
        "cpu",
        "--threads",
        "1",
        "-q",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["rank_weight_max_diff"] == 0.0
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 0


def test_recipe_and_stem_are_recorded(straight_run):
    out, res = straight_run
    ckpt = torch.load(res.best_checkpoint, weights_only=True)
    assert ckpt["stem"] == "registered" and ckpt["train_config"]["recipe"]["name"] == "robust"  # the defaults
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == ckpt["train_config"]["recipe"] and summary["stem"] == "registered"
    # Per-kind validation numbers of the annotated demo data, for the model and double detection.
    hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("recall", "recall_weak", "fa_one_ref", "best_f1"):
        assert key in hist[-1] and f"baseline_{key}" in summary
    # The whole-strip build mode's numbers sit next to the tiled ones (same model, other inference).
    assert 0 <= hist[-1]["whole_pixel_ap"] <= 1 and hist[-1]["whole_pixel_ap"] != hist[-1]["pixel_ap"]


@pytest.mark.slow
def test_recipe_file_and_log_lines(demo_root, tmp_path):
    """A --recipe-file knob reaches the checkpoint; a redirected log gets plain lines, no bar redraws.

    The file also turns on the top-background loss term and non-square crops larger than a patch, so the
    training loop runs them."""
    f = tmp_path / "r.json"
    knobs = {"base": "seed", "num_defects_range": [4, 10], "top_background_weight": 1.0, "crop_size": [192, 160]}
    f.write_text(json.dumps(knobs))
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            *_short_run(demo_root, out, epochs=2),
            "--recipe-file",
            str(f),
            "--stem",
            "plain",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout + r.stderr
    assert [ln.split(":")[0] for ln in r.stdout.splitlines() if ln.startswith("epoch")] == ["epoch 1/2", "epoch 2/2"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["train_config"]["recipe"]["num_defects_range"] == [4, 10]
    assert ckpt["train_config"]["recipe"]["top_background_weight"] == 1.0
    assert ckpt["train_config"]["recipe"]["crop_size"] == [192, 160]
    assert ckpt["train_config"]["recipe"]["name"] == "seed+r" and ckpt["stem"] == "plain"
    for bad, key in (({"missing_prob": 7}, "missing_prob"), ({"crop_size": [256, 192]}, "crop_size")):
        f.write_text(json.dumps(bad))  # out of range; wider than the 176 px strips
        r = subprocess.run(
            [sys.executable, "-m", "bgtrain", "--training_dataset_path", str(demo_root), "--recipe-file", str(f)],
            capture_output=True,
            text=True,
            env=_env(),
        )
        assert r.returncode == 2 and key in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_repeats_auto_fills_the_epoch_budget_and_is_recorded(demo_root, tmp_path):
    from bgtrain.recipe import AUTO_PATCHES_PER_EPOCH
    from bgtrain.train import resolve_repeats

    assert resolve_repeats(None, 64 * 18) == 6  # the demo set: x6
    assert resolve_repeats(None, 192 * 18) == 2 and resolve_repeats(None, 384 * 18) == 1
    assert resolve_repeats(None, 7) * 7 >= AUTO_PATCHES_PER_EPOCH > (resolve_repeats(None, 7) - 1) * 7
    assert resolve_repeats(2, 64 * 18) == 2
    r = train(_cfg(demo_root, tmp_path / "auto", epochs=1))
    n_patches = len(training_images(demo_root)) * 18
    summary = json.loads((tmp_path / "auto" / "summary.json").read_text())
    assert summary["repeats"] == resolve_repeats(None, n_patches) > 1
    assert torch.load(r.last_checkpoint, weights_only=True)["train_config"]["repeats"] == summary["repeats"]


def test_repeats_option_rejects_nonsense(demo_root, tmp_path):
    args = [sys.executable, "-m", "bgtrain", "--training_dataset_path", str(demo_root), "--repeats", "0"]
    r = subprocess.run(args + ["--checkpoint_path", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "--repeats" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_weight_average_leaves_training_alone(demo_root, tmp_path, straight_run):
    """The default weight average changes what is validated and saved, not the optimiser's trajectory."""
    _, res = straight_run
    last = torch.load(res.last_checkpoint, weights_only=True)
    assert last["ema_n_averaged"] == 6 and last["train_config"]["ema_decay"] == 0.998
    raw = train(_cfg(demo_root, tmp_path / "raw", ema_decay=0.0), progress=False, echo=lambda s: None)
    plain = torch.load(raw.last_checkpoint, weights_only=True)
    assert "raw_model_state_dict" not in plain and plain["train_config"]["ema_decay"] == 0.0
    assert _same(last["raw_model_state_dict"], plain["model_state_dict"])  # same raw weights as without
    assert not _same(last["model_state_dict"], plain["model_state_dict"])  # the saved model is the average
    assert "raw_model_state_dict" not in torch.load(res.best_checkpoint, weights_only=True)
    # resuming a raw run with the average switched on starts the average there
    more = train(
        _cfg(demo_root, tmp_path / "raw", epochs=3, resume=str(raw.last_checkpoint)),
        progress=False,
        echo=lambda s: None,
    )
    assert torch.load(more.last_checkpoint, weights_only=True)["ema_n_averaged"] == 3


def test_bad_raw_weights_are_named(demo_root, tmp_path):
    res = train(_cfg(demo_root, tmp_path, epochs=1), progress=False, echo=lambda s: None)
    ckpt = torch.load(res.last_checkpoint, weights_only=True)
    key = next(k for k in ckpt["raw_model_state_dict"] if k.endswith("weight"))
    ckpt["raw_model_state_dict"][key] = torch.zeros(1)
    p = tmp_path / "bad.pt"
    torch.save(ckpt, p)
    with pytest.raises(CheckpointError, match=r"raw_model_state_dict\["):
        load_checkpoint(p)
    del ckpt["ema_n_averaged"]
    ckpt["raw_model_state_dict"] = torch.load(res.last_checkpoint, weights_only=True)["raw_model_state_dict"]
    torch.save(ckpt, p)
    with pytest.raises(CheckpointError, match="ema_n_averaged"):
        load_checkpoint(p)


@pytest.mark.slow
def test_the_built_model_is_the_weight_average(straight_run, tmp_path):
    """train-model -> build-model: the ONNX model is verified against the averaged weights and says so."""
    from bgbuild import BuildOptions, build_model, read_metadata
    from bgsdk.cli.inspect import training_summary
    from bgsdk.contract import TRAINING_KEY

    _, res = straight_run
    out = tmp_path / "model.onnx"
    report = build_model(res.last_checkpoint, out, BuildOptions(verify_images=2))
    assert report.verification.passed
    training = read_metadata(out)[TRAINING_KEY]
    assert training["ema_decay"] == 0.998
    assert training_summary(training).endswith("weight average (EMA decay 0.998)")


def test_bf16_training_is_logged_recorded_and_validated_in_float32(demo_root, tmp_path, monkeypatch):
    """--precision bf16: the choice is logged and stored as a plain string; validation (what best.pt is chosen
    by, and what the deployed model computes) runs in float32, outside autocast."""
    import bgtrain.train

    real_validate = bgtrain.train.validate
    seen: list[tuple[bool, torch.dtype, torch.dtype]] = []

    def checked_validate(model, *args, **kwargs):
        with torch.no_grad():
            logits = model(torch.rand(1, 3, 128, 128))
        weights = {p.dtype for p in model.parameters()}
        seen.append((torch.is_autocast_enabled("cpu"), logits.dtype, weights.pop() if len(weights) == 1 else None))
        return real_validate(model, *args, **kwargs)

    monkeypatch.setattr(bgtrain.train, "validate", checked_validate)
    lines: list[str] = []
    res = train(_cfg(demo_root, tmp_path, precision="bf16", epochs=1), progress=False, echo=lines.append)
    assert any(line.startswith("precision: bf16 autocast") for line in lines), lines
    assert seen == [(False, torch.float32, torch.float32)]
    for path in (res.last_checkpoint, res.best_checkpoint):
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["training_precision"] == "bf16" and ckpt["train_config"]["precision"] == "bf16"
        assert all(t.dtype == torch.float32 for t in ckpt["model_state_dict"].values() if t.is_floating_point())
    assert "bf16 autocast" in json.loads((tmp_path / "summary.json").read_text())["precision"]


def test_fp32_training_is_recorded(demo_root, tmp_path):
    res = train(
        _cfg(demo_root, tmp_path, precision="fp32", channels_last=False, epochs=1), progress=False, echo=lambda s: None
    )
    assert torch.load(res.last_checkpoint, weights_only=True)["training_precision"] == "fp32"


def test_provenance_records_the_source_commit_and_the_data_sets_record(tmp_path) -> None:
    import json
    import re

    from bgtrain.train import provenance

    (tmp_path / "dataset.json").write_text(
        json.dumps({"seed": 7, "eval_level": "hard", "root": "x", "counts": {"a": 1}})
    )
    out = provenance(tmp_path)
    assert out["data"] == {"seed": 7, "eval_level": "hard", "counts": {"a": 1}}
    # the tests run from a git checkout of the project: the commit is its HEAD (+dirty with local changes)
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", out["source_commit"] or "")
    assert "data" not in provenance(tmp_path / "missing")
