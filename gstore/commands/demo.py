"""`gstore demo`: the main job on an embedded default graph.

Generates a planted-community (SBM) graph with labels and class-correlated features, ingests it
undirected, partitions it, measures both samplers through the prefetching loader, and trains a
GraphSAGE model for a few epochs. Everything lands under --workdir (default: ./gstore-demo), which
must be new, empty, or a previous demo's (it carries gstore's marker): the demo never overwrites
files it did not make.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import click

from gstore.cli_progress import TqdmProgress, quiet_option
from gstore.memory import format_bytes, peak_rss_bytes


@click.command("demo")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("gstore-demo"), show_default=True,
              help="Where the generated files and the store go: a new or empty directory, or a "
                   "previous demo's (whose files are replaced).")
@click.option("--nodes", "num_nodes", type=int, default=50_000, show_default=True)
@click.option("--communities", type=int, default=10, show_default=True)
@click.option("--avg-degree", type=float, default=16.0, show_default=True)
@click.option("--feature-dim", type=int, default=32, show_default=True)
@click.option("--parts", type=int, default=64, show_default=True, help="Clusters for Cluster-GCN batches.")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@quiet_option
def command(workdir: Path, num_nodes: int, communities: int, avg_degree: float, feature_dim: int,
            parts: int, epochs: int, seed: int, quiet: bool) -> None:
    """Run generate -> ingest -> partition -> sample -> train on a generated SBM graph."""
    claim_workdir(workdir)          # first: a refused --workdir costs no torch import
    import gstore
    from gstore.pipeline.generate.sbm import generate_sbm
    from gstore.pipeline.ingest.ingest import IngestOptions, ingest
    from gstore.pipeline.loader import ClusterLoader, NeighborLoader
    from gstore.pipeline.partition.partition import partition_store
    from gstore.train.trainer import train_sage

    progress = TqdmProgress(quiet)
    data, store_path = workdir / "data", workdir / "store"
    t0 = time.perf_counter()

    # mixing and a weak feature signal keep the task non-trivial: features alone get well under 100%
    gen = generate_sbm(data, num_nodes, communities, avg_degree, feature_dim=feature_dim, mixing=0.35,
                       snr=0.4, seed=seed, force=True, progress=progress)
    click.echo(f"1/5 generate  SBM: {gen.num_nodes:,} nodes, {gen.num_edges:,} edges, "
               f"{communities} communities -> {data}")

    rep = ingest([gen.edges_path], store_path,
                 IngestOptions(undirected=True, nodes=str(gen.nodes_path), features=str(gen.features_path),
                               seed=seed, force=True), progress=progress)
    click.echo(f"2/5 ingest    {rep.num_nodes:,} nodes, {rep.num_edges:,} stored edges in {rep.seconds:.2f}s "
               f"({rep.edges_per_second / 1e6:.1f} M edges/s) -> {store_path}")

    res = partition_store(store_path, parts, seed=seed, force=True, progress=progress)
    click.echo(f"3/5 partition {res.num_parts} parts by {res.method}: edge cut {res.edge_cut:.3f}, "
               f"balance {res.balance:.3f}, {res.seconds:.2f}s")

    g = gstore.open(store_path)
    for name, loader in (("neighbor", NeighborLoader(g, [10, 5], 512, "train", seed=seed)),
                         ("cluster", ClusterLoader(g, clusters_per_batch=8, seed=seed))):
        t, edges, batches = time.perf_counter(), 0, 0
        for batch in loader:
            edges += batch.num_edges
            batches += 1
        dt = time.perf_counter() - t
        click.echo(f"4/5 sample    {name:8s}: {batches} batches, {batches / dt:.1f} batches/s, "
                   f"{edges / dt / 1e6:.2f} M edges/s")

    report = train_sage(g, fanouts=[10, 5], batch_size=512, epochs=epochs, seed=seed)
    for e in report.epochs:
        click.echo(f"5/5 train     epoch {e.epoch}: loss {e.loss:.3f}, train acc {e.train_acc:.3f}, "
                   f"val acc {e.val_acc:.3f} ({e.seconds:.1f}s)")
    click.echo(f"test accuracy {report.test_acc:.3f}; total {time.perf_counter() - t0:.1f}s, "
               f"peak RSS {format_bytes(peak_rss_bytes())}")


DEMO_PURPOSE = "demo workdir"


def claim_workdir(workdir: Path) -> None:
    """Make `workdir` the demo's: new or empty (then marked), or marked by an earlier demo whose
    process is gone. Anything else is refused, so `--workdir ~` cannot overwrite a user's files."""
    from gstore import scratch
    from gstore.errors import OptionError

    if os.path.lexists(workdir) and (workdir.is_symlink() or not workdir.is_dir()):
        raise OptionError("--workdir exists and is not a directory", path=workdir,
                          hint="choose another --workdir")
    marker = scratch.read_marker(workdir) if workdir.is_dir() else None
    if marker is None:
        if workdir.is_dir() and os.listdir(workdir):
            raise OptionError("--workdir exists, is not empty and was not made by `gstore demo`; the "
                              "demo will not write over its files", path=workdir,
                              hint="choose a new or empty --workdir")
        workdir.mkdir(parents=True, exist_ok=True)
    elif marker.purpose != DEMO_PURPOSE:
        raise OptionError(f"--workdir is gstore's {marker.purpose} dir, not a demo's", path=workdir,
                          hint="choose another --workdir")
    elif marker.owner.state() == "alive":
        raise OptionError(f"another gstore demo (pid {marker.owner.pid}) is using this --workdir",
                          path=workdir, hint="wait for it, or choose another --workdir")
    scratch.mark(workdir, DEMO_PURPOSE, workdir)
