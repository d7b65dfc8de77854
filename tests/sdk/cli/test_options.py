"""bgsdk.cli._options conventions: progress bars only on a terminal."""

from __future__ import annotations

import io
import os
import sys

import pytest
import tifffile

from bgsdk.cli import main
from bgsdk.cli._options import progress_enabled
from tests.helpers.cli import invoke
from tests.helpers.models import SdkEnv, random_strip


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_not_quiet():
    assert progress_enabled(False, _Tty()) is True
    assert progress_enabled(True, _Tty()) is False
    assert progress_enabled(False, io.StringIO()) is False  # redirected to a file or pipe
    r, w = os.pipe()
    try:
        with os.fdopen(w, "w") as pipe:
            assert progress_enabled(False, pipe) is False
    finally:
        os.close(r)


def test_redirected_run_writes_no_progress_bar(sdk_env: SdkEnv, tmp_path, capsys: pytest.CaptureFixture[str]):
    for i in range(3):
        tifffile.imwrite(tmp_path / f"s{i}.tiff", random_strip(i))
    code, out, err = invoke(main, capsys, "run", sdk_env.strip_model, tmp_path, "--out", tmp_path / "o")
    assert code == 0, err
    assert "\r" not in err and "img/s" not in err  # no carriage-return redraws in a log
    assert "3 of 3 image(s) written" in out + err


def test_run_draws_a_bar_on_a_terminal(sdk_env: SdkEnv, tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the captured stderr now says it is a terminal
    code, _, err = invoke(main, capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "--out", tmp_path / "o")
    assert code == 0, err
    assert "100%" in err  # the progress bar went to stderr
    code, _, err = invoke(main, capsys, "run", sdk_env.strip_model, sdk_env.strips[0], "--out", tmp_path / "q", "-q")
    assert code == 0 and "100%" not in err  # --quiet: no bar even on a terminal
