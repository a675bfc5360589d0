"""Node data joined onto dense ids: `--nodes` (ids, label, split), `--labels`, `--features`, splits.

Everything streams: rows are mapped to dense ids with the remap table and handed to a
RowDistributor (row_scatter.py: node tables list nodes in any order, so rows are grouped by id range
into spill buckets and written once, in order), so memory stays O(budget) plus a 1-bit-per-node
`seen` set, and no step is a Python call per node.

Rules (docs/ingest.md): label strings that are all non-negative integers are their own class index
(label_names "0".."C-1"); other labels are classes in sorted string order. --labels overrides labels
from --nodes. Splits come from the --nodes split column when it names any; otherwise
`--split random:TR,VA,TE` draws each candidate node (labelled nodes when there are labels, else all)
from a generator seeded by --seed, in dense id order.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gstore.builder import StoreBuilder
from gstore.errors import InputError, OptionError
from gstore.pipeline.ingest import id_remap_kernels as K
from gstore.pipeline.ingest.chunks import StringColumn
from gstore.pipeline.ingest.id_remap import IdTable
from gstore.pipeline.ingest.row_scatter import RowDistributor
from gstore.pipeline.ingest.spill_files import RawArrayFile, read_into
from gstore.pipeline.ingest.string_ids import hash_column
from gstore.set_kernels import mark_seen
from gstore.progress import Progress

SPLIT_NAMES = ("train", "val", "test")
_SPLIT_CODE = {"": 0, "train": 1, "val": 2, "test": 3}
_BLOCK = 1 << 20


@dataclass
class NodeDataOptions:
    nodes: str | None = None
    features: str | None = None
    labels: str | None = None
    feature_dtype: str = "float32"
    split: str | None = None
    seed: int = 0
    allow_nan: bool = False
    budget: int = 2 << 30


@dataclass
class NodeDataResult:
    feature_dim: int | None = None
    feature_dtype: str | None = None
    label_names: list[str] | None = None
    split_sizes: dict[str, int] = field(default_factory=dict)


def parse_split_spec(text: str) -> tuple[float, float, float]:
    """'random:0.8,0.1,0.1' -> (0.8, 0.1, 0.1); fractions >= 0 summing to at most 1."""
    kind, _, rest = text.partition(":")
    try:
        fr = tuple(float(x) for x in rest.split(","))
    except ValueError:
        fr = ()
    # `not 0 <= f`, not `f < 0`: NaN fails every comparison and would pass a negated one
    if kind != "random" or len(fr) != 3 or not all(0 <= f <= 1 for f in fr) or not sum(fr) <= 1 + 1e-9:
        raise OptionError(f"cannot read --split {text!r}", hint="use random:TRAIN,VAL,TEST e.g. random:0.8,0.1,0.1")
    return fr  # type: ignore[return-value]


def _keys(ids) -> np.ndarray:
    return hash_column(ids) if isinstance(ids, StringColumn) else np.ascontiguousarray(ids, dtype=np.int64)


def _show(ids, i: int) -> str:
    if isinstance(ids, StringColumn):
        return repr(bytes(ids.utf8[ids.offsets[i]:ids.offsets[i + 1]]).decode("utf-8", "replace"))
    return str(int(ids[i]))


def _node_chunks(path: str, id_type: str):
    from gstore.pipeline.ingest.node_tables import iter_node_chunks

    return iter_node_chunks(path, id_type)


def collect_node_ids(path: str, id_type: str, collector, progress: Progress) -> int:
    """Add the --nodes ids to the id set (pass 1); returns the number of rows."""
    from gstore.pipeline.ingest.string_ids import StringIdCollector

    rows = 0
    with progress.phase("read nodes", unit="rows", unit_scale=True) as bar:
        for ch in _node_chunks(path, id_type):
            keys = _keys(ch.ids)
            if isinstance(collector, StringIdCollector):
                if not isinstance(ch.ids, StringColumn):
                    from gstore.pipeline.ingest.arrow_columns import ints_to_string_column

                    ch.ids = ints_to_string_column(np.asarray(ch.ids))
                    keys = hash_column(ch.ids)
                collector.add(ch.ids, keys)
            else:
                if isinstance(ch.ids, StringColumn):
                    raise InputError("node table has string ids but the edges have integer ids",
                                     path=path, line=ch.first_line, hint="pass --id-type string")
                collector.add(keys)
            rows += len(ch)
            bar.advance(len(ch))
    return rows


def _lookup(table: IdTable, ids, path: str, first_line: int, what: str) -> np.ndarray:
    dense = table.lookup(_keys(ids))
    bad = np.flatnonzero(dense < 0)
    if len(bad):
        i = int(bad[0])
        raise InputError(f"{what} id {_show(ids, i)} is not a node of the graph", path=path,
                         line=first_line + i, hint="every id must appear in the edges or in --nodes")
    return dense


def _check_dups(seen: np.ndarray, dense: np.ndarray, ids, path: str, first_line: int, what: str) -> None:
    i = mark_seen(seen, dense)
    if i >= 0:
        raise InputError(f"duplicate {what} row for node id {_show(ids, i)}", path=path,
                         line=first_line + i, hint="each node may appear once")


def scatter_rows(target: RowDistributor, dense: np.ndarray, values: np.ndarray) -> None:
    """Rows `values` (len(dense), ...) to dense ids `dense` (int64, distinct) of `target`."""
    target.add(dense, values)


def _row_cap(budget: int) -> int:
    """Bytes of one distribution bucket: labels, split codes and features share the budget."""
    return max(1 << 16, int(budget) // 8)


class _PwriteFile:
    """A fixed-size scratch file of N rows with positional writes and block reads."""

    def __init__(self, path: Path, n: int, dtype) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.n = n
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, n * self.dtype.itemsize)

    def write_rows(self, start: int, block: np.ndarray) -> None:
        os.pwrite(self.fd, np.ascontiguousarray(block, dtype=self.dtype).tobytes(), int(start) * self.dtype.itemsize)

    def read(self, start: int, n: int) -> np.ndarray:
        out = np.empty(n, dtype=self.dtype)
        read_into(self.fd, out, int(start) * self.dtype.itemsize)
        return out

    def close(self) -> None:
        os.close(self.fd)
        os.unlink(self.path)


class _LabelCoder:
    """Raw labels -> class index; fit on every label value first (see module doc)."""

    def __init__(self) -> None:
        self.values: set = set()
        self.names: list[str] | None = None
        self.index: dict = {}
        self.integer = True

    def fit(self, labels: np.ndarray, missing: np.ndarray) -> None:
        vals = labels[~missing]
        if vals.dtype == object:
            self.values.update(pc.unique(_label_strings(vals)).to_pylist())
        else:
            self.values.update(str(int(x)) for x in np.unique(vals))

    def finalize(self) -> None:
        vals = sorted(self.values)
        self.integer = all(v.isdigit() for v in vals)
        if self.integer:
            top = max((int(v) for v in vals), default=-1)
            self.names = [str(i) for i in range(top + 1)]
            self.index = {v: int(v) for v in vals}
        else:
            self.names = vals
            self.index = {v: i for i, v in enumerate(vals)}

    def encode(self, labels: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """int64 class index per row (-1 where missing): a hash pass (strings) or a numeric unique
        over the chunk, then a lookup per distinct value, never a Python call per row."""
        out = np.full(len(labels), -1, dtype=np.int64)
        keep = np.flatnonzero(~missing)
        if len(keep):
            vals = labels[keep]
            if vals.dtype == object:
                enc = _label_strings(vals).dictionary_encode()
                uniq = enc.dictionary.to_pylist()
                inv = enc.indices.to_numpy(zero_copy_only=False)
            else:
                values, inv = np.unique(vals, return_inverse=True)
                uniq = [str(int(x)) for x in values.tolist()]
            codes = np.array([self.index[u] for u in uniq], dtype=np.int64)
            out[keep] = codes[inv]
        return out


def _label_strings(vals: np.ndarray) -> pa.Array:
    """object (n,) label values as an arrow string array (str() of anything that is not a str)."""
    try:
        return pa.array(vals, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(vals.astype(str), type=pa.string())


def write_node_data(builder: StoreBuilder, table: IdTable, id_type: str, opts: NodeDataOptions,
                    progress: Progress) -> NodeDataResult:
    """Write labels, features and splits for the dense nodes of `table`."""
    n = table.num_nodes
    res = NodeDataResult()
    spill = builder.spill_dir
    coder = _LabelCoder()
    has_labels = False
    for path in (opts.nodes, opts.labels):
        if path is None:
            continue
        for ch in _node_chunks(path, id_type):
            if ch.labels is not None:
                has_labels = True
                coder.fit(ch.labels, ch.label_missing)
    if opts.labels and not has_labels:
        raise InputError("--labels file has no label column", path=opts.labels,
                         hint="expected columns id,label")
    codes = _PwriteFile(spill / "split_codes.bin", n, np.uint8)
    cap = _row_cap(opts.budget)
    code_rows = RowDistributor(codes.write_rows, n, (), np.uint8, cap, spill, "split-codes")
    row_dense = RawArrayFile(spill / "node_rows.raw", np.int64) if opts.nodes else None
    label_w = label_rows = None
    if has_labels:
        coder.finalize()
        label_w = builder.array_writer("labels", (n,), np.int64)
        label_rows = RowDistributor(label_w.write_rows, n, (), np.int64, cap, spill, "labels", fill=-1)
    any_split = False
    with progress.phase("node table", unit="rows", unit_scale=True) if opts.nodes or opts.labels \
            else nullcontext(None) as bar:
        if opts.nodes:
            seen = np.zeros((n + 63) // 64, dtype=np.uint64)
            for ch in _node_chunks(opts.nodes, id_type):
                dense = _lookup(table, ch.ids, ch.path, ch.first_line, "node")
                _check_dups(seen, dense, ch.ids, ch.path, ch.first_line, "--nodes")
                row_dense.append(dense)
                if ch.labels is not None:
                    scatter_rows(label_rows, dense, coder.encode(ch.labels, ch.label_missing))
                if ch.splits is not None:
                    c = split_codes(ch.splits)
                    any_split = any_split or bool(c.any())
                    scatter_rows(code_rows, dense, c)
                bar.advance(len(ch))
        if opts.labels:
            if label_rows is not None:
                label_rows.override()
            seen = np.zeros((n + 63) // 64, dtype=np.uint64)
            for ch in _node_chunks(opts.labels, id_type):
                dense = _lookup(table, ch.ids, ch.path, ch.first_line, "--labels")
                _check_dups(seen, dense, ch.ids, ch.path, ch.first_line, "--labels")
                scatter_rows(label_rows, dense, coder.encode(ch.labels, ch.label_missing))
                bar.advance(len(ch))
    code_rows.finish()
    if label_w is not None:
        label_rows.finish()
        builder.add(label_w.finish())
        res.label_names = coder.names
    if opts.features:
        res.feature_dim, res.feature_dtype = _write_features(builder, table, id_type, opts, row_dense, progress)
    if row_dense is not None:
        row_dense.close()
    if not any_split and opts.split is not None:
        _random_split_codes(codes, n, parse_split_spec(opts.split), opts.seed,
                            builder.tmp / "labels" if has_labels else None, builder)
        any_split = True
    if any_split:
        res.split_sizes = _write_splits(builder, codes, n)
    codes.close()
    return res


def _write_features(builder: StoreBuilder, table: IdTable, id_type: str, opts: NodeDataOptions,
                    row_dense: RawArrayFile | None, progress: Progress) -> tuple[int, str]:
    from gstore.pipeline.ingest.node_tables import feature_info, iter_feature_chunks

    path = opts.features
    n = table.num_nodes
    info = feature_info(path)
    dtype = np.dtype(opts.feature_dtype)
    rows_per_chunk = int(max(1024, min(1 << 22, opts.budget // (16 * max(1, info.dim * 4)))))
    if not info.keyed:
        expect = row_dense.rows if row_dense is not None else n
        what = "--nodes rows" if row_dense is not None else "nodes"
        if info.num_rows != expect:
            raise InputError(f"feature array has {info.num_rows} rows but there are {expect} {what}",
                             path=path, hint="features.npy must have one row per --nodes row, in order")
        if row_dense is None and not table.identity:
            # rows would be matched to nodes by rank of the sorted ids, almost never the file's order
            raise InputError("a feature array without ids needs --nodes: the node ids are not 0..N-1, so "
                             "nothing says which row belongs to which node", path=path,
                             hint="pass --nodes with the ids in the array's row order, or a CSV/parquet "
                                  "feature table keyed by id")
        if row_dense is not None and row_dense.rows != n:
            raise InputError(f"--nodes lists {row_dense.rows} nodes but the graph has {n}; features "
                             "would be missing for nodes that appear only in the edges", path=path,
                             hint="list every node in --nodes")
    w = builder.array_writer("features", (n, info.dim), dtype)
    rows = None   # a RowDistributor once rows arrive out of order (by id, or in --nodes order)
    seen = np.zeros((n + 63) // 64, dtype=np.uint64)
    covered = 0
    with progress.phase("features", total=info.num_rows, unit="rows", unit_scale=True) as bar:
        for ch in iter_feature_chunks(path, id_type, rows_per_chunk, check_values=False):
            values = ch.values.astype(dtype, copy=False)
            if not opts.allow_nan:
                ok = np.isfinite(values).all(axis=1)
                if not ok.all():
                    raise InputError("feature value is NaN or infinite" +
                                     (" after casting to float16" if dtype == np.float16 else ""),
                                     path=ch.path, line=ch.first_line + int(np.argmin(ok)),
                                     hint="fix the value or pass --allow-nan")
            if ch.ids is not None or row_dense is not None:
                if rows is None:
                    rows = RowDistributor(w.write_rows, n, (info.dim,), dtype, _row_cap(opts.budget),
                                          builder.spill_dir, "features")
                if ch.ids is not None:
                    dense = _lookup(table, ch.ids, ch.path, ch.first_line, "feature")
                    _check_dups(seen, dense, ch.ids, ch.path, ch.first_line, "feature")
                else:
                    dense = np.empty(len(ch), dtype=np.int64)
                    read_into(row_dense._fd, dense, ch.row_start * 8)
                scatter_rows(rows, dense, values)
            else:
                w.write_rows(ch.row_start, values)
            covered += len(ch)
            bar.advance(len(ch))
    if info.keyed and covered != n:
        if rows is not None:
            rows.abort()
        w.abort()
        raise InputError(f"features cover {covered} of {n} nodes", path=path,
                         hint="give exactly one feature row per node")
    if rows is not None:
        rows.finish()
    builder.add(w.finish())
    return info.dim, dtype.name


def split_codes(splits: np.ndarray) -> np.ndarray:
    """uint8 codes (0 none, 1 train, 2 val, 3 test) of normalised split names (object (n,))."""
    out = np.zeros(len(splits), dtype=np.uint8)
    for name, code in _SPLIT_CODE.items():
        if code:
            out[splits == name] = code
    return out


def _random_split_codes(codes: _PwriteFile, n: int, fractions: tuple[float, float, float], seed: int,
                        labels_dir: Path | None, builder: StoreBuilder) -> None:
    """Codes 1/2/3 for train/val/test drawn per candidate node in dense order (deterministic)."""
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(fractions)
    labels = None
    if labels_dir is not None:
        from gstore.shard_array import open_array

        labels = open_array(builder.tmp, builder.records["labels"])
    for s in range(0, n, _BLOCK):
        k = min(_BLOCK, n - s)
        u = rng.random(k)
        c = np.searchsorted(cuts, u, side="right").astype(np.uint8) + 1
        c[c > 3] = 0
        if labels is not None:
            c[np.asarray(labels[s:s + k]) < 0] = 0
        codes.write_rows(s, c)


def _write_splits(builder: StoreBuilder, codes: _PwriteFile, n: int) -> dict[str, int]:
    outs = {name: RawArrayFile(builder.spill_dir / f"split_{name}.raw", np.int64) for name in SPLIT_NAMES}
    for s in range(0, n, _BLOCK):
        c = codes.read(s, min(_BLOCK, n - s))
        for j, name in enumerate(SPLIT_NAMES):
            outs[name].append(np.flatnonzero(c == j + 1) + s)
    sizes = {}
    for name, raw in outs.items():
        raw.copy_into_store(builder, f"splits/{name}")
        sizes[name] = raw.rows
        raw.close()
    return sizes
