"""The one-command grammar: shipped default model, -o safety, one-line errors, shared options everywhere."""

from __future__ import annotations

import json
import logging
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

import bgsdk
from bgsdk import Segmenter
from bgsdk._default_model import NoDefaultModelError
from bgsdk.cli import cli, main
from bgsdk.cli._lazy import LazyCommand
from bgsdk.errors import ModelError
from tests.helpers.cli import invoke as invoke_cli

if TYPE_CHECKING:
    from tests.helpers.models import SdkEnv

NO_DEFAULT = "no model named and no default model shipped in this installation (build one with bgsdk build)"


def invoke(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    return invoke_cli(main, capsys, *argv)


@pytest.fixture
def shipped(sdk_env: SdkEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny model in place of the package's default.onnx (the lookup is redirected, nothing is committed)."""
    target = tmp_path / "pkg_models" / "default.onnx"
    target.parent.mkdir()
    shutil.copyfile(sdk_env.strip_model, target)
    monkeypatch.setattr("bgsdk._default_model._packaged_file", lambda: target)
    return target


@pytest.fixture
def nothing_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "empty_pkg" / "default.onnx"
    monkeypatch.setattr("bgsdk._default_model._packaged_file", lambda: target)
    return target


def test_default_model_is_used_when_none_is_named(shipped: Path, sdk_env: SdkEnv, tmp_path: Path, capsys):
    seg = Segmenter()
    assert seg.model_path == str(shipped)
    expected = Segmenter(sdk_env.strip_model).run(sdk_env.strips[0]).heatmap
    np.testing.assert_array_equal(seg.run(sdk_env.strips[0]).heatmap, expected)
    code, _, err = invoke(capsys, "run", sdk_env.strips[0], "-o", tmp_path / "out", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "strip0.heatmap.tiff"), expected)
    code, out, err = invoke(capsys, "inspect")
    assert code == 0 and f"model:    {shipped}" in out, err


def test_no_default_model_is_one_line(nothing_shipped: Path, sdk_env: SdkEnv, tmp_path: Path, capsys):
    with pytest.raises(NoDefaultModelError) as info:
        Segmenter()
    assert str(info.value) == NO_DEFAULT and isinstance(info.value, ModelError)
    for argv in (
        ["run", sdk_env.strips[0], "-o", tmp_path / "o"],
        ["inspect"],
        ["bench"],
        ["export-triton", "-o", tmp_path / "r"],
    ):
        code, out, err = invoke(capsys, *argv)
        assert code == 2 and out == ""
        assert err.splitlines() == [f"bgsdk {argv[0]}: error: {NO_DEFAULT}"]
    assert not (tmp_path / "o").exists()


def test_run_refuses_to_mix_two_runs_unless_exist_ok(sdk_env: SdkEnv, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, *sdk_env.strips, "-o", out, "-q")
    assert code == 0, err
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "-o", out, "-q")
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"bgsdk run: error: {out}: holds the outputs of an earlier run") and "--exist-ok" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "-o", out, "--exist-ok", "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["notes.txt", "defects.csv", "results.jsonl", "strip0.heatmap.tiff", "strip0.mask.png", "strip0.overlay.png"]
    )  # the earlier run's strip1/strip2 outputs are gone, the unrelated file stays
    rows = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(r)["file"] for r in rows] == [str(sdk_env.strips[0])]


def test_unwritable_out_is_one_line(sdk_env: SdkEnv, tmp_path: Path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "-o", blocker / "out")
    assert code == 2 and err.splitlines() == [
        f"bgsdk run: error: {blocker / 'out'}: cannot create the --out folder (Not a directory)"
    ]
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "-o", blocker)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("bgsdk run: error: ") and "is a file" in err


@pytest.mark.parametrize("name, data", [("best.pt", b"anything"), ("model.onnx", b"PK\x03\x04zip of a torch.save")])
def test_a_training_checkpoint_where_a_model_belongs(sdk_env: SdkEnv, tmp_path: Path, capsys, name, data):
    ckpt = tmp_path / name
    ckpt.write_bytes(data)
    with pytest.raises(ModelError, match="this is a training checkpoint: build it first with `bgsdk build"):
        Segmenter(ckpt)
    for argv in (
        ["run", ckpt, sdk_env.strips[0], "-o", tmp_path / "o"],
        ["inspect", ckpt],
        ["evaluate", ckpt, sdk_env.root / "strips"],
    ):
        code, _, err = invoke(capsys, *argv)
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith(f"bgsdk {argv[0]}: error: {ckpt}: this is a training checkpoint: build it first")


def test_device_cuda_without_cuda_names_the_cli_fallback(sdk_env: SdkEnv, tmp_path: Path, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    code, _, err = invoke(
        capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "-o", tmp_path / "o", "--device", "cuda"
    )
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("bgsdk run: error: --device cuda: this onnxruntime build has no CUDA")
    assert "--device auto" in err and "--device cpu" in err and "fallback" not in err
    code, _, err = invoke(
        capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "-o", tmp_path / "o2", "--device", "auto", "-q"
    )
    assert code == 0, err  # auto = CPU here


def _every_command() -> list[str]:
    return [name for name, c in cli.commands.items() if not isinstance(c, LazyCommand)]


@pytest.mark.parametrize("name", _every_command())
def test_every_subcommand_takes_help_version_verbose_quiet(name: str, capsys):
    code, out, err = invoke(capsys, name, "-h")
    assert code == 0, err
    for flag in ("-h, --help", "--version", "-v, --verbose", "-q, --quiet"):
        assert flag in out, (name, flag)
    code, out, _ = invoke(capsys, name, "--version")
    assert code == 0 and out.strip() == f"bgsdk {bgsdk.__version__}"


def test_group_lists_the_workflow_and_unknown_command_is_one_line(capsys):
    code, out, _ = invoke(capsys, "-h")
    assert code == 0
    listed = [
        line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.startswith("  ") and line[2] != " "
    ]
    assert listed == ["synth", "train", "build", "run", "batch", "evaluate", "inspect", "bench", "export-triton"]
    code, _, err = invoke(capsys, "score-heatmaps")
    assert code == 2 and err.splitlines() == ["bgsdk: error: No such command 'score-heatmaps'."]


def test_lazy_command_without_its_dependency_is_one_line(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "needs_missing_dep.py").write_text("import bgsdk_no_such_package_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.commands, "fake", LazyCommand("fake", "needs_missing_dep:cmd", "train", "x"))
    code, _, err = invoke(capsys, "fake", "--help")
    assert code == 2 and err.splitlines() == [
        "bgsdk fake: error: needs the 'bgsdk_no_such_package_xyz' package, which this installation lacks: "
        "pip install 'bgsdk[train]'"
    ]


def _tiff_with_bad_page_offset(path: Path) -> Path:
    """A readable strip whose next-page pointer points past the end: tifffile logs an error about it."""
    from tests.helpers.models import random_strip

    tifffile.imwrite(path, random_strip(5))
    data = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    n = struct.unpack("<H", data[ifd : ifd + 2])[0]
    data[ifd + 2 + 12 * n : ifd + 6 + 12 * n] = struct.pack("<I", len(data) + 1000)
    path.write_bytes(bytes(data))
    return path


def test_third_party_log_lines_do_not_leak(sdk_env: SdkEnv, tmp_path: Path, capsys):
    odd = _tiff_with_bad_page_offset(tmp_path / "odd.tiff")
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, odd, "-o", tmp_path / "o")
    assert code == 0, err
    assert "invalid page offset" not in err and "tifffile" not in err
    code, _, err = invoke(capsys, "run", sdk_env.strip_model, odd, "-o", tmp_path / "o2", "-vv")
    assert code == 0 and "bgsdk run: error: [tifffile]" in err and "invalid page offset" in err
    logging.getLogger().handlers.clear()


def test_module_dir_lists_the_public_api():
    names = dir(bgsdk)
    assert {"Segmenter", "Result", "io", "tiling", "contract", "errors"} <= set(names)
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    assert "session" not in names and "cli" not in names
    assert set(bgsdk.__all__) <= set(names)
