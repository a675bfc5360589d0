"""Accuracy of `--method history` (gas, scalable-gcn) next to full-batch training of the same model.

Usage:
    python bench/accuracy_history.py [--seeds 5] [--graphs cora,sbm] [--model gcn] [--refresh 0,1]

Same graphs, recipe, full-batch reference and scoring as bench/accuracy.py (test accuracy at the
best validation epoch; gstore runs scored by layer-wise inference over every node); one row per
variant and --history-refresh value. Goal: within 1.5 points of full-batch (GAS reports 82.3 on
Cora with GCN).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy  # noqa: E402
from accuracy import WORK, Recipe, cora_store, ensure_partition, sbm_store, train_full  # noqa: E402

if not accuracy.CORA.exists():          # a git worktree under /work/wt/NAME: the data is in /work/shared
    accuracy.CORA = Path("/work/shared/data/cora")


def train_history(store_path: Path, variant: str, model: str, r: Recipe, seed: int, refresh: int,
                  dtype: str) -> float:
    from gstore.train.run import train_run
    from gstore.train.run_config import TrainConfig

    cfg = TrainConfig(store=str(store_path), method="history", variant=variant, model=model, layers=r.layers,
                      hidden=r.hidden, dropout=r.dropout, lr=r.lr, weight_decay=r.weight_decay,
                      epochs=r.epochs, batch_size=r.batch_size, fanouts=tuple(r.fanouts),
                      clusters_per_batch=r.clusters_per_batch,
                      partition=r.parts if variant == "gas" else None, num_workers=1, seed=seed,
                      device="cpu", history_refresh=refresh, history_dtype=dtype)
    res = train_run(cfg, WORK / "runs" / f"{store_path.stem}-history-{variant}-{model}-{refresh}-{seed}",
                    force=True)
    return float(res.metrics["test"]["accuracy"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--graphs", default="cora,sbm")
    ap.add_argument("--model", default="gcn", choices=["gcn", "sage"])
    ap.add_argument("--variants", default="gas,scalable-gcn")
    ap.add_argument("--refresh", default="0", help="comma list of --history-refresh values")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    import gstore

    WORK.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for name in args.graphs.split(","):
        path = cora_store() if name == "cora" else sbm_store()
        if path is None:
            print(f"{name}: skipped")
            continue
        r = Recipe() if name == "cora" else Recipe(epochs=60, parts=32, clusters_per_batch=8, batch_size=1024)
        if args.epochs:
            r.epochs = args.epochs
        ensure_partition(path, r.parts)
        store = gstore.open(path)
        rows = {f"full-batch {args.model.upper()} (torch)": [train_full(store, args.model, r, s)
                                                             for s in range(args.seeds)]}
        t0 = time.perf_counter()
        for variant in args.variants.split(","):
            for refresh in (int(x) for x in args.refresh.split(",")):
                key = f"history {variant} (refresh {refresh})"
                rows[key] = [train_history(path, variant, args.model, r, s, refresh, args.dtype)
                             for s in range(args.seeds)]
        ref = statistics.mean(next(iter(rows.values())))
        print(f"\n{name}: {store.num_nodes:,} nodes, {args.seeds} seeds, {r.epochs} epochs, model "
              f"{args.model}, history {args.dtype} ({time.perf_counter() - t0:.0f} s)")
        for key, v in rows.items():
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            print(f"  {key:36s} {statistics.mean(v):8.4f} +- {sd:.4f} {100 * (statistics.mean(v) - ref):+8.2f}")


if __name__ == "__main__":
    sys.exit(main())
