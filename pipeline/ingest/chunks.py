"""Typed chunks passed from the input readers to the out-of-core builder (the readers' contract).

Readers stream these; nothing upstream of the builder ever holds a whole file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

IdType = Literal["auto", "int", "string"]


@dataclass
class StringColumn:
    """Arrow-style string column: value i is utf8[offsets[i]:offsets[i+1]] (numba-friendly).

    offsets: int64 (n+1,); utf8: uint8 (total bytes,).
    """

    offsets: np.ndarray
    utf8: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def to_list(self) -> list[str]:
        return [bytes(self.utf8[self.offsets[i]:self.offsets[i + 1]]).decode("utf-8")
                for i in range(len(self))]


IdColumn = np.ndarray | StringColumn  # int64 (n,) for integer ids


@dataclass
class EdgeReadOptions:
    """How to read edge files. None means 'detect'."""

    delimiter: str | None = None
    columns: tuple[str | int, str | int] | None = None   # (src, dst) by name or 0-based position
    header: bool | None = None
    comment: str | None = None                           # detected: '#' or '%'
    weight_col: str | int | None = None
    id_type: IdType = "auto"
    on_bad_line: Literal["error", "skip"] = "error"
    block_bytes: int = 64 << 20                          # decompressed bytes parsed per block


@dataclass
class EdgeChunk:
    """A block of edges from one input file.

    src, dst: int64 (n,) original ids, or StringColumn when ids are strings.
    weight: float32 (n,) from --weight-col, else None.
    path: the input file; first_line: 1-based line number of the block's first row (text inputs;
    row index + 1 for parquet/npy). bytes_done: bytes of `path` consumed so far (for progress).
    """

    src: IdColumn
    dst: IdColumn
    weight: np.ndarray | None
    path: str
    first_line: int
    bytes_done: int

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class InputNote:
    """A decision a reader took about one input file (header detected or not, a .npy read as
    (2, E), ids switched to strings). The CLI prints every note; the manifest keeps them in
    build["decisions"]. kind: 'header' | 'layout' | 'ids'; line: where it applies, if anywhere."""

    path: str
    kind: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


@dataclass
class ReadStats:
    """Filled in by readers as they go (the CLI reports skipped rows and the notes)."""

    rows: int = 0
    skipped_bad_lines: int = 0
    skipped_examples: list[str] = field(default_factory=list)   # first few "file:line: reason"
    notes: list[InputNote] = field(default_factory=list)

    def note(self, path: str, kind: str, message: str, line: int | None = None) -> None:
        self.notes.append(InputNote(str(path), kind, message, line))


class NonIntegerIds(Exception):
    """Raised by a reader in id_type='auto' mode when a block holds a non-integer id after integer
    blocks were already emitted: the builder restarts the ingest with id_type='string'. Not a user
    error (never reaches the CLI)."""

    def __init__(self, path: str, line: int, token: str | None = None) -> None:
        what = "non-integer node id" if token is None else f"non-integer node id {token!r}"
        super().__init__(f"{path}:{line}: {what}")
        self.path = path
        self.line = line
        self.token = token
