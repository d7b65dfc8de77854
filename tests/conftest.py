"""Shared fixtures, built once per test session (builders live in tests/helpers/), and the test tiers.

Markers (registered in pyproject.toml), applied here so no test has to remember them:

* ``needs_torch``: the test needs torch, onnx or spox -- it imports them (or bgtrain, bgbuild, or the
  ONNX-building helpers) in its module, in its own body or in one of its fixtures. In an environment
  without torch (the runtime-only ``bgsdk`` install CI also tests, ``.venv-sdk``) these tests are
  skipped, and test modules that import such a package at the top are not collected at all.
* ``cpp``: builds and runs the C++ example (tests/cpp/).
* ``triton``: starts a real Triton server (PyTriton).
* ``slow``: longer end-to-end tests (marked where they are defined).

``make test`` runs everything; ``make test-quick`` deselects ``slow``, ``cpp`` and ``triton``.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from functools import cache
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import REPO

# Import roots that mean "needs the training/build stack" (torch, onnx, spox ...).
_HEAVY = (
    "torch",
    "onnx",
    "spox",
    "onnxsim",
    "bgtrain",
    "bgbuild",
    "tests.helpers.models",
    "tests.helpers.build",
    "tests.helpers.scale",
)
#: True where torch and onnx are importable (the dev venv); False in the runtime-only venv.
HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "onnx"))
_TESTS = REPO / "tests"
# Test files that start a real Triton server.
_TRITON_FILES = {_TESTS / "sdk" / "serving" / "test_triton_server.py"}


def _is_heavy(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in _HEAVY)


def _imports(nodes: list[ast.stmt], descend: bool) -> Iterator[str]:
    """Absolute module names imported by ``nodes`` (inside functions/classes too if ``descend``)."""
    for node in nodes:
        walk = (
            ast.walk(node)
            if descend or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            else ()
        )
        for n in walk:
            if isinstance(n, ast.Import):
                yield from (a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                yield n.module
                yield from (f"{n.module}.{a.name}" for a in n.names)
            if not descend and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                break


@cache
def _analyse(path: Path) -> tuple[frozenset[str], dict[str, bool]]:
    """(top-level imports of the file, {function name: whether its body imports something heavy})."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = frozenset(
        _imports(
            [s for s in tree.body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))], True
        )
    )
    funcs = {
        n.name: any(_is_heavy(m) for m in _imports([n], True))
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    return top, funcs


def _module_heavy(path: Path) -> bool:
    return any(_is_heavy(m) for m in _analyse(path)[0])


def _function_heavy(func: object) -> bool:
    """Whether ``func`` (a test or fixture defined under tests/) or its module imports something heavy."""
    try:
        path = Path(inspect.getsourcefile(func) or "")  # type: ignore[arg-type]
    except TypeError:
        return False
    if _TESTS not in path.parents:
        return False
    return _module_heavy(path) or _analyse(path)[1].get(getattr(func, "__name__", ""), False)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Without torch, skip collecting test modules that cannot even be imported here."""
    if HAVE_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    top = _analyse(collection_path)[0]
    missing = [m for m in top if "." not in m and importlib.util.find_spec(m) is None]
    return True if _module_heavy(collection_path) or missing else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs torch/onnx: pip install -e '.[dev]'")
    for item in items:
        path = Path(str(item.path))
        if _TESTS / "cpp" in path.parents:
            item.add_marker(pytest.mark.cpp)
        if path in _TRITON_FILES:
            item.add_marker(pytest.mark.triton)
        func = getattr(item, "function", None)
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        heavy = (func is not None and _function_heavy(func)) or any(
            _function_heavy(d.func) for name in getattr(item, "fixturenames", ()) for d in defs.get(name, ())
        )
        if heavy or item.get_closest_marker("needs_torch"):
            item.add_marker(pytest.mark.needs_torch)
            if not HAVE_TORCH:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny data set in the data set layout: 4 train, 4 valid, 4 test strips."""
    from bgtrain.synth_dataset import make_dataset

    root = tmp_path_factory.mktemp("demo")
    make_dataset(root, n_train=4, n_valid=4, n_test=4, seed=123, progress=False)
    return root


@pytest.fixture(scope="session")
def sdk_env(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Small contract-conforming ONNX models and three test strips (tests.helpers.models.SdkEnv)."""
    from tests.helpers.models import build_sdk_env

    return build_sdk_env(tmp_path_factory.mktemp("sdk"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Shared 2-core machines: one torch thread beats two oversubscribed ones by far."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
