"""`bgsdk batch --ray` on a local Ray instance (2 CPUs): same heatmaps as Segmenter, error rows for bad
files, restartable; the same rows without Ray; a one-line hint when the extra is missing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import tifffile

from bgsdk import Segmenter
from bgsdk._extras import MissingExtraError, require
from bgsdk._run_outputs import DEFECTS_CSV, RESULTS_JSONL
from bgsdk.io import list_images
from bgsdk.serving.bulk import JOURNAL_NAME, BulkOptions, output_path, run_bulk
from tests.helpers.cli import invoke
from tests.helpers.scale import ScaleEnv, scale_env  # noqa: F401

TOL = 1e-6


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="needs bgsdk[ray]")
    pytest.importorskip("ray.data", reason="needs bgsdk[ray]")
    for attempt in (1, 2):  # Ray gives its raylet a fixed 30 s to register: a very busy machine can miss it
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception as exc:
            ray.shutdown()
            if attempt == 2:
                print(f"local Ray could not start: {exc}")
                pytest.skip(f"local Ray could not start on this machine (twice): {exc}")
    yield
    ray.shutdown()


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RESULTS_JSONL).read_text().splitlines()]


def no_ms(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "ms"} for r in rs]


def files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def check_against_segmenter(out: Path, env: ScaleEnv) -> None:
    seg = Segmenter(env.model, threads=1)
    by_name = {Path(r["file"]).name: r for r in rows(out)}
    assert sorted(by_name) == sorted(p.name for p in env.good + env.bad)
    for p in env.good:
        want = seg.run(p)
        got = tifffile.imread(output_path(out, p))
        assert float(np.abs(got - want.heatmap).max()) <= TOL
        assert by_name[p.name]["ok"] is True and abs(by_name[p.name]["score"] - want.score) <= TOL
    for p in env.bad:
        row = by_name[p.name]
        assert row["ok"] is False and row["error"].startswith(str(p.resolve())) and not output_path(out, p).exists()
        with pytest.raises(Exception) as exc:
            seg.run(p)
        assert row["error"] == str(exc.value).replace(str(p), str(p.resolve()))


@pytest.mark.slow
def test_ray_batch_matches_segmenter_and_restarts(ray_local, scale_env: ScaleEnv, tmp_path: Path, capsys):  # noqa: F811
    from bgsdk.cli import main

    out = tmp_path / "out"
    args = ("batch", scale_env.model, scale_env.folder, "--out", out, "--ray", "--actors", "2", "--files-per-task", "2")
    code, stdout, err = invoke(main, capsys, *args)
    assert code == 1, err  # bad files: error rows and exit 1, the job itself succeeds
    assert "4 of 7 image(s) run on Ray" in stdout and "3 failed" in stdout
    check_against_segmenter(out, scale_env)
    # Rows are in input order, one per input file.
    assert [Path(r["file"]).name for r in rows(out)] == [p.name for p in list_images(scale_env.folder)]
    # The same outputs as `bgsdk run` on the same folder: files, results.jsonl rows (but timings), defects.csv.
    code, _, _ = invoke(main, capsys, "run", scale_env.model, scale_env.folder, "--out", tmp_path / "run", "-q")
    assert code == 1
    assert files(out) == files(tmp_path / "run")
    assert no_ms(rows(out)) == no_ms(rows(tmp_path / "run"))
    assert (out / DEFECTS_CSV).read_text() == (tmp_path / "run" / DEFECTS_CSV).read_text()

    # Restart after a "crash": one output lost, its row half-written. Only that image (and the bad files) rerun.
    lost = scale_env.good[1]
    output_path(out, lost).unlink()
    with (out / JOURNAL_NAME).open("a") as f:
        f.write('{"row": {"file": "torn')
    before = {p: output_path(out, p).stat().st_mtime_ns for p in scale_env.good if p != lost}
    code, stdout, _ = invoke(main, capsys, *args)
    assert code == 1 and "1 of 4 image(s) run on Ray" in stdout and "3 finished earlier" in stdout
    assert {p: output_path(out, p).stat().st_mtime_ns for p in before} == before  # untouched
    check_against_segmenter(out, scale_env)


@pytest.mark.slow
def test_local_batch_gives_the_same_rows(ray_local, scale_env: ScaleEnv, tmp_path: Path):  # noqa: F811
    paths = [p.resolve() for p in list_images(scale_env.folder)]
    a = run_bulk(scale_env.model, paths, tmp_path / "ray", BulkOptions(actors=2, files_per_task=3), use_ray=True)
    b = run_bulk(scale_env.model, paths, tmp_path / "local", BulkOptions(files_per_task=3))
    assert (a.ok, a.failed, b.ok, b.failed) == (4, 3, 4, 3)
    assert no_ms(rows(tmp_path / "ray")) == no_ms(rows(tmp_path / "local"))
    assert (tmp_path / "ray" / DEFECTS_CSV).read_text() == (tmp_path / "local" / DEFECTS_CSV).read_text()
    for p in scale_env.good:
        assert np.array_equal(
            tifffile.imread(output_path(tmp_path / "ray", p)), tifffile.imread(output_path(tmp_path / "local", p))
        )


def test_missing_extra_is_a_one_line_hint(scale_env: ScaleEnv, tmp_path: Path, capsys, monkeypatch):  # noqa: F811
    from bgsdk.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'bgsdk\[ray\]'"):
        require("ray", "ray", "bgsdk batch --ray")
    code, _, err = invoke(main, capsys, "batch", scale_env.model, scale_env.folder, "--out", tmp_path, "--ray")
    assert code == 2
    assert err.strip() == "bgsdk batch: error: bgsdk batch --ray needs the 'ray' package: pip install 'bgsdk[ray]'"
    monkeypatch.setitem(sys.modules, "tritonclient.http", None)
    code, _, err = invoke(
        main, capsys, "run", "m", scale_env.good[0], "--out", tmp_path, "--server", "http://127.0.0.1:1"
    )
    assert code == 2
    assert (
        err.strip()
        == "bgsdk run: error: TritonSegmenter needs the 'tritonclient.http' package: pip install 'bgsdk[triton]'"
    )


def test_batch_usage_errors(scale_env: ScaleEnv, tmp_path: Path, capsys):  # noqa: F811
    from bgsdk.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = invoke(main, capsys, "batch", scale_env.model, empty, "--out", tmp_path / "o")
    assert code == 2 and err.strip().splitlines()[-1] == f"bgsdk batch: error: no image files found in {empty}"
    # INPUTS first, the model with -m (the grammar of bgsdk run); a missing input is exit 2.
    code, _, err = invoke(main, capsys, "batch", scale_env.good[0], "-m", scale_env.model, "-o", tmp_path / "n", "-q")
    assert code == 0, err
    assert output_path(tmp_path / "n", scale_env.good[0]).is_file()
    code, _, err = invoke(main, capsys, "batch", tmp_path / "nope", "-m", scale_env.model, "-o", tmp_path / "n")
    assert code == 2 and err.strip() == f"bgsdk batch: error: {tmp_path / 'nope'}: input not found"
    broken = tmp_path / "broken.onnx"
    shutil.copyfile(scale_env.folder / "corrupt.tiff", broken)
    code, _, err = invoke(main, capsys, "batch", broken, scale_env.folder, "--out", tmp_path / "o")
    assert code == 2 and "cannot be loaded as an ONNX model" in err and len(err.strip().splitlines()) == 1
