"""Serve a bgsdk model on a real Triton Inference Server through PyTriton (tests, benchmarks, dev boxes).

``python -m bgsdk.serving.pytriton_serve MODEL --name bgsdk --http-port 8000 --grpc-port 8001``

PyTriton (``nvidia-pytriton``) ships the Triton server binary with only the
Python backend; a Python callable -- here one ONNX Runtime session per Triton
model instance, on the same ``model.onnx`` -- does the inference. Triton's HTTP
and gRPC front ends, its dynamic batcher and its instance scheduling are the real
ones, which is what the tests and ``benchmarks/bench_scale.py`` exercise. In
production use the official Triton container with its ONNX Runtime backend and
the repository from ``bgsdk export-triton`` instead (docs/serving.md).

PyTriton 0.7 pins ``numpy<2`` while the rest of bgsdk's dev stack (pyarrow for
Ray Data) needs numpy 2, so this module runs in its own virtual environment
(``make setup`` creates ``.venv-pytriton``: pytriton + onnxruntime + bgsdk without
extras); clients talk to it over HTTP/gRPC only. The model's ``bgsdk.*`` metadata
is published as config ``parameters`` exactly as ``export-triton`` writes them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .._session import describe, open_session
from .triton_repo import METADATA_PREFIX

__all__ = ["start", "main", "launch", "ServerProcess", "ServerStartError", "free_ports", "default_server_python"]

log = logging.getLogger(__name__)

_READY = "BGSDK-PYTRITON-READY http="


def _use_own_libpython() -> None:
    """Make Triton's Python-backend stub load *this* interpreter's libpython.

    The stub links ``libpython3.X.so`` dynamically; on a machine with a second
    Python of the same minor version (a pyenv build next to the system's), it
    would otherwise pick the system one and fail inside the standard library.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("LDLIBRARY") or ""
    if libdir and ldlib.endswith(".so") and (Path(libdir) / ldlib).exists():
        current = os.environ.get("LD_LIBRARY_PATH", "")
        if libdir not in current.split(":"):
            os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def _infer_fn(model: Path, input_name: str, output_name: str, threads: int | None) -> Callable[..., Any]:
    from pytriton.decorators import batch

    session = open_session(model, threads=threads)

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {output_name: session.run([output_name], {input_name: inputs[input_name]})[0]}

    return infer  # type: ignore[no-any-return]


def start(
    model: str | os.PathLike[str],
    name: str = "bgsdk",
    *,
    host: str = "127.0.0.1",
    http_port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int = 8002,
    instances: int = 1,
    max_batch_size: int = 8,
    queue_delay_us: int | None = 500,
    threads: int | None = None,
) -> Any:
    """Start Triton with ``model`` loaded; returns the running ``pytriton.triton.Triton`` (call ``.stop()``)."""
    _use_own_libpython()
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    path = Path(model)
    info = describe(open_session(path), path)
    dims = (3, info.height, info.width)
    config = TritonConfig(
        http_address=host,
        http_port=http_port,
        grpc_address=host,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        exit_timeout_secs=5,
        log_verbose=0,
    )
    # PyTriton token-protects its admin APIs; statistics (read-only: request and batch counts) stay open
    # so tests and benchmarks can see what the dynamic batcher did.
    security = TritonSecurityConfig(restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"])
    triton = Triton(config=config, security_config=security)
    triton.bind(
        model_name=name,
        infer_func=[_infer_fn(path, info.input_name, info.output_name, threads) for _ in range(instances)],
        inputs=[Tensor(name=info.input_name, dtype=np.float32, shape=dims)],
        outputs=[Tensor(name=info.output_name, dtype=np.float32, shape=dims)],
        config=ModelConfig(
            max_batch_size=max_batch_size,
            batcher=None if queue_delay_us is None else DynamicBatcher(max_queue_delay_microseconds=queue_delay_us),
        ),
        strict=True,
    )
    _publish_metadata(triton, {k: v for k, v in info.metadata.items() if k.startswith(METADATA_PREFIX)})
    triton.run()
    return triton


def _publish_metadata(triton: Any, metadata: dict[str, str]) -> None:
    """Put the model's bgsdk metadata into the generated config's ``parameters`` (as export-triton does).

    PyTriton has no public option for config parameters; its generated config
    keeps a ``backend_parameters`` dict, filled here before the model is loaded.
    If a future PyTriton changes that, the server still serves (clients then see
    a model without contract metadata) and this says so.
    """
    try:
        for m in triton._model_manager.models:
            m._get_triton_model_config().backend_parameters.update(metadata)
    except Exception as exc:  # pragma: no cover - depends on PyTriton internals
        log.warning("could not publish the bgsdk metadata as config parameters (%s)", exc)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bgsdk.serving.pytriton_serve", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--name", default="bgsdk")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--queue-delay-us", type=int, default=500, help="dynamic batcher delay; -1 = no dynamic batching")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads per instance")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; prints one ``BGSDK-PYTRITON-READY ...`` line on stdout once the model is loaded."""
    a = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    triton = start(
        a.model,
        a.name,
        host=a.host,
        http_port=a.http_port,
        grpc_port=a.grpc_port,
        metrics_port=a.metrics_port,
        instances=a.instances,
        max_batch_size=a.max_batch_size,
        queue_delay_us=None if a.queue_delay_us < 0 else a.queue_delay_us,
        threads=a.threads,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"\n{_READY}{a.host}:{a.http_port} grpc={a.host}:{a.grpc_port} model={a.name}", flush=True)
    stop.wait()
    triton.stop()
    sys.exit(0)


# ------------------------------------------------------------------ launching it from another environment
class ServerStartError(RuntimeError):
    """The server process exited or did not report ready in time; the message ends with its last log lines."""


@dataclass(frozen=True)
class ServerProcess:
    http_url: str
    grpc_url: str
    name: str
    log: list[str]


def default_server_python() -> Path:
    """``$BGSDK_PYTRITON_PYTHON``, else ``.venv-pytriton/bin/python`` at the repository root."""
    env = os.environ.get("BGSDK_PYTRITON_PYTHON")
    return Path(env) if env else Path(__file__).resolve().parents[3] / ".venv-pytriton" / "bin" / "python"


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def launch(
    model: str | os.PathLike[str],
    name: str = "bgsdk",
    *,
    python: str | os.PathLike[str] | None = None,
    instances: int = 1,
    max_batch_size: int = 8,
    queue_delay_us: int | None = 500,
    threads: int | None = 1,
    start_timeout_s: float = 180.0,
) -> Iterator[ServerProcess]:
    """Run :func:`main` in ``python`` (the PyTriton venv) on free 127.0.0.1 ports; stop it on exit.

    Raises :class:`ServerStartError` if it does not come up within ``start_timeout_s``.
    """
    http, grpc, metrics = free_ports(3)
    cmd = [
        str(python or default_server_python()),
        "-m",
        "bgsdk.serving.pytriton_serve",
        os.fspath(model),
        "--name",
        name,
    ]
    cmd += ["--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    cmd += ["--instances", str(instances), "--max-batch-size", str(max_batch_size)]
    cmd += ["--queue-delay-us", str(-1 if queue_delay_us is None else queue_delay_us)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line.rstrip())
            if _READY in line:  # Triton logs to the same pipe: the line may not start with it
                ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        _wait_ready(proc, ready, log, start_timeout_s)
        yield ServerProcess(f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}", name, log)
    finally:
        _stop(proc)
        reader.join(timeout=5)


def _wait_ready(proc: subprocess.Popen[str], ready: threading.Event, log: list[str], timeout_s: float) -> None:
    """Until the server logs that it is ready; :class:`ServerStartError` if it exits or times out first."""
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = (
                f"exited with code {proc.returncode}"
                if proc.poll() is not None
                else f"not ready within {timeout_s:.0f} s"
            )
            tail = " | ".join(line for line in log[-6:] if line.strip())
            raise ServerStartError(f"Triton server {why}; last log lines: {tail[-800:]}")


def _stop(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the tritonserver binary and backend stubs
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


if __name__ == "__main__":  # pragma: no cover
    main()
