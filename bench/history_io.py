"""Where the time of a history epoch goes: one training epoch over history files beyond the budget.

Usage (the products-sized bench store, read-only; the history files go under WORK_DIR and are
kept between runs, filled once with random rows, so a run costs one epoch, not a fill):
    flock /tmp/gstore-heavy.lock python bench/history_io.py STORE WORK_DIR [--variant scalable-gcn]
        [--hidden 256] [--layers 3] [--history-dtype float32] [--fanout 5] [--batch-size 1024]
        [--warm] [--json out.json]

The same training step, loader and history stages as `gstore train --method history` (the library
calls behind it), without the fill by layer-wise inference and the final inference that
bench/history_memory.py also runs. Before the epoch the history files are dropped from the page
cache (posix_fadvise DONTNEED; --warm keeps them), so every run starts from the same cache state.
Prints the epoch's seconds and the trainer's wait share, the history I/O counters
(pipeline/history/stage.py HistoryIOStats: rows and bytes read and written, distinct halo pages,
page faults, seconds in pulls and writes and waiting on each other), the achieved GB/s, and peak
anon RSS / peak RSS (VmHWM reset before the epoch) against the budget.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

CHUNK_ROWS = 1 << 16


def fill_random(arrays, seed: int = 0) -> None:
    """Write every file's rows once (random embeddings, zero gradients), block by block."""
    rng = np.random.default_rng(seed)
    for path, (name, dt, w) in zip(arrays.paths(), arrays.layout.files()):
        with open(path, "r+b") as fh:
            for start in range(0, arrays.layout.num_nodes, CHUNK_ROWS):
                n = min(CHUNK_ROWS, arrays.layout.num_nodes - start)
                rows = (rng.standard_normal((n, w), np.float32) * 0.1).astype(dt) if name.startswith("emb_") \
                    else np.zeros((n, w), dt)
                fh.write(rows.tobytes())
            fh.flush()
            os.fsync(fh.fileno())


def drop_cache(paths) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("work_dir")
    ap.add_argument("--variant", default="scalable-gcn")
    ap.add_argument("--model", default="sage")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--history-dtype", default="float32")
    ap.add_argument("--memory-budget", default="1GiB")
    ap.add_argument("--fanout", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--clusters-per-batch", type=int, default=20)
    ap.add_argument("--warm", action="store_true", help="keep the history files' page cache")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()

    import torch

    from gstore.memory import anon_rss_bytes, format_bytes, parse_bytes, peak_rss_bytes, reset_peak_rss
    from gstore.pipeline.history.arrays import HistoryArrays, HistoryLayout
    from gstore.train.history import HistoryStep, history_loader, history_widths
    from gstore.train.loop import Amp, EpochProgress, train_epoch
    from gstore.train.metrics import SplitMetrics
    from gstore.train.run import build_model, check_inputs
    from gstore.train.run_config import TrainConfig

    cfg = TrainConfig(store=str(Path(args.store).resolve()), method="history", variant=args.variant,
                      model=args.model, hidden=args.hidden, layers=args.layers,
                      fanouts=(args.fanout,) * args.layers, batch_size=args.batch_size,
                      clusters_per_batch=args.clusters_per_batch, epochs=1,
                      history_dtype=args.history_dtype, memory_budget=args.memory_budget, num_workers=1,
                      device="cpu")
    inputs = check_inputs(cfg)
    model = build_model(cfg, inputs)
    layout = HistoryLayout(int(inputs.store.num_nodes), history_widths(model), args.history_dtype,
                           args.variant == "scalable-gcn")
    root = Path(args.work_dir) / (f"history-n{layout.num_nodes}-w{'x'.join(map(str, layout.widths))}"
                                  f"-{layout.dtype}{'-g' if layout.gradients else ''}")
    t0 = time.perf_counter()
    if not root.is_dir():
        arrays = HistoryArrays.create(root, layout)
        fill_random(arrays)
        arrays.close()
        print(f"filled {format_bytes(layout.nbytes)} of history files in {time.perf_counter() - t0:.1f} s")
    arrays = HistoryArrays(root, layout)
    if not args.warm:
        drop_cache(arrays.paths())
    loader = history_loader(cfg, inputs)
    loader.arrays = arrays
    step = HistoryStep(loader, layout.gradients, torch.device("cpu"), layout.dtype)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    peak = {"anon": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], anon_rss_bytes())
            time.sleep(0.1)

    reset_peak_rss()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    loader.set_epoch(0)
    first = {}

    def on_batch(batch, p) -> None:      # the first batch's wait is start-up (threads, kernels' cache)
        first.setdefault("wait_s", p.wait_s)

    stats = train_epoch(model, loader, opt, epoch=0, seed=cfg.seed, amp=Amp(False, torch.device("cpu")),
                        progress=EpochProgress(SplitMetrics(binary=inputs.binary)), step=step,
                        on_batch=on_batch)
    stop.set()
    sampler.join()
    arrays.close()
    io = loader.io_stats.to_json()
    gb = 1e9
    out = {"store": cfg.store, "variant": args.variant, "layers": args.layers, "hidden": args.hidden,
           "history_dtype": args.history_dtype, "history_bytes": layout.nbytes,
           "memory_budget": parse_bytes(args.memory_budget), "warm": args.warm,
           "batches": stats.batches, "epoch_s": stats.seconds, "wait_s": stats.wait_s,
           "wait_share": stats.wait_share, "first_wait_s": first.get("wait_s", 0.0),
           "steady_wait_share": (stats.wait_s - first.get("wait_s", 0.0)) / max(stats.seconds - first.get("wait_s", 0.0), 1e-9),
           "peak_anon_bytes": peak["anon"], "peak_rss_bytes": peak_rss_bytes(),
           "io": io, "read_GBps": io["bytes_read"] / gb / max(io["pull_s"] + io["write_s"], 1e-9),
           "bound_s": io["bytes_read"] / (2.5 * gb) + io["bytes_written"] / (1.2 * gb)}
    print(f"epoch {stats.seconds:.1f} s over {stats.batches} batches, trainer waited {stats.wait_s:.1f} s "
          f"({100 * stats.wait_share:.0f}%; {100 * out['steady_wait_share']:.0f}% after the first batch's "
          f"{out['first_wait_s']:.1f} s)")
    b = max(1, io["batches"])
    print(f"history I/O: pulls {io['pull_s']:.1f} s (+{io['pull_wait_s']:.1f} s waiting on writes), writes "
          f"{io['write_s']:.1f} s (+{io['write_wait_s']:.1f} s waiting on pulls); read "
          f"{io['bytes_read'] / gb:.2f} GB ({io['rows_read'] / b:.0f} rows/batch), written "
          f"{io['bytes_written'] / gb:.2f} GB ({io['rows_written'] / b:.0f} rows/batch); halo pages "
          f"{io['halo_pages'] / b:.0f}/batch; faults minor {io['minor_faults']} major {io['major_faults']}")
    print(f"disk-bandwidth bound for these bytes (2.5 GB/s read, 1.2 GB/s write): {out['bound_s']:.1f} s; "
          f"I/O threads busy {io['pull_s'] + io['write_s']:.1f} s")
    print(f"peak anon RSS {format_bytes(peak['anon'])}, peak RSS {format_bytes(out['peak_rss_bytes'])} "
          f"(budget {format_bytes(out['memory_budget'])}, histories {format_bytes(layout.nbytes)})")
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
