"""gstore ingest vs an in-memory baseline: seconds, edges/s and peak RSS, side by side.

Usage (always under the shared lock; it generates data and runs multi-GB jobs):
    flock /tmp/gstore-heavy.lock python bench/ingest.py [--sizes 1M,10M,60M] [--string-size 10M]
        [--repeats 3] [--budget 2GiB] [--big [--big-edges 300M --big-budget 1GiB]] [--md FILE]

Inputs: R-MAT edge lists (gstore generate rmat; CSV with a source,target header, int ids) cached in
--data (default /work/data/bench), plus one string-id copy ("v<id>") at --string-size.
Sides, each in its own spawned child process so peak RSS (VmHWM, read by the child at its end) is its
own:
  gstore    gstore.pipeline.ingest.ingest.ingest(..., memory_budget=--budget): directed, dedup.
  baseline  pyarrow.csv.read_csv, id remap with pyarrow dictionary_encode (hash; --remap unique:
            np.unique(return_inverse), 4-6x slower with numpy 2.4 here), then
            scipy.sparse.coo_matrix((1, (dst, src))).tocsr() (sums duplicates, sorts indices);
            indptr/indices/node_ids saved to disk. Same CSR orientation (rows = dst).
Times exclude interpreter start and imports; numba caches are warmed by a tiny run first. Medians over
--repeats (sizes >= 60M run once). The baseline is skipped when MemAvailable is below its estimated
need. --big adds one gstore-only run at --big-edges under --big-budget (no baseline: it cannot fit).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE_BYTES_PER_EDGE = 170      # measured-ish peak of read_csv + np.unique + tocsr, int ids
BIG_REPEAT_THRESHOLD = 60_000_000


def parse_count(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def label(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 10**6 else f"{n / 1e3:g}K"


def scale_for(edges: int) -> int:
    """R-MAT scale with an average degree of ~8-16 for `edges` edges."""
    s = 10
    while (16 << (s + 1)) <= edges * 2:
        s += 1
    return s


# ---- inputs --------------------------------------------------------------------------------------
def int_edges_file(data: Path, edges: int) -> Path:
    from gstore.pipeline.generate.rmat import generate_rmat

    scale = scale_for(edges)
    path = data / f"rmat-s{scale}-e{label(edges)}.csv"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        g = generate_rmat(path, scale, 16, seed=1, num_edges=edges)
        print(f"  {g.num_edges:,} edges, {g.bytes_written / 2**30:.2f} GiB in {g.seconds:.1f} s "
              f"({g.num_edges / g.seconds / 1e6:.1f} M edges/s to CSV); generator process peak RSS "
              f"{vm_hwm() / 2**20:.0f} MiB", flush=True)
    return path


def string_edges_file(data: Path, edges: int) -> Path:
    """A copy of the int file with ids written as "v<id>" (streamed through pyarrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    src_path = int_edges_file(data, edges)
    path = src_path.with_name(src_path.stem + "-str.csv")
    if path.exists():
        return path
    print(f"generating {path} ...", flush=True)
    tmp = path.with_name(path.name + ".partial")
    reader = pcsv.open_csv(src_path, read_options=pcsv.ReadOptions(block_size=64 << 20))
    schema = pa.schema([("source", pa.string()), ("target", pa.string())])
    with pcsv.CSVWriter(tmp, schema, write_options=pcsv.WriteOptions(quoting_style="none")) as w:
        for batch in reader:
            cols = [pc.binary_join_element_wise("v", pc.cast(batch.column(i), pa.string()), "")
                    for i in range(2)]
            w.write_batch(pa.record_batch(cols, schema=schema))
    os.replace(tmp, path)
    return path


# ---- children ------------------------------------------------------------------------------------
def vm_hwm() -> int:
    from gstore.memory import peak_rss_bytes

    return peak_rss_bytes()


def child_gstore(inp: Path, out: Path, budget: str, string: bool) -> dict:
    from gstore.memory import parse_bytes
    from gstore.pipeline.ingest.chunks import EdgeReadOptions
    from gstore.pipeline.ingest.ingest import IngestOptions, ingest

    opts = IngestOptions(read=EdgeReadOptions(id_type="string" if string else "auto"),
                         memory_budget=parse_bytes(budget), force=True)
    t0 = time.perf_counter()
    r = ingest([str(inp)], out, opts)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "num_nodes": r.num_nodes, "num_edges": r.num_edges,
            "edges_read": r.edges_read, "buckets": r.buckets, "id_table": r.id_table}


def child_baseline(inp: Path, out: Path, string: bool, remap: str) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import scipy.sparse as sp

    t0 = time.perf_counter()
    convert = pcsv.ConvertOptions(column_types={"source": pa.string(), "target": pa.string()}) \
        if string else None
    table = pcsv.read_csv(inp, convert_options=convert)
    e = table.num_rows
    if string or remap == "arrow":
        # hash-based remap in Arrow's C++ (dense ids in first-appearance order)
        both = pa.chunked_array(table.column(0).chunks + table.column(1).chunks)
        del table
        enc = both.combine_chunks().dictionary_encode()
        del both
        inv = enc.indices.to_numpy(zero_copy_only=False)
        ids = enc.dictionary
        n = len(ids)
    else:
        both = np.concatenate([table.column(0).to_numpy(), table.column(1).to_numpy()])
        del table
        ids, inv = np.unique(both, return_inverse=True)
        del both
        n = len(ids)
    src, dst = inv[:e], inv[e:]
    a = sp.coo_matrix((np.ones(e, dtype=np.bool_), (dst, src)), shape=(n, n)).tocsr()
    del inv, src, dst
    a.sort_indices()
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "indptr.npy", a.indptr.astype(np.int64))
    np.save(out / "indices.npy", a.indices)
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        with pa.ipc.new_file(str(out / "node_ids.arrow"), pa.schema([("id", ids.type)])) as w:
            w.write_table(pa.table({"id": ids}))
    else:
        np.save(out / "node_ids.npy", ids)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "num_nodes": int(n), "num_edges": int(a.nnz), "edges_read": int(e)}


def run_child(tool: str, inp: Path, out: Path, budget: str, string: bool, remap: str = "arrow") -> dict:
    """Spawn this script as a child for one side; returns its JSON (plus wait4's ru_maxrss)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", tool, "--input", str(inp),
           "--out", str(out), "--budget", budget, "--remap", remap] + (["--string"] if string else [])
    with tempfile.TemporaryFile("w+") as out_fh, tempfile.TemporaryFile("w+") as err_fh:
        proc = subprocess.Popen(cmd, stdout=out_fh, stderr=err_fh, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)     # rusage of this child alone
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_fh.seek(0)
        err_fh.seek(0)
        stdout, stderr = out_fh.read(), err_fh.read()
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    res = json.loads(stdout.strip().splitlines()[-1])
    res["maxrss_wait4"] = usage.ru_maxrss * 1024
    return res


def mem_available() -> int:
    from gstore.memory import available_memory_bytes

    return available_memory_bytes() or 0


def gstore_importable() -> str | None:
    try:
        from gstore.pipeline.ingest.ingest import ingest  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip this side
        return f"{type(exc).__name__}: {exc}"
    return None


# ---- driver --------------------------------------------------------------------------------------
def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def measure(tool: str, inp: Path, outdir: Path, edges: int, repeats: int, budget: str,
            string: bool, remap: str = "arrow") -> dict:
    runs = []
    for r in range(repeats):
        res = run_child(tool, inp, outdir / f"{tool}-{label(edges)}", budget, string, remap)
        if "error" in res:
            return res
        runs.append(res)
        print(f"    {tool:<8} run {r + 1}/{repeats}: {res['seconds']:.2f} s, peak RSS "
              f"{gib(res['peak_rss'])}, {res['num_nodes']:,} nodes, {res['num_edges']:,} edges",
              flush=True)
    best = dict(runs[0])
    best["seconds"] = statistics.median(x["seconds"] for x in runs)
    best["peak_rss"] = statistics.median(x["peak_rss"] for x in runs)
    best["repeats"] = repeats
    return best


def render(rows: list[dict]) -> str:
    head = (f"| {'edges':>6} | {'ids':<6} | {'tool':<8} | {'budget':<6} | {'seconds':>8} | "
            f"{'M edges/s':>9} | {'peak RSS':>10} | {'speed g/b':>9} | {'RSS g/b':>7} |")
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for row in rows:
        res = row["res"]
        if "error" in res or "skipped" in res:
            msg = res.get("skipped") or res.get("error")
            lines.append(f"| {row['size']:>6} | {row['ids']:<6} | {row['tool']:<8} | {row['budget']:<6} | "
                         f"skipped: {msg} |")
            continue
        ratio_t = ratio_m = ""
        base = row.get("base")
        if row["tool"] == "gstore" and base and "seconds" in base:
            ratio_t = f"{base['seconds'] / res['seconds']:.2f}x"
            ratio_m = f"{res['peak_rss'] / base['peak_rss']:.2f}x"
        rate = res["edges_read"] / res["seconds"] / 1e6
        lines.append(f"| {row['size']:>6} | {row['ids']:<6} | {row['tool']:<8} | {row['budget']:<6} | "
                     f"{res['seconds']:>8.2f} | {rate:>9.2f} | {gib(res['peak_rss']):>10} | "
                     f"{ratio_t:>9} | {ratio_m:>7} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1M,10M,60M", help="int-id edge counts")
    ap.add_argument("--string-size", default="10M", help="string-id edge count ('' to skip)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side below 60M edges (60M+: 1)")
    ap.add_argument("--budget", default="2GiB", help="gstore --memory-budget for the side-by-side runs")
    ap.add_argument("--big", action="store_true", help="also one gstore-only run at --big-edges")
    ap.add_argument("--big-edges", default="300M")
    ap.add_argument("--big-budget", default="1GiB")
    ap.add_argument("--data", type=Path, default=Path("/work/data/bench"))
    ap.add_argument("--remap", choices=["arrow", "unique"], default="arrow",
                    help="baseline int-id remap: Arrow dictionary_encode (hash, default) or "
                         "np.unique(return_inverse) (sort; 4-6x slower with numpy 2.4 here)")
    ap.add_argument("--md", type=Path, default=None, help="also append the table to this file")
    ap.add_argument("--child", choices=["gstore", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--string", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        res = child_gstore(args.input, args.out, args.budget, args.string) if args.child == "gstore" \
            else child_baseline(args.input, args.out, args.string, args.remap)
        res["peak_rss"] = vm_hwm()
        print(json.dumps(res))
        return

    args.data.mkdir(parents=True, exist_ok=True)
    outdir = args.data / "out"
    cases = [(parse_count(s), False) for s in args.sizes.split(",") if s.strip()]
    if args.string_size:
        cases.append((parse_count(args.string_size), True))
    gstore_skip = gstore_importable()
    if gstore_skip:
        print(f"gstore side skipped: {gstore_skip}")
    # warm numba caches and imports so the first timed run pays no compile time
    warm = int_edges_file(args.data, 20_000)
    for tool in ("gstore", "baseline"):
        if tool == "gstore" and gstore_skip:
            continue
        run_child(tool, warm, outdir / f"warm-{tool}", args.budget, False)
        run_child(tool, string_edges_file(args.data, 20_000), outdir / f"warm-{tool}", args.budget, True)

    rows = []
    for edges, string in cases:
        inp = string_edges_file(args.data, edges) if string else int_edges_file(args.data, edges)
        reps = 1 if edges >= BIG_REPEAT_THRESHOLD else args.repeats
        ids = "string" if string else "int"
        print(f"== {label(edges)} edges, {ids} ids: {inp} ({inp.stat().st_size / 2**30:.2f} GiB)", flush=True)
        need = BASELINE_BYTES_PER_EDGE * edges * (2 if string else 1)
        avail = mem_available()
        if need > avail * 0.9:
            base = {"skipped": f"needs ~{gib(need)}, MemAvailable {gib(avail)}"}
        else:
            base = measure("baseline", inp, outdir, edges, reps, args.budget, string, args.remap)
        g = {"skipped": gstore_skip} if gstore_skip else \
            measure("gstore", inp, outdir, edges, reps, args.budget, string)
        if "num_edges" in g and "num_edges" in base and \
                (g["num_edges"], g["num_nodes"]) != (base["num_edges"], base["num_nodes"]):
            print(f"  WARNING: outputs differ: gstore {g['num_nodes']} nodes {g['num_edges']} edges, "
                  f"baseline {base['num_nodes']} nodes {base['num_edges']} edges")
        rows.append({"size": label(edges), "ids": ids, "tool": "baseline", "budget": "-", "res": base})
        rows.append({"size": label(edges), "ids": ids, "tool": "gstore", "budget": args.budget, "res": g,
                     "base": base})
    if args.big and not gstore_skip:
        edges = parse_count(args.big_edges)
        inp = int_edges_file(args.data, edges)
        print(f"== big: {label(edges)} edges: {inp} ({inp.stat().st_size / 2**30:.2f} GiB)", flush=True)
        g = measure("gstore", inp, outdir, edges, 1, args.big_budget, False)
        rows.append({"size": label(edges), "ids": "int", "tool": "gstore", "budget": args.big_budget,
                     "res": g})
    table = render(rows) + f"\n\nbaseline int-id remap: {args.remap}; speed g/b = gstore edges/s / " \
        "baseline edges/s; RSS g/b = gstore peak RSS / baseline peak RSS"
    print()
    print(table)
    if args.md:
        with open(args.md, "a") as fh:
            fh.write(f"\n```\n$ {' '.join(sys.argv)}\n```\n\n{table}\n")


if __name__ == "__main__":
    main()
