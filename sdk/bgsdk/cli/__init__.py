"""The one ``bgsdk`` command: a click group with one module per subcommand.

``bgsdk run | batch | evaluate | inspect | bench | export-triton`` need only the
runtime SDK. Options every subcommand shares (``-o/--out``, ``--batch-size``,
``--threads``, ``-v/-q``, ...) are declared once in :mod:`bgsdk.cli._options`.
User errors are one line ``bgsdk <cmd>: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import click

from .. import __version__
from ._options import run_cli
from .batch import batch_cmd
from .bench import bench_cmd
from .evaluate import evaluate_cmd
from .export_triton import export_triton_cmd
from .inspect import inspect_cmd
from .run import run_cmd

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bgsdk")
def cli() -> None:
    """Run a bgsdk full-image defect model (ONNX) on strip images."""


for _cmd in (run_cmd, batch_cmd, evaluate_cmd, inspect_cmd, bench_cmd, export_triton_cmd):
    cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> None:
    """Console script ``bgsdk``."""
    run_cli(cli, argv, prog_name="bgsdk")


if __name__ == "__main__":  # pragma: no cover
    main()
