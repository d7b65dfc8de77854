"""The one ``bgsdk`` command: a click group with one module per subcommand.

``bgsdk run | batch | evaluate | inspect | bench | export-triton`` need only the
runtime SDK; ``bgsdk synth | train | build`` load the training/build packages when
they run (:mod:`bgsdk.cli._lazy`), so ``bgsdk`` works without torch. Options every
subcommand shares (``-o/--out``, ``--batch-size``, ``--device``, ``--threads``,
``-v/-q``, ...) are declared once in :mod:`bgsdk.cli._options`. User errors are one
line ``bgsdk <cmd>: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import click

from .. import __version__
from ._options import CONTEXT_SETTINGS, run_cli
from .batch import batch_cmd
from .bench import bench_cmd
from .build import build_cmd
from .evaluate import evaluate_cmd
from .export_triton import export_triton_cmd
from .inspect import inspect_cmd
from .run import run_cmd
from .synth import synth_cmd
from .train import train_cmd

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Subcommands listed in the order of the workflow, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="bgsdk", message="%(prog)s %(version)s")
def cli() -> None:
    """Die-to-die defect segmentation: data, training, one ONNX model, inspection.

    \b
    bgsdk synth data/                          a synthetic data set
    bgsdk train data/ -o ckpt/                 train (needs bgsdk[train])
    bgsdk build ckpt/best.pt -o model.onnx     the verified model (needs bgsdk[build])
    bgsdk run model.onnx strips/ -o out/       inspect images
    bgsdk evaluate data/ -m model.onnx -o eval/  score against ground truth

    Run `bgsdk COMMAND -h` for a command's options.
    """


for _cmd in (
    synth_cmd,
    train_cmd,
    build_cmd,
    run_cmd,
    batch_cmd,
    evaluate_cmd,
    inspect_cmd,
    bench_cmd,
    export_triton_cmd,
):
    cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> None:
    """Console script ``bgsdk``."""
    run_cli(cli, argv, prog_name="bgsdk")


if __name__ == "__main__":  # pragma: no cover
    main()
