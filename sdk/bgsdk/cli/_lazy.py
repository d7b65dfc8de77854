"""Subcommands whose code lives in the training and build packages, loaded only when run.

``bgsdk`` itself needs only the runtime SDK: ``bgsdk train`` and ``bgsdk build``
import torch / onnx, which a runtime-only install (``pip install bgsdk``) does not
have. :class:`LazyCommand` stands in for such a command in ``bgsdk --help`` and
imports the real one (``bgtrain.cli``, ``bgbuild.cli``) when it is invoked; a
missing dependency is the one-line error ``... needs torch: pip install 'bgsdk[train]'``.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

import click

from ..errors import UserError
from ._options import CONTEXT_SETTINGS, LegacyOption

__all__ = ["LazyCommand", "alias_command"]

_OWN_PACKAGES = ("bgsdk", "bgtrain", "bgbuild")


class LazyCommand(click.Command):
    """A placeholder for ``target`` (``"module:attribute"``, a click command) until it is invoked."""

    def __init__(self, name: str, target: str, extra: str, short_help: str) -> None:
        super().__init__(
            name,
            short_help=short_help,
            help=short_help,
            add_help_option=False,
            context_settings={**CONTEXT_SETTINGS, "ignore_unknown_options": True},
        )
        self.target = target
        self.extra = extra

    def load(self) -> click.Command:
        """The real command; a missing optional dependency is a :class:`UserError` naming the extra."""
        module_name, attr = self.target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if not missing or missing in _OWN_PACKAGES:
                raise
            raise UserError(
                f"needs the {missing!r} package, which this installation lacks: pip install 'bgsdk[{self.extra}]'"
            ) from None
        cmd = getattr(module, attr)
        if not isinstance(cmd, click.Command):  # pragma: no cover - a wiring mistake, not a user error
            raise TypeError(f"{self.target} is not a click command")
        return cmd

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        # click's Group runs `sub_ctx.command.invoke(sub_ctx)`: the real command parses and runs.
        return self.load().make_context(info_name, args, parent=parent, **extra)


def alias_command(cmd: click.Command, alias: str, of: str, show_legacy: bool = False) -> click.Command:
    """A copy of ``cmd`` under an older name whose help says which ``bgsdk`` subcommand it is.

    ``show_legacy``: list the older option spellings (:class:`LegacyOption`) in its help too.
    """
    twin = copy.copy(cmd)
    twin.name = alias
    note = f"Alias of `{of}` (same options)."
    if show_legacy:
        note = f"Alias of `{of}`: the same command, also under the older option names shown below."
    twin.help = f"{note}\n\n{cmd.help or ''}"
    twin.short_help = note
    params = []
    for p in cmd.params:
        if isinstance(p, LegacyOption) and show_legacy:
            p = copy.copy(p)
            p.show_legacy, p.hidden = True, False  # an alias's help lists the older spellings too
        params.append(p)
    twin.params = params
    return twin
