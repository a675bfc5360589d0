"""`gstore sample STORE`: run the prefetching loader and report its throughput.

    gstore sample STORE --method neighbor --fanouts 15,10,5 --batch-size 1024 --batches 50
    gstore sample STORE --method cluster --random-parts 1500 --clusters-per-batch 20 --json
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from gstore.cli_options import emit_json, examples, json_option, verbose_option
from gstore.cli_progress import quiet_option
from gstore.errors import OptionError
from gstore.memory import format_bytes, parse_bytes

if TYPE_CHECKING:   # the loader package imports torch; `gstore sample --help` should not
    from gstore.pipeline.loader.throughput import Throughput

log = logging.getLogger(__name__)


def parse_fanouts(text: str) -> list[int]:
    """`--fanouts 15,10,5` as [15, 10, 5]; an empty or non-integer field is an OptionError naming it
    (the values themselves are checked by the sampler's own rule, check_fanouts)."""
    from gstore.pipeline.sampling.neighbor import FANOUTS_HINT, check_fanouts

    fields = [t.strip() for t in str(text).split(",")]
    values = []
    for i, t in enumerate(fields):
        if not t:
            raise OptionError(f"--fanouts {text!r}: field {i + 1} is empty", hint=FANOUTS_HINT)
        try:
            values.append(int(t))
        except ValueError:
            raise OptionError(f"--fanouts {text!r}: field {i + 1} is {t!r}, not an integer",
                              hint=FANOUTS_HINT) from None
    return check_fanouts(values, option="--fanouts", text=text)


def union_edges(batch) -> np.ndarray:
    """int64 (2, E) dense store ids [src; dst] of a batch's message-flow edges (duplicates removed;
    self-loops added by the cluster sampler dropped unless the store has them)."""
    nodes = batch.nodes.cpu().numpy()
    if batch.edge_index is not None:
        ei = batch.edge_index.cpu().numpy()
    elif batch.blocks:
        ei = np.concatenate([b.edge_index.cpu().numpy() for b in batch.blocks], axis=1)
        from gstore.set_kernels import first_pair_positions

        ei = ei[:, first_pair_positions(ei[0], ei[1], len(nodes))]
    else:
        ei = np.zeros((2, 0), np.int64)
    return nodes[ei]


def drop_added_self_loops(store, ei: np.ndarray) -> np.ndarray:
    loops = np.flatnonzero(ei[0] == ei[1])
    if not len(loops):
        return ei
    keep = np.ones(ei.shape[1], dtype=bool)
    for j in loops:
        v = int(ei[1, j])
        nb = store.neighbors(v)
        pos = np.searchsorted(nb, v)
        keep[j] = pos < len(nb) and nb[pos] == v
    return ei[:, keep]


def _seeds_for(store, split: str) -> str | np.ndarray:
    if len(store.split(split)):
        return split
    log.info("store has no %r split; sampling seeds from all nodes", split)
    return np.arange(store.num_nodes, dtype=np.int64)


@dataclass
class SampleReport:
    """`gstore sample --json`: the measured throughput and the settings it was measured under."""

    throughput: Throughput
    store: str
    method: str
    cold: bool
    workers: int
    prefetch: int
    device: str = "cpu"
    fanouts: list[int] | None = None
    batch_size: int | None = None
    clusters_per_batch: int | None = None

    def to_json(self) -> dict:
        """The throughput's fields flat at the top level, then the settings."""
        out = self.throughput.to_json()
        out.update({k: v for k, v in asdict(self).items() if k != "throughput"})
        return out


def _writable_dir(path: Path) -> None:
    """--dump must be new, empty or an earlier dump's: batch files never overwrite a user's files."""
    from gstore import scratch

    try:
        scratch.claim_output_dir(path, "sample dump", "--dump")
    except OSError as err:
        raise OptionError(f"cannot create the --dump directory: {err.strerror or err}", path=path,
                          hint="pick a writable directory") from None


def _echo_report(r, args: dict) -> None:
    click.echo(f"method {args['method']}  batches {r.batches} (+1 warm-up)  workers {args['workers']}  "
               f"prefetch {args['prefetch']}  {'cold' if args['cold'] else 'warm'} page cache")
    click.echo(f"  batches/s        {r.batches_per_s:12.2f}")
    click.echo(f"  sampled edges/s  {r.edges_per_s:12.0f}   ({r.mean_edges:.0f} per batch)")
    click.echo(f"  nodes/s          {r.nodes_per_s:12.0f}   ({r.mean_nodes:.0f} per batch)")
    click.echo(f"  feature MB/s     {r.feature_mb_per_s:12.1f}")
    click.echo(f"  peak RSS         {format_bytes(r.peak_rss_bytes):>12}   "
               f"(anonymous {format_bytes(r.peak_anon_bytes)}; the rest is the mapped store)")
    if r.cache_hit_rate is not None:
        click.echo(f"  cache hit rate   {r.cache_hit_rate:12.3f}")
    med = r.stage_median_s
    click.echo(f"  median per batch: sample {med['sample'] * 1e3:.1f} ms, gather {med['gather'] * 1e3:.1f} ms, "
               f"to-device {med['copy'] * 1e3:.1f} ms (worker time; stages overlap)")


@click.command("sample", short_help="Time mini-batch sampling on a store.", epilog=examples(
    "gstore sample g.gstore --method neighbor --fanouts 15,10,5 --batch-size 1024 --batches 50",
    "gstore sample g.gstore --method cluster --random-parts 1500 --clusters-per-batch 20 --json"))
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--method", type=click.Choice(["neighbor", "cluster"]), default="neighbor", show_default=True,
              help="neighbor: per-hop fanout sampling around seed nodes; cluster: Cluster-GCN batches.")
@click.option("--fanouts", default="15,10,5", show_default=True,
              help="Neighbors per hop, seeds outwards (-1 = all neighbors).")
@click.option("--batch-size", type=int, default=1024, show_default=True, help="Seeds per batch (neighbor).")
@click.option("--clusters-per-batch", type=int, default=20, show_default=True,
              help="Clusters merged into one batch (cluster).")
@click.option("--random-parts", type=int, default=None,
              help="Cluster method: use K random clusters  [default: the store's partition]")
@click.option("--split", default="train", show_default=True,
              help="Seed nodes (neighbor) / loss nodes (cluster); all nodes when the store has none.")
@click.option("--batches", type=int, default=50, show_default=True, help="Batches to time (after 1 warm-up).")
@click.option("--cold", is_flag=True, help="Evict the store's files from the page cache first.")
@json_option
@click.option("--dump", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write every batch (warm-up included) as DIR/batch_<i>.npz; DIR must be new, empty or an earlier dump's  [default: not written]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler and shuffling.")
@click.option("--prefetch", type=int, default=4, show_default=True, help="Batches prepared ahead (queue depth).")
@click.option("--workers", type=int, default=1, show_default=True, help="Sample/gather threads each.")
@click.option("--cache-bytes", default="0", show_default=True, help="RAM for hot feature rows, e.g. 512MiB.")
@click.option("--device", default="cpu", show_default=True, help="torch device the batches are moved to.")
@verbose_option
@quiet_option
def command(store: Path, method: str, fanouts: str, batch_size: int, clusters_per_batch: int,
            random_parts: int | None, split: str, batches: int, cold: bool, as_json: bool,
            dump: Path | None, seed: int, prefetch: int, workers: int, cache_bytes: str, device: str,
            quiet: bool) -> None:
    """Sample BATCHES mini-batches from STORE and report batches/s, edges/s, MB/s and peak RSS."""
    import gstore
    from gstore.pipeline.loader import ClusterLoader, NeighborLoader
    from gstore.pipeline.loader.throughput import drop_page_cache, measure
    from gstore.pipeline.loader.to_device import resolve_device

    if batches < 1:
        raise OptionError(f"--batches must be >= 1, got {batches}")
    if seed < 0:
        raise OptionError(f"--seed must be >= 0, got {seed}")
    device = str(resolve_device(device, option="--device"))  # before any work: "cuda" -> "cuda:0"
    fanout_list = parse_fanouts(fanouts) if method == "neighbor" else None
    cache = 0 if str(cache_bytes).strip() in ("0", "") else parse_bytes(cache_bytes)
    if cold:
        # before anything is memory-mapped: mapped pages are not evicted
        n = drop_page_cache(store)
        log.info("dropped %d files of %s from the page cache", n, store)
    g = gstore.open(store)
    common = dict(seed=seed, prefetch=prefetch, num_workers=workers, cache_bytes=cache, device=device)
    if method == "neighbor":
        loader = NeighborLoader(g, fanout_list, batch_size, _seeds_for(g, split), **common)
    else:
        parts = num_parts = None
        if random_parts is not None:
            if not 1 <= random_parts <= min(g.num_nodes, 2**31 - 1):
                raise OptionError(f"--random-parts must be in [1, {min(g.num_nodes, 2**31 - 1)}] "
                                  f"(at most one cluster per node), got {random_parts}")
            parts = np.random.default_rng(seed).integers(0, random_parts, g.num_nodes, dtype=np.int32)
            num_parts = random_parts
        elif g.partition is None:
            raise OptionError("store has no partition for --method cluster", path=store,
                              hint="run `gstore partition` first, or pass --random-parts K")
        loader = ClusterLoader(g, parts, num_parts, clusters_per_batch,
                               split=split if len(g.split(split)) else None, **common)

    on_batch = None
    if dump is not None:
        _writable_dir(dump)

        def on_batch(i: int, batch) -> None:
            ei = drop_added_self_loops(g, union_edges(batch))
            path = dump / f"batch_{i}.npz"
            try:
                np.savez(path, nodes=batch.nodes.cpu().numpy(), edge_index=ei,
                         seeds=batch.seeds.cpu().numpy())
            except OSError as err:
                raise OptionError(f"cannot write --dump file: {err.strerror or err}", path=path,
                                  hint="free disk space or pick another --dump directory") from None

    result = measure(loader, batches, warmup=1, on_batch=on_batch)
    args = dict(method=method, workers=workers, prefetch=prefetch, cold=cold)
    if as_json:
        emit_json(SampleReport(result, store=str(store), method=method, cold=cold, workers=workers,
                               prefetch=prefetch, device=str(device),
                               fanouts=fanout_list if method == "neighbor" else None,
                               batch_size=batch_size if method == "neighbor" else None,
                               clusters_per_batch=clusters_per_batch if method == "cluster" else None))
    else:
        _echo_report(result, args)
