"""Run one stage of the scale chain as a child process and measure it (bench/scale.sh calls this).

Usage:
    python bench/scale_measure.py --stage ingest --out stages.jsonl [--watch DIR]... -- CMD ARGS...

Measures, for the child's whole process tree (threads share one /proc entry; torchrun-style children
are found through /proc/PID/task/*/children):
  wall_s            wall-clock time of the command
  peak_rss_bytes    ru_maxrss of the child (wait4): the largest VmRSS any one process reached, mapped
                    file pages (the store's CSR and features) included
  peak_anon_bytes   the largest sum over the tree of RssAnon (memory the processes own: heap, numpy
                    buffers, torch tensors), sampled every --interval s; mapped store pages, which the
                    kernel can drop and re-read, are not in it. This is the number the 4 GiB goal reads.
  peak_file_bytes   the largest sum of RssFile (mapped file pages resident at one time), same sampling
  write_bytes       bytes the tree caused to be written to storage (/proc/PID/io write_bytes, the
                    last value seen for every process, summed)
  disk_delta_bytes  allocated bytes under the --watch directories after minus before (du)
--pty-log FILE gives the command's stderr a pseudo-terminal copied to FILE, so its tqdm bars are
drawn (rate and ETA of a long stage, read while it runs to project it); without it stderr is
inherited. The command's stdout is kept in --stdout (a stage run with --json leaves its result there) and one
JSON line per stage is appended to --out. Exit status: the command's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def du_bytes(path: str) -> int:
    """Allocated bytes (st_blocks * 512) of every file under `path` (sparse files count what they hold)."""
    total = 0
    p = Path(path)
    if not p.exists():
        return 0
    if p.is_file():
        return p.stat().st_blocks * 512
    for root, _dirs, files in os.walk(p):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def _status_kib(pid: int, keys: tuple[str, ...]) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                k = line.split(":", 1)[0]
                if k in keys:
                    out[k] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def _write_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/io") as fh:
            for line in fh:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _tree(pid: int) -> list[int]:
    """pid and its descendants (children of every thread)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _copy_pty(master: int, path: str) -> None:
    with open(path, "ab") as fh:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the child closed the terminal
                break
            if not data:
                break
            fh.write(data)
            fh.flush()
    os.close(master)


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_anon = self.peak_file = self.peak_tree_rss = 0
        self.writes: dict[int, int] = {}
        self.stop = threading.Event()

    def sample(self) -> None:
        anon = file = rss = 0
        for p in _tree(self.pid):
            st = _status_kib(p, ("RssAnon", "RssFile", "VmRSS"))
            anon += st.get("RssAnon", 0)
            file += st.get("RssFile", 0)
            rss += st.get("VmRSS", 0)
            wb = _write_bytes(p)
            if wb is not None:
                self.writes[p] = max(wb, self.writes.get(p, 0))
        self.peak_anon = max(self.peak_anon, anon)
        self.peak_file = max(self.peak_file, file)
        self.peak_tree_rss = max(self.peak_tree_rss, rss)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", required=True)
    ap.add_argument("--out", required=True, help="JSON lines file a record per stage is appended to")
    ap.add_argument("--watch", action="append", default=[], help="directory whose du delta is reported")
    ap.add_argument("--stdout", default=None, help="file for the command's stdout")
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--pty-log", default=None, help="stderr on a pseudo-terminal, copied to this file")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no command after --")
    before = {w: du_bytes(w) for w in args.watch}
    out_fh = open(args.stdout, "wb") if args.stdout else subprocess.DEVNULL
    t0 = time.perf_counter()
    err, copier = None, None
    if args.pty_log:
        import pty

        master, slave = pty.openpty()
        err = slave
        copier = threading.Thread(target=_copy_pty, args=(master, args.pty_log), daemon=True)
    proc = subprocess.Popen(cmd, stdout=out_fh, stderr=err)
    if copier is not None:
        os.close(err)
        copier.start()
    s = Sampler(proc.pid, args.interval)
    s.start()
    # wait4 reaps the child and gives its rusage; sample the tree until it exits
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    s.stop.set()
    s.join()
    if copier is not None:
        copier.join(5.0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if args.stdout:
        out_fh.close()
    rec = {"stage": args.stage, "command": cmd, "rc": proc.returncode, "wall_s": round(wall, 2),
           "peak_rss_bytes": ru.ru_maxrss * 1024, "peak_anon_bytes": s.peak_anon,
           "peak_file_bytes": s.peak_file, "write_bytes": sum(s.writes.values()),
           "disk_delta_bytes": sum(du_bytes(w) - b for w, b in before.items()),
           "user_s": round(ru.ru_utime, 1), "sys_s": round(ru.ru_stime, 1)}
    with open(args.out, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    gib = 1 << 30
    print(f"[{args.stage}] rc {rec['rc']}, {wall:.1f} s, peak RSS {rec['peak_rss_bytes'] / gib:.2f} GiB, "
          f"peak anon {s.peak_anon / gib:.2f} GiB, written {rec['write_bytes'] / gib:.2f} GiB, "
          f"disk +{rec['disk_delta_bytes'] / gib:.2f} GiB", file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
