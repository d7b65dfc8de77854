"""Conventions shared by every bgsdk command (``bgsdk``, ``synth-dataset``, ``train-model``, ``build-model``).

* ``--verbose/-v`` (repeatable) and ``--quiet/-q`` mean the same everywhere.
* A user error (a :class:`~bgsdk.errors.BgsdkError`, a bad option, a missing
  file) prints one line ``<command>: error: <message>`` to stderr and exits 2 --
  no traceback. ``-vv`` shows the traceback for bug reports.
* Progress bars only for a person watching (:func:`progress_enabled`): redirected
  to a file, a bar's carriage-return redraws make a log unreadable.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, TextIO, TypeVar

import click

from .errors import BgsdkError

__all__ = ["verbosity_options", "run_cli", "setup_logging", "progress_enabled", "UserError"]

F = TypeVar("F", bound=Callable[..., Any])


class UserError(BgsdkError):
    """A problem the user can fix (bad option combination, bad folder, ...)."""


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def progress_enabled(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """Whether to draw progress bars: not ``--quiet`` and ``stream`` (default stderr) is a terminal."""
    s = sys.stderr if stream is None else stream
    isatty = getattr(s, "isatty", None)
    return not quiet and callable(isatty) and bool(isatty())


def verbosity_options(func: F) -> F:
    func = click.option("-q", "--quiet", is_flag=True, help="Print only errors (no progress bars or summary).")(func)
    func = click.option("-v", "--verbose", count=True, help="More detail; -vv also shows tracebacks of errors.")(func)
    return func


def run_cli(command: click.Command, argv: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a click command; turn user errors into one line and exit code 2."""
    name = prog_name or command.name or "bgsdk"
    args = sys.argv[1:] if argv is None else list(argv)
    debug = any(a in ("-vv", "-vvv") for a in args) or args.count("-v") + args.count("--verbose") >= 2
    try:
        rv = command.main(args=args, prog_name=name, standalone_mode=False)
        # With standalone_mode=False click returns ctx.exit(n)'s code instead of exiting.
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo(f"{name}: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"{name}: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except (BgsdkError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if debug:
            raise
        msg = str(exc).replace("\n", " ")
        click.echo(f"{name}: error: {msg}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"{name}: interrupted", err=True)
        sys.exit(130)
