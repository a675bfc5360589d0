"""Memory of a `--method history` run whose history arrays exceed the memory budget.

Usage (the products-sized bench store; open read-only, the run dir goes elsewhere):
    python bench/history_memory.py STORE RUN_DIR [--variant scalable-gcn] [--hidden 256] [--layers 3]
        [--history-dtype float32] [--memory-budget 1GiB] [--epochs 1] [--fanouts 5,2,2]

Trains through the library call behind `gstore train` while a thread samples the process's
anonymous resident memory (RssAnon: what it owns, without mapped file pages) every 0.2 s; prints
the history size, the budget, peak RSS (VmHWM, mapped history/store pages included), peak anon
RSS, and the run's timings.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("run_dir")
    ap.add_argument("--variant", default="scalable-gcn")
    ap.add_argument("--model", default="sage")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--history-dtype", default="float32")
    ap.add_argument("--memory-budget", default="1GiB")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--fanouts", default="5,2,2")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--clusters-per-batch", type=int, default=20)
    args = ap.parse_args()
    from gstore.memory import anon_rss_bytes, format_bytes, parse_bytes
    from gstore.train.run import train_run
    from gstore.train.run_config import TrainConfig

    peak = {"anon": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], anon_rss_bytes())
            time.sleep(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    cfg = TrainConfig(store=str(Path(args.store).resolve()), method="history", variant=args.variant,
                      model=args.model, hidden=args.hidden, layers=args.layers,
                      fanouts=tuple(int(f) for f in args.fanouts.split(",")), batch_size=args.batch_size,
                      clusters_per_batch=args.clusters_per_batch, epochs=args.epochs,
                      history_dtype=args.history_dtype, memory_budget=args.memory_budget, num_workers=1,
                      device="cpu")
    res = train_run(cfg, Path(args.run_dir), force=True)
    stop.set()
    t.join()
    h = res.extra
    print(f"history {format_bytes(h['history_bytes'])} ({', '.join(h['history_files'])}, {h['history_dtype']}) "
          f"vs --memory-budget {format_bytes(parse_bytes(args.memory_budget))}")
    print(f"peak RSS {format_bytes(res.peak_rss_bytes)} (mapped file pages included), "
          f"peak anon RSS {format_bytes(peak['anon'])}")
    print(f"train {res.train_seconds:.1f} s ({res.batches_per_s:.2f} batches/s), inference "
          f"{res.inference_seconds:.1f} s, fills {[round(f['seconds'], 1) for f in h['fills']]} s, "
          f"total {res.seconds:.1f} s; test accuracy {res.metrics.get('test', {}).get('accuracy')}")
    print(json.dumps({"history_bytes": h["history_bytes"], "peak_rss_bytes": res.peak_rss_bytes,
                      "peak_anon_bytes": peak["anon"], "seconds": res.seconds}))


if __name__ == "__main__":
    sys.exit(main())
