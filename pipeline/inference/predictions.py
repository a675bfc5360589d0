"""Predictions of every node from the layer-wise output, into a run directory, chunk by chunk.

Layout under `out_dir` (docs/training.md):
    predictions/class.npy   int32 (N,)    predicted class per dense node id
    predictions/score.npy   float32 (N,)  softmax probability of that class
    predictions/positive.npy float32 (N,) probability of class 1 (two-class tasks only)
    predictions.parquet     node_id (the original id: int64 or string), dense_id, class, label
                            (the class name, when the store has label names), score
The .npy files are written through memory maps and the table in row groups, so RSS stays at one
chunk of rows at any N. Split metrics come from the written classes and scores
(gstore.train.metrics.split_metrics).
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

ROWS_PER_CHUNK = 1 << 20


@dataclass
class PredictionsRecord:
    """Where the predictions went: paths relative to the run directory."""

    num_nodes: int
    num_classes: int
    class_path: str = "predictions/class.npy"
    score_path: str = "predictions/score.npy"
    positive_path: str | None = None
    table_path: str = "predictions.parquet"
    metrics: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _chunk_rows(num_classes: int, budget_bytes: int) -> int:
    # a chunk holds its logits and softmax in float32 plus a few int/float columns
    return int(max(1024, min(ROWS_PER_CHUNK, budget_bytes // (16 * max(1, num_classes) + 64))))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(out_dir: Path, rels: list[str]) -> list[Path]:
    """Delete `<rel>.<pid>.tmp` / `.<rel>.<pid>.tmp` files a killed writer left (its pid is gone).

    Only names this module makes are matched, and a live pid's files are kept (a concurrent writer).
    Returns the paths removed.
    """
    removed = []
    for rel in rels:
        path = out_dir / rel
        pattern = re.compile(rf"^\.?{re.escape(path.name)}\.(\d+)\.tmp$")
        if not path.parent.is_dir():
            continue
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if m and p.is_file() and not p.is_symlink() and not _pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def write_predictions(store, logits: np.ndarray, out_dir: Path, *, budget_bytes: int = 256 << 20
                      ) -> PredictionsRecord:
    """Write class/score arrays and the parquet table for `logits` (float (N, C), e.g. a memmap)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, c = int(logits.shape[0]), int(logits.shape[1])
    rec = PredictionsRecord(num_nodes=n, num_classes=c,
                            positive_path="predictions/positive.npy" if c == 2 else None)
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    # written under temp names and renamed with the table: a kill or a full disk mid-write leaves
    # the earlier predictions whole, never new classes beside an old table
    finals = [rec.class_path, rec.score_path] + ([rec.positive_path] if rec.positive_path else [])
    remove_stale_temps(out_dir, finals + ["predictions/positive.npy", rec.table_path])
    tmps = {rel: out_dir / f"{rel}.{os.getpid()}.tmp" for rel in finals}
    cls = np.lib.format.open_memmap(tmps[rec.class_path], "w+", np.int32, (n,))
    score = np.lib.format.open_memmap(tmps[rec.score_path], "w+", np.float32, (n,))
    pos = (np.lib.format.open_memmap(tmps[rec.positive_path], "w+", np.float32, (n,))
           if rec.positive_path else None)
    names = store.label_names
    if names:
        name_dict = pa.array([str(x) for x in names], pa.string())
    step = _chunk_rows(c, budget_bytes)
    tmp_table = out_dir / f".{rec.table_path}.{os.getpid()}.tmp"
    writer = None
    try:
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            block = torch.from_numpy(np.array(logits[lo:hi], dtype=np.float32))  # a writable copy
            prob = torch.softmax(block, dim=1)
            top, arg = prob.max(dim=1)
            chunk_cls, chunk_score = arg.numpy().astype(np.int32), top.numpy()
            cls[lo:hi], score[lo:hi] = chunk_cls, chunk_score
            if pos is not None:
                pos[lo:hi] = prob[:, 1].numpy()
            cols = {"node_id": _node_ids(store, lo, hi),
                    "dense_id": pa.array(np.arange(lo, hi, dtype=np.int64)),
                    "class": pa.array(chunk_cls)}
            if names:
                cols["label"] = pa.DictionaryArray.from_arrays(cols["class"], name_dict)
            cols["score"] = pa.array(chunk_score)
            table = pa.table(cols)
            if writer is None:
                writer = pq.ParquetWriter(tmp_table, table.schema)
            writer.write_table(table)
        if writer is None:                    # an empty graph: still a readable, empty table
            writer = pq.ParquetWriter(tmp_table, pa.schema([("node_id", pa.int64()), ("dense_id", pa.int64()),
                                                           ("class", pa.int32()), ("score", pa.float32())]))
        writer.close()
        writer = None
        for a in (cls, score, pos):
            if a is not None:
                a.flush()
        for rel, tmp in tmps.items():
            os.replace(tmp, out_dir / rel)
        os.replace(tmp_table, out_dir / rec.table_path)
    finally:
        if writer is not None:
            writer.close()
        del cls, score, pos
        tmp_table.unlink(missing_ok=True)
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    return rec


def _node_ids(store, lo: int, hi: int):
    """Original ids of dense nodes [lo, hi) as an Arrow array (strings straight from the store's
    offsets/bytes buffers: no Python object per node)."""
    import pyarrow as pa

    ids = store.node_ids
    if isinstance(ids, np.ndarray):
        return pa.array(np.asarray(ids[lo:hi], dtype=np.int64))
    offsets = np.asarray(ids.offsets[lo:hi + 1], dtype=np.int64)
    data = np.asarray(ids.data[offsets[0]:offsets[-1]])
    return pa.LargeStringArray.from_buffers(hi - lo, pa.py_buffer(offsets - offsets[0]),
                                            pa.py_buffer(data))


def record_predictions(store_path: Path, name: str, run_dir: Path, rec: PredictionsRecord, *,
                       params: dict | None = None) -> str:
    """Add a run's predictions to the store as the derived group `name` (arrays `class` int32 (N,)
    and `score` float32 (N,), plus `positive` for two classes) through the store update transaction
    (gstore/store_update.py): written beside the store's arrays, the manifest switched last, a group
    of that name replaced. Returns the group's key ("<name>")."""
    from gstore.store_update import StoreUpdate

    roles = {"class": rec.class_path, "score": rec.score_path}
    if rec.positive_path:
        roles["positive"] = rec.positive_path
    with StoreUpdate(store_path, f"derived/{name}", purpose=f"predictions {name}") as up:
        for role, rel in roles.items():
            src = np.load(run_dir / rel, mmap_mode="r")
            w = up.array_writer(role, src.shape, src.dtype)
            for lo in range(0, len(src), ROWS_PER_CHUNK):
                w.append(np.asarray(src[lo:lo + ROWS_PER_CHUNK]))
            up.add(w.finish())
        up.commit_derived("predictions", {"run_dir": str(Path(run_dir).resolve()), **(params or {})})
    return name
