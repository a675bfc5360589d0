"""`gstore ingest`: edge list (+ node table, features, labels) -> store, out of core.

Passes (docs/ingest.md has the full design and memory accounting):
  1. stream edge chunks: ids -> int64 keys (strings: hash), keys into the IdCollector (bitmap or
     range-bucket spill), records (dst, src[, w]) into dst-range bucket files; --nodes ids join the
     id set after the edges.
  2. IdCollector.finish: dense ids = rank of the key; writes `node_ids`; the remap table.
  3. per bucket (re-split when oversized): remap, pack (dst, src) into one int64 key, sort, dedup /
     drop self loops, append `indices` (+ `weights`) and the `indptr` rows now complete.
  4. node data (labels, features, splits) joined onto dense ids (node_data.py).
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from gstore.builder import StoreBuilder
from gstore.errors import InputError, OptionError
from gstore.manifest import StoreManifest
from gstore.memory import DEFAULT_MEMORY_BUDGET, parse_bytes, peak_rss_bytes
from gstore.pipeline.ingest.chunks import (EdgeChunk, EdgeReadOptions, InputNote, NonIntegerIds, ReadStats,
                                           StringColumn)
from gstore.pipeline.ingest.csr_build import (BYTES_PER_RECORD, BYTES_PER_RECORD_WEIGHTED, CsrBuilder,
                                              CsrStats, EdgeSpill, first_level_spill)
from gstore.pipeline.ingest.id_remap import BucketPlan, IdCollector, IdTable
from gstore.pipeline.ingest.id_typing import switch_message
from gstore.pipeline.ingest.read_ahead import read_ahead
from gstore.pipeline.ingest.node_data import NodeDataOptions, NodeDataResult, collect_node_ids, write_node_data
from gstore.pipeline.ingest.string_ids import StringIdCollector, hash_column
from gstore.progress import NULL_PROGRESS, Progress

log = logging.getLogger(__name__)

_MAX_BUCKETS = 512
_MIN_BLOCK_BYTES = 1 << 20
_MAX_BLOCK_BYTES = 16 << 20


@dataclass
class IngestOptions:
    """Everything `gstore ingest` takes besides the inputs and output path."""

    read: EdgeReadOptions = field(default_factory=EdgeReadOptions)
    undirected: bool = False
    dedup: bool = True
    self_loops: Literal["keep", "drop"] = "keep"
    sum_duplicate_weights: bool = False      # dedup keeps the first weight unless this is set
    nodes: str | None = None
    features: str | None = None
    labels: str | None = None
    feature_dtype: Literal["float32", "float16"] = "float32"
    split: str | None = None                 # "random:0.8,0.1,0.1"
    seed: int = 0
    memory_budget: int = parse_bytes(DEFAULT_MEMORY_BUDGET)
    force: bool = False
    allow_nan: bool = False


@dataclass
class IngestReport:
    """What a build did (also stored in the manifest's `build` dict)."""

    store: str
    num_nodes: int
    num_edges: int                 # stored entries (both directions for undirected)
    id_type: str
    edges_read: int                # input rows
    duplicates_dropped: int
    self_loops_dropped: int
    skipped_lines: int
    skipped_examples: list[str]
    node_table_rows: int
    seconds: float
    edges_per_second: float
    peak_rss_bytes: int
    buckets: int
    resplits: int
    id_table: str                  # "identity", "bitmap" or "sorted"
    # what the readers decided per file (header, .npy layout, ids turned to strings); the
    # manifest keeps them as build["decisions"]
    notes: list[InputNote] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _EdgePass:
    spill: EdgeSpill
    collector: IdCollector | StringIdCollector
    id_type: str
    edges_read: int
    weighted: bool


def ingest(inputs: list[str | Path], out: str | Path, options: IngestOptions,
           progress: Progress = NULL_PROGRESS) -> IngestReport:
    """Build the store `out` from edge files `inputs`; see the module doc. Raises GStoreError."""
    t0 = time.perf_counter()
    inputs = [str(p) for p in inputs]
    _check_options(inputs, options)
    from gstore.pipeline.ingest.edge_reader import total_input_bytes

    total_bytes = total_input_bytes(inputs)      # missing files fail before the store is touched
    budget = options.memory_budget
    # numba's first call costs ~1 s (runtime start, cache loads): pay it while the first block parses
    threading.Thread(target=_warm_up_kernels, name="gstore-numba-warmup", daemon=True).start()
    node_inputs = [p for p in (options.nodes, options.features, options.labels) if p]
    with StoreBuilder(out, force=options.force, inputs=inputs + node_inputs) as builder:
        stats = ReadStats()
        try:
            ep = _edge_pass(builder, inputs, options, options.read.id_type, total_bytes, stats, progress)
        except NonIntegerIds as e:
            # a late non-integer id: keep the restart, but loudly (the CLI shows warnings)
            msg = switch_message(e.token, restarted=True)
            log.warning("%s:%d: %s", e.path, e.line, msg)
            import shutil

            shutil.rmtree(builder.spill_dir, ignore_errors=True)
            stats = ReadStats()
            stats.note(e.path, "ids", msg, e.line)
            ep = _edge_pass(builder, inputs, options, "string", total_bytes, stats, progress)
        n_table_rows = 0
        if options.nodes:
            n_table_rows = collect_node_ids(options.nodes, ep.id_type, ep.collector, progress)
        n_id_buckets = _n_id_buckets(ep.collector)
        with progress.phase("node ids", total=n_id_buckets, unit="bucket") if n_id_buckets \
                else nullcontext(None) as bar:
            if isinstance(ep.collector, StringIdCollector):
                table = ep.collector.finish(builder, bar)
            else:
                table = ep.collector.finish(builder, True, _block_records(budget, 8), bar)
        per_record = BYTES_PER_RECORD_WEIGHTED if ep.weighted else BYTES_PER_RECORD
        max_records = max(4096, (budget - table.nbytes) // per_record)
        csr = CsrBuilder(table, builder.spill_dir, dedup=options.dedup,
                         drop_self_loops=options.self_loops == "drop",
                         sum_weights=options.sum_duplicate_weights, weighted=ep.weighted,
                         max_records=max_records)
        with progress.phase("build CSR", total=ep.spill.n_buckets, unit="bucket") as bar:
            csr.run(ep.spill, bar)
        _finish_csr(builder, csr, table)
        node_opts = NodeDataOptions(nodes=options.nodes, features=options.features, labels=options.labels,
                                    feature_dtype=options.feature_dtype, split=options.split,
                                    seed=options.seed, allow_nan=options.allow_nan, budget=budget)
        nd = write_node_data(builder, table, ep.id_type, node_opts, progress)
        stats.notes += _table_notes(options)
        report = _report(builder.out, table, ep, csr.stats, stats, n_table_rows, t0)
        manifest = StoreManifest(num_nodes=table.num_nodes, num_edges=csr.stats.num_edges,
                                 directed=not options.undirected, id_type=ep.id_type)
        _fill_manifest(manifest, nd, inputs, options, report)
        builder.commit(manifest)
    report.seconds = time.perf_counter() - t0
    report.edges_per_second = report.edges_read / max(report.seconds, 1e-9)
    report.peak_rss_bytes = peak_rss_bytes()
    return report


def _table_notes(options: IngestOptions) -> list[InputNote]:
    """Header decisions of the node, label and feature tables (the edges' are the readers')."""
    from gstore.pipeline.ingest.node_tables import table_header_note

    tables = [(options.nodes, True), (options.labels, True), (options.features, False)]
    notes = [table_header_note(p, node_table) for p, node_table in tables if p]
    return [n for n in notes if n is not None]


def _warm_up_kernels() -> None:
    from gstore.pipeline.ingest import id_remap_kernels as K

    try:
        a = np.arange(4, dtype=np.int64)
        K.minmax(a)
        K.bitmap_set(np.zeros(1, dtype=np.uint64), np.int64(0), a)
    except Exception:  # noqa: BLE001 - only a warm-up; the real call reports errors
        log.debug("kernel warm-up failed", exc_info=True)


def _check_options(inputs: list[str], options: IngestOptions) -> None:
    if not inputs:
        raise OptionError("no edge files given", hint="gstore ingest EDGES... -o STORE")
    if options.self_loops not in ("keep", "drop"):
        raise OptionError(f"--self-loops must be keep or drop, got {options.self_loops!r}")
    if options.feature_dtype not in ("float32", "float16"):
        raise OptionError(f"--feature-dtype must be float32 or float16, got {options.feature_dtype!r}")
    if options.memory_budget < (1 << 20):
        raise OptionError("--memory-budget below 1MiB", hint="use at least 1MiB")
    from gstore.pipeline.ingest.node_data import parse_split_spec

    if options.split is not None:
        parse_split_spec(options.split)


def _block_records(budget: int, bytes_per: int) -> int:
    return int(max(1 << 12, min(1 << 24, budget // (4 * bytes_per))))


def _n_id_buckets(collector) -> int | None:
    if isinstance(collector, StringIdCollector):
        return collector.keys.n_buckets
    return collector.spill.n_buckets if collector.mode == "spill" else None


def _edge_pass(builder: StoreBuilder, inputs: list[str], options: IngestOptions, id_type: str,
               total_bytes: int, stats: ReadStats, progress: Progress) -> _EdgePass:
    """Pass 1 (see module doc). Raises NonIntegerIds when 'auto' ids turn out to be strings."""
    from gstore.pipeline.ingest.edge_reader import iter_edge_chunks

    budget = options.memory_budget
    read = EdgeReadOptions(**{**asdict(options.read), "id_type": id_type})
    read.block_bytes = int(min(_MAX_BLOCK_BYTES, max(_MIN_BLOCK_BYTES, budget // 64)))
    weighted = read.weight_col is not None
    both = options.undirected
    per_record = BYTES_PER_RECORD_WEIGHTED if weighted else BYTES_PER_RECORD
    spill = collector = None
    kind = None
    edges = 0
    done_files: dict[str, int] = {}
    chunks = _prefetch(iter_edge_chunks(inputs, read, stats))
    try:
        with progress.phase("read edges", total=total_bytes, unit="B", unit_scale=True) as bar:
            reported = 0
            for chunk in chunks:
                if spill is None:
                    kind = "string" if isinstance(chunk.src, StringColumn) else "int"
                    spill, collector = _plan(builder, chunk, kind, total_bytes, budget, per_record, both,
                                             weighted)
                src, dst = _keys(chunk.src, collector), _keys(chunk.dst, collector)
                if kind == "string":
                    collector.add(chunk.src, src)
                    collector.add(chunk.dst, dst)
                else:
                    collector.add(src)
                    collector.add(dst)
                w = None
                if weighted:
                    w = np.ascontiguousarray(chunk.weight, dtype=np.float32)
                spill.add(dst, src, w, both)
                edges += len(chunk)
                done_files[chunk.path] = chunk.bytes_done
                now = sum(done_files.values())
                bar.advance(max(0, now - reported))
                reported = max(reported, now)
    except BaseException:
        # stop the reader thread and leave no open spill files (a NonIntegerIds restart deletes them)
        chunks.close()
        for obj in (spill, collector):
            _close_spill_writers(obj)
        raise
    spill.close_writers()
    spill.release_buffers()
    return _EdgePass(spill=spill, collector=collector, id_type=kind, edges_read=edges, weighted=weighted)


def _close_spill_writers(obj) -> None:
    if obj is None:
        return
    for files in (getattr(obj, "records", None), getattr(obj, "weights", None), getattr(obj, "spill", None),
                  getattr(obj, "keys", None), getattr(obj, "lengths", None), getattr(obj, "utf8", None)):
        if files is not None and hasattr(files, "close_writers"):
            files.close_writers()


def _prefetch(chunks: Iterator[EdgeChunk], depth: int = 1) -> Iterator[EdgeChunk]:
    """Run the reader one chunk ahead in a thread, so parsing chunk k+1 overlaps bucketing chunk k."""
    return read_ahead(chunks, depth, "gstore-ingest-read")


def _keys(col, collector) -> np.ndarray:
    if isinstance(col, StringColumn):
        if not isinstance(collector, StringIdCollector):
            raise InputError("edge files mix integer and string ids",
                             hint="pass --id-type string")
        return hash_column(col)
    if isinstance(collector, StringIdCollector):
        raise InputError("edge files mix integer and string ids", hint="pass --id-type string")
    return np.ascontiguousarray(col, dtype=np.int64)


def _plan(builder: StoreBuilder, first: EdgeChunk, kind: str, total_bytes: int, budget: int,
          per_record: int, both: bool, weighted: bool) -> tuple[EdgeSpill, object]:
    """Choose the first-level buckets from the first chunk (see docs/ingest.md, 'Buckets')."""
    bytes_per_edge = max(1.0, first.bytes_done / max(1, len(first)))
    est_records = total_bytes / bytes_per_edge * (2 if both else 1)
    # pass 3 gets about half the budget before the remap table's size is known; re-split fixes misses
    cap = max(4096, (budget // 2) // per_record)
    n_buckets = int(min(_MAX_BUCKETS, max(1, np.ceil(est_records * 1.2 / cap))))
    if kind == "string":
        plan = BucketPlan.from_sample(np.zeros(0, dtype=np.int64), n_buckets, full_range=True)
        collector = StringIdCollector(builder.spill_dir, plan, budget)
    else:
        sample = np.asarray(first.dst, dtype=np.int64)
        if both:
            sample = np.concatenate([sample, np.asarray(first.src, dtype=np.int64)])
        plan = BucketPlan.from_sample(sample[:: max(1, len(sample) // (1 << 20))], n_buckets)
        collector = IdCollector(builder.spill_dir, plan, budget, force_spill=False)
    log.info("pass 1: ~%d records, %d buckets", int(est_records), plan.n_buckets)
    return first_level_spill(builder.spill_dir, plan, weighted), collector


def _finish_csr(builder: StoreBuilder, csr: CsrBuilder, table: IdTable) -> None:
    if csr.indptr.rows != table.num_nodes + 1:
        raise RuntimeError(f"internal error: indptr has {csr.indptr.rows} rows for {table.num_nodes} nodes")
    csr.indptr.copy_into_store(builder, "indptr")
    csr.indices.copy_into_store(builder, "indices")
    for raw in (csr.indptr, csr.indices):
        raw.close()
    if csr.weights_out is not None:
        csr.weights_out.copy_into_store(builder, "weights")
        csr.weights_out.close()


def _report(out: Path, table: IdTable, ep: _EdgePass, cs: CsrStats, rs: ReadStats, table_rows: int,
            t0: float) -> IngestReport:
    secs = time.perf_counter() - t0
    kind = "identity" if table.identity else ("bitmap" if table.bits is not None else "sorted")
    return IngestReport(store=str(out), num_nodes=table.num_nodes, num_edges=cs.num_edges,
                        id_type=ep.id_type, edges_read=ep.edges_read,
                        duplicates_dropped=cs.duplicates_dropped, self_loops_dropped=cs.self_loops_dropped,
                        skipped_lines=rs.skipped_bad_lines, skipped_examples=list(rs.skipped_examples),
                        node_table_rows=table_rows, seconds=secs,
                        edges_per_second=ep.edges_read / max(secs, 1e-9), peak_rss_bytes=peak_rss_bytes(),
                        buckets=cs.buckets, resplits=cs.resplits, id_table=kind, notes=list(rs.notes))


def _fill_manifest(m: StoreManifest, nd: NodeDataResult, inputs: list[str], options: IngestOptions,
                   report: IngestReport) -> None:
    m.feature_dim, m.feature_dtype = nd.feature_dim, nd.feature_dtype
    m.label_names = nd.label_names
    m.num_classes = None if nd.label_names is None else len(nd.label_names)
    m.split_sizes = dict(nd.split_sizes)
    opts = asdict(options)
    m.build = {
        "command": "ingest",
        "inputs": [str(Path(p).absolute()) for p in inputs],
        "options": opts,
        "memory_budget": options.memory_budget,
        "stats": {k: v for k, v in asdict(report).items() if k not in ("store", "notes")},
        "decisions": [asdict(n) for n in report.notes],
    }
