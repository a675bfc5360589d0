"""`gstore generate rmat|sbm`: synthetic graphs for demos, tests and scale benchmarks."""
from __future__ import annotations

from pathlib import Path

import click

from gstore.cli_options import emit_json, examples, json_option, output_option, verbose_option
from gstore.cli_progress import TqdmProgress, quiet_option
from gstore.memory import format_bytes


def _report(g, as_json: bool) -> None:
    """The generated graph on stdout: one JSON object, or two lines of text."""
    if as_json:
        emit_json(g)
        return
    rate = g.num_edges / g.seconds if g.seconds > 0 else float("nan")
    click.echo(f"{g.kind}: {g.num_nodes:,} nodes, {g.num_edges:,} edges -> {g.edges_path} "
               f"({format_bytes(g.bytes_written)} in {g.seconds:.1f} s, {rate / 1e6:.1f} M edges/s)")
    if g.nodes_path is not None:
        extra = f", features {g.features_path}" if g.features_path else ""
        click.echo(f"  nodes {g.nodes_path} ({g.num_classes} classes{extra}); "
                   f"ids {'dense 0..N-1' if g.dense_ids else f'sparse in [0, {g.id_range:,})'}")


@click.group("generate", short_help="Write synthetic graphs (R-MAT, SBM).", epilog=examples(
    "gstore generate rmat --scale 20 -o rmat20.csv",
    "gstore generate sbm -n 100000 --communities 10 -o raw/"))
@verbose_option
def command() -> None:
    """Write synthetic graphs (deterministic under --seed, streamed in flat memory)."""


@command.command("rmat", short_help="Graph500 R-MAT edge list.", epilog=examples(
    "gstore generate rmat --scale 20 -o rmat20.csv",
    "gstore generate rmat -s 24 -e 18 --format parquet -o rmat24.parquet --json"))
@click.option("--scale", "-s", type=int, required=True, help="2^SCALE nodes.")
@click.option("--edge-factor", "-e", type=int, default=16, show_default=True,
              help="EDGE_FACTOR * 2^SCALE edges.")
@click.option("--num-edges", type=int, default=None,
              help="Exactly this many edges  [default: EDGE_FACTOR * 2^SCALE]")
@click.option("--a", "a", type=float, default=0.57, show_default=True, help="R-MAT quadrant a.")
@click.option("--b", "b", type=float, default=0.19, show_default=True, help="R-MAT quadrant b.")
@click.option("--c", "c", type=float, default=0.19, show_default=True, help="R-MAT quadrant c.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the edge stream.")
@click.option("--permute/--no-permute", default=True, show_default=True,
              help="Relabel nodes by a seeded permutation (hubs are not the low ids).")
@click.option("--format", "fmt", type=click.Choice(["csv", "tsv", "npy", "parquet"]), default=None,
              help="Output format  [default: from the --output suffix]")
@click.option("--header/--no-header", default=True, show_default=True,
              help="Write a 'source,target' header line (csv/tsv).")
@click.option("--block-edges", type=int, default=1 << 22, show_default=True,
              help="Edges per block (a memory knob: the output does not depend on it).")
@click.option("--edge-dtype", type=click.Choice(["int64", "int32", "auto"]), default="int64",
              show_default=True, help="Id columns of npy / parquet edges (int32: half the file; auto: "
                                      "int32 when every id fits).")
@output_option("the edge file, edges.csv | .tsv | .npy | .parquet.", required=True,
               type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@json_option
@verbose_option
@quiet_option
def rmat(scale: int, edge_factor: int, num_edges: int | None, a: float, b: float, c: float,
         seed: int, permute: bool, fmt: str | None, header: bool, block_edges: int, edge_dtype: str,
         output: Path, force: bool, as_json: bool, quiet: bool) -> None:
    """Graph500 R-MAT edge list: 2^SCALE nodes, EDGE_FACTOR * 2^SCALE edges (duplicates and self
    loops kept)."""
    from gstore.pipeline.generate.rmat import generate_rmat

    g = generate_rmat(output, scale, edge_factor, a=a, b=b, c=c, seed=seed, permute=permute, fmt=fmt,
                      header=header, block_edges=block_edges, num_edges=num_edges,
                      edge_dtype=edge_dtype, force=force,
                      progress=TqdmProgress(quiet))
    _report(g, as_json)


@command.command("sbm", short_help="Planted communities with labels, splits, features.", epilog=examples(
    "gstore generate sbm -n 100000 --communities 10 -o raw/",
    "gstore generate sbm -n 1000000 --communities 20 -d 16 -f 64 --snr 1.0 -o raw/ --json"))
@click.option("--nodes", "-n", type=int, required=True, help="Number of nodes.")
# no -k here: -k is --parts (gstore partition, gstore demo), a different K
@click.option("--communities", type=int, required=True, help="Number of planted communities (classes).")
@click.option("--avg-degree", "-d", type=float, default=10.0, show_default=True,
              help="Average degree of the undirected graph (N * D / 2 edge lines).")
@click.option("--mixing", "--mu", "mixing", type=float, default=0.1, show_default=True,
              help="Fraction of edges between communities.")
@click.option("--degree-skew", type=float, default=1.0, show_default=True,
              help=">1: heavy-tailed degrees (degree-corrected SBM); 1: uniform within communities.")
@click.option("--feature-dim", "-f", type=int, default=64, show_default=True,
              help="Feature columns in features.npy (0: none).")
@click.option("--snr", type=float, default=2.5, show_default=True,
              help="Class-mean separation in noise std units/2: nearest-mean pair error = Phi(-snr).")
@click.option("--train-frac", type=float, default=0.6, show_default=True,
              help="Fraction of nodes in the train split.")
@click.option("--val-frac", type=float, default=0.2, show_default=True,
              help="Fraction of nodes in the val split (the rest is test).")
@click.option("--dense-ids", is_flag=True, help="Write ids 0..N-1 (default: sparse random ids).")
@click.option("--format", "fmt", type=click.Choice(["csv", "tsv", "npy", "parquet"]), default="csv",
              show_default=True, help="Edge file format.")
@click.option("--edge-dtype", type=click.Choice(["int64", "int32", "auto"]), default="int64",
              show_default=True, help="Id columns of npy / parquet edges (int32: half the file; auto: "
                                      "int32 when every id fits).")
@click.option("--feature-dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="dtype of features.npy (float16: half the file).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")
@output_option("a directory: edges.*, nodes.csv, features.npy, generate.json.", required=True,
               type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Replace those files in an existing output directory (never other files).")
@json_option
@verbose_option
@quiet_option
def sbm(nodes: int, communities: int, avg_degree: float, mixing: float, degree_skew: float,
        feature_dim: int, snr: float, train_frac: float, val_frac: float, dense_ids: bool, fmt: str,
        edge_dtype: str, feature_dtype: str, seed: int, output: Path, force: bool, as_json: bool, quiet: bool) -> None:
    """Planted-partition graph with labels (c0..cK-1), train/val/test splits and features."""
    from gstore.pipeline.generate.sbm import generate_sbm

    g = generate_sbm(output, nodes, communities, avg_degree, mixing=mixing, degree_skew=degree_skew,
                     feature_dim=feature_dim, snr=snr, train_frac=train_frac, val_frac=val_frac,
                     dense_ids=dense_ids, seed=seed, edge_format=fmt, edge_dtype=edge_dtype,
                     feature_dtype=feature_dtype, force=force,
                     progress=TqdmProgress(quiet))
    _report(g, as_json)
