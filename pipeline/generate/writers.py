"""Block-by-block writers for generated graphs: edges as csv/tsv/npy/parquet, nodes.csv, .npy rows.

Every writer writes to `NAME.partial` and renames it to NAME in `finish()`, so a killed run never
leaves a file that looks complete. Text is formatted by numba kernels into a reused uint8 buffer and
written by a background thread while the caller generates the next block (two buffers in turn), so
memory stays flat at a few blocks whatever the graph size.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gstore.errors import OptionError
from gstore.pipeline.generate.generate_kernels import format_int_pairs, format_node_rows

EDGE_FORMATS = ("csv", "tsv", "npy", "parquet")
EDGE_COLUMNS = ("source", "target")
NODE_HEADER = "id,label,split"
SPLIT_NAMES = ("train", "val", "test")
TEXT_PIECES = 64    # formatting work units per block (threads write disjoint pieces)
EDGE_DTYPES = ("int64", "int32", "auto")    # binary edge files (npy, parquet); text has no dtype


def edge_format_for(path: str | Path, fmt: str | None = None) -> str:
    """The edge format named by `fmt`, else by the file suffix (.csv, .tsv, .npy, .parquet)."""
    if fmt is None:
        fmt = Path(path).suffix.lstrip(".").lower()
        if fmt == "txt":
            fmt = "tsv"
    if fmt not in EDGE_FORMATS:
        raise OptionError(f"unknown edge output format {fmt!r} for {path}",
                          hint=f"use a file ending in one of .{', .'.join(EDGE_FORMATS)} or --format")
    return fmt


def edge_dtype_for(edge_dtype: str, max_id: int) -> np.dtype:
    """The integer dtype of binary edge columns: int32 halves the file where every id fits in it
    ('auto' picks it then, else int64); 'int32' with an id past 2^31 - 1 is refused, never wrapped."""
    if edge_dtype not in EDGE_DTYPES:
        raise OptionError(f"unknown --edge-dtype {edge_dtype!r}", hint=f"use one of {', '.join(EDGE_DTYPES)}")
    fits = int(max_id) <= np.iinfo(np.int32).max
    if edge_dtype == "int32" and not fits:
        raise OptionError(f"--edge-dtype int32 cannot hold node id {int(max_id):,} (> 2^31 - 1)",
                          hint="use --edge-dtype int64 (or auto)")
    return np.dtype(np.int32 if edge_dtype == "int32" or (edge_dtype == "auto" and fits) else np.int64)


def check_edge_dtype(fmt: str, edge_dtype: str, max_id: int) -> np.dtype:
    """edge_dtype_for, refusing a non-default dtype for text formats (they have none to choose)."""
    if fmt in ("csv", "tsv"):
        if edge_dtype != "int64":
            raise OptionError(f"--edge-dtype {edge_dtype} applies to npy and parquet edges, not {fmt}",
                              hint="drop --edge-dtype, or use --format npy")
        return np.dtype(np.int64)
    return edge_dtype_for(edge_dtype, max_id)


def max_pair_line_bytes(max_abs_value: int) -> int:
    """Upper bound on one formatted text line of two ints with |value| <= max_abs_value."""
    return 2 * (len(str(int(max_abs_value))) + 1) + 2


def check_output_files(paths: list[Path], force: bool) -> None:
    """Refuse to overwrite an existing output file without `force`, and anything that is not a
    regular file (a directory, a symlink) even with it: generate replaces only the files it names."""
    for path in paths:
        path = Path(path)
        if not os.path.lexists(path):
            continue
        if path.is_symlink() or not path.is_file():
            raise OptionError("output exists and is not a regular file; generate replaces only files",
                              path=path, hint="move it away or choose another -o")
        if not force:
            raise OptionError("output already exists", path=path,
                              hint="pass --force to replace it, or choose another -o")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class _BlockFile:
    """A file opened as NAME.partial with a one-thread background writer and two buffers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _partial(self.path)
        self._fh = open(self._tmp, "wb")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gstore-write")
        self._pending: list[Future | None] = [None, None]
        self._turn = 0
        self.bytes_written = 0

    def _next_slot(self) -> int:
        """Index of the buffer to fill next, once its previous write has finished."""
        slot = self._turn
        self._turn ^= 1
        fut = self._pending[slot]
        if fut is not None:
            fut.result()
            self._pending[slot] = None
        return slot

    def _submit(self, slot: int, view: memoryview) -> None:
        self.bytes_written += len(view)
        self._pending[slot] = self._pool.submit(self._fh.write, view)

    def _drain(self) -> None:
        for i, fut in enumerate(self._pending):
            if fut is not None:
                fut.result()
                self._pending[i] = None

    def finish(self) -> Path:
        self._drain()
        self._pool.shutdown()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._fh.close()
        finally:
            self._tmp.unlink(missing_ok=True)


class EdgeWriter:
    """Interface: `write(src, dst)` int64 blocks, then `finish() -> Path` (or `abort()`)."""

    path: Path
    bytes_written: int

    def write(self, src: np.ndarray, dst: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class TextEdgeWriter(_BlockFile, EdgeWriter):
    """csv (comma) or tsv (tab) lines "src<delim>dst", with a "source,target" header line."""

    def __init__(self, path: str | Path, *, block_edges: int, max_id: int, delimiter: str = ",",
                 header: bool = True) -> None:
        super().__init__(path)
        self.delim = np.uint8(ord(delimiter))
        line = max_pair_line_bytes(max_id)
        self._stride = -(-block_edges // TEXT_PIECES) * line
        self._bufs = [np.empty(TEXT_PIECES * self._stride, dtype=np.uint8) for _ in range(2)]
        self._lens = [np.zeros(TEXT_PIECES, dtype=np.int64) for _ in range(2)]
        self._block_edges = block_edges
        if header:
            text = (delimiter.join(EDGE_COLUMNS) + "\n").encode()
            self._fh.write(text)
            self.bytes_written += len(text)
        self._fh.flush()   # pieces go straight to the descriptor (os.writev) from here on

    def write(self, src: np.ndarray, dst: np.ndarray) -> None:
        if len(src) > self._block_edges:
            raise OptionError(f"block of {len(src)} edges exceeds the writer's {self._block_edges}")
        slot = self._next_slot()
        buf, lens = self._bufs[slot], self._lens[slot]
        format_int_pairs(src, dst, self.delim, buf, lens)
        mv = memoryview(buf)
        views = [mv[p * self._stride:p * self._stride + int(lens[p])] for p in range(TEXT_PIECES)]
        self.bytes_written += int(lens.sum())
        self._pending[slot] = self._pool.submit(_writev_all, self._fh.fileno(), views)


def _writev_all(fd: int, views: list[memoryview]) -> None:
    """os.writev until every byte is written (it may write less than asked)."""
    views = [v for v in views if len(v)]
    while views:
        done = os.writev(fd, views)
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


class NpyEdgeWriter(_BlockFile, EdgeWriter):
    """A .npy file of shape (num_edges, 2) int64 or int32 (columns source, target), written as raw
    blocks (the caller checked that every id fits the dtype: edge_dtype_for)."""

    def __init__(self, path: str | Path, *, block_edges: int, num_edges: int,
                 dtype: np.dtype = np.dtype(np.int64)) -> None:
        super().__init__(path)
        self.num_edges = num_edges
        self._rows = 0
        np.lib.format.write_array_header_1_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                       "fortran_order": False, "shape": (num_edges, 2)})
        self.bytes_written = self._fh.tell()
        self._bufs = [np.empty((block_edges, 2), dtype=dtype) for _ in range(2)]

    def write(self, src: np.ndarray, dst: np.ndarray) -> None:
        slot = self._next_slot()
        buf = self._bufs[slot][:len(src)]
        buf[:, 0] = src
        buf[:, 1] = dst
        self._rows += len(src)
        self._submit(slot, memoryview(buf.reshape(-1)).cast("B"))

    def finish(self) -> Path:
        if self._rows != self.num_edges:
            self.abort()
            raise OptionError(f"npy writer got {self._rows} edges, header says {self.num_edges}")
        return super().finish()


class ParquetEdgeWriter(EdgeWriter):
    """Parquet with int64 (or int32) columns source, target; one row group per block."""

    def __init__(self, path: str | Path, dtype: np.dtype = np.dtype(np.int64)) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _partial(self.path)
        self._type = pa.int32() if np.dtype(dtype) == np.int32 else pa.int64()
        self._schema = pa.schema([(EDGE_COLUMNS[0], self._type), (EDGE_COLUMNS[1], self._type)])
        self._writer = pq.ParquetWriter(str(self._tmp), self._schema)
        self.bytes_written = 0

    def write(self, src: np.ndarray, dst: np.ndarray) -> None:
        pa = self._pa
        table = pa.Table.from_arrays([pa.array(src, self._type), pa.array(dst, self._type)],
                                     schema=self._schema)
        self._writer.write_table(table, row_group_size=len(src))

    def finish(self) -> Path:
        self._writer.close()
        self.bytes_written = self._tmp.stat().st_size
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)


def open_edge_writer(path: str | Path, fmt: str, *, block_edges: int, num_edges: int, max_id: int,
                     header: bool = True, dtype: np.dtype = np.dtype(np.int64)) -> EdgeWriter:
    """An EdgeWriter for `fmt` (one of EDGE_FORMATS); `dtype`: the columns of npy / parquet."""
    if fmt in ("csv", "tsv"):
        return TextEdgeWriter(path, block_edges=block_edges, max_id=max_id,
                              delimiter="," if fmt == "csv" else "\t", header=header)
    if fmt == "npy":
        return NpyEdgeWriter(path, block_edges=block_edges, num_edges=num_edges, dtype=dtype)
    if fmt == "parquet":
        return ParquetEdgeWriter(path, dtype)
    raise OptionError(f"unknown edge format {fmt!r}", hint=f"use one of {', '.join(EDGE_FORMATS)}")


class NodesCsvWriter(_BlockFile):
    """nodes.csv lines "id,c<label>,<train|val|test>" under the header "id,label,split"."""

    def __init__(self, path: str | Path, *, block_rows: int, max_id: int, max_label: int) -> None:
        super().__init__(path)
        width = max(len(s) for s in SPLIT_NAMES)
        self._names = np.zeros((len(SPLIT_NAMES), width), dtype=np.uint8)
        for i, s in enumerate(SPLIT_NAMES):
            self._names[i, :len(s)] = np.frombuffer(s.encode(), dtype=np.uint8)
        self._lens = np.array([len(s) for s in SPLIT_NAMES], dtype=np.int64)
        line = len(str(int(max_id))) + len(str(int(max_label))) + width + 4
        self._bufs = [np.empty(block_rows * line, dtype=np.uint8) for _ in range(2)]
        text = (NODE_HEADER + "\n").encode()
        self._fh.write(text)
        self.bytes_written += len(text)

    def write(self, ids: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> None:
        slot = self._next_slot()
        buf = self._bufs[slot]
        n = int(format_node_rows(ids, labels, splits, self._names, self._lens, buf))
        self._submit(slot, memoryview(buf)[:n])


class NpyRowsWriter(_BlockFile):
    """A .npy file of known shape (rows, ...) written row block by row block."""

    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype: np.dtype | str, *,
                 block_rows: int) -> None:
        super().__init__(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._rows = 0
        np.lib.format.write_array_header_1_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": self.shape})
        self.bytes_written = self._fh.tell()
        self._bufs = [np.empty((block_rows,) + self.shape[1:], dtype=self.dtype) for _ in range(2)]

    def write(self, block: np.ndarray) -> None:
        """Copy a block of rows (at most block_rows) into a free buffer and queue its write."""
        if block.shape[1:] != self.shape[1:] or len(block) > len(self._bufs[0]):
            raise OptionError(f"block {block.shape} does not fit rows of {self.shape}")
        slot = self._next_slot()
        buf = self._bufs[slot][:len(block)]
        buf[...] = block
        self._rows += len(block)
        self._submit(slot, memoryview(buf.reshape(-1)).cast("B"))

    def finish(self) -> Path:
        if self._rows != self.shape[0]:
            self.abort()
            raise OptionError(f"npy writer got {self._rows} rows, header says {self.shape[0]}")
        return super().finish()
