"""Conventions shared by every bgsdk command (``bgsdk <cmd>`` and the aliases ``synth-dataset``,
``train-model``, ``build-model``).

* Every command takes ``-h/--help``, ``--version``, ``-v/--verbose`` (repeatable) and
  ``-q/--quiet`` (:func:`command` + :func:`common_options`).
* A user error (a :class:`~bgsdk.errors.BgsdkError`, a bad option, a missing
  file) prints one line ``bgsdk <cmd>: error: <message>`` to stderr and exits 2 --
  no traceback. ``-vv`` shows the traceback for bug reports.
* Log lines and input warnings have the same shape, ``bgsdk <cmd>: warning: ...``;
  other libraries' log records (tifffile's page-offset complaints, ...) are dropped
  unless ``-vv`` (:func:`setup_logging`).
* Progress bars only for a person watching (:func:`progress_enabled`): redirected
  to a file, a bar's carriage-return redraws make a log unreadable.
* An option that several commands take is declared once, below (``-o/--out``,
  ``--png``, ``--threshold``/``--min-area``, ``--batch-size``, ``--device``,
  ``--threads``, ``--provider``, ``--verify``), so its name, type and default cannot
  drift between commands; a command passes its own ``help`` where the meaning differs.
* Old spellings of an option (``--bs``, ``--checkpoint_path``, ...) are accepted but
  kept out of ``--help`` (:class:`LegacyOption`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO, TypeVar

import click

from ..errors import BgsdkError, InputWarning, UserError

__all__ = [
    "CONTEXT_SETTINGS",
    "command",
    "common_options",
    "verbosity_options",
    "LegacyOption",
    "run_cli",
    "setup_logging",
    "progress_enabled",
    "UserError",
    "out_dir_option",
    "png_option",
    "operating_point_options",
    "batch_size_option",
    "threads_option",
    "device_option",
    "provider_option",
    "verify_option",
    "DEVICES",
    "ort_device",
    "open_segmenter",
    "model_or_default",
    "check_model_path",
    "writable_dir",
    "writable_file",
]

F = TypeVar("F", bound=Callable[..., Any])

#: ``-h`` as well as ``--help`` everywhere; help text wraps at 100 columns.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
#: What ``--device`` accepts, for torch and ONNX Runtime alike.
DEVICES = ("cpu", "cuda", "auto")
# Our own loggers; records of any other library are dropped unless -vv.
_OWN_LOGGERS = ("bgsdk", "bgtrain", "bgbuild")


def command(name: str, **kw: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """``click.command`` with the shared context settings (``-h``, width)."""
    return click.command(name, context_settings=CONTEXT_SETTINGS, **kw)


def _prog() -> str:
    """``bgsdk run``, ``train-model``, ...: the name a message should start with."""
    ctx = click.get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "bgsdk"


class _LineHandler(logging.Handler):
    """One line per record, ``<prog>: <level>: <message>``, written past any progress bar."""

    def __init__(self, prog: str, verbose: int) -> None:
        super().__init__()
        self.prog = prog
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".")[0] in _OWN_LOGGERS
        return own or self.verbose >= 2

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.name.split(".")[0] not in _OWN_LOGGERS:
                msg = f"[{record.name}] {msg}"
            level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
            _write_line(f"{self.prog}: {level}{msg}")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _write_line(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def setup_logging(verbose: int, quiet: bool) -> None:
    """Route logging and input warnings to one-line ``<prog>: warning: ...`` messages on stderr.

    ``-q``: errors only; default: warnings; ``-v``: info; ``-vv``: debug, and other
    libraries' records too (tifffile logs damaged TIFF pages as errors of its own:
    the SDK already reports the file as unreadable, once).
    """
    prog = _prog()
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_LineHandler(prog, verbose))
    root.setLevel(level)

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        _write_line(f"{prog}: warning: {message}")

    warnings.simplefilter("always", InputWarning)
    warnings.showwarning = show


def progress_enabled(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """Whether to draw progress bars: not ``--quiet`` and ``stream`` (default stderr) is a terminal."""
    s = sys.stderr if stream is None else stream
    isatty = getattr(s, "isatty", None)
    return not quiet and callable(isatty) and bool(isatty())


def verbosity_options(func: F) -> F:
    """``-v/--verbose`` (repeatable) and ``-q/--quiet``."""
    func = click.option("-q", "--quiet", is_flag=True, help="Print only errors (no progress bars or summary).")(func)
    func = click.option("-v", "--verbose", count=True, help="More detail; -vv also shows tracebacks of errors.")(func)
    return func


def common_options(func: F) -> F:
    """What every command takes besides ``-h/--help``: ``--version``, ``-v/--verbose``, ``-q/--quiet``."""
    from .. import __version__

    func = verbosity_options(func)
    return click.version_option(__version__, "--version", prog_name="bgsdk", message="%(prog)s %(version)s")(func)


class LegacyOption(click.Option):
    """An option that also accepts older spellings (``legacy``), shown in ``--help`` only if ``show_legacy``.

    Keeps every existing command line working (``train-model --bs 8``) while the help
    of ``bgsdk <cmd>`` shows one spelling per option.
    """

    def __init__(
        self, param_decls: Sequence[str], legacy: Sequence[str] = (), show_legacy: bool = False, **attrs: Any
    ) -> None:
        self.legacy_names = tuple(legacy)
        self.show_legacy = show_legacy
        super().__init__(list(param_decls) + list(legacy), **attrs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        if self.show_legacy or not self.legacy_names:
            return super().get_help_record(ctx)
        saved = self.opts
        self.opts = [o for o in saved if o not in self.legacy_names] or saved
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved


def out_dir_option(help: str, required: bool = True) -> Callable[[F], F]:
    """``-o/--out`` (parameter ``out_dir``): the output folder, created if missing."""
    return click.option(
        "-o", "--out", "out_dir", required=required, type=click.Path(file_okay=False, path_type=Path), help=help
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


def batch_size_option(help: str = "Images per model call.", default: int = 1) -> Callable[[F], F]:
    """``--batch-size`` (default 1, the fastest on CPU in docs/benchmarks.md)."""
    return click.option("--batch-size", type=click.IntRange(min=1), default=default, show_default=True, help=help)


def threads_option(help: str = "ONNX Runtime intra-op threads [default: ORT's choice].") -> Callable[[F], F]:
    """``--threads`` (default ``None``: the runtime's own choice)."""
    return click.option("--threads", type=click.IntRange(min=1), default=None, help=help)


def device_option(
    help: str = "Where the model runs: cpu, cuda (fails if CUDA is not there) or auto (cuda if available, else cpu).",
    default: str = "auto",
) -> Callable[[F], F]:
    """``--device cpu|cuda|auto``: the same words for torch (training) and ONNX Runtime (inference)."""
    return click.option("--device", type=click.Choice(DEVICES), default=default, show_default=True, help=help)


provider_option = click.option(
    "--provider",
    "providers",
    multiple=True,
    metavar="NAME",
    help="ONNX Runtime execution provider instead of --device, repeatable in priority order: cpu, cuda, tensorrt.",
)
verify_option = click.option(
    "--verify", is_flag=True, help="Check MODEL against the sha256 in the model.json beside it; refuse a changed file."
)

_CLI_FALLBACK = "use --device auto (CUDA if it works, else CPU) or --device cpu"


def ort_device(device: str, providers: Sequence[str] = ()) -> tuple[list[str] | None, bool]:
    """``(providers, fallback)`` for ``Segmenter`` from ``--device`` (or an explicit ``--provider`` list).

    ``cuda`` without CUDA in this onnxruntime build is a one-line error naming the CLI's
    way out; ``auto`` asks for CUDA only where the build has it, and falls back to CPU
    (with a warning) if CUDA then fails to start.
    """
    if providers:
        ctx = click.get_current_context(silent=True)
        if ctx is not None and ctx.get_parameter_source("device") not in (None, click.core.ParameterSource.DEFAULT):
            raise click.UsageError("--device and --provider are mutually exclusive")
        return list(providers), False
    if device == "cpu":
        return None, False
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise UserError(
            f"--device cuda: this onnxruntime build has no CUDA (available: {', '.join(available)}; "
            f"CUDA needs the onnxruntime-gpu package and a GPU); {_CLI_FALLBACK}"
        )
    if "CUDAExecutionProvider" not in available:
        return None, False
    return ["cuda"], device == "auto"


def open_segmenter(
    model: Path,
    device: str = "cpu",
    providers: Sequence[str] = (),
    threads: int | None = None,
    server: str | None = None,
    **kw: bool,
) -> Any:
    """A local ``Segmenter`` for MODEL, or with ``server`` a ``TritonSegmenter`` for the model of that name."""
    if server is not None:  # MODEL is the model's name on a Triton server
        from ..serving.triton_client import TritonSegmenter

        if providers or threads or any(kw.values()):
            raise UserError("--provider/--threads/--strict/--verify do not apply with --server (the server's business)")
        return TritonSegmenter(server, str(model))
    from .._segmenter import Segmenter
    from .._session import API_FALLBACK_HINT
    from ..errors import ModelError

    chosen, fallback = ort_device(device, providers)
    check_model_path(model)
    try:
        return Segmenter(model, providers=chosen, threads=threads, fallback=fallback, **kw)
    except ModelError as exc:
        if API_FALLBACK_HINT in exc.problem:  # the API's way out (fallback=True) is not the command line's
            raise ModelError(exc.source, exc.problem.replace(API_FALLBACK_HINT, _CLI_FALLBACK)) from None
        raise


_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def check_model_path(model: Path) -> None:
    """A training checkpoint where a model belongs is named as such (the build step is what is missing)."""
    if model.suffix.lower() in _CHECKPOINT_SUFFIXES:
        raise UserError(
            f"{model}: this is a training checkpoint: build it first with `bgsdk build {model} -o model.onnx`"
        )


def model_or_default(model: Path | None) -> Path:
    """MODEL as given, or the model shipped inside the package (a one-line error if there is none)."""
    if model is not None:
        check_model_path(model)
        return model
    from .._default_model import default_model_path

    return default_model_path()


def writable_dir(path: Path, what: str = "--out", create: bool = True) -> Path:
    """Create ``path`` (and parents) or fail with one line naming it; a file there is an error too.

    ``create=False`` only checks that it could be created (the nearest existing folder above it is
    writable), for commands that create it themselves once their inputs are checked.
    """
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: {what} exists and is not a folder")
    if not create:
        existing = next((p for p in (path, *path.absolute().parents) if p.exists()), Path("/"))
        if not existing.is_dir():
            raise UserError(f"{path}: cannot create the {what} folder ({existing} is not a folder)")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"{path}: cannot create the {what} folder ({existing} is not writable)")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the {what} folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{path}: {what} folder is not writable")
    return path


def writable_file(path: Path, what: str = "--out") -> Path:
    """The folder of output file ``path`` exists (created) and is writable; ``path`` is not a folder."""
    if path.is_dir():
        raise UserError(f"{path}: {what} is a folder; give a file name (e.g. {path / 'model.onnx'})")
    writable_dir(path.parent if str(path.parent) else Path("."), f"{what} file's")
    return path


def _command_path(command: click.Command, name: str, args: Sequence[str]) -> str:
    """``bgsdk run`` for ``bgsdk run ...``: the first word after the group's own options names the subcommand."""
    if isinstance(command, click.Group):
        for a in args:
            if not a.startswith("-"):
                return f"{name} {a}" if a in command.commands else name
    return name


def run_cli(command: click.Command, argv: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a click command; turn user errors into one line ``<prog> <cmd>: error: ...`` and exit code 2."""
    name = prog_name or command.name or "bgsdk"
    args = sys.argv[1:] if argv is None else list(argv)
    debug = any(a in ("-vv", "-vvv") for a in args) or args.count("-v") + args.count("--verbose") >= 2
    where = _command_path(command, name, args)
    try:
        rv = command.main(args=args, prog_name=name, standalone_mode=False)
        # With standalone_mode=False click returns ctx.exit(n)'s code instead of exiting.
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo(f"{where}: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"{where}: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except (BgsdkError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if debug:
            raise
        msg = str(exc).replace("\n", " ")
        click.echo(f"{where}: error: {msg}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"{where}: interrupted", err=True)
        sys.exit(130)
