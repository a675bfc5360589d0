"""Layer-wise inference over every node: the sum path against the block path, same store, same weights.

    python bench/inference_paths.py STORE [--conv sage] [--hidden 128] [--layers 2] \\
        [--dtype float16] [--budget 4GiB] [--repeats 3]

Each run is a child process (`--child 1|0`: sum path on/off) so the two never share a page cache
warm-up order advantage beyond what the repeats even out; the paths alternate. Prints one JSON line
per run (wall and CPU seconds, per-layer seconds and path) and the medians and their ratio
(block / sum). The model has random weights: time does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args) -> dict:
    from gstore.pipeline.inference.layerwise import layerwise_inference
    from gstore.train.run import build_model, check_inputs
    from gstore.train.run_config import TrainConfig

    cfg = TrainConfig(store=args.store, model=args.conv, layers=args.layers, hidden=args.hidden,
                      fanouts=tuple([10] * args.layers), device="cpu", memory_budget=args.budget)
    inputs = check_inputs(cfg)
    model = build_model(cfg, inputs).eval()
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        out = layerwise_inference(inputs.store, model, Path(tmp) / "inference", memory_budget=args.budget,
                                  dtype=args.dtype, sum_path=args.child == 1)
    return {"sum_path": args.child == 1, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "peak_anon": out.peak_anon_bytes,
            "layers": [{"layer": s.layer, "path": s.path, "seconds": s.seconds, "edges": s.edges} for s in out.layers]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--conv", default="sage", choices=["sage", "gcn", "mlp"])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--budget", default="4GiB")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scratch", default=None, help="where the layer arrays go (default: next to the store)")
    ap.add_argument("--child", type=int, choices=[0, 1], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.scratch = args.scratch or str(Path(args.store).resolve().parent)
    if args.child is not None:
        print(json.dumps(child(args)))
        return
    runs: dict[bool, list[dict]] = {True: [], False: []}
    base = [sys.executable, __file__, args.store, "--conv", args.conv, "--hidden", str(args.hidden),
            "--layers", str(args.layers), "--dtype", args.dtype, "--budget", args.budget,
            "--scratch", args.scratch]
    for _ in range(args.repeats):
        for flag in (1, 0):
            out = subprocess.run(base + ["--child", str(flag)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(r), flush=True)
            runs[r["sum_path"]].append(r)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall_s", "cpu_s")} for k, v in runs.items()}
    print(f"sum path   wall {med[True]['wall_s']:.1f} s  cpu {med[True]['cpu_s']:.1f} s")
    print(f"block path wall {med[False]['wall_s']:.1f} s  cpu {med[False]['cpu_s']:.1f} s")
    print(f"ratio block/sum: wall {med[False]['wall_s'] / med[True]['wall_s']:.2f}x, "
          f"cpu {med[False]['cpu_s'] / med[True]['cpu_s']:.2f}x (medians of {args.repeats})")


if __name__ == "__main__":
    main()
