"""Cost of the integrity checks (docs/benchmarks.md#integrity-checks), gstore vs a plain read.

    python bench/verify.py --dir /work/scratch/verify_bench [--small-edges 150000000]
                           [--big-edges 1000000000 --big-nodes 100000000] [--skip-big] [--keep]

1. Ingest cost of block checksums: ShardArrayWriter appending an int32 array with its incremental
   CRC32C vs the same writer with the CRC turned off; and finish()'s read-back pass (the path taken
   when bytes did not arrive in order) vs the sequential one.
2. `gstore verify` (gstore/verify.py: every byte against its block CRC + the structural rules) vs a
   plain sequential read of the same files into one reused buffer, warm and cold page cache
   (cold = posix_fadvise(DONTNEED) on every file after an fsync). Median of 3.
3. The one-time structural check that `GraphStore.csr()` runs, on a 10^9-edge store built directly
   with ShardArrayWriter (N = 10^8, indices int32 4 GB + indptr 0.8 GB), vs the same plain read.
   Run once (it writes ~5 GB); deleted afterwards unless --keep.

Prints one line per measurement: gstore seconds, baseline seconds, ratio, GB/s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from gstore import shard_array
from gstore.block_crc import BlockHasher
from gstore.builder import StoreBuilder
from gstore.manifest import StoreManifest, read_manifest
from gstore.shard_array import ShardArrayWriter, shard_path
from gstore.store_invariants import check_structure, clear_cache
from gstore.verify import verify_store

BLOCK = 16 << 20             # rows generated per append: 64 MB of int32


def _files(store: Path) -> list[Path]:
    m = read_manifest(store)
    return [shard_path(store / r.name, len(r.shape)) for r in m.arrays.values() if r.n_chunks]


def _drop_cache(paths: list[Path]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def plain_read(paths: list[Path], nbytes: list[int] | None = None) -> int:
    """The baseline: read the files sequentially into one reused 4 MiB buffer (like `cat > /dev/null`)."""
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    total = 0
    for i, p in enumerate(paths):
        left = os.path.getsize(p) if nbytes is None else nbytes[i]
        with open(p, "rb", buffering=0) as fh:
            while left > 0:
                got = fh.readinto(view[:min(len(buf), left)])
                if not got:
                    break
                total += got
                left -= got
    return total


def _median_s(fn, repeats: int, before=None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _line(what: str, gstore_s: float, base_s: float, nbytes: int) -> None:
    print(f"{what:<46} gstore {gstore_s:8.3f} s   baseline {base_s:8.3f} s   ratio {gstore_s / base_s:5.2f}"
          f"   ({nbytes / gstore_s / 1e9:5.2f} vs {nbytes / base_s / 1e9:5.2f} GB/s)", flush=True)


def _write_indices(root: Path, name: str, edges: int, nodes: int, *, crc: bool, out_of_order: bool = False):
    rng = np.random.default_rng(0)
    block = rng.integers(0, nodes, min(BLOCK, edges), dtype=np.int32)
    w = ShardArrayWriter(root, name, (edges,), np.int32)
    if not crc:
        w._hasher = None
        real = shard_array.file_block_crcs
        shard_array.file_block_crcs = lambda path, data_bytes, block_bytes: []
    try:
        starts = list(range(0, edges, BLOCK))
        if out_of_order:
            starts = starts[1:] + starts[:1]
        for s in starts:
            w.write_rows(s, block[:min(BLOCK, edges - s)])
        os.fsync(w._fh.fileno())      # count the disk write in both variants before finish()
        t = time.perf_counter()
        rec = w.finish()
        return rec, time.perf_counter() - t
    finally:
        if not crc:
            shard_array.file_block_crcs = real


def bench_ingest(root: Path, edges: int, repeats: int) -> None:
    nbytes = edges * 4
    times = {}
    for label, kw in (("crc", dict(crc=True)), ("off", dict(crc=False)),
                      ("readback", dict(crc=True, out_of_order=True))):
        runs, fin = [], []
        for _ in range(repeats):
            shutil.rmtree(root / "ingest", ignore_errors=True)
            t = time.perf_counter()
            _, finish_s = _write_indices(root / "ingest", "a", edges, 1 << 30, **kw)
            runs.append(time.perf_counter() - t)
            fin.append(finish_s)
        times[label] = (statistics.median(runs), statistics.median(fin))
    shutil.rmtree(root / "ingest", ignore_errors=True)
    _line("ingest: write + incremental CRC (vs no CRC)", times["crc"][0], times["off"][0], nbytes)
    _line("ingest: write + read-back CRC in finish()", times["readback"][0], times["off"][0], nbytes)
    print(f"{'':<46} finish(): incremental {times['crc'][1]:.3f} s, read-back {times['readback'][1]:.3f} s, "
          f"no CRC {times['off'][1]:.3f} s")
    h = BlockHasher()
    buf = np.random.default_rng(1).integers(0, 255, 64 << 20, dtype=np.uint8)
    t = time.perf_counter()
    h.feed(buf)
    print(f"{'':<46} CRC32C alone (in-cache buffer): {buf.nbytes / (time.perf_counter() - t) / 1e9:.2f} GB/s")


def _build_store(path: Path, edges: int, nodes: int) -> Path:
    """A store with indptr (degree edges/nodes everywhere), random int32 indices, labels, a split."""
    deg = edges // nodes
    m = StoreManifest(num_nodes=nodes, num_edges=deg * nodes, directed=True, num_classes=4,
                      label_names=["a", "b", "c", "d"])
    rng = np.random.default_rng(0)
    with StoreBuilder(path, force=True) as b:
        w = b.array_writer("indptr", (nodes + 1,), np.int64)
        for s in range(0, nodes + 1, BLOCK):
            w.append(np.arange(s, min(s + BLOCK, nodes + 1), dtype=np.int64) * deg)
        b.add(w.finish())
        block = rng.integers(0, nodes, min(BLOCK, m.num_edges), dtype=np.int32)
        w = b.array_writer("indices", (m.num_edges,), np.int32)
        for s in range(0, m.num_edges, BLOCK):
            w.append(block[:min(BLOCK, m.num_edges - s)])
        b.add(w.finish())
        b.write_array("labels", rng.integers(-1, 4, nodes).astype(np.int64))
        b.write_array("splits/train", np.arange(0, nodes, 10, dtype=np.int64))
        b.commit(m)
    return path


def bench_verify(store: Path, repeats: int) -> None:
    paths = _files(store)
    nbytes = sum(os.path.getsize(p) for p in paths)
    report = verify_store(store)
    assert report.ok, report.lines()
    for label, before in (("warm", None), ("cold", lambda: _drop_cache(paths))):
        g = _median_s(lambda: verify_store(store), repeats, before)
        b = _median_s(lambda: plain_read(paths), repeats, before)
        _line(f"gstore verify ({nbytes / 1e9:.2f} GB, {label})", g, b, nbytes)


def bench_invariants(store: Path, repeats: int) -> None:
    m = read_manifest(store)
    recs = [r for r in m.arrays.values() if r.name in ("indptr", "indices", "labels", "splits/train")]
    paths = [shard_path(store / r.name, len(r.shape)) for r in recs]
    logical = [r.logical_bytes for r in recs]
    nbytes = sum(logical)

    def check():
        clear_cache()
        check_structure(store, m)

    for label, before in (("warm", None), ("cold", lambda: _drop_cache(paths))):
        g = _median_s(check, repeats, before)
        b = _median_s(lambda: plain_read(paths, logical), repeats, before)
        _line(f"structural check E={m.num_edges:.3g} ({nbytes / 1e9:.2f} GB, {label})", g, b, nbytes)
    t = time.perf_counter()
    check_structure(store, m)
    print(f"{'':<46} cached second call: {(time.perf_counter() - t) * 1e3:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="scratch directory (deleted files only)")
    ap.add_argument("--small-edges", type=int, default=150_000_000)
    ap.add_argument("--small-nodes", type=int, default=10_000_000)
    ap.add_argument("--big-edges", type=int, default=1_000_000_000)
    ap.add_argument("--big-nodes", type=int, default=100_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"# load average {os.getloadavg()[0]:.1f}; medians of {args.repeats}")
    bench_ingest(args.dir, args.small_edges, args.repeats)
    small = _build_store(args.dir / "small", args.small_edges, args.small_nodes)
    bench_verify(small, args.repeats)
    bench_invariants(small, args.repeats)
    if not args.keep:
        shutil.rmtree(small)
    if not args.skip_big:
        t = time.perf_counter()
        big = _build_store(args.dir / "big", args.big_edges, args.big_nodes)
        print(f"# built the 10^9-edge store in {time.perf_counter() - t:.1f} s")
        bench_invariants(big, 1)
        bench_verify(big, 1)
        if not args.keep:
            shutil.rmtree(big)


if __name__ == "__main__":
    main()
