"""Check the loader's CUDA path on a real GPU: every batch field equals the CPU loader's, bit for bit,
also when the GPU lags far behind the host (the case where early reuse of pinned memory corrupts).

Usage: python bench/cuda_check.py [--quick] [--json OUT.json]
Exit codes: 0 all checks passed, 1 a check failed, 2 not run (no CUDA device; prints
"cuda_check: NOT RUN (no CUDA device)").

For float32 and float16 stores, NeighborLoader and ClusterLoader batches are compared field by field
(nodes, x, y, mask, edge_index, edge_weight, every block's edge_index; plus num_seeds and block sizes)
with the batches of a CPU loader with the same options, in these modes:

  plain          device="cuda" and device="cuda:0", pinned staging, 2 workers, prefetch 8.
  lagging-copy   the loader's copy stream is made to wait: a torch.cuda._sleep is queued on it
                 before every batch's copies, so each copy runs long after the host freed the batch's
                 staging buffer and went on gathering later batches. Reusing that memory before the
                 copy ran (a from_numpy alias the allocator cannot track, an own pool) corrupts.
  lagging-reader the consumer's stream is kept busy (_sleep) before it reads each batch: its reads
                 must still see the finished copy (Batch.wait: wait_event + record_stream).
  user-copy      device="cpu", pin_memory=True: the consumer queues a _sleep and then copies every
                 field with .to("cuda", non_blocking=True) itself, drops the batch and moves on; the
                 loader's next batches must not land in memory those queued copies still read.
  tiny-budget    pinned_bytes=256 KiB: most batches fall back to pageable staging (sync copies).

Each mode also reports the time the consumer waited for each batch (median / p90 / max, ms).
Last, `gstore train` runs sage and cluster-gcn on the GPU and reports its loader wait share.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

NOT_RUN = 2
SLEEP_CYCLES = 20_000_000  # ~10 ms at the H200's ~2 GHz: far longer than a batch's copy


def fields(b) -> dict[str, torch.Tensor]:
    out = {k: getattr(b, k) for k in ("nodes", "x", "y", "mask", "edge_index", "edge_weight")}
    out.update({f"block{i}": blk.edge_index for i, blk in enumerate(b.blocks)})
    return {k: v for k, v in out.items() if v is not None}


def shape_of(b) -> tuple:
    return (b.kind, b.epoch, b.index, b.num_seeds, tuple(blk.size for blk in b.blocks))


EPOCHS = 2  # more batches than the loader keeps in flight, so staging memory is recycled


def cpu_batches(loader) -> list[tuple[tuple, dict[str, torch.Tensor]]]:
    return [(shape_of(b), {k: v.clone() for k, v in fields(b).items()})
            for _ in range(EPOCHS) for b in loader]


def timed(loader):
    """(batch, seconds the consumer waited for it) over EPOCHS epochs."""
    for _ in range(EPOCHS):
        it = iter(loader)  # one epoch; the next iter() starts the following one
        while True:
            t0 = time.perf_counter()
            b = next(it, None)
            if b is None:
                break
            yield b, time.perf_counter() - t0
            del b


def run_cuda(loader, *, mode: str, device: torch.device):
    """Consume `loader` as the mode says; returns ([(shape, fields on the CPU)], waits in s, pinned)."""
    kept, waits, pinned = [], [], 0
    for b, wait in timed(loader):
        waits.append(wait)
        pinned += bool(b.stats.pinned)
        if mode == "user-copy":
            torch.cuda._sleep(SLEEP_CYCLES)  # queued BEFORE the copies on the consumer's stream
            dev = {k: v.to(device, non_blocking=True) for k, v in fields(b).items()}
        else:
            bad = [k for k, v in fields(b).items() if v.device != device]
            if bad:
                raise AssertionError(f"fields {bad} not on {device}")
            if b.x is not None and b.x.dtype != torch.float32:
                raise AssertionError(f"x is {b.x.dtype}, not float32")
            if mode == "lagging-reader":
                torch.cuda._sleep(SLEEP_CYCLES)
            dev = {k: v.clone() for k, v in fields(b).items()}  # read on the consumer's stream
        kept.append((shape_of(b), dev))
        del b
    torch.cuda.synchronize()
    return [(s, {k: v.cpu() for k, v in d.items()}) for s, d in kept], waits, pinned


def compare(ref, got, what: str) -> list[str]:
    errors = []
    if len(ref) != len(got):
        return [f"{what}: {len(got)} batches, expected {len(ref)}"]
    for i, ((rs, r), (gs, g)) in enumerate(zip(ref, got)):
        if rs != gs:
            errors.append(f"{what} batch {i}: {gs} != {rs}")
        if r.keys() != g.keys():
            errors.append(f"{what} batch {i}: fields {sorted(g)} != {sorted(r)}")
            continue
        for k in r:
            if r[k].dtype != g[k].dtype or r[k].shape != g[k].shape or not torch.equal(r[k], g[k]):
                bad = "dtype/shape" if r[k].shape != g[k].shape or r[k].dtype != g[k].dtype else \
                    f"{int((r[k] != g[k]).sum())} values"
                errors.append(f"{what} batch {i} field {k}: {bad} differ")
    return errors


class LaggingCopies:
    """Queue a GPU sleep on the loader's copy stream before every batch's copies."""

    def __enter__(self):
        from gstore.pipeline.loader.to_device import DeviceCopier

        self.cls, self.orig = DeviceCopier, DeviceCopier._copy_to_cuda
        orig = self.orig

        def lagging(copier, batch, st):
            with torch.cuda.stream(copier.stream):
                torch.cuda._sleep(SLEEP_CYCLES)
            return orig(copier, batch, st)

        DeviceCopier._copy_to_cuda = lagging
        return self

    def __exit__(self, *exc):
        self.cls._copy_to_cuda = self.orig


def ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "p90": 0.0, "max": 0.0}
    v = sorted(values)
    return {"median": statistics.median(v) * 1e3, "p90": v[int(0.9 * (len(v) - 1))] * 1e3,
            "max": v[-1] * 1e3}


def train_check(tmp: Path, errors: list[str]) -> dict:
    """`gstore train` on the GPU: sage and cluster-gcn train (accuracy far above chance, predictions
    of the layer-wise inference on CUDA equal to the CPU's inference of the same weights) and the
    share of each epoch the trainer waited on the loader (goal < 10%)."""
    from gstore.pipeline.partition.partition import partition_store
    from gstore.train.run import train_run
    from gstore.train.run_config import TrainConfig
    from train_graphs import community_store

    store = community_store(tmp / "train.gstore", n=20_000, degree=12, dim=64)
    partition_store(store, 32, seed=0, reorder=True)
    out = {"check": "gstore train on cuda", "ok": True, "runs": []}
    for method, model in (("sage", "sage"), ("cluster-gcn", "gcn")):
        what = f"train {method} {model} device=cuda"
        try:
            cfg = TrainConfig(store=str(store), method=method, model=model, epochs=3, hidden=128,
                              batch_size=512, fanouts=(10, 10), clusters_per_batch=4, device="cuda",
                              num_workers=2, seed=0)
            r = train_run(cfg, tmp / f"run-{method}", force=True)
            acc = r.metrics["test"]["accuracy"]
            run = {"method": method, "test_accuracy": acc, "wait_share": r.wait_share,
                   "batches_per_s": r.batches_per_s, "inference_seconds": r.inference_seconds}
            out["runs"].append(run)
            print(f"{'ok  ' if acc > 0.5 else 'FAIL'} {what}: test acc {acc:.3f}, "
                  f"{r.batches_per_s:.1f} batches/s, waited {100 * r.wait_share:.1f}% of the epochs", flush=True)
            if acc <= 0.5:
                errors.append(f"{what}: test accuracy {acc:.3f} (4 classes: expected > 0.5)")
                out["ok"] = False
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            errors.append(f"{what}: {exc!r}")
            out["ok"] = False
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller graph, float32 + float16, fewer modes")
    ap.add_argument("--json", type=Path, default=None, help="write the results as one JSON object")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        print("cuda_check: NOT RUN (no CUDA device)")
        return NOT_RUN

    import gstore
    from gstore.pipeline.loader import ClusterLoader, NeighborLoader
    from store_factory import build_store, random_graph

    n, m, dim = (6_000, 60_000, 32) if args.quick else (20_000, 200_000, 64)
    src, dst = random_graph(n, m, seed=1)
    rng = np.random.default_rng(0)
    current = torch.device("cuda", torch.cuda.current_device())
    results, errors = [], []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16"):
            path = build_store(Path(tmp) / dtype, src, dst, n,
                               features=rng.standard_normal((n, dim)).astype(dtype),
                               labels=rng.integers(0, 10, n), splits={"train": np.arange(0, n, 3)})
            g = gstore.open(path)
            parts = rng.integers(0, 40, n).astype(np.int32)
            makers = {
                "neighbor": lambda **kw: NeighborLoader(g, [10, 5], 256, seed=3, **kw),
                "cluster": lambda **kw: ClusterLoader(g, parts, 40, 4, seed=3, **kw),
            }
            fast = dict(num_workers=2, prefetch=8)
            for kind, make in makers.items():
                ref = cpu_batches(make())
                plans = [("plain", "cuda", {}), ("plain", "cuda:0", {}),
                         ("lagging-copy", "cuda", {}), ("lagging-reader", "cuda:0", {}),
                         ("user-copy", "cpu", {"pin_memory": True}),
                         ("tiny-budget", "cuda", {"pinned_bytes": 256 << 10})]
                if args.quick:
                    plans = [p for p in plans if p[0] != "plain" or p[1] == "cuda"]
                for mode, dev, extra in plans:
                    what = f"{dtype} {kind} {mode} device={dev}"
                    target = current if dev == "cuda" else torch.device("cuda", 0)
                    t0 = time.perf_counter()
                    try:
                        loader = make(device=dev, **fast, **extra)
                        if dev == "cuda" and loader.device != current:
                            raise AssertionError(f"'cuda' resolved to {loader.device}, not {current}")
                        if mode == "lagging-copy":
                            with LaggingCopies():
                                got, waits, pinned = run_cuda(loader, mode=mode, device=target)
                        else:
                            got, waits, pinned = run_cuda(loader, mode=mode, device=target)
                        errs = compare(ref, got, what)
                        peak = loader.budget.peak if loader.budget is not None else 0
                        del loader
                    except Exception as exc:  # noqa: BLE001 - reported as a failed check
                        errs, waits, pinned, peak = [f"{what}: {exc!r}"], [], 0, 0
                    errors += errs
                    w = ms(waits)
                    results.append({"check": what, "ok": not errs, "batches": len(ref),
                                    "pinned_batches": pinned, "pinned_peak_bytes": peak,
                                    "wait_ms": w, "seconds": time.perf_counter() - t0})
                    status = "ok  " if not errs else "FAIL"
                    print(f"{status} {what}: {len(ref)} batches, {pinned} pinned, wait per batch "
                          f"median {w['median']:.2f} ms p90 {w['p90']:.2f} ms max {w['max']:.1f} ms",
                          flush=True)
                    for e in errs[:5]:
                        print(f"     {e}")
            del g
        results.append(train_check(Path(tmp), errors))
    total = time.perf_counter() - t_start
    summary = {"passed": not errors, "checks": results, "errors": errors, "seconds": total,
               "device": torch.cuda.get_device_name(current), "torch": torch.__version__}
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))
    n_ok = sum(r["ok"] for r in results)
    if errors:
        print(f"cuda_check: FAILED ({len(results) - n_ok} of {len(results)} checks, {total:.0f} s)")
        return 1
    print(f"cuda_check: PASSED ({n_ok} checks on {summary['device']}, {total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
