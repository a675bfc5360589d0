"""Single-shard, uncompressed zarr v3 arrays whose data region is one contiguous, memory-mappable run.

Each array is a zarr v3 array whose one shard (`c/0` or `c/0/0`) holds every inner chunk, uncompressed
and in C order, followed by the shard index (`(offset, nbytes)` uint64 per chunk plus its crc32c).
zarr-python reads it like any sharded array, slicing chunk by chunk; gstore memory-maps bytes
`[0, rows * row_bytes)` of the shard file and hands numpy views to numba with no copy. The shard's row
count is padded up to a whole number of chunks (zarr v3 stores edge chunks at full size).

Integrity: the manifest record carries a CRC32C per 4 MiB block of the data region (gstore/block_crc.py),
checked in full by `gstore verify`, and a cheap checksum of the shard index and the region's ends,
checked on every open.

We write the shard ourselves rather than through zarr's sharding codec: zarr rewrites a whole shard on
every partial write, which would make streaming a billion-edge array quadratic.
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gstore.block_crc import (BLOCK_BYTES, BlockHasher, encode_crcs, file_block_crcs, num_blocks,
                              valid_block_bytes)
from gstore.errors import StoreError

ZARR_JSON = "zarr.json"
_INDEX_ENTRY_BYTES = 16
_CRC_BYTES = 4
_SAMPLE_BYTES = 1 << 16
DEFAULT_CHUNK_BYTES = 4 << 20
_DTYPES = {"int8", "uint8", "int16", "int32", "int64", "uint32", "uint64", "float16", "float32",
           "float64", "bool"}


@dataclass(frozen=True)
class ArrayRecord:
    """What the manifest keeps about one array: enough to open it and to check it cheaply."""

    name: str                # path inside the store, e.g. "indices" or "splits/train"
    shape: tuple[int, ...]
    dtype: str               # numpy dtype name, little-endian
    chunk_rows: int          # rows per inner zarr chunk
    data_bytes: int          # bytes of the padded data region (file size minus index)
    checksum: str            # crc32 over the shard index and the data region's first/last 64 KiB
    block_bytes: int = 0     # size of the checksummed blocks of the data region (0: none recorded)
    # base64 of uint32 little-endian CRC32C per block of [0, data_bytes); None in format-v1 stores
    block_crc32c: str | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        if self.block_crc32c is None:
            del d["block_bytes"], d["block_crc32c"]
        return d

    @staticmethod
    def from_json(d: dict) -> "ArrayRecord":
        """Parse a record; a field of the wrong type or out of range (a hand-edited or damaged
        manifest) is a ValueError naming it, never a crash later in whatever reads the array."""
        if not isinstance(d, dict):
            raise ValueError(f"array record must be an object, got {type(d).__name__}")
        name = d.get("name")
        if not isinstance(name, str) or any(p in ("", ".", "..") or "\\" in p for p in name.split("/")):
            # names become paths under the store: read by open and verify, written by a rebuild
            raise ValueError(f"array {name!r}: name is not a relative path inside the store (like 'splits/train')")

        def count(key: str, lo: int, value=None) -> int:
            v = d.get(key) if value is None else value
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < 2**62:
                raise ValueError(f"{name}.{key} must be an integer >= {lo}, got {v!r}")
            return v

        shape = d.get("shape")
        if not isinstance(shape, list) or not shape:
            raise ValueError(f"{name}.shape must be a non-empty list, got {shape!r}")
        shape_t = tuple(count("shape", 0, s) for s in shape)
        try:
            dtype = np.dtype(d.get("dtype"))
        except (TypeError, ValueError):
            dtype = None
        if dtype is None or not isinstance(d.get("dtype"), str) or dtype.kind not in "biuf":
            raise ValueError(f"{name}.dtype {d.get('dtype')!r} is not a numeric dtype")
        crcs = d.get("block_crc32c")
        if crcs is not None and not isinstance(crcs, str):
            raise ValueError(f"block_crc32c of {name!r} must be a base64 string")
        checksum = d.get("checksum")
        if not isinstance(checksum, str):
            raise ValueError(f"{name}.checksum must be a string, got {checksum!r}")
        rec = ArrayRecord(name=name, shape=shape_t, dtype=d["dtype"], chunk_rows=count("chunk_rows", 1),
                          data_bytes=count("data_bytes", 0), checksum=checksum,
                          # any integer here: verify reports a bad block size as a problem
                          # of that array (block_crc.valid_block_bytes), open refuses it
                          block_bytes=count("block_bytes", -(2**62), d.get("block_bytes", 0)),
                          block_crc32c=crcs)
        # the data region is whole chunks: anything else would send reads past the file's data
        row_bytes = _row_bytes(shape_t, dtype)
        if rec.data_bytes != rec.n_chunks * rec.chunk_rows * row_bytes:
            raise ValueError(f"{name}.data_bytes {rec.data_bytes} does not match its shape {list(shape_t)}, "
                             f"dtype and chunk_rows {rec.chunk_rows}")
        rec._check_layout()
        return rec

    def _check_layout(self) -> None:
        """ValueError naming the field when the record cannot describe a shard this module wrote:
        every reader (open, verify, the structural checks) divides by chunk_rows and trusts dtype,
        shape and data_bytes, so a damaged record must stop at the manifest, in one line."""
        where = f"array {self.name!r}:"
        parts = self.name.split("/") if isinstance(self.name, str) else [""]
        if any(p in ("", ".", "..") or "\\" in p for p in parts):
            # names become paths under the store: read by open and verify, written by a rebuild
            raise ValueError(f"{where} name is not a relative path inside the store (like 'splits/train')")
        if self.dtype not in _DTYPES:
            raise ValueError(f"{where} dtype {self.dtype!r} is not one gstore writes")
        if not self.shape or any(s < 0 for s in self.shape):
            raise ValueError(f"{where} shape {list(self.shape)} is not a list of sizes >= 0 (at least one)")
        if self.chunk_rows < 1:
            raise ValueError(f"{where} chunk_rows {self.chunk_rows} must be >= 1")
        expected = self.n_chunks * self.chunk_rows * _row_bytes(self.shape, np.dtype(self.dtype))
        if self.data_bytes != expected:
            raise ValueError(f"{where} data_bytes {self.data_bytes} does not match its shape, dtype "
                             f"and chunk_rows ({expected})")

    @property
    def n_chunks(self) -> int:
        return -(-self.shape[0] // self.chunk_rows) if self.shape[0] else 0

    @property
    def logical_bytes(self) -> int:
        """Bytes of the real rows (the data region without the padding of the last chunk)."""
        return self.shape[0] * _row_bytes(self.shape, np.dtype(self.dtype)) if self.n_chunks else 0

    @property
    def index_bytes(self) -> int:
        """Bytes of the shard index (with its crc32c) that follow the data region."""
        return self.n_chunks * _INDEX_ENTRY_BYTES + _CRC_BYTES if self.n_chunks else 0


def _row_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize if len(shape) > 1 else dtype.itemsize


def default_chunk_rows(shape: tuple[int, ...], dtype: np.dtype | str,
                       target_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows per inner chunk so a chunk is about `target_bytes` (at least 1 row)."""
    rb = _row_bytes(tuple(shape), np.dtype(dtype))
    return max(1, target_bytes // max(rb, 1))


def shard_path(array_dir: Path, ndim: int) -> Path:
    """The file holding the single shard of an array of `ndim` dimensions."""
    return Path(array_dir, "c", *(["0"] * ndim))


def array_metadata(shape: tuple[int, ...], dtype: str, chunk_rows: int) -> dict:
    """zarr v3 `zarr.json` for a single-shard, uncompressed array."""
    n_chunks = -(-shape[0] // chunk_rows) if shape[0] else 1
    inner = [chunk_rows, *shape[1:]]
    shard = [n_chunks * chunk_rows, *shape[1:]]
    # zarr requires positive chunk extents even for zero-width trailing dims
    inner = [max(1, s) for s in inner]
    shard = [max(1, s) for s in shard]
    fill = 0.0 if np.dtype(dtype).kind == "f" else (False if dtype == "bool" else 0)
    bytes_codec = {"name": "bytes", "configuration": {"endian": "little"}}
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shard}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": inner,
            "codecs": [bytes_codec],
            "index_codecs": [bytes_codec, {"name": "crc32c"}],
            "index_location": "end",
        }}],
        "attributes": {},
        "storage_transformers": [],
    }


def _crc32c(data: bytes) -> bytes:
    import google_crc32c  # shipped with zarr v3 (its crc32c codec uses it)

    return int(google_crc32c.value(data)).to_bytes(4, "little")


def _shard_index(n_chunks: int, chunk_bytes: int) -> bytes:
    index = np.empty((n_chunks, 2), dtype="<u8")
    index[:, 0] = np.arange(n_chunks, dtype=np.uint64) * np.uint64(chunk_bytes)
    index[:, 1] = chunk_bytes
    raw = index.tobytes()
    return raw + _crc32c(raw)


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON to `path` via a temp file, fsync and rename, so readers see old or new, never half."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)  # a full disk must not leave the half-written temp file
        except OSError:
            pass
        raise


def group_metadata(attributes: dict | None = None) -> dict:
    """The zarr.json of a zarr v3 group with `attributes` (none: what gstore writes for the
    partition/ and derived/ roots)."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes or {}}


def write_group_metadata(group_dir: Path, attributes: dict | None = None) -> None:
    """Make `group_dir` a zarr v3 group (atomically)."""
    group_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(group_dir / ZARR_JSON, group_metadata(attributes))


class ShardArrayWriter:
    """Writes one array, either sequentially (`append`) or at row offsets (`write_rows`).

    The data file is preallocated (sparse) at its final size, so any write order works and unwritten
    rows read as zero. `finish()` appends the shard index and returns the manifest record.

    Block checksums: while every write lands right after the previous one (`append`, or `write_rows`
    in row order) they are computed on the fly from the caller's buffers; after any other write
    (out of order, overlapping, `memmap()`), or when not every row went through this object (bytes
    written straight to `path`, as ingest's copy_file_range does), `finish()` computes them in one
    sequential read-back pass instead.

    Args:
        root: store directory; the array lives at `root/name`.
        name: array path inside the store ("indices", "splits/train").
        shape: final shape; rows are the first dimension.
        dtype: numpy dtype.
        chunk_rows: rows per inner zarr chunk (default: about 4 MiB per chunk).
    """

    def __init__(self, root: Path, name: str, shape: tuple[int, ...], dtype: str | np.dtype,
                 chunk_rows: int | None = None) -> None:
        self.root = Path(root)
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
        if self.dtype.name not in _DTYPES:
            raise StoreError(f"unsupported array dtype {self.dtype} for {name}")
        self.chunk_rows = int(chunk_rows or default_chunk_rows(self.shape, self.dtype))
        self.row_bytes = _row_bytes(self.shape, self.dtype)
        self.n_chunks = -(-self.shape[0] // self.chunk_rows) if self.shape[0] else 0
        self.data_bytes = self.n_chunks * self.chunk_rows * self.row_bytes
        self.array_dir = self.root / name
        self.array_dir.mkdir(parents=True, exist_ok=True)
        meta = array_metadata(self.shape, self.dtype.name, self.chunk_rows)
        write_json_atomic(self.array_dir / ZARR_JSON, meta)
        self.path = shard_path(self.array_dir, len(self.shape))
        self._fh = None
        self._cursor = 0  # next row for append()
        self._hasher: BlockHasher | None = BlockHasher(BLOCK_BYTES)   # None once writes went out of order
        if self.n_chunks:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w+b")
            self._fh.truncate(self.data_bytes)

    def append(self, block: np.ndarray) -> None:
        """Write `block` (rows x ...) right after the previously appended rows."""
        self.write_rows(self._cursor, block)
        self._cursor += len(block)

    def write_rows(self, start: int, block: np.ndarray) -> None:
        """Write `block` at row `start` (pwrite; never maps the file, so RSS stays flat)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or start < 0 or start + len(block) > self.shape[0]:
            raise StoreError(f"write of rows [{start}, {start + len(block)}) x {block.shape[1:]} "
                             f"does not fit array {self.name} of shape {self.shape}")
        if len(block) == 0:
            return
        view = memoryview(block).cast("B")
        # int(): a numpy int32 row index times row_bytes would wrap past 2^31 bytes (NEP 50)
        offset = int(start) * self.row_bytes
        written = 0
        while written < len(view):     # pwrite may write less than asked (signals, huge blocks)
            written += os.pwrite(self._fh.fileno(), view[written:], offset + written)
        if self._hasher is not None:
            if self._hasher.pos == offset:
                self._hasher.feed(block)
            else:
                self._hasher = None

    def external_writes(self) -> None:
        """Other processes write rows of this file too (a data-parallel inference's ranks):
        `finish()` computes the checksums by reading the file back."""
        self._hasher = None

    def skip_rows(self, count: int) -> None:
        """Leave the next `count` rows after the appended ones unwritten: they read as zeros (a hole
        of the sparse file, no disk used) and the checksums count them without a pass over them."""
        if count < 0 or self._cursor + count > self.shape[0]:
            raise StoreError(f"cannot skip {count} rows at row {self._cursor} of array {self.name} "
                             f"of shape {self.shape}")
        if self._hasher is not None and self._hasher.pos == self._cursor * self.row_bytes:
            self._hasher.feed_zeros(count * self.row_bytes)
        self._cursor += count

    def memmap(self) -> np.ndarray:
        """Writable memory map over the logical rows (for scatter writes; dirty pages count as RSS)."""
        if not self.n_chunks:
            return np.zeros(self.shape, dtype=self.dtype)
        self._hasher = None
        self._fh.flush()
        return np.memmap(self.path, dtype=self.dtype, mode="r+", shape=self.shape)

    def finish(self) -> ArrayRecord:
        """Append the shard index, fsync, and return the record (with block checksums)."""
        crcs: list[int] = []
        if self._fh is not None:
            fh = self._fh
            fh.flush()
            logical = self.shape[0] * self.row_bytes
            if self._hasher is not None and self._hasher.pos == logical:
                self._hasher.feed_zeros(self.data_bytes - logical)   # the sparse padding
                crcs = self._hasher.finish()
            else:
                crcs = file_block_crcs(self.path, self.data_bytes, BLOCK_BYTES)
            fh.seek(self.data_bytes)
            fh.write(_shard_index(self.n_chunks, self.chunk_rows * self.row_bytes))
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            self._fh = None
        return ArrayRecord(name=self.name, shape=self.shape, dtype=self.dtype.name,
                           chunk_rows=self.chunk_rows, data_bytes=self.data_bytes,
                           checksum=_checksum(self.path, self.data_bytes, self.n_chunks),
                           block_bytes=BLOCK_BYTES, block_crc32c=encode_crcs(crcs))

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_array(root: Path, name: str, arr: np.ndarray, chunk_rows: int | None = None,
                block_rows: int = 1 << 22) -> ArrayRecord:
    """Write an in-memory (or memory-mapped) array as a single-shard zarr array, in blocks."""
    w = ShardArrayWriter(root, name, arr.shape, arr.dtype, chunk_rows)
    try:
        for start in range(0, arr.shape[0], block_rows):
            w.append(arr[start:start + block_rows])
        return w.finish()
    except BaseException:
        w.abort()
        raise


def checksum_of_ends(path: Path, data_bytes: int, n_chunks: int) -> str:
    """The cheap checksum every open compares (crc32 of the shard index and the data's ends)."""
    return _checksum(path, data_bytes, n_chunks)


def _checksum(path: Path, data_bytes: int, n_chunks: int) -> str:
    if not n_chunks:
        return "00000000"
    index_bytes = n_chunks * _INDEX_ENTRY_BYTES + _CRC_BYTES
    with open(path, "rb") as fh:
        crc = zlib.crc32(fh.read(min(_SAMPLE_BYTES, data_bytes)))
        fh.seek(max(0, data_bytes - _SAMPLE_BYTES))
        crc = zlib.crc32(fh.read(min(_SAMPLE_BYTES, data_bytes)), crc)
        fh.seek(data_bytes)
        crc = zlib.crc32(fh.read(index_bytes), crc)
    return f"{crc:08x}"


def verify_array(root: Path, rec: ArrayRecord) -> None:
    """Cheap integrity check: metadata present, file size exact, checksum of index and ends matches.

    The full check of every byte is gstore/verify.py (`gstore verify`, `gstore.open(verify=True)`).
    """
    array_dir = Path(root) / rec.name
    if not (array_dir / ZARR_JSON).is_file():
        raise StoreError(f"array {rec.name!r} is missing its zarr.json", path=root,
                         hint="the store is incomplete; rebuild it")
    path = shard_path(array_dir, len(rec.shape))
    n_chunks = -(-rec.shape[0] // rec.chunk_rows) if rec.shape[0] else 0
    if not n_chunks:
        return
    expected = rec.data_bytes + n_chunks * _INDEX_ENTRY_BYTES + _CRC_BYTES
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise StoreError(f"array {rec.name!r} has no data file {path}", path=root,
                         hint="the store is incomplete; rebuild it") from None
    if size != expected:
        raise StoreError(f"array {rec.name!r} is {size} bytes on disk, expected {expected} "
                         f"(truncated or overwritten)", path=root, hint="rebuild the store")
    if rec.block_crc32c is not None and (
            not valid_block_bytes(rec.block_bytes)
            or len(rec.block_crc32c) != 4 * -(-4 * num_blocks(rec.data_bytes, rec.block_bytes) // 3)):
        raise StoreError(f"array {rec.name!r} has a malformed block checksum list in the manifest",
                         path=root, hint="rebuild the store")
    if _checksum(path, rec.data_bytes, n_chunks) != rec.checksum:
        raise StoreError(f"array {rec.name!r} fails its checksum", path=root, hint="rebuild the store")


def open_array(root: Path, rec: ArrayRecord, mode: str = "r") -> np.ndarray:
    """Memory-map an array's logical rows (read-only by default). Zero-row arrays come back empty."""
    dtype = np.dtype(rec.dtype)
    if rec.shape[0] == 0 or 0 in rec.shape:
        return np.zeros(rec.shape, dtype=dtype)
    path = shard_path(Path(root) / rec.name, len(rec.shape))
    return np.memmap(path, dtype=dtype, mode=mode, shape=rec.shape)
