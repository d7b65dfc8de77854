"""Hostile checkpoints for ``build-model`` and ``train-model --resume``: one line, exit 2, nothing written.

Every case goes through the console-script entry points, as a user would run them.
``bgtrain.checkpoint.load_checkpoint`` does all the checking (weights_only loading,
zip sanity, state-dict names/shapes/dtypes/finiteness against the UNet of the
declared width, optimizer state for resume), so the training loop needs none.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from bgbuild.cli import main as build_main
from bgtrain.checkpoint import save_checkpoint
from bgtrain.cli import main as train_main
from bgtrain.model import UNet
from tests.helpers.cli import invoke

WIDTH = 4


class NotAllowed:
    """Any custom class: weights_only loading refuses to rebuild it."""

    def __init__(self) -> None:
        self.x = 1


class Payload:
    """Unpickling this would create a marker file -- it must never run."""

    marker = ""

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A resumable width-4 'last.pt' as a dict (weights, optimizer and scheduler state)."""
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = UNet(base_width=WIDTH)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [8, 9], 0.2)
    p = save_checkpoint(
        d / "last.pt",
        model,
        image_type="strip",
        image_size=(976, 176),
        epoch=0,
        seed=0,
        extra={"optimizer_state_dict": opt.state_dict(), "scheduler_state_dict": sched.state_dict()},
    )
    return dict(torch.load(p, weights_only=True))


def _sd(ckpt: dict[str, Any]) -> dict[str, Any]:
    return dict(ckpt["model_state_dict"])


def _edit(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda c: {**c, **changes}


def _edit_sd(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(c: dict[str, Any]) -> dict[str, Any]:
        sd = _sd(c)
        fn(sd)
        return {**c, "model_state_dict": sd}

    return apply


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda sd: sd.__setitem__(key, value)


FIRST = "encoder.blocks.0.0.weight"
HEAD = "decoder.head.weight"

# name -> (how to make it from the good checkpoint, fragment of the one-line error)
SAVED: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "pickled object": (_edit(metrics=NotAllowed()), "pickled objects that safe (weights_only) loading does not allow"),
    "wrong shape": (
        _edit_sd(_set(HEAD, torch.zeros(2, WIDTH, 5, 5))),
        f"model_state_dict['{HEAD}'] has shape [2, 4, 5, 5]",
    ),
    "wrong dtype": (_edit_sd(lambda sd: sd.__setitem__(HEAD, sd[HEAD].double())), "has dtype torch.float64"),
    "int weights": (_edit_sd(lambda sd: sd.__setitem__(HEAD, sd[HEAD].to(torch.int32))), "has dtype torch.int32"),
    "not a tensor": (_edit_sd(_set(HEAD, [1.0, 2.0])), "is a list, not a tensor"),
    "missing key": (_edit_sd(lambda sd: sd.pop(HEAD)), "1 missing (e.g. decoder.head.weight)"),
    "unexpected key": (_edit_sd(_set("evil.weight", torch.zeros(1))), "1 unexpected (e.g. evil.weight)"),
    "NaN weights": (_edit_sd(lambda sd: sd.__setitem__(HEAD, sd[HEAD] * float("nan"))), "contains NaN/Inf"),
    "another width": (lambda c: {**c, "width": 8}, "they are those of a width-4 UNet"),
    "absurd width": (lambda c: {**c, "width": 10**9}, "not a plausible UNet base width"),
    "unknown stem": (lambda c: {**c, "stem": "evil"}, "stem must be one of"),
    "unknown image type": (_edit(image_type="hexagon"), "unknown image_type 'hexagon'"),
    "custom without a size": (
        lambda c: {**{k: v for k, v in c.items() if k != "image_size"}, "image_type": "custom"},
        "a 'custom' image type needs its 'image_size'",
    ),
    "custom patch not a multiple of 32": (
        _edit(image_type="custom", img_height=100, img_width=100, image_size=[640, 640]),
        "patch size must be a positive multiple of 32",
    ),
    "image smaller than its patch": (_edit(image_type="custom", image_size=[100, 640]), "smaller than the patch"),
    "missing field": (lambda c: {k: v for k, v in c.items() if k != "width"}, "missing key(s) width"),
    "state dict not a dict": (_edit(model_state_dict=[1, 2]), "key 'model_state_dict' has type list"),
    "not a dict at all": (lambda c: [c["model_state_dict"]], "expected a dict checkpoint, got list"),
    "optimizer moments wrong shape": (
        lambda c: {
            **c,
            "optimizer_state_dict": {
                **c["optimizer_state_dict"],
                "state": {0: {**c["optimizer_state_dict"]["state"][0], "exp_avg": torch.zeros(3)}},
            },
        },
        "optimizer state exp_avg of parameter 0 is [3]",
    ),
    "optimizer for another model": (
        lambda c: {**c, "optimizer_state_dict": {"state": {}, "param_groups": [{"params": [0, 1, 2]}]}},
        "optimizer_state_dict covers 3 parameters",
    ),
    "scheduler garbage": (_edit(scheduler_state_dict={"milestones": "x"}), "scheduler_state_dict"),
}


def _raw_cases(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    cases = {}
    cases["truncated"] = tmp / "truncated.pt"
    cases["truncated"].write_bytes(data[: len(data) // 2])
    cases["not a zip"] = tmp / "text.pt"
    cases["not a zip"].write_bytes(b"model weights, honest" * 100)
    bomb = tmp / "bomb.pt"
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("last/data/999", b"\0" * (64 << 20), compress_type=zipfile.ZIP_DEFLATED)
    cases["zip bomb"] = bomb
    return {
        "truncated": (cases["truncated"], "damaged zip archive"),
        "not a zip": (cases["not a zip"], "not a torch.save zip archive"),
        "zip bomb": (bomb, "a zip bomb?"),
    }


@pytest.fixture(scope="module")
def hostile(base: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    d = tmp_path_factory.mktemp("hostile")
    good = d / "good.pt"
    torch.save(base, good)
    files: dict[str, tuple[Path, str]] = {}
    for i, (name, (make, fragment)) in enumerate(SAVED.items()):
        p = d / f"case{i}.pt"
        torch.save(make(dict(base)), p)
        files[name] = (p, fragment)
    files.update(_raw_cases(d, good))
    return files


ALL = list(SAVED) + ["truncated", "not a zip", "zip bomb"]
RESUME_ONLY = {"optimizer moments wrong shape", "optimizer for another model", "scheduler garbage"}


def _run(main: Callable[[list[str]], None], capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code, _, err = invoke(main, capsys, *argv)
    return code, err


def _one_line(err: str, prog: str, path: Path, fragment: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: {path}: "), lines[0]
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("name", [n for n in ALL if n not in RESUME_ONLY])
def test_build_model_refuses(
    name: str, hostile: dict[str, tuple[Path, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, fragment = hostile[name]
    out = tmp_path / "out"
    out.mkdir()
    code, err = _run(build_main, capsys, path, "-o", out / "model.onnx", "-q")
    assert code == 2
    _one_line(err, "build-model", path, fragment)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ALL)
def test_train_model_resume_refuses(
    name: str, hostile: dict[str, tuple[Path, str]], demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, fragment = hostile[name]
    runs = tmp_path / "runs"
    code, err = _run(
        train_main,
        capsys,
        "--training_dataset_path",
        demo_root,
        "--checkpoint_path",
        runs,
        "--width",
        WIDTH,
        "--epochs",
        2,
        "--max_steps_per_epoch",
        1,
        "--bs",
        2,
        "--resume",
        path,
        "-q",
    )
    assert code == 2
    _one_line(err, "train-model", path, fragment)
    assert not runs.exists() or list(runs.iterdir()) == []


def test_pickle_payload_never_runs(
    base: dict[str, Any], tmp_path: Path, demo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    Payload.marker = str(marker)
    evil = tmp_path / "evil.pt"
    torch.save({**base, "metrics": Payload()}, evil)
    code, err = _run(build_main, capsys, evil, "-o", tmp_path / "m.onnx", "-q")
    assert code == 2 and "weights_only" in err
    code, err = _resume(capsys, demo_root, tmp_path / "r", WIDTH, evil)
    assert code == 2 and "weights_only" in err
    assert not marker.exists()
    assert not (tmp_path / "m.onnx").exists()


def _resume(capsys: pytest.CaptureFixture[str], data: Path, out: Path, width: int, checkpoint: Path) -> tuple[int, str]:
    """``train-model --resume CHECKPOINT`` (quiet) in-process: exit code and stderr."""
    args = ["--training_dataset_path", data, "--checkpoint_path", out, "--width", width, "--resume", checkpoint, "-q"]
    return _run(train_main, capsys, *args)


def test_resume_with_another_width_is_one_line(
    hostile: dict[str, tuple[Path, str]], demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = hostile["wrong shape"][0].parent / "good.pt"
    code, err = _resume(capsys, demo_root, tmp_path / "r", 8, good)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and str(good) in lines[0] and "width" in lines[0], err


def test_a_custom_size_round_trips(tmp_path: Path) -> None:
    """Any image size: the checkpoint records size, patch and positions; another build size keeps the patch."""
    from bgsdk.tiling import tiling_for_size
    from bgtrain.checkpoint import load_checkpoint

    torch.manual_seed(0)
    p = save_checkpoint(
        tmp_path / "c.pt", UNet(base_width=WIDTH), image_type="custom", image_size=(640, 480), epoch=0, seed=0
    )
    ckpt, info = load_checkpoint(p)
    assert (info.image_type, info.image_size, info.patch) == ("custom", (640, 480), 128)
    assert info.tiling() == tiling_for_size(640, 480)
    assert ckpt["tiling"]["row_positions"] == [0, 85, 170, 256, 341, 426, 512]
    assert info.tiling((300, 2000)).patch == 128 and info.tiling((2048, 2048)).patch == 128
    big = save_checkpoint(
        tmp_path / "b.pt", UNet(base_width=WIDTH), image_type="custom", image_size=(1024, 1536), epoch=0, seed=0
    )
    assert load_checkpoint(big)[1].patch == 256
