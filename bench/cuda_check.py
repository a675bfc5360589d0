"""Check the loader's CUDA path (pinned buffers, non_blocking copies on a side stream) against the CPU.

Usage: python bench/cuda_check.py      (exits 0 with a note when no GPU is available)

For float32 and float16 stores, NeighborLoader and ClusterLoader batches produced with device="cuda"
(pin_memory=True, 2 workers, prefetch 2) must equal the CPU batches exactly, including when the
consumer is slow (buffers are recycled while copies are in flight) and when it launches its own GPU
work on the default stream right after receiving a batch.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import gstore  # noqa: E402
from gstore.pipeline.loader import ClusterLoader, NeighborLoader  # noqa: E402
from store_factory import build_store, random_graph  # noqa: E402


def cpu_copy(b):
    return {"nodes": b.nodes.cpu(), "x": b.x.cpu(), "y": b.y.cpu(),
            "blocks": [bl.edge_index.cpu() for bl in b.blocks],
            "edge_index": None if b.edge_index is None else b.edge_index.cpu(),
            "edge_weight": None if b.edge_weight is None else b.edge_weight.cpu()}


def compare(ref, got, what):
    assert len(ref) == len(got), what
    for i, (a, b) in enumerate(zip(ref, got)):
        for k in a:
            if k == "blocks":
                assert all(torch.equal(p, q) for p, q in zip(a[k], b[k])), f"{what} batch {i} blocks"
            elif a[k] is None:
                assert b[k] is None
            else:
                assert torch.equal(a[k], b[k]), f"{what} batch {i} {k}"


def run(make, device, slow=False):
    out = []
    for b in make(device):
        if device != "cpu":
            assert b.x.is_cuda and b.x.dtype == torch.float32
            # GPU work on the consumer stream right away: must see the completed copy
            s = (b.x * 2).sum()
            if slow:
                torch.cuda._sleep(2_000_000)  # keep the GPU busy while the loader runs ahead
                time.sleep(0.01)
            _ = float(s)
        out.append(cpu_copy(b))
    return out


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (the CPU path is covered by tests/test_loader.py)")
        return 0
    n = 20_000
    src, dst = random_graph(n, 200_000, seed=1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16"):
            path = build_store(Path(tmp) / dtype, src, dst, n,
                               features=rng.standard_normal((n, 64)).astype(dtype),
                               labels=rng.integers(0, 10, n), splits={"train": np.arange(0, n, 3)})
            g = gstore.open(path)
            parts = rng.integers(0, 50, n).astype(np.int32)
            makers = {
                "neighbor": lambda dev: NeighborLoader(g, [10, 5], 256, seed=3, device=dev, num_workers=2,
                                                       prefetch=2),
                "cluster": lambda dev: ClusterLoader(g, parts, 50, 5, seed=3, device=dev, num_workers=2,
                                                     prefetch=2),
            }
            for name, make in makers.items():
                ref = run(make, "cpu")
                for slow in (False, True):
                    compare(ref, run(make, "cuda", slow=slow), f"{dtype} {name} slow={slow}")
                print(f"ok: {dtype} {name}: {len(ref)} batches identical on cuda (pinned, non_blocking)")
            loader = NeighborLoader(g, [10, 5], 256, device="cuda")
            assert loader.pool.pinned and loader.pin_memory
            del loader, g
    print("all CUDA checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
