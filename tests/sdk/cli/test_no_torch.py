"""``bgsdk`` without the training stack: the runtime commands work, train/build say what to install.

Each case runs in a fresh interpreter with torch (and onnx) made unimportable, so it checks the real
install story in the dev venv too; CI also runs tests/sdk in a venv that never had torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BLOCK = (
    "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; from bgsdk.cli import main; main({argv!r})"
)


def run_without_torch(*argv: object) -> subprocess.CompletedProcess[str]:
    code = BLOCK.format(argv=[str(a) for a in argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "argv, package, extra",
    [
        (["train", ".", "-o", "ckpt"], "torch", "train"),
        (["train", "-h"], "torch", "train"),
        (["build", "best.pt", "-o", "m.onnx"], "onnx", "build"),
    ],
)
def test_train_and_build_need_their_extra(argv: list[str], package: str, extra: str) -> None:
    r = run_without_torch(*argv)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        f"bgsdk {argv[0]}: error: needs the {package!r} package, which this installation lacks: "
        f"pip install 'bgsdk[{extra}]'"
    ]


def test_group_help_and_synth_work_without_torch(tmp_path: Path) -> None:
    r = run_without_torch("-h")
    assert r.returncode == 0 and "train" in r.stdout and "evaluate" in r.stdout
    out = tmp_path / "data"
    r = run_without_torch("synth", out, "--n-train", 1, "--n-valid", 0, "--n-test", 2, "-q")
    assert r.returncode == 0, r.stderr
    assert len(list((out / "train" / "good").glob("*.tiff"))) == 1
    assert (out / "annotations" / "test.json").is_file()
