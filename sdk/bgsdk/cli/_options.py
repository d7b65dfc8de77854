"""Conventions shared by every bgsdk command (``bgsdk``, ``synth-dataset``, ``train-model``, ``build-model``).

* ``--verbose/-v`` (repeatable) and ``--quiet/-q`` mean the same everywhere.
* A user error (a :class:`~bgsdk.errors.BgsdkError`, a bad option, a missing
  file) prints one line ``<command>: error: <message>`` to stderr and exits 2 --
  no traceback. ``-vv`` shows the traceback for bug reports.
* Progress bars only for a person watching (:func:`progress_enabled`): redirected
  to a file, a bar's carriage-return redraws make a log unreadable.
* An option that several commands take is declared once, below (``--out``,
  ``--png``, ``--threshold``/``--min-area``, ``--batch-size``, ``--threads``,
  ``--provider``, ``--verify``), so its name, type and default cannot drift
  between commands; a command passes its own ``help`` where the meaning differs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable, TextIO, TypeVar

import click

from ..errors import BgsdkError, UserError

__all__ = [
    "verbosity_options",
    "run_cli",
    "setup_logging",
    "progress_enabled",
    "UserError",
    "out_dir_option",
    "png_option",
    "operating_point_options",
    "batch_size_option",
    "threads_option",
    "provider_option",
    "verify_option",
    "open_segmenter",
]

F = TypeVar("F", bound=Callable[..., Any])


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


def out_dir_option(help: str) -> Callable[[F], F]:
    """``--out/-o`` (parameter ``out_dir``): the output folder, created if missing."""
    return click.option(
        "--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help=help
    )


def png_option(help: str) -> Callable[[F], F]:
    """``--png/--no-png``: also write the mask and overlay PNGs (on by default; needs Pillow)."""
    return click.option("--png/--no-png", default=True, show_default=True, help=help)


def operating_point_options(func: F) -> F:
    """``--threshold`` and ``--min-area``: this run's override of the model's calibrated operating point."""
    func = click.option(
        "--min-area",
        type=click.IntRange(min=1),
        default=None,
        help="Smallest defect in pixels [default: the model's calibrated one].",
    )(func)
    func = click.option(
        "--threshold",
        type=click.FloatRange(0.0, 1.0),
        default=None,
        help="Pixel threshold (defect = probability above it) [default: the model's calibrated one].",
    )(func)
    return func


def batch_size_option(help: str = "Images per model call.") -> Callable[[F], F]:
    """``--batch-size`` (default 1, the fastest on CPU in docs/benchmarks.md)."""
    return click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help=help)


def threads_option(help: str = "ONNX Runtime intra-op threads [default: ORT's choice].") -> Callable[[F], F]:
    """``--threads`` (default ``None``: the runtime's own choice)."""
    return click.option("--threads", type=click.IntRange(min=1), default=None, help=help)


provider_option = click.option(
    "--provider",
    "providers",
    multiple=True,
    metavar="NAME",
    help="Execution provider, repeatable in priority order: cpu (default), cuda, tensorrt.",
)
verify_option = click.option(
    "--verify", is_flag=True, help="Check MODEL against the sha256 in the model.json beside it; refuse a changed file."
)


def open_segmenter(
    model: Path, providers: tuple[str, ...], threads: int | None, server: str | None = None, **kw: bool
) -> Any:
    """A local ``Segmenter`` for MODEL, or with ``server`` a ``TritonSegmenter`` for the model of that name."""
    if server is not None:  # MODEL is the model's name on a Triton server
        from ..serving.triton_client import TritonSegmenter

        if providers or threads or any(kw.values()):
            raise UserError("--provider/--threads/--strict/--verify do not apply with --server (the server's business)")
        return TritonSegmenter(server, str(model))
    from .._segmenter import Segmenter

    return Segmenter(model, providers=list(providers) or None, threads=threads, **kw)


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
