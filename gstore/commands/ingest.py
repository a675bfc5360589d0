"""`gstore ingest EDGES... -o STORE`: build a store from edge lists (+ nodes, features, labels)."""
from __future__ import annotations

from pathlib import Path

import click

from gstore.cli_options import emit_json, examples, json_option, memory_budget_option, output_option, \
    verbose_option
from gstore.cli_progress import TqdmProgress, format_amount, quiet_option
from gstore.errors import OptionError
from gstore.memory import format_bytes, parse_bytes


def _column(text: str) -> str | int:
    text = text.strip()
    return int(text) if text.isdigit() else text


def _columns(text: str | None) -> tuple[str | int, str | int] | None:
    if text is None:
        return None
    parts = [p for p in text.split(",")]
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise OptionError(f"--columns {text!r}: expected SRC,DST (names or 0-based positions)")
    return _column(parts[0]), _column(parts[1])


def _delimiter(text: str | None) -> str | None:
    if text is None:
        return None
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "space": " ", "whitespace": " "}
    return named.get(text.lower(), text)


@click.command("ingest", short_help="Build a store from edge lists (-o STORE).", epilog=examples(
    "gstore ingest edges.csv -o g.gstore",
    "gstore ingest raw/edges.csv --undirected --nodes raw/nodes.csv --features raw/features.npy "
    "-o g.gstore --json"))
@click.argument("edges", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_option("the store directory to build (refused if it exists, unless --force).", required=True)
@click.option("--delimiter", default=None,
              help="Field separator: a character or tab, comma, space  [default: detected]")
@click.option("--columns", default=None,
              help="SRC,DST columns by header name or 0-based position  [default: the first two]")
@click.option("--header/--no-header", default=None,
              help="The first line is (not) a header  [default: detected]")
@click.option("--weight-col", default=None,
              help="Column holding edge weights, stored as float32  [default: no weights]")
@click.option("--id-type", type=click.Choice(["auto", "int", "string"]), default="auto", show_default=True,
              help="Node ids: int (a non-integer id is an error), string (every id is text), or auto "
                   "(integers until an id is not one, then strings).")
@click.option("--undirected", is_flag=True, help="Store both directions of every edge.")
@click.option("--dedup/--no-dedup", default=True, show_default=True,
              help="Drop duplicate edges (the first edge's weight is kept).")
@click.option("--sum-weights", is_flag=True, help="With --dedup: duplicates sum their weights.")
@click.option("--self-loops", type=click.Choice(["keep", "drop"]), default="keep", show_default=True,
              help="Keep or drop edges from a node to itself.")
@click.option("--nodes", type=click.Path(path_type=Path), default=None,
              help="Node table: id column plus optional label and split columns (CSV/parquet).")
@click.option("--features", type=click.Path(path_type=Path), default=None,
              help=".npy aligned with --nodes rows (without --nodes: only for ids 0..N-1), or CSV/parquet keyed by id.")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="id,label table (CSV/parquet), when the node table has no label column.")
@click.option("--feature-dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="dtype the features are stored in.")
@click.option("--split", default=None,
              help="random:TRAIN,VAL,TEST fractions, when the node table has no split column.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --split random.")
@memory_budget_option("buckets, id tables and feature blocks are sized to it.")
@click.option("--force", is_flag=True, help="Replace an existing store at --output.")
@click.option("--on-bad-line", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="A malformed line stops the build (error) or is counted and skipped (skip).")
@click.option("--allow-nan", is_flag=True, help="Accept NaN/inf feature values.")
@json_option
@verbose_option
@quiet_option
def command(edges: tuple[Path, ...], output: Path, delimiter: str | None, columns: str | None,
            header: bool | None, weight_col: str | None, id_type: str, undirected: bool, dedup: bool,
            sum_weights: bool, self_loops: str, nodes: Path | None, features: Path | None,
            labels: Path | None, feature_dtype: str, split: str | None, seed: int, memory_budget: str,
            force: bool, on_bad_line: str, allow_nan: bool, as_json: bool, quiet: bool) -> None:
    """Build the store OUTPUT from edge lists EDGES (CSV/TSV/SNAP text, gz/bz2/zstd, parquet, .npy)."""
    from gstore.pipeline.ingest.chunks import EdgeReadOptions
    from gstore.pipeline.ingest.ingest import IngestOptions, ingest

    read = EdgeReadOptions(delimiter=_delimiter(delimiter), columns=_columns(columns), header=header,
                           weight_col=None if weight_col is None else _column(weight_col),
                           id_type=id_type, on_bad_line=on_bad_line)
    opts = IngestOptions(read=read, undirected=undirected, dedup=dedup, self_loops=self_loops,
                         sum_duplicate_weights=sum_weights,
                         nodes=None if nodes is None else str(nodes),
                         features=None if features is None else str(features),
                         labels=None if labels is None else str(labels), feature_dtype=feature_dtype,
                         split=split, seed=seed, memory_budget=parse_bytes(memory_budget), force=force,
                         allow_nan=allow_nan)
    r = ingest([str(p) for p in edges], output, opts, progress=TqdmProgress(quiet))
    if as_json:
        emit_json(r)
        return
    click.echo(f"{r.store}: {r.num_nodes:,} nodes, {r.num_edges:,} edges "
               f"({'undirected, both directions' if undirected else 'directed'}; ids {r.id_type})")
    click.echo(f"  read {r.edges_read:,} edges in {r.seconds:.1f} s ({format_amount(r.edges_per_second, 'edges', True)}/s), "
               f"peak RSS {format_bytes(r.peak_rss_bytes)}; dropped {r.duplicates_dropped:,} duplicate "
               f"and {r.self_loops_dropped:,} self-loop entries")
    for note in r.notes:
        click.echo(f"  {note}")
    if r.skipped_lines:
        click.echo(f"  skipped {r.skipped_lines:,} bad lines, e.g. {'; '.join(r.skipped_examples[:3])}")
