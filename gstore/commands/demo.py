"""`gstore demo`: the main job on an embedded default graph.

Generates a planted-community (SBM) graph with labels and class-correlated features, ingests it
undirected, partitions it (laid out by its parts), then trains three models a few epochs each with
`gstore train`'s library call: a features-only MLP (the baseline: what the features alone give),
GraphSAGE (neighbor sampling) and Cluster-GCN (GCN on multi-cluster subgraphs), each scored by
layer-wise inference over every node. Everything lands under --output (default: ./gstore-demo),
which must be new, empty, or a previous demo's (it carries gstore's marker): the demo never
overwrites files it did not make.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from gstore.cli_options import emit_json, examples, json_option, output_option, verbose_option
from gstore.cli_progress import TqdmProgress, quiet_option
from gstore.memory import format_bytes, peak_rss_bytes


@dataclass
class DemoRun:
    """One training run of the demo."""

    name: str                    # "mlp", "sage" or "cluster-gcn"
    run_dir: str
    result: Any                  # TrainResult

    @property
    def test_accuracy(self) -> float:
        return float(self.result.metrics.get("test", {}).get("accuracy", float("nan")))

    def to_json(self) -> dict:
        return {"name": self.name, "run_dir": self.run_dir, "test_accuracy": self.test_accuracy,
                "result": self.result.to_json()}


@dataclass
class DemoReport:
    """`gstore demo --json`: every stage's typed result, in pipeline order."""

    output: str
    store: str
    generate: Any                # GeneratedGraph
    ingest: Any                  # IngestReport
    partition: Any               # PartitionResult
    runs: list[DemoRun] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_bytes: int = 0

    def to_json(self) -> dict:
        return {"output": self.output, "store": self.store, "generate": self.generate.to_json(),
                "ingest": self.ingest.to_json(), "partition": self.partition.to_json(),
                "runs": [r.to_json() for r in self.runs],
                "test_accuracy": {r.name: r.test_accuracy for r in self.runs},
                "seconds": self.seconds, "peak_rss_bytes": self.peak_rss_bytes}


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
@click.option("--epochs", type=int, default=3, show_default=True, help="Training epochs of each model.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every stage.")
@json_option
@verbose_option
@quiet_option
def command(output: Path, num_nodes: int, communities: int, avg_degree: float, feature_dim: int,
            parts: int, epochs: int, seed: int, as_json: bool, quiet: bool) -> None:
    """Run generate -> ingest -> partition -> train (MLP baseline, GraphSAGE, Cluster-GCN) on a
    generated SBM graph."""
    claim_workdir(output)           # first: a refused --output costs no torch import
    from gstore.pipeline.generate.sbm import generate_sbm
    from gstore.pipeline.ingest.ingest import IngestOptions, ingest
    from gstore.pipeline.partition.partition import partition_store
    from gstore.train.run import train_run
    from gstore.train.run_config import TrainConfig

    def say(line: str) -> None:
        if not as_json:         # --json: the one object at the end is all stdout gets
            click.echo(line)

    progress = TqdmProgress(quiet)
    data, store_path = output / "data", output / "store"
    t0 = time.perf_counter()

    # mixing and a weak feature signal keep the task non-trivial: features alone get well under 100%
    gen = generate_sbm(data, num_nodes, communities, avg_degree, feature_dim=feature_dim, mixing=0.35,
                       snr=0.4, seed=seed, force=True, progress=progress)
    say(f"1/6 generate  SBM: {gen.num_nodes:,} nodes, {gen.num_edges:,} edges, "
        f"{communities} communities -> {data}")

    rep = ingest([gen.edges_path], store_path,
                 IngestOptions(undirected=True, nodes=str(gen.nodes_path), features=str(gen.features_path),
                               seed=seed, force=True), progress=progress)
    say(f"2/6 ingest    {rep.num_nodes:,} nodes, {rep.num_edges:,} stored edges in {rep.seconds:.2f}s "
        f"({rep.edges_per_second / 1e6:.1f} M edges/s) -> {store_path}")

    res = partition_store(store_path, parts, seed=seed, force=True, reorder=True, progress=progress)
    say(f"3/6 partition {res.num_parts} parts by {res.method}: edge cut {res.edge_cut:.3f}, "
        f"balance {res.balance:.3f}, {res.seconds + res.reorder_seconds:.2f}s (laid out by part)")

    report = DemoReport(output=str(output), store=str(store_path), generate=gen, ingest=rep, partition=res)
    common = dict(store=str(store_path.resolve()), epochs=epochs, hidden=64, lr=0.01, batch_size=512,
                  fanouts=(10, 5), seed=seed, num_workers=1, device="cpu")
    plans = [("mlp", "4/6 baseline", TrainConfig(method="sage", model="mlp", **common)),
             ("sage", "5/6 sage    ", TrainConfig(method="sage", model="sage", **common)),
             ("cluster-gcn", "6/6 cluster ", TrainConfig(method="cluster-gcn", model="gcn",
                                                       clusters_per_batch=max(1, res.num_parts // 16),
                                                       **common))]
    for name, step, cfg in plans:
        run_dir = output / "runs" / name
        r = train_run(cfg, run_dir, force=True, progress=progress)
        run = DemoRun(name, str(run_dir), r)
        report.runs.append(run)
        say(f"{step} {name:11s}: test accuracy {run.test_accuracy:.3f} ({r.epochs} epochs, "
            f"{r.batches_per_s:.1f} batches/s, {r.seconds:.1f}s) -> {run_dir}")
    report.seconds = time.perf_counter() - t0
    report.peak_rss_bytes = peak_rss_bytes()
    acc = {r.name: r.test_accuracy for r in report.runs}
    say(f"test accuracy: features only (MLP) {acc['mlp']:.3f}, GraphSAGE {acc['sage']:.3f}, "
        f"Cluster-GCN {acc['cluster-gcn']:.3f}  (chance {1 / communities:.3f})")
    say(f"store {store_path}; runs under {output / 'runs'}; total {report.seconds:.1f}s, "
        f"peak RSS {format_bytes(report.peak_rss_bytes)}")
    if as_json:
        emit_json(report)


DEMO_PURPOSE = "demo workdir"


def claim_workdir(workdir: Path) -> None:
    """Make `workdir` the demo's: new or empty (then marked), or an earlier demo's (gstore/scratch.py)."""
    from gstore import scratch

    scratch.claim_output_dir(workdir, DEMO_PURPOSE, "--output")
