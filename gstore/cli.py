"""The `gstore` command line: a thin click group. Subcommands live in gstore/commands/<name>.py.

This is the one boundary where GStoreError becomes a one-line click error (exit 1) instead of a
traceback. Subcommands are imported lazily so `gstore info` never pays for importing torch.
"""
from __future__ import annotations

import importlib

import click

from gstore.cli_options import examples, verbose_option
from gstore.errors import GStoreError

# name -> module under gstore.commands exposing `command`. tests/test_cli_consistency.py walks this
# registry, so a command added here is held to the shared conventions (docs/cli.md) automatically.
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


@click.group(cls=GStoreGroup, epilog=examples(
    "gstore generate sbm -n 100000 --communities 10 -o raw/",
    "gstore ingest raw/edges.csv --undirected --nodes raw/nodes.csv --features raw/features.npy -o g.gstore",
    "gstore info g.gstore"))
@click.version_option(package_name="gstore")
@verbose_option
def main() -> None:
    """gstore: out-of-core graph store, partitioner and GNN data pipeline.

    Conventions: the store a command reads is its first argument; -o/--output is the path a command
    writes; --json prints one JSON object on stdout; progress and logs go to stderr.
    """


if __name__ == "__main__":
    main()
