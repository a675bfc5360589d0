"""`gstore verify STORE [--json]`: check every byte of a store against its block checksums, and its
structural invariants (gstore/verify.py, docs/format.md#integrity)."""
from __future__ import annotations

from pathlib import Path

import click

from gstore.cli_options import emit_json, examples, json_option, verbose_option


@click.command("verify", short_help="Check every byte and the structure of a store.",
               epilog=examples("gstore verify store/", "gstore verify store/ --json"))
@click.argument("store", type=click.Path(path_type=Path))
@json_option
@verbose_option
def command(store: Path, as_json: bool) -> None:
    """Read every byte of STORE, compare each 4 MiB block with the CRC32C recorded when it was
    written, and check the structural invariants (indptr monotone from 0 to the edge count, node
    ids in range, labels and partitions in range). Prints one line per bad block or broken rule,
    naming the array and byte range; exits with status 1 if anything is wrong."""
    from gstore.manifest import read_manifest
    from gstore.verify import verify_store

    report = verify_store(store, read_manifest(store))
    if as_json:
        emit_json(report)
    else:
        click.echo("\n".join(report.lines()))
    if not report.ok:
        raise click.exceptions.Exit(1)
