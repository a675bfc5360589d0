"""Throughput measurement of a loader (used by `gstore sample` and bench/sampling.py).

`measure(loader, num_batches)` runs the loader (across epochs if needed) and reports batches/s,
sampled edges/s, nodes/s and feature MB/s over the batches after `warmup` (the first batch pays the
thread start and numba's cache load), plus the peak RSS of the process and the peak of its
anonymous memory (RSS without the pages of the memory-mapped store, sampled after every batch). `drop_page_cache(path)`
evicts a store's files from the OS page cache so the next run reads from disk ("cold").
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gstore.memory import anon_rss_bytes, peak_rss_bytes


@dataclass
class Throughput:
    """One measured run. Rates are per second of wall clock over the timed batches."""

    batches: int
    seconds: float
    batches_per_s: float
    edges_per_s: float
    nodes_per_s: float
    feature_mb_per_s: float
    mean_nodes: float
    mean_edges: float
    peak_rss_bytes: int
    cache_hit_rate: float | None = None
    peak_anon_bytes: int = 0  # max RssAnon seen after each batch (mapped store pages excluded)
    stage_median_s: dict = field(default_factory=dict)  # sample / gather / copy, per batch (worker time)
    first_batch_s: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def drop_page_cache(path: str | Path) -> int:
    """posix_fadvise(DONTNEED) on every file under `path`; returns the number of files.

    Pages still mapped by a process (or dirty) stay cached, so call it before opening memmaps.
    """
    count = 0
    for p in sorted(Path(path).rglob("*")):
        if not p.is_file():
            continue
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        finally:
            os.close(fd)
    return count


def measure(loader, num_batches: int, warmup: int = 1,
            on_batch: Callable[[int, object], None] | None = None) -> Throughput:
    """Consume `warmup + num_batches` batches, running further epochs as needed, and time the last
    `num_batches`. `on_batch(i, batch)` sees every batch (e.g. to dump it); its time counts."""
    total = warmup + num_batches
    count = 0
    nodes = edges = fbytes = 0
    stages: dict[str, list[float]] = {"sample": [], "gather": [], "copy": []}
    t_start = time.perf_counter()
    t0 = t_start
    first = 0.0
    peak_anon = anon_rss_bytes()
    if loader.cache is not None:
        loader.cache.reset_counters()
    while count < total:
        got_any = False
        for batch in loader:
            got_any = True
            if on_batch is not None:
                on_batch(count, batch)
            peak_anon = max(peak_anon, anon_rss_bytes())
            count += 1
            if count == warmup:
                t0 = time.perf_counter()
                first = t0 - t_start
            elif count > warmup:
                s = batch.stats
                nodes += s.num_nodes
                edges += s.num_edges
                fbytes += s.feature_bytes
                stages["sample"].append(s.sample_s)
                stages["gather"].append(s.gather_s)
                stages["copy"].append(s.copy_s)
            if count >= total:
                break
        if not got_any:
            break
    elapsed = max(time.perf_counter() - t0, 1e-9)
    timed = max(count - warmup, 0)
    cache = loader.cache
    return Throughput(
        batches=timed, seconds=elapsed, batches_per_s=timed / elapsed, edges_per_s=edges / elapsed,
        nodes_per_s=nodes / elapsed, feature_mb_per_s=fbytes / elapsed / 1e6,
        mean_nodes=nodes / max(timed, 1), mean_edges=edges / max(timed, 1),
        peak_rss_bytes=peak_rss_bytes(),
        cache_hit_rate=None if cache is None else cache.hit_rate, peak_anon_bytes=peak_anon,
        stage_median_s={k: float(np.median(v)) if v else 0.0 for k, v in stages.items()},
        first_batch_s=first)
