"""The per-stage table of a bench/scale.sh run: stages.jsonl (bench/scale_measure.py records) plus
each stage's own --json result (logs/STAGE.json), as JSON and as a markdown table.

Usage:
    python bench/scale_table.py WORK/stages.jsonl [--json WORK/scale.json] [--md WORK/scale.md]

The last record of each stage counts (a rerun replaces an earlier one). Throughput is per stage:
edges/s (generate, ingest), stored entries/s (partition, reorder), s to the first batch (loader),
batches/s and nodes/s of layer-wise inference (train), entries x hops/s (propagate).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GIB = 1 << 30


def _result(logs: Path, stage: str) -> dict:
    """The stage's own JSON result (last JSON object on its stdout), or {}."""
    p = logs / f"{stage}.json"
    if not p.exists():
        return {}
    for line in reversed(p.read_text().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return {}
    return {}


def _rate(x: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.2f}{prefix} {unit}/s"
    return f"{x:.2f} {unit}/s"


def throughput(stage: str, rec: dict, res: dict, entries: int | None, nodes: int | None) -> str:
    wall = rec["wall_s"] or float("nan")
    if stage == "generate" and res.get("num_edges"):
        return _rate(res["num_edges"] / wall, "edges")
    if stage == "ingest" and res.get("edges_read"):
        return _rate(res["edges_read"] / wall, "edges") + f" ({res['num_edges']:,} entries stored)"
    if stage in ("partition", "reorder") and entries:
        cut = f", cut {res['edge_cut']:.3f}" if stage == "partition" and "edge_cut" in res else ""
        return _rate(entries / wall, "entries") + cut
    if stage == "loader" and res:
        parts = [f"neighbor start {res['neighbor']['start_s']:.2f} s"]
        if "neighbor_all_ids" in res:
            parts.append(f"all-ids start {res['neighbor_all_ids']['start_s']:.2f} s")
        if "cluster" in res:
            parts.append(f"cluster start {res['cluster']['start_s']:.2f} s")
        parts.append(f"CSR check {res['check_s']:.1f} s")
        return ", ".join(parts)
    if stage in ("sage", "cluster-gcn", "history") and res:
        out = f"{res.get('batches_per_s', float('nan')):.2f} batches/s"
        if res.get("inference_seconds") and nodes:
            out += f", inference {_rate(nodes / res['inference_seconds'], 'nodes')}"
        acc = res.get("test_accuracy")
        if acc is not None:
            out += f", test acc {acc:.3f}"
        return out
    if stage == "propagate" and entries:
        hops = res.get("hops") or len(res.get("computed", [])) or 2
        return _rate(entries * hops / wall, "entries x hops")
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages")
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    args = ap.parse_args()
    path = Path(args.stages)
    logs = path.parent / "logs" if (path.parent / "logs").is_dir() else path.parent
    recs: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            recs[r["stage"]] = r
    ingest = _result(logs, "ingest")
    entries, nodes = ingest.get("num_edges"), ingest.get("num_nodes")
    rows = []
    for stage, rec in recs.items():
        res = _result(logs, stage)
        rows.append({**rec, "result": res, "throughput": throughput(stage, rec, res, entries, nodes)})
    table = {"num_nodes": nodes, "num_entries": entries, "stages": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
    lines = ["| stage | rc | wall | CPU (user+sys) | peak RSS | peak anon | written | disk delta | throughput |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['rc']} | {r['wall_s']:.1f} s | {r['user_s'] + r['sys_s']:.0f} s | "
                     f"{r['peak_rss_bytes'] / GIB:.2f} GiB | {r['peak_anon_bytes'] / GIB:.2f} GiB | "
                     f"{r['write_bytes'] / GIB:.2f} GiB | {r['disk_delta_bytes'] / GIB:+.2f} GiB | "
                     f"{r['throughput']} |")
    md = "\n".join(lines) + "\n"
    if args.md:
        Path(args.md).write_text(md)
    sys.stdout.write(md)
    return 1 if any(r["rc"] != 0 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
