"""A real Triton server (PyTriton, in its own venv ``.venv-pytriton``) on 127.0.0.1 for a test.

Skips with the reason printed when that environment is missing or the server does
not come up within the time limit (e.g. a machine whose libc the bundled server
binary cannot run on); the server's last log lines are part of the reason.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import pytest

from bgsdk.serving.pytriton_serve import ServerProcess, ServerStartError, default_server_python, free_ports, launch

__all__ = ["ServerProcess", "free_ports", "pytriton_server"]


@contextlib.contextmanager
def pytriton_server(model: Path, name: str = "bgsdk", **kwargs: Any) -> Iterator[ServerProcess]:
    python = default_server_python()
    if not python.exists():
        reason = f"no PyTriton server environment at {python} (`make setup` creates .venv-pytriton)"
        print(reason)
        pytest.skip(reason)
    try:
        cm = launch(model, name, python=python, **kwargs)
        server = cm.__enter__()
    except ServerStartError as exc:
        print(f"PyTriton server could not start here: {exc}")
        pytest.skip(f"Triton server could not start on this machine: {exc}")
    try:
        yield server
    finally:
        cm.__exit__(None, None, None)
