"""Accuracy of `--method history` (gas, scalable-gcn) next to full-batch training of the same model.

Usage:
    python bench/accuracy_history.py [--seeds 5] [--graphs cora,sbm] [--model gcn] [--refresh 0,1]
                                     [--sweep 1] [--work DIR] [--json out.json]

Same graphs, recipe, full-batch reference and scoring as bench/accuracy.py (test accuracy at the
best validation epoch; gstore runs scored by layer-wise inference over every node); one row per
variant, --history-refresh value and (scalable-gcn) --history-sweep value, with the validation
accuracy (what a setting is chosen on) beside the test accuracy, and the training seconds per
epoch. Goal: within 1.5 points of full-batch in test accuracy (GAS reports 82.3 on Cora with GCN).
"""
from __future__ import annotations

import argparse
import json
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
                  dtype: str, sweep: int) -> dict:
    """{"test", "val": accuracy, "epoch_s": training seconds per epoch} of one gstore run."""
    from gstore.train.run import train_run
    from gstore.train.run_config import TrainConfig

    cfg = TrainConfig(store=str(store_path), method="history", variant=variant, model=model, layers=r.layers,
                      hidden=r.hidden, dropout=r.dropout, lr=r.lr, weight_decay=r.weight_decay,
                      epochs=r.epochs, batch_size=r.batch_size, fanouts=tuple(r.fanouts),
                      clusters_per_batch=r.clusters_per_batch,
                      partition=r.parts if variant == "gas" else None, num_workers=1, seed=seed,
                      device="cpu", history_refresh=refresh, history_dtype=dtype,
                      history_sweep=sweep if variant == "scalable-gcn" else 1)
    tag = f"{variant}-{model}-{refresh}" + (f"-s{sweep}" if variant == "scalable-gcn" else "")
    res = train_run(cfg, accuracy.WORK / "runs" / f"{store_path.stem}-history-{tag}-{seed}", force=True)
    return {"test": float(res.metrics["test"]["accuracy"]), "val": float(res.metrics["val"]["accuracy"]),
            "epoch_s": res.train_seconds / max(1, res.epochs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--graphs", default="cora,sbm")
    ap.add_argument("--model", default="gcn", choices=["gcn", "sage"])
    ap.add_argument("--variants", default="gas,scalable-gcn")
    ap.add_argument("--refresh", default="0", help="comma list of --history-refresh values")
    ap.add_argument("--sweep", default="1", help="comma list of --history-sweep values (scalable-gcn)")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="override the recipe's (scalable-gcn)")
    ap.add_argument("--work", type=Path, default=None,
                    help=f"scratch dir for the stores and runs (default {WORK})")
    ap.add_argument("--json", type=Path, default=None, help="write every run's numbers here")
    args = ap.parse_args()
    import gstore

    if args.work is not None:
        accuracy.WORK = args.work
    accuracy.WORK.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    report = {}
    for name in args.graphs.split(","):
        path = cora_store() if name == "cora" else sbm_store()
        if path is None:
            print(f"{name}: skipped")
            continue
        # SBM, scalable-gcn: batches of 4,096 (5 an epoch at --history-sweep 1), chosen on validation
        # accuracy over 1,024 (20 an epoch: rows up to 20 steps old); docs/benchmarks.md
        r = Recipe() if name == "cora" else Recipe(epochs=60, parts=32, clusters_per_batch=8, batch_size=4096)
        if args.epochs:
            r.epochs = args.epochs
        if args.batch_size:
            r.batch_size = args.batch_size
        ensure_partition(path, r.parts)
        store = gstore.open(path)
        ref_key = f"full-batch {args.model.upper()} (torch)"
        rows = {ref_key: [{"test": train_full(store, args.model, r, s)} for s in range(args.seeds)]}
        t0 = time.perf_counter()
        for variant in args.variants.split(","):
            sweeps = [int(x) for x in args.sweep.split(",")] if variant == "scalable-gcn" else [1]
            for refresh in (int(x) for x in args.refresh.split(",")):
                for sweep in sweeps:
                    key = f"history {variant} (refresh {refresh}" + (
                        f", sweep {sweep})" if variant == "scalable-gcn" else ")")
                    rows[key] = []
                    for s in range(args.seeds):     # one line per run: a cut-short bench keeps them
                        rows[key].append(train_history(path, variant, args.model, r, s, refresh, args.dtype,
                                                       sweep))
                        print(f"  {name} {key} seed {s}: {rows[key][-1]}", flush=True)
        ref = statistics.mean(v["test"] for v in rows[ref_key])
        print(f"\n{name}: {store.num_nodes:,} nodes, {args.seeds} seeds, {r.epochs} epochs, model "
              f"{args.model}, history {args.dtype} ({time.perf_counter() - t0:.0f} s)")
        print(f"  {'':44s} {'test':>8s} {'+- sd':>8s} {'gap':>7s} {'val':>8s} {'s/epoch':>8s}")
        for key, v in rows.items():
            test = [x["test"] for x in v]
            sd = statistics.stdev(test) if len(test) > 1 else 0.0
            val = f"{statistics.mean(x['val'] for x in v):8.4f}" if "val" in v[0] else " " * 8
            sec = f"{statistics.median(x['epoch_s'] for x in v):8.2f}" if "epoch_s" in v[0] else ""
            print(f"  {key:44s} {statistics.mean(test):8.4f} {sd:8.4f} {100 * (statistics.mean(test) - ref):+7.2f}"
                  f" {val} {sec}")
        report[name] = rows
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
