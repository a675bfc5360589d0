"""The `gstore` command line: a thin click group. Subcommands live in gstore/commands/<name>.py.

This is the one boundary where GStoreError becomes a one-line click error (exit 1) instead of a
traceback. Subcommands are imported lazily so `gstore info` never pays for importing torch.
"""
from __future__ import annotations

import importlib
import logging

import click

from gstore.errors import GStoreError

# name -> module under gstore.commands exposing `command`
COMMANDS = {
    "ingest": "ingest",
    "info": "info",
    "generate": "generate",
    "partition": "partition",
    "sample": "sample",
    "demo": "demo",
    "verify": "verify",
}


class GStoreGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"gstore.commands.{COMMANDS[name]}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gstore.commands.{COMMANDS[name]}":
                return None  # command not built yet
            raise
        return module.command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GStoreError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None


@click.group(cls=GStoreGroup)
@click.version_option(package_name="gstore")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def main(verbose: int) -> None:
    """gstore: out-of-core graph store, partitioner and GNN data pipeline."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    main()
