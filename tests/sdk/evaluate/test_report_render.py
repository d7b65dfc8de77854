"""The HTML report renders in headless Chromium: table and pictures present, no console errors.

Skipped, with the reason printed, where no Chromium is installed (``make report-check`` installs
Debian's ``chromium`` and runs this test; ``.ci/run`` tries to install it too).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bgsdk.cli.evaluate import run_evaluation
from tests.helpers.models import SdkEnv

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: `make report-check` installs it (apt-get install chromium)"
)


def render(html: Path, tmp: Path) -> tuple[str, list[str]]:
    """(DOM after load, console lines) from headless Chromium."""
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--dump-dom",
        html.resolve().as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


@pytest.fixture(scope="module")
def report(demo_root: Path, sdk_env: SdkEnv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    run_evaluation([sdk_env.strip_model], demo_root, html_out=out, max_images=4)
    return out


def test_report_renders_with_table_images_and_no_console_errors(report: Path, tmp_path):
    dom, console = render(report, tmp_path)
    assert console == [], console
    table = re.search(r'<table id="metrics">(.*?)</table>', dom, re.S)
    assert table is not None and "pixel AP" in table.group(1) and "double detection" in table.group(1)
    n_img = len(re.findall(r"<img ", dom))
    assert n_img == 4
    assert f'data-images-ok="{n_img}/{n_img}"' in dom  # every embedded picture decoded
    assert dom.count("<svg") == 3  # PR, ROC, latency
    assert "sha256" in dom


def test_render_check_catches_a_broken_picture(report: Path, tmp_path):
    """Negative control: the same report with one picture's bytes damaged must fail the checks."""
    html = report.read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAAA", 1))
    dom, console = render(broken, tmp_path)
    assert any("image failed to load" in line for line in console), console
    assert 'data-images-ok="3/4"' in dom
