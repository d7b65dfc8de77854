"""TritonSegmenter against a real Triton server (PyTriton, ONNX Runtime inside, dynamic batching) on
127.0.0.1: same results as the local Segmenter (max |diff| <= 1e-6), same errors, `bgsdk run --server`."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import tifffile

from bgsdk import Segmenter
from bgsdk._run_outputs import DEFECTS_CSV, RESULTS_JSONL
from bgsdk.errors import InputError, ModelError
from tests.helpers.cli import invoke
from tests.helpers.scale import ScaleEnv, scale_env  # noqa: F401
from tests.helpers.triton_server import ServerProcess as Server
from tests.helpers.triton_server import free_ports, pytriton_server

pytest.importorskip("tritonclient.http", reason="needs bgsdk[triton]")
pytest.importorskip("tritonclient.grpc", reason="needs bgsdk[triton]")

from bgsdk.serving.triton_client import TritonSegmenter, parse_server_url  # noqa: E402

TOL = 1e-6
# Long enough that requests sent together by the concurrent-clients test are batched by Triton.
QUEUE_DELAY_US = 200_000


@pytest.fixture(scope="module")
def server(scale_env: ScaleEnv) -> Iterator[Server]:  # noqa: F811
    with pytriton_server(scale_env.model, "bgsdk", instances=1, max_batch_size=4, queue_delay_us=QUEUE_DELAY_US) as s:
        yield s


@pytest.fixture(scope="module")
def local(scale_env: ScaleEnv) -> Segmenter:  # noqa: F811
    return Segmenter(scale_env.model, threads=1)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_results_equal_local(server: Server, local: Segmenter, scale_env: ScaleEnv, protocol: str):  # noqa: F811
    url = server.http_url if protocol == "http" else server.grpc_url
    with TritonSegmenter(url, server.name) as seg:
        assert seg.protocol == protocol and seg.image_size == local.image_size
        assert seg.contract == local.contract  # read back from the server's config parameters
        assert {k: v for k, v in seg.info.metadata.items() if k.startswith("bgsdk.")} == {
            k: v for k, v in local.info.metadata.items() if k.startswith("bgsdk.")
        }
        items = list(scale_env.good) + [scale_env.bad[0]] + [tifffile.imread(scale_env.good[0])]
        remote = seg.run_batch(items, batch_size=6)  # 6 > max_batch_size 4: sent in two requests
        here = local.run_batch(items, batch_size=1)
    assert [r.ok for r in remote] == [r.ok for r in here] == [True] * 4 + [False, True]
    for r, h in zip(remote, here):
        assert r.source == h.source and type(r) is type(h)
        if r.ok:
            assert r.raw.shape == h.raw.shape and r.raw.dtype == np.float32
            assert float(np.abs(r.raw - h.raw).max()) <= TOL
            assert abs(r.score - h.score) <= TOL
            # The operating point travels in the config parameters: same threshold, defects and verdict.
            assert (r.threshold, r.min_area, r.verdict) == (h.threshold, h.min_area, h.verdict)
            assert [d.to_dict() for d in r.defects] == [d.to_dict() for d in h.defects]
        else:
            assert isinstance(r.error, InputError) and str(r.error) == str(h.error)


def test_concurrent_clients_are_batched_by_the_server(server: Server, local: Segmenter, scale_env: ScaleEnv):  # noqa: F811
    import tritonclient.http as th

    seg = TritonSegmenter(server.http_url, server.name)
    stats = th.InferenceServerClient(server.http_url.split("://")[1])
    before = stats.get_inference_statistics(server.name)["model_stats"][0]
    barrier = threading.Barrier(4)
    results: dict[int, np.ndarray] = {}

    def client(i: int) -> None:
        barrier.wait()
        results[i] = seg.run(scale_env.good[i]).raw

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    after = stats.get_inference_statistics(server.name)["model_stats"][0]
    for i in range(4):
        assert float(np.abs(results[i] - local.run(scale_env.good[i]).raw).max()) <= TOL
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 4 and executions < inferences, (inferences, executions)


def test_server_errors_are_model_errors(server: Server):
    with pytest.raises(ModelError, match=r"/nope: model 'nope' is not loaded/ready on the server"):
        TritonSegmenter(server.http_url, "nope")
    (port,) = free_ports(1)
    with pytest.raises(ModelError, match="cannot reach the Triton server"):
        TritonSegmenter(f"http://127.0.0.1:{port}", "bgsdk", timeout_s=5)
    with pytest.raises(ModelError, match="cannot reach the Triton server"):
        TritonSegmenter(f"grpc://127.0.0.1:{port}", "bgsdk", timeout_s=5)


def test_parse_server_url():
    assert parse_server_url("http://h:1") == ("http", "h:1", False)
    assert parse_server_url("https://h:1/") == ("http", "h:1", True)
    assert parse_server_url("grpc://h:2") == ("grpc", "h:2", False)
    assert parse_server_url("h:2", "grpc") == ("grpc", "h:2", False)
    with pytest.raises(ValueError, match="scheme"):
        parse_server_url("ftp://h:1")


def test_bgsdk_run_server(server: Server, scale_env: ScaleEnv, tmp_path: Path, capsys):  # noqa: F811
    from bgsdk.cli import main

    code, _, err = invoke(
        main,
        capsys,
        "run",
        server.name,
        *scale_env.good[:2],
        "--out",
        tmp_path / "remote",
        "--server",
        server.grpc_url,
        "-q",
    )
    assert code == 0, err
    code, _, err = invoke(main, capsys, "run", scale_env.model, *scale_env.good[:2], "--out", tmp_path / "local", "-q")
    assert code == 0, err
    for p in scale_env.good[:2]:
        name = f"{p.stem}.heatmap.tiff"
        diff = np.abs(tifffile.imread(tmp_path / "remote" / name) - tifffile.imread(tmp_path / "local" / name))
        assert float(diff.max()) <= TOL
    assert sorted(f.name for f in (tmp_path / "remote").iterdir()) == sorted(
        f.name for f in (tmp_path / "local").iterdir()
    )
    rows = {}
    for side in ("remote", "local"):
        lines = (tmp_path / side / RESULTS_JSONL).read_text().splitlines()
        rows[side] = [{k: v for k, v in json.loads(line).items() if k not in ("ms", "score")} for line in lines]
    assert rows["remote"] == rows["local"]
    assert (tmp_path / "remote" / DEFECTS_CSV).read_text() == (tmp_path / "local" / DEFECTS_CSV).read_text()
    code, _, err = invoke(
        main, capsys, "run", "nope", scale_env.good[0], "--out", tmp_path / "x", "--server", server.http_url
    )
    assert code == 2 and "not loaded/ready" in err and len(err.strip().splitlines()) == 1
