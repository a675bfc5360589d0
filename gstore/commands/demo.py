"""`gstore demo`: the main job on an embedded default graph.

Generates a planted-community (SBM) graph with labels and class-correlated features, ingests it
undirected, partitions it, measures both samplers through the prefetching loader, and trains a
GraphSAGE model for a few epochs. Everything lands under --output (default: ./gstore-demo), which
must be new, empty, or a previous demo's (it carries gstore's marker): the demo never overwrites
files it did not make.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from gstore.cli_options import emit_json, examples, json_option, output_option, verbose_option
from gstore.cli_progress import TqdmProgress, quiet_option
from gstore.memory import format_bytes, peak_rss_bytes


@dataclass
class SamplerRun:
    """One pass of a loader over the demo store."""

    sampler: str                 # "neighbor" or "cluster"
    batches: int
    seconds: float
    batches_per_s: float
    edges_per_s: float


@dataclass
class DemoReport:
    """`gstore demo --json`: every stage's typed result, in pipeline order."""

    output: str
    generate: Any                # GeneratedGraph
    ingest: Any                  # IngestReport
    partition: Any               # PartitionResult
    sample: list[SamplerRun] = field(default_factory=list)
    train: Any = None            # TrainReport
    test_acc: float = float("nan")
    seconds: float = 0.0
    peak_rss_bytes: int = 0

    def to_json(self) -> dict:
        return {"output": self.output, "generate": self.generate.to_json(),
                "ingest": self.ingest.to_json(), "partition": self.partition.to_json(),
                "sample": [asdict(s) for s in self.sample],
                "train": None if self.train is None else asdict(self.train),
                "test_acc": self.test_acc, "seconds": self.seconds, "peak_rss_bytes": self.peak_rss_bytes}


@click.command("demo", short_help="End-to-end example on a generated graph.", epilog=examples("gstore demo", "gstore demo -n 200000 -k 128 --epochs 5 -o /tmp/demo --json"))
@output_option("a directory for the generated files (data/) and the store (store/); "
               "new, empty, or an earlier demo's (whose files are replaced); nothing else.",
               "--workdir", "output", type=click.Path(file_okay=False, path_type=Path),
               default=Path("gstore-demo"), show_default=True)
@click.option("--nodes", "-n", "num_nodes", type=int, default=50_000, show_default=True,
              help="Nodes of the generated graph.")
@click.option("--communities", type=int, default=10, show_default=True,
              help="Planted communities (= classes to predict).")
@click.option("--avg-degree", "-d", type=float, default=16.0, show_default=True,
              help="Average degree of the undirected graph.")
@click.option("--feature-dim", "-f", type=int, default=32, show_default=True, help="Feature columns.")
@click.option("--parts", "-k", type=int, default=64, show_default=True,
              help="Partition parts K (the clusters of Cluster-GCN batches).")
@click.option("--epochs", type=int, default=3, show_default=True, help="GraphSAGE training epochs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every stage.")
@json_option
@verbose_option
@quiet_option
def command(output: Path, num_nodes: int, communities: int, avg_degree: float, feature_dim: int,
            parts: int, epochs: int, seed: int, as_json: bool, quiet: bool) -> None:
    """Run generate -> ingest -> partition -> sample -> train on a generated SBM graph."""
    claim_workdir(output)           # first: a refused --output costs no torch import
    import gstore
    from gstore.pipeline.generate.sbm import generate_sbm
    from gstore.pipeline.ingest.ingest import IngestOptions, ingest
    from gstore.pipeline.loader import ClusterLoader, NeighborLoader
    from gstore.pipeline.partition.partition import partition_store
    from gstore.train.trainer import train_sage

    def say(line: str) -> None:
        if not as_json:         # --json: the one object at the end is all stdout gets
            click.echo(line)

    progress = TqdmProgress(quiet)
    data, store_path = output / "data", output / "store"
    t0 = time.perf_counter()

    # mixing and a weak feature signal keep the task non-trivial: features alone get well under 100%
    gen = generate_sbm(data, num_nodes, communities, avg_degree, feature_dim=feature_dim, mixing=0.35,
                       snr=0.4, seed=seed, force=True, progress=progress)
    say(f"1/5 generate  SBM: {gen.num_nodes:,} nodes, {gen.num_edges:,} edges, "
        f"{communities} communities -> {data}")

    rep = ingest([gen.edges_path], store_path,
                 IngestOptions(undirected=True, nodes=str(gen.nodes_path), features=str(gen.features_path),
                               seed=seed, force=True), progress=progress)
    say(f"2/5 ingest    {rep.num_nodes:,} nodes, {rep.num_edges:,} stored edges in {rep.seconds:.2f}s "
        f"({rep.edges_per_second / 1e6:.1f} M edges/s) -> {store_path}")

    res = partition_store(store_path, parts, seed=seed, force=True, progress=progress)
    say(f"3/5 partition {res.num_parts} parts by {res.method}: edge cut {res.edge_cut:.3f}, "
        f"balance {res.balance:.3f}, {res.seconds:.2f}s")

    report = DemoReport(output=str(output), generate=gen, ingest=rep, partition=res)
    g = gstore.open(store_path)
    for name, loader in (("neighbor", NeighborLoader(g, [10, 5], 512, "train", seed=seed)),
                         ("cluster", ClusterLoader(g, clusters_per_batch=8, seed=seed))):
        t, edges, batches = time.perf_counter(), 0, 0
        for batch in loader:
            edges += batch.num_edges
            batches += 1
        dt = time.perf_counter() - t
        report.sample.append(SamplerRun(name, batches, dt, batches / dt, edges / dt))
        say(f"4/5 sample    {name:8s}: {batches} batches, {batches / dt:.1f} batches/s, "
            f"{edges / dt / 1e6:.2f} M edges/s")

    report.train = train_sage(g, fanouts=[10, 5], batch_size=512, epochs=epochs, seed=seed)
    for e in report.train.epochs:
        say(f"5/5 train     epoch {e.epoch}: loss {e.loss:.3f}, train acc {e.train_acc:.3f}, "
            f"val acc {e.val_acc:.3f} ({e.seconds:.1f}s)")
    report.test_acc = report.train.test_acc
    report.seconds = time.perf_counter() - t0
    report.peak_rss_bytes = peak_rss_bytes()
    say(f"test accuracy {report.test_acc:.3f}; total {report.seconds:.1f}s, "
        f"peak RSS {format_bytes(report.peak_rss_bytes)}")
    if as_json:
        emit_json(report)


DEMO_PURPOSE = "demo workdir"


def claim_workdir(workdir: Path) -> None:
    """Make `workdir` the demo's: new or empty (then marked), or an earlier demo's (gstore/scratch.py)."""
    from gstore import scratch

    scratch.claim_output_dir(workdir, DEMO_PURPOSE, "--output")
