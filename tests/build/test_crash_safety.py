"""SIGKILL ``build-model`` and ``train-model`` at random points: the previous artifact survives.

After each kill: every file under a final name is complete and loadable (the model
pair is consistent -- ``Segmenter(verify=True)`` accepts it; checkpoints pass
``load_checkpoint``), nothing half-written has a final name (only hidden
``.<name>.<pid>.<rand>.tmp`` files may be left), and the next run succeeds with
those stale temp files present -- and removes them. Kill times are drawn from
seeded RNGs over the measured run time; one more kill per command fires the moment
the first temp file appears, i.e. inside the write phase.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bgsdk import Segmenter
from bgtrain.checkpoint import load_checkpoint, save_checkpoint
from bgtrain.model import UNet

BIN = Path(sys.executable).parent
SEEDS = (0, 1, 2)
IMAGE = ("--image-size", "128", "128")  # one patch: a real build, but quick


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_checkpoint(
        path, UNet(base_width=4).eval(), image_type="strip", image_size=(976, 176), epoch=0, seed=seed
    )


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run_to_end(cmd: list[str]) -> float:
    t0 = time.monotonic()
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return time.monotonic() - t0


def _kill_at(cmd: list[str], delay: float) -> int:
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.pid


def _kill_when_temp_appears(cmd: list[str], folder: Path, stem: str, limit: float) -> bool:
    """Start ``cmd``, SIGKILL it as soon as a temp file for ``stem`` exists; True if it was caught writing."""
    before = {p.name for p in folder.iterdir()}
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = False
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if any(n.startswith(f".{stem}") and n.endswith(".tmp") and n not in before for n in os.listdir(folder)):
            proc.send_signal(signal.SIGKILL)
            caught = True
            break
        time.sleep(0.001)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return caught


def _finals(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _temps(folder: Path) -> list[str]:
    hidden = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert all(n.endswith(".tmp") for n in hidden), hidden
    return hidden


# ----------------------------------------------------------------------------- build-model
def _assert_release_intact(out: Path) -> str:
    """The pair under the final names is one complete build (old or new), consistent and loadable."""
    model, manifest = out / "model.onnx", out / "model.json"
    assert _finals(out) == ["model.json", "model.onnx"]
    sha = _sha(model)
    assert json.loads(manifest.read_text())["model_sha256"] == sha  # the pair is consistent
    r = Segmenter(model, verify=True).run(np.random.default_rng(0).uniform(0, 255, (3, 128, 128)).astype(np.float32))
    assert np.isfinite(r.raw).all()
    return sha


@pytest.mark.slow
def test_sigkill_build_model(tmp_path: Path) -> None:
    a, b = _checkpoint(tmp_path / "a.pt", 0), _checkpoint(tmp_path / "b.pt", 1)
    out = tmp_path / "release"

    def cmd(ckpt: Path) -> list[str]:
        return [
            str(BIN / "build-model"),
            str(ckpt),
            "-o",
            str(out / "model.onnx"),
            *IMAGE,
            "--verify-images",
            "1",
            "-q",
        ]

    full = _run_to_end(cmd(a))
    sha_a = _assert_release_intact(out)
    dead_pids = []
    for seed in SEEDS:
        delay = random.Random(seed).uniform(0.2, 1.1) * full
        dead_pids.append(_kill_at(cmd(b), delay))
        _assert_release_intact(out)
    before = _assert_release_intact(out)
    assert _kill_when_temp_appears(cmd(b), out, "model", full * 3), "never saw the write phase"
    assert _assert_release_intact(out) == before  # killed while writing: the previous pair, untouched
    # A stale temp file of a dead writer (as a power cut would leave) and one of a live process.
    stale = out / f".model.onnx.{dead_pids[0]}.abc123.tmp"
    stale.write_bytes(b"half a model")
    live = out / f".model.onnx.{os.getpid()}.keep.tmp"
    live.write_bytes(b"someone else is writing")
    _run_to_end(cmd(b))
    assert _assert_release_intact(out) != sha_a  # b's build, complete
    assert _temps(out) == [live.name]  # dead writers' temps are gone, the live one is left alone


# ----------------------------------------------------------------------------- train-model
def _assert_checkpoints_intact(runs: Path, min_epoch: int) -> int:
    names = _finals(runs)
    assert {"last.pt", "best.pt", "metrics.jsonl"} <= set(names), names
    assert set(names) <= {"last.pt", "best.pt", "metrics.jsonl", "summary.json"}, names
    ckpt, info = load_checkpoint(runs / "last.pt")
    assert info.epoch >= min_epoch and "optimizer_state_dict" in ckpt
    load_checkpoint(runs / "best.pt")
    records = [json.loads(line) for line in (runs / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(len(records)))
    if (runs / "summary.json").exists():
        json.loads((runs / "summary.json").read_text())
    _temps(runs)
    return info.epoch


@pytest.mark.slow
def test_sigkill_train_model(demo_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    base = [
        str(BIN / "train-model"),
        "--training_dataset_path",
        str(demo_root),
        "--checkpoint_path",
        str(runs),
        "--width",
        "4",
        "--bs",
        "4",
        "--epochs",
        "4",
        "--max_steps_per_epoch",
        "2",
        "--seed",
        "0",
        "--threads",
        "1",
        "-q",
    ]
    first = _run_to_end(base + ["--stop_after", "1"])
    resume = base + ["--resume", str(runs / "last.pt")]
    assert _assert_checkpoints_intact(runs, 0) == 0
    dead_pids = []
    for seed in SEEDS:
        delay = random.Random(100 + seed).uniform(0.2, 1.5) * first
        dead_pids.append(_kill_at(resume + ["--stop_after", "1"], delay))
        _assert_checkpoints_intact(runs, 0)
    assert _kill_when_temp_appears(resume + ["--stop_after", "1"], runs, "last.pt", first * 4), "never saw a write"
    _assert_checkpoints_intact(runs, 0)
    stale = runs / f".last.pt.{dead_pids[0]}.x1y2z3.tmp"
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    _run_to_end(resume)
    assert _assert_checkpoints_intact(runs, 3) == 3
    assert _temps(runs) == []
