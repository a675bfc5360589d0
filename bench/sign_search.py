"""Configuration search for `gstore train --method sign`, judged on VALIDATION accuracy only.

Usage:
    python bench/sign_search.py --store cora=PATH --store sbm=PATH --grid NAME [--seeds 5] [--json out.json]

Trains gstore's SIGN model (train/row_models.py) on the store's propagated hops (computed by
`gstore propagate` / a first `gstore train --method sign` with the same --hops / --norm), held in
RAM, with the training loop's recipe: Adam, shuffled row batches, one evaluation per epoch, the
model of the best validation epoch kept. Prints, per configuration, the mean validation accuracy
(which picks the configuration) and the test accuracy at the best validation epoch (reported, never
used to choose). It is a fast stand-in for `bench/accuracy.py` (no run dir, loader threads or
predictions file), used to search; the chosen defaults are then measured end to end by
`bench/accuracy.py` through `gstore train`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import gstore
from gstore.pipeline.propagation import PropagationParams, open_propagated
from gstore.train.row_models import SIGN, hop_scales

# the base recipe: the method's defaults before this search (hop scaling did not exist: scale_hops
# False reproduces it; gstore's SIGN now always scales)
BASE = dict(hops=2, hidden=256, layers=1, dropout=0.5, input_dropout=None, batch_norm=False,
            scale_hops=False, lr=0.01, weight_decay=5e-4, epochs=None, batch_size=None)
S = dict(scale_hops=True)
# the rounds of the search as run (docs/benchmarks.md, "Training (issue 10)": their val numbers);
# each round was chosen from the val numbers of the ones before (a round's list is the union of
# what ran on the two graphs; some configurations ran on one graph only)
GRIDS = {
    "base": [{}],
    "r1": [dict(input_dropout=0.0), dict(input_dropout=0.8), dict(input_dropout=0.8, dropout=0.2),
           dict(weight_decay=5e-3), dict(hidden=64, weight_decay=5e-3), dict(batch_norm=True)],
    "r2": [S, dict(S, input_dropout=0.8, dropout=0.2), dict(S, input_dropout=0.8),
           dict(input_dropout=0.8, dropout=0.2, weight_decay=0),
           dict(S, input_dropout=0.8, dropout=0.2, weight_decay=0), dict(S, weight_decay=0),
           dict(weight_decay=0), dict(S, input_dropout=0.0), dict(S, lr=0.05)],
    "r3": [dict(S, input_dropout=i, dropout=d) for i, d in
           ((0.2, 0.2), (0.2, 0.5), (0.5, 0.2), (0.0, 0.2), (0.8, 0.2), (0.0, 0.5))],
    "r4": [dict(S, input_dropout=0.0, weight_decay=5e-3), dict(S, input_dropout=0.0, hidden=64)],
    "r5": [dict(S, input_dropout=0.0, weight_decay=5e-3), dict(S, input_dropout=0.0, weight_decay=2e-3),
           dict(S, input_dropout=0.0, weight_decay=1e-2)],
    "r6": [dict(S, input_dropout=0.0, weight_decay=2e-2)],
}


def load(path: str, hops: int):
    store = gstore.open(path)
    rows = open_propagated(store, PropagationParams(hops=hops))
    if rows is None:
        sys.exit(f"{path}: no {hops}-hop sym propagation stored; run `gstore propagate {path} --hops {hops}`")
    x = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.float32) for a in rows.hops[:hops + 1]], 1))
    y = torch.from_numpy(np.array(store.labels, dtype=np.int64))
    split = {s: torch.from_numpy(np.array(store.split(s), dtype=np.int64)) for s in ("train", "val", "test")}
    scales = hop_scales(rows.hops[:hops + 1], split["train"].numpy())
    return x, y, split, int(store.features.shape[1]), len(store.label_names), scales


def fit(data, c: dict, seed: int) -> tuple[float, float]:
    """(best val accuracy, test accuracy at that epoch) of one run."""
    x, y, split, f, classes, scales = data
    torch.manual_seed(seed)
    model = SIGN(f, c["hops"], c["hidden"], classes, c["layers"], dropout=c["dropout"],
                 input_dropout=c["input_dropout"], batch_norm=c["batch_norm"],
                 hop_scales=scales if c["scale_hops"] else None)
    opt = torch.optim.Adam(model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])
    train = split["train"]
    g = torch.Generator().manual_seed(seed)
    best_val, test_at = -1.0, 0.0
    for epoch in range(c["epochs"]):
        model.train()
        perm = train[torch.randperm(len(train), generator=g)]
        for i in range(0, len(perm), c["batch_size"]):
            idx = perm[i:i + c["batch_size"]]
            torch.manual_seed(seed * 100003 + epoch * 1009 + i)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float((model(x[split["val"]]).argmax(1) == y[split["val"]]).float().mean())
            if val > best_val:
                best_val = val
                test_at = float((model(x[split["test"]]).argmax(1) == y[split["test"]]).float().mean())
    return best_val, test_at


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", action="append", required=True, help="NAME=PATH (cora, sbm)")
    ap.add_argument("--grid", default="base", help="one of " + ",".join(GRIDS) + ", or a JSON list of dicts")
    ap.add_argument("--set", default="{}", help="JSON dict overriding the base recipe for every config")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    grid = GRIDS[args.grid] if args.grid in GRIDS else json.loads(args.grid)
    over = json.loads(args.set)
    out = []
    for spec in args.store:
        name, path = spec.split("=", 1)
        # the bench's recipes per graph (bench/accuracy.py RowRecipe): Cora 100 epochs, batch 512
        # (its 140 train nodes in one batch); the SBM 60 epochs, batch 1024
        graph_base = dict(BASE, epochs=100, batch_size=512) if name == "cora" else dict(BASE, epochs=60, batch_size=1024)
        cache = {}
        for g in grid:
            c = {**graph_base, **over, **{k: v for k, v in g.items() if v is not None}}
            if c["hops"] not in cache:
                cache[c["hops"]] = load(path, c["hops"])
            t0 = time.perf_counter()
            runs = [fit(cache[c["hops"]], c, s) for s in range(args.seeds)]
            val = statistics.mean(v for v, _ in runs)
            test = statistics.mean(t for _, t in runs)
            changed = {k: v for k, v in c.items() if graph_base.get(k) != v}
            out.append(dict(graph=name, config=c, val=val, test=test, runs=runs))
            print(f"{name:5s} val {val:.4f} test {test:.4f}  ({time.perf_counter() - t0:4.1f} s) {changed}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
