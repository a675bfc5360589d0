"""`gstore verify STORE [--json]`: check every byte of a store against its block checksums, and its
structural invariants (gstore/verify.py, docs/format.md#integrity)."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("verify")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def command(store: Path, as_json: bool) -> None:
    """Read every byte of STORE, compare each 4 MiB block with the CRC32C recorded when it was
    written, and check the structural invariants (indptr monotone from 0 to the edge count, node
    ids in range, labels and partitions in range). Prints one line per bad block or broken rule,
    naming the array and byte range; exits with status 1 if anything is wrong.

    \b
    Examples:
      gstore verify store/
      gstore verify store/ --json | jq .problems
    """
    from gstore.manifest import read_manifest
    from gstore.verify import verify_store

    report = verify_store(store, read_manifest(store))
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo("\n".join(report.lines()))
    if not report.ok:
        raise click.exceptions.Exit(1)
