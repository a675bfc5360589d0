"""Block reads of `.npy` files (edge arrays and feature arrays) without the memory map.

`numpy.load(mmap_mode="r")` parses the header; the data is then read with plain positional reads
of bounded blocks. Indexing the map instead would pull the file's pages into the process's
resident set (file-backed, but counted in RSS and in the peak): a 60M-edge Fortran-order .npy
peaked at 1.16 GiB under a 1 GiB budget that way (docs/ingest.md, "Memory accounting").
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np

from gstore.errors import InputError


@dataclass(frozen=True)
class NpyArray:
    """Where a 1-D or 2-D array lies in its file: element (i, j) of a C-order array is at
    data_offset + (i * shape[1] + j) * itemsize, of a Fortran-order one at
    data_offset + (j * shape[0] + i) * itemsize."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int

    def transposed(self) -> "NpyArray":
        """The same bytes seen as the transpose (a C-order (k, E) is a Fortran-order (E, k))."""
        return replace(self, shape=tuple(reversed(self.shape)), fortran_order=not self.fortran_order)


def open_npy(path: str, hint: str) -> NpyArray:
    """The header of a .npy file. Raises InputError (with `hint`) when it cannot be parsed."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"cannot read .npy file: {e}", path=path, hint=hint) from None
    fortran = arr.ndim == 2 and arr.flags.f_contiguous and not arr.flags.c_contiguous
    # a 0-size array is returned as a plain ndarray (nothing to map): its data starts at the end
    offset = getattr(arr, "offset", None)
    if offset is None:
        import os

        offset = os.path.getsize(path)
    return NpyArray(str(path), tuple(arr.shape), arr.dtype, bool(fortran), int(offset))


def _read_run(fh: BinaryIO, a: NpyArray, first: int, count: int) -> np.ndarray:
    """`count` consecutive elements of the file's data, starting at element `first`."""
    offset = a.data_offset + int(first) * a.dtype.itemsize   # int(): no int32 wrap past 2^31 bytes
    fh.seek(offset)
    out = np.fromfile(fh, dtype=a.dtype, count=count)
    if len(out) != count:
        raise InputError(f".npy file is truncated (expected {count} values at byte {offset})",
                         path=a.path, hint="re-save the array with numpy.save")
    return out


def read_columns(fh: BinaryIO, a: NpyArray, start: int, count: int,
                 cols: list[int]) -> list[np.ndarray]:
    """Columns `cols` of rows [start, start + count) of a 2-D array, each (count,) in a.dtype:
    one read of whole rows (C order), or one run per column (Fortran order)."""
    n, k = a.shape
    if a.fortran_order:
        return [_read_run(fh, a, c * n + start, count) for c in cols]
    rows = _read_run(fh, a, start * k, count * k).reshape(count, k)
    return [rows[:, c] for c in cols]


def read_rows(fh: BinaryIO, a: NpyArray, start: int, count: int) -> np.ndarray:
    """Rows [start, start + count) of a 1-D or 2-D array as a C-order (count, ...) array."""
    if len(a.shape) == 1:
        return _read_run(fh, a, start, count)
    if not a.fortran_order:
        return _read_run(fh, a, start * a.shape[1], count * a.shape[1]).reshape(count, a.shape[1])
    out = np.empty((count, a.shape[1]), dtype=a.dtype)
    for c in range(a.shape[1]):
        out[:, c] = _read_run(fh, a, c * a.shape[0] + start, count)
    return out
