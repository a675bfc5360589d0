"""The `gstore` command line: a thin click group. Subcommands live in gstore/commands/<name>.py.

This is the one boundary where GStoreError becomes a one-line click error (exit 1) instead of a
traceback. Subcommands are imported lazily so `gstore info` never pays for importing torch.
"""
from __future__ import annotations

import errno
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
    "train": "train",
    "predict": "predict",
    "propagate": "propagate",
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
        except OSError as exc:
            raise click.ClickException(os_error_message(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None


_DISK_FULL = ("disk full", "free space or choose another -o")
_READ_ONLY = ("read-only file system", "choose a writable location for -o")
_DENIED = ("permission denied", "check the permissions, or choose another path")
_TOO_MANY_FILES = ("too many open files", "raise the limit (ulimit -n) or lower the parallelism")
# errno -> (what happened, how to fix it), for the faults a user meets on a normal day
OS_ERROR_FIXES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: _DISK_FULL,
    errno.EDQUOT: ("disk quota exceeded", "free space or choose another -o"),
    errno.EFBIG: ("file too large for this file system", "choose another -o"),
    errno.EROFS: _READ_ONLY,
    errno.EACCES: _DENIED,
    errno.EPERM: _DENIED,
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.EISDIR: ("is a directory", "give a file, not a directory"),
    errno.ENOTDIR: ("not a directory", "a part of the path is a file; check the path"),
    errno.EEXIST: ("already exists", "move it away or choose another path"),
    errno.ENOTEMPTY: ("directory not empty", "move it away or choose another path"),
    errno.ENAMETOOLONG: ("file name too long", "use a shorter path"),
    errno.ELOOP: ("too many levels of symbolic links", "check the path's symlinks"),
    errno.EMFILE: _TOO_MANY_FILES,
    errno.ENFILE: _TOO_MANY_FILES,
    errno.ENOMEM: ("out of memory", "lower --memory-budget or free memory"),
    errno.EIO: ("I/O error", "the disk or network file system failed; check it (dmesg) and retry"),
    errno.EXDEV: ("cannot move across file systems", "keep the output on one file system"),
    errno.EBUSY: ("device or resource busy", "stop what holds it, or choose another path"),
    errno.ETXTBSY: ("file busy", "stop what holds it, or choose another path"),
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the path (both, for a rename), what happened and the fix."""
    mapped = OS_ERROR_FIXES.get(exc.errno)
    if mapped:
        what, fix = mapped
        detail = f" [{exc.strerror}]" if exc.strerror and exc.strerror.lower() != what else ""
    else:
        what, fix, detail = exc.strerror or str(exc) or type(exc).__name__, "check the path and retry", ""
    where = ""
    if exc.filename is not None:
        where = str(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {exc.filename2}"
        where += ": "
    return " ".join(f"{where}{what}{detail} ({fix})".split())


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
