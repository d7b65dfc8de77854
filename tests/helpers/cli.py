"""Calling a CLI's ``main(argv)`` in-process, as the console script would, for tests."""

from __future__ import annotations

from typing import Callable

import pytest


def invoke(
    main: Callable[[list[str]], None], capsys: pytest.CaptureFixture[str], *argv: object
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``main`` run with ``argv``."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
