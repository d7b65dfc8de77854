"""Start a real Triton server (PyTriton, in its own venv ``.venv-pytriton``) on 127.0.0.1 for a test.

Skips with the reason printed when the environment is missing or the server does
not come up within the time limit (e.g. a machine whose kernel/libc the bundled
server binary cannot run on); the server's last log lines go into the reason.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_PYTHON = Path(os.environ.get("BGSDK_PYTRITON_PYTHON", REPO / ".venv-pytriton" / "bin" / "python"))
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Server:
    http_url: str
    grpc_url: str
    name: str
    log: list[str]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def pytriton_server(model: Path, name: str = "bgsdk", *, instances: int = 1, max_batch_size: int = 8,
                    queue_delay_us: int = 500, threads: int = 1) -> Iterator[Server]:
    if not SERVER_PYTHON.exists():
        pytest.skip(f"no PyTriton server environment at {SERVER_PYTHON} (`make setup` creates .venv-pytriton)")
    http, grpc, metrics = free_ports(3)
    cmd = [str(SERVER_PYTHON), "-m", "bgsdk.pytriton_serve", str(model), "--name", name, "--host", "127.0.0.1",
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
           "--instances", str(instances), "--max-batch-size", str(max_batch_size),
           "--queue-delay-us", str(queue_delay_us), "--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            start_new_session=True)
    log: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line.rstrip())
            if line.startswith("READY "):
                ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready in {START_TIMEOUT_S:.0f} s"
                tail = " | ".join(line for line in log[-6:] if line.strip())
                print(f"PyTriton server {why}: {tail}")
                pytest.skip(f"Triton server could not start here ({why}); last log lines: {tail[-600:]}")
        yield Server(f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}", name, log)
    finally:
        _stop(proc)
        reader.join(timeout=5)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 9)  # the tritonserver binary and the Python-backend stubs it started
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
