"""Training throughput and memory: gstore's `train` loop vs PyG's, same model, same batches.

Usage:
    flock /tmp/gstore-heavy.lock python bench/train.py [--batches 20] [--repeats 3] [--skip-pyg]
        [--device cpu|cuda] [--parts-only sage,cluster,inference]

Graph: the products-sized synthetic graph of bench/sampling.py (2.4M nodes, ~60M stored edges,
1500 planted communities), rebuilt once into /work/data/bench_train/ with 100-d float32 features
that carry the label (47 classes from the communities, class centroid * 0.5 + N(0, 1) noise), a 10%
train / 2% val / rest test split, and a copy laid out by the planted parts for Cluster-GCN.

Configurations, each in a fresh subprocess (peak RSS of its own), repeats interleaved:
  sage:    PyG's example recipe: 3 x 256 SAGE, fanouts [15, 10, 5], batch 1024, Adam(0.003);
           gstore = NeighborLoader + gstore.train GNN + the `gstore train` loop (train_epoch);
           PyG = NeighborLoader + 3 SAGEConv on the sampled subgraph, output[:batch_size].
  cluster: 1500 parts, 20 clusters per batch, 2 x 128 SAGE; gstore on the reordered store,
           PyG ClusterData (METIS replaced by the same planted parts) + ClusterLoader.
  inference: the 3 x 256 SAGE over every node: gstore's out-of-core layer-wise inference
           (--memory-budget 2GiB, embeddings on disk) vs PyG's `inference` (x_all in RAM, one
           NeighborLoader over all nodes with every in-neighbor per layer, batch 4096).
After `--warmup` batches, `--batches` batches are timed: seconds per batch, the share the trainer
waited on data (time blocked in the loader's next()), peak RSS and anonymous memory. Medians over
`--repeats`; ratios PyG time / gstore time.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sampling  # noqa: E402  (the products-sized graph and its planted parts)

DATA = Path("/work/data/bench_train")
CLASSES = 47


def base_args(args) -> argparse.Namespace:
    return argparse.Namespace(nodes=args.nodes, pairs=args.pairs, dim=args.dim, parts=args.parts)


def store_path(args) -> Path:
    return DATA / f"labelled_n{args.nodes}_p{args.pairs}_f{args.dim}"


def reordered_path(args) -> Path:
    return DATA / f"labelled_n{args.nodes}_p{args.pairs}_f{args.dim}_reordered_k{args.parts}"


def build(args) -> None:
    """The labelled store (once) and its copy laid out by the planted parts (once)."""
    import shutil

    import gstore
    from gstore.builder import StoreBuilder
    from gstore.manifest import StoreManifest
    from gstore.pipeline.partition.partition import PartitionResult, record_partition
    from gstore.pipeline.partition.reorder import reorder_store

    b = base_args(args)
    sampling.build_graph(b)
    out = store_path(args)
    parts = np.load(sampling.parts_path(b))
    if not (out / "zarr.json").exists():
        t0 = time.perf_counter()
        src = gstore.open(sampling.store_path(b))
        n = src.num_nodes
        rng = np.random.default_rng(1)
        labels = (parts.astype(np.int64) + rng.integers(0, 3, n)) % CLASSES
        centroids = rng.standard_normal((CLASSES, args.dim)).astype(np.float32) * 0.5
        order = rng.permutation(n)
        n_train, n_val = n // 10, n // 50
        splits = {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
                  "test": np.sort(order[n_train + n_val:])}
        m = StoreManifest(num_nodes=n, num_edges=src.num_edges, directed=False)
        with StoreBuilder(out, force=True) as bld:
            bld.write_array("indptr", np.asarray(src.indptr))
            bld.write_array("indices", np.asarray(src.indices))
            bld.write_array("node_ids", np.arange(n, dtype=np.int64))
            wr = bld.array_writer("features", (n, args.dim), np.float32)
            for s in range(0, n, 200_000):
                e = min(n, s + 200_000)
                wr.append(centroids[labels[s:e]] + rng.standard_normal((e - s, args.dim), dtype=np.float32))
            bld.add(wr.finish())
            bld.write_array("labels", labels)
            for k, v in splits.items():
                bld.write_array(f"splits/{k}", v)
            m.feature_dim, m.feature_dtype = args.dim, "float32"
            m.label_names, m.num_classes = [str(i) for i in range(CLASSES)], CLASSES
            m.split_sizes = {k: int(len(v)) for k, v in splits.items()}
            bld.commit(m)
        print(f"built {out} in {time.perf_counter() - t0:.0f} s", flush=True)
    ro = reordered_path(args)
    if not (ro / "zarr.json").exists():
        shutil.rmtree(ro, ignore_errors=True)
        shutil.copytree(out, ro)
        counts = np.bincount(parts, minlength=args.parts)
        result = PartitionResult(num_parts=args.parts, method="planted", edge_cut=0.0,
                                 balance=float(counts.max() / counts.mean()), seconds=0.0, peak_rss=0,
                                 metis_estimate=0, params={"source": "planted"})
        record_partition(ro, str(args.parts), parts, result)
        reorder_store(ro, str(args.parts), memory_budget="4GiB")
        print(f"reordered {ro}", flush=True)


# ---------------------------------------------------------------------------------------------
# children: one configuration each, one JSON line on stdout
def _timed_steps(batches, step, warmup: int, count: int) -> dict:
    """Run `step(batch)` over warmup + count batches; time the counted ones (load vs compute)."""
    from gstore.memory import anon_rss_bytes

    it = iter(batches)
    wait = compute = 0.0
    done = 0
    peak_anon = 0
    t_start = None
    while done < warmup + count:
        t0 = time.perf_counter()
        batch = next(it, None)
        if batch is None:
            it = iter(batches)
            continue
        t1 = time.perf_counter()
        step(batch)
        t2 = time.perf_counter()
        done += 1
        if done == warmup:
            t_start = time.perf_counter()
        elif done > warmup:
            wait += t1 - t0
            compute += t2 - t1
        peak_anon = max(peak_anon, anon_rss_bytes())
    total = time.perf_counter() - (t_start or time.perf_counter())
    return {"s_per_batch": total / count, "wait_share": wait / total, "load_s": wait / count,
            "compute_s": compute / count, "peak_anon": peak_anon}


def child_gstore_train(args) -> dict:
    import torch

    from gstore.memory import peak_rss_bytes
    from gstore.train.loop import forward, loss_rows
    from gstore.train.run import build_model, check_inputs, train_loader
    from gstore.train.run_config import TrainConfig

    sage = args.child == "gstore-sage"
    cfg = TrainConfig(store=str(store_path(args) if sage else reordered_path(args)),
                      method="sage" if sage else "cluster-gcn", model="sage",
                      layers=3 if sage else 2, hidden=256 if sage else 128,
                      fanouts=(15, 10, 5) if sage else (10, 10), batch_size=1024, lr=0.003,
                      clusters_per_batch=20, num_workers=args.workers, prefetch=4, device=args.device,
                      seed=args.seed)
    inputs = check_inputs(cfg)
    model = build_model(cfg, inputs)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loader = train_loader(cfg, inputs)
    model.train()

    def step(batch):
        logits, y = loss_rows(batch, forward(model, batch))
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if inputs.device.type == "cuda":
            torch.cuda.synchronize()

    r = _timed_steps(loader, step, args.warmup, args.batches)
    r["peak_rss"] = peak_rss_bytes()
    return r


def _pyg_data(path: Path):
    import torch
    from torch_geometric.data import Data

    import gstore

    g = gstore.open(path)
    n = g.num_nodes
    dst = torch.from_numpy(np.repeat(np.arange(n, dtype=np.int64), np.diff(g.indptr)))
    src = torch.from_numpy(np.asarray(g.indices, dtype=np.int64))
    return g, Data(x=torch.from_numpy(np.array(g.features)), y=torch.from_numpy(np.array(g.labels)),
                   edge_index=torch.stack([src, dst]), num_nodes=n)


class PygSAGE:
    """PyG's examples/reddit.py / ogbn_products_sage.py model."""

    @staticmethod
    def make(in_dim: int, hidden: int, out_dim: int, layers: int):
        import torch
        from torch_geometric.nn import SAGEConv

        class SAGE(torch.nn.Module):
            def __init__(self):
                super().__init__()
                dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
                self.convs = torch.nn.ModuleList(SAGEConv(a, b) for a, b in zip(dims[:-1], dims[1:]))

            def forward(self, x, edge_index):
                for i, conv in enumerate(self.convs):
                    x = conv(x, edge_index)
                    if i < len(self.convs) - 1:
                        x = torch.nn.functional.dropout(torch.relu(x), 0.5, self.training)
                return x

            @torch.no_grad()
            def inference(self, x_all, loader):
                for i, conv in enumerate(self.convs):
                    xs = []
                    for batch in loader:
                        x = x_all[batch.n_id]
                        x = conv(x, batch.edge_index)
                        if i < len(self.convs) - 1:
                            x = torch.relu(x)
                        xs.append(x[:batch.batch_size])
                    x_all = torch.cat(xs, dim=0)
                return x_all

        return SAGE()


def child_pyg_train(args) -> dict:
    import torch

    from gstore.memory import peak_rss_bytes

    sage = args.child == "pyg-sage"
    g, data = _pyg_data(store_path(args))
    if sage:
        from torch_geometric.loader import NeighborLoader

        loader = NeighborLoader(data, num_neighbors=[15, 10, 5], batch_size=1024, shuffle=True,
                                input_nodes=torch.from_numpy(np.array(g.split("train"))),
                                num_workers=args.pyg_workers)
        model = PygSAGE.make(args.dim, 256, CLASSES, 3)
    else:
        from torch_geometric.loader import ClusterData, ClusterLoader

        parts = torch.from_numpy(np.load(sampling.parts_path(base_args(args))).astype(np.int64))
        ClusterData._metis = lambda self, edge_index, num_nodes: parts
        data.train_mask = torch.zeros(data.num_nodes, dtype=torch.bool)
        data.train_mask[torch.from_numpy(np.array(g.split("train")))] = True
        loader = ClusterLoader(ClusterData(data, num_parts=args.parts, log=False), batch_size=20,
                               shuffle=True, num_workers=args.pyg_workers)
        model = PygSAGE.make(args.dim, 128, CLASSES, 2)
    torch.manual_seed(args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    model.train()

    def step(batch):
        out = model(batch.x, batch.edge_index)
        if sage:
            loss = torch.nn.functional.cross_entropy(out[:batch.batch_size], batch.y[:batch.batch_size])
        else:
            loss = torch.nn.functional.cross_entropy(out[batch.train_mask], batch.y[batch.train_mask])
        opt.zero_grad()
        loss.backward()
        opt.step()

    r = _timed_steps(loader, step, args.warmup, args.batches)
    r["peak_rss"] = peak_rss_bytes()
    return r


def child_gstore_inference(args) -> dict:
    import tempfile

    from gstore.memory import peak_rss_bytes
    from gstore.pipeline.inference.layerwise import layerwise_inference
    from gstore.train.run import build_model, check_inputs
    from gstore.train.run_config import TrainConfig

    cfg = TrainConfig(store=str(store_path(args)), layers=3, hidden=256, fanouts=(15, 10, 5), device=args.device,
                      memory_budget=args.memory_budget)
    inputs = check_inputs(cfg)
    model = build_model(cfg, inputs).eval()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        out = layerwise_inference(inputs.store, model, Path(tmp) / "inference", memory_budget=cfg.memory_budget,
                                  dtype="float32", device=inputs.device)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss": peak_rss_bytes(), "peak_anon": out.peak_anon_bytes,
            "layers": [ls.to_json() for ls in out.layers]}


def child_pyg_inference(args) -> dict:
    from torch_geometric.loader import NeighborLoader

    from gstore.memory import peak_rss_bytes

    g, data = _pyg_data(store_path(args))
    model = PygSAGE.make(args.dim, 256, CLASSES, 3).eval()
    t0 = time.perf_counter()
    loader = NeighborLoader(data, num_neighbors=[-1], batch_size=4096, shuffle=False,
                            num_workers=args.pyg_workers)
    model.inference(data.x, loader)
    return {"seconds": time.perf_counter() - t0, "peak_rss": peak_rss_bytes()}


CHILDREN = {"gstore-sage": child_gstore_train, "gstore-cluster": child_gstore_train,
            "pyg-sage": child_pyg_train, "pyg-cluster": child_pyg_train,
            "gstore-inference": child_gstore_inference, "pyg-inference": child_pyg_inference}


def run_child(args, child: str, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--child", child, "--nodes", str(args.nodes), "--pairs", str(args.pairs),
           "--dim", str(args.dim), "--parts", str(args.parts), "--batches", str(args.batches),
           "--warmup", str(args.warmup), "--workers", str(args.workers), "--pyg-workers", str(args.pyg_workers),
           "--seed", str(seed), "--device", args.device, "--memory-budget", args.memory_budget]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{child} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def pyg_missing() -> str | None:
    try:
        import torch_geometric.typing as t
    except Exception as exc:  # noqa: BLE001
        return f"torch_geometric not importable ({type(exc).__name__})"
    if not (t.WITH_PYG_LIB or t.WITH_TORCH_SPARSE):
        return "PyG neighbor sampling needs pyg_lib or torch_sparse"
    return None


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=2_400_000)
    ap.add_argument("--pairs", type=int, default=30_500_000)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--parts", type=int, default=1500)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pyg-workers", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory-budget", default="2GiB")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-pyg", action="store_true")
    ap.add_argument("--parts-only", default="sage,cluster,inference", help="which comparisons to run")
    ap.add_argument("--child", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)), flush=True)
        return
    DATA.mkdir(parents=True, exist_ok=True)
    build(args)
    why = "--skip-pyg" if args.skip_pyg else pyg_missing()
    wanted = args.parts_only.split(",")
    runs: dict[str, list[dict]] = {}
    for rep, part in itertools.product(range(args.repeats), wanted):
        for who in ("gstore", "pyg"):
            if who == "pyg" and why:
                continue
            if part == "inference" and rep > 0:
                continue            # one inference pass each: minutes, not seconds
            name = f"{who}-{part}"
            runs.setdefault(name, []).append(run_child(args, name, args.seed + rep))
            print(f"{name} rep {rep}: {runs[name][-1]}", flush=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    print(f"\ndevice {args.device}; {args.batches} timed batches after {args.warmup} warm-up, medians of "
          f"{args.repeats}; gstore workers {args.workers}, PyG workers {args.pyg_workers}"
          + (f"; PyG skipped: {why}" if why else ""))
    print(f"{'config':22s} {'s/batch':>8s} {'load s':>7s} {'compute s':>9s} {'wait %':>7s} "
          f"{'peak RSS GiB':>12s} {'anon GiB':>8s} {'PyG/gstore':>10s}")
    for part in ("sage", "cluster"):
        for who in ("gstore", "pyg"):
            r = med.get(f"{who}-{part}")
            if r is None:
                continue
            ratio = ""
            if who == "gstore" and f"pyg-{part}" in med:
                ratio = f"{med[f'pyg-{part}']['s_per_batch'] / r['s_per_batch']:.2f}x"
            print(f"{who + ' ' + part:22s} {r['s_per_batch']:8.3f} {r['load_s']:7.3f} {r['compute_s']:9.3f} "
                  f"{100 * r['wait_share']:6.1f}% {gib(r['peak_rss']):>12s} {gib(r['peak_anon']):>8s} {ratio:>10s}")
    for who in ("gstore", "pyg"):
        r = med.get(f"{who}-inference")
        if r is not None:
            ratio = ""
            if who == "gstore" and "pyg-inference" in med:
                ratio = f"{med['pyg-inference']['seconds'] / r['seconds']:.2f}x"
            print(f"{who + ' inference':22s} {r['seconds']:8.1f}s all nodes, peak RSS {gib(r['peak_rss'])} GiB {ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": med}, indent=1))


if __name__ == "__main__":
    main()
