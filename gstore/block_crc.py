"""CRC32C of fixed-size blocks of an array's data region: computed at write time, checked by `verify`.

Every array's data region (bytes `[0, data_bytes)` of its shard file, padding included) is cut into
blocks of `BLOCK_BYTES` (the last one shorter); the manifest records one CRC32C per block as a
base64'd little-endian uint32 array (4 bytes per 4 MiB: ~1300 entries, 7 KB of JSON, for the 4 GB
`indices` of a 10^9-edge store).

google_crc32c (shipped with zarr) only accepts `bytes`, which would cost a copy per block, so we call
the C library it bundles (SSE4.2, ~5 GB/s) through ctypes on the buffer's address: no copy, and the
GIL is released during the call. Where that library cannot be found the Python API is used on a copy.
"""
from __future__ import annotations

import base64
import ctypes
import glob
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

BLOCK_BYTES = 4 << 20


def _load_c_extend():
    import google_crc32c

    pkg = Path(google_crc32c.__file__).parent
    for lib in sorted(glob.glob(str(pkg.parent / "google_crc32c.libs" / "libcrc32c*"))
                      + glob.glob(str(pkg / "libcrc32c*"))):
        try:
            fn = ctypes.CDLL(lib).crc32c_extend
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_uint32
        fn.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
        return fn
    return None


_C_EXTEND = _load_c_extend()


def crc32c(data: np.ndarray | memoryview | bytes, crc: int = 0) -> int:
    """CRC32C of `data` (any C-contiguous buffer), continuing from `crc` (0 to start)."""
    if isinstance(data, np.ndarray):
        arr = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        arr = np.frombuffer(data, dtype=np.uint8)
    nbytes = arr.nbytes
    if nbytes == 0:
        return crc
    if _C_EXTEND is not None:
        return int(_C_EXTEND(crc, arr.ctypes.data, nbytes))
    import google_crc32c

    return int(google_crc32c.extend(crc, arr.reshape(-1).view(np.uint8).tobytes()))


def encode_crcs(crcs: list[int] | np.ndarray) -> str:
    """Block CRCs -> base64 of a little-endian uint32 array (the manifest form)."""
    return base64.b64encode(np.asarray(crcs, dtype="<u4").tobytes()).decode("ascii")


def decode_crcs(text: str) -> np.ndarray:
    """The manifest form -> uint32 (n_blocks,)."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 4:
        raise ValueError(f"block checksum list of {len(raw)} bytes is not a whole number of uint32")
    return np.frombuffer(raw, dtype="<u4")


def valid_block_bytes(block_bytes: int) -> bool:
    """A block size a manifest may record: positive, and a whole number of elements of any dtype
    (the structural checks read the blocks as int64 at most)."""
    return block_bytes > 0 and block_bytes % 8 == 0


def num_blocks(data_bytes: int, block_bytes: int) -> int:
    return -(-data_bytes // block_bytes) if data_bytes else 0


def read_blocks(path: Path, nbytes: int, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (byte offset, uint8 view) for consecutive blocks of bytes [0, nbytes) of `path`.

    Two reused buffers (fresh memory is slow to touch): while the caller works on one block, a
    helper thread reads the next into the other (reads release the GIL, and so do the CRC and
    numpy reductions callers run), so checking runs at about the speed of the slower of the two.
    The view is only valid until the next block is asked for. A file shorter than `nbytes` ends
    the iteration early (callers compare the offsets they saw).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        size = min(block_bytes, max(nbytes, 1))
        bufs = [np.empty(size, dtype=np.uint8) for _ in range(2 if nbytes > block_bytes else 1)]

        def read(offset: int, buf: np.ndarray) -> int:
            want = min(block_bytes, nbytes - offset)
            got = 0
            while got < want:          # short reads are legal; finish the block
                more = os.preadv(fd, [memoryview(buf)[got:want]], offset + got)
                if not more:
                    break
                got += more
            return got

        if len(bufs) == 1:
            got = read(0, bufs[0]) if nbytes else 0
            if got:
                yield 0, bufs[0][:got]
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="gstore-read") as pool:
            offset, i = 0, 0
            pending = pool.submit(read, 0, bufs[0])
            while offset < nbytes:
                got = pending.result()
                nxt = offset + got
                if got == min(block_bytes, nbytes - offset) and nxt < nbytes:
                    pending = pool.submit(read, nxt, bufs[1 - i])
                if not got:
                    return
                yield offset, bufs[i][:got]
                if got < min(block_bytes, nbytes - offset):
                    return
                offset, i = nxt, 1 - i
    finally:
        os.close(fd)


def file_block_crcs(path: Path, data_bytes: int, block_bytes: int = BLOCK_BYTES) -> list[int]:
    """CRC32C of every block of bytes [0, data_bytes) of `path`, in one sequential pass."""
    return [crc32c(view) for _, view in read_blocks(path, data_bytes, block_bytes)]


class BlockHasher:
    """Incremental block CRCs over a byte stream fed in order (blocks may span feeds)."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self.block_bytes = block_bytes
        self.pos = 0                 # bytes fed so far
        self.crcs: list[int] = []
        self._cur = 0

    def feed(self, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        i, n = 0, len(data)
        while i < n:
            take = min(self.block_bytes - self.pos % self.block_bytes, n - i)
            self._cur = crc32c(data[i:i + take], self._cur)
            i += take
            self.pos += take
            if self.pos % self.block_bytes == 0:
                self.crcs.append(self._cur)
                self._cur = 0

    def feed_zeros(self, nbytes: int) -> None:
        """Feed `nbytes` zero bytes (unwritten padding or holes of a sparse file read as zeros).
        Whole zero blocks reuse one CRC, so a hole of gigabytes costs no pass over it."""
        zeros = np.zeros(min(nbytes, self.block_bytes), dtype=np.uint8)
        zero_block_crc = None
        while nbytes > 0:
            if self.pos % self.block_bytes == 0 and nbytes >= self.block_bytes:
                if zero_block_crc is None:
                    zero_block_crc = crc32c(zeros[:self.block_bytes], 0)
                whole = nbytes // self.block_bytes
                self.crcs.extend([zero_block_crc] * whole)
                self.pos += whole * self.block_bytes
                nbytes -= whole * self.block_bytes
                continue
            take = min(nbytes, len(zeros), self.block_bytes - self.pos % self.block_bytes)
            self.feed(zeros[:take])
            nbytes -= take

    def finish(self) -> list[int]:
        if self.pos % self.block_bytes:
            self.crcs.append(self._cur)
            self._cur = 0
        return self.crcs
