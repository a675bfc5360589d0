"""Input-file sniffing: container kind (parquet / npy / text), compression (by magic bytes) and, for
text, the delimiter, comment character and header row, detected from the first few KB.

Detection rules (docs/ingest-inputs.md has the user-facing version):
- compression: gzip (1f 8b), bz2 ('BZh'), zstd (28 b5 2f fd) by magic bytes, whatever the extension.
- comment: lines starting with '#' (SNAP) or '%' (Matrix Market, KONECT) are comments. A
  '%%MatrixMarket' banner also marks the first non-comment line (the size line) as a header to drop.
- delimiter: the first of TAB , ; | SPACE that splits every sampled data line into the same number
  (>= 2) of fields; runs of blanks (or leading/trailing blanks) switch on whitespace collapsing.
- header: decided by the shape of the first data line's tokens against the lines below it
  (header_rules.py); the decision and its source are kept in TextFormat for the summary.
- encoding and line ends: text_checks.py (UTF-8 BOM dropped, UTF-16/32, binary data and CR-only
  line ends refused) before anything else.
Explicit options (delimiter, comment, header) always win over detection.
"""
from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from gstore.errors import InputError, OptionError
from gstore.pipeline.ingest.header_rules import clean_token, guess_header
from gstore.pipeline.ingest.text_checks import check_text_sample, refuse_archive, strip_bom

SAMPLE_BYTES = 64 << 10
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x28\xb5\x2f\xfd": "zstd"}
_DELIMITERS = ["\t", ",", ";", "|", " "]


@dataclass
class FileKind:
    """What a path holds. container: 'text' | 'parquet' | 'npy'; compression: 'gzip' | 'bz2' |
    'zstd' | None (text only)."""

    container: str
    compression: str | None


@dataclass
class TextFormat:
    """Detected (or given) layout of a delimited text file.

    data_offset: byte offset in the decompressed stream where data rows start (after leading
    comments/blank lines and the header line); data_line: 1-based line number at that offset.
    names: header field names (None without a header). collapse_whitespace: fields are separated
    by runs of blanks and lines may have leading/trailing blanks (normalised per block).
    """

    delimiter: str
    comment: str | None
    header: bool
    names: list[str] | None
    num_columns: int
    collapse_whitespace: bool
    data_offset: int
    data_line: int
    header_source: str = "detected"  # detected | option | columns | matrix market
    first_row: str = ""              # the first data line as read (for the decision's message)
    header_reason: str = ""          # why detection decided so (header_rules.HeaderGuess)

    def header_note(self) -> str:
        """The header decision in one line, for the summary and the manifest."""
        names = ",".join(self.names or [])
        if self.header_source == "matrix market":
            return "header: Matrix Market size line dropped"
        if self.header_source == "option":
            return f"header: given by --header ({names})" if self.header else \
                "header: none (--no-header)"
        if self.header_source == "columns":
            return f"header: implied by --columns/--weight-col names ({names})"
        if self.header:
            return f"header: detected ({names})"
        shown = self.first_row if len(self.first_row) <= 60 else self.first_row[:57] + "..."
        return f"first row read as data: {shown!r}; pass --header if it is a header"


def sniff_kind(path: str | Path) -> FileKind:
    """Classify a file by its magic bytes (extension only as a tie-breaker). Raises InputError if
    the file is missing or unreadable."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise InputError("file not found", path=p, hint="check the path") from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", path=p) from None
    except OSError as e:
        raise InputError(f"cannot read file: {e.strerror}", path=p) from None
    if head.startswith(b"PAR1"):
        return FileKind("parquet", None)
    if head.startswith(b"\x93NUMPY"):
        return FileKind("npy", None)
    refuse_archive(p, head)
    for magic, codec in _MAGIC.items():
        if head.startswith(magic):
            return FileKind("text", codec)
    return FileKind("text", None)


class TextStream:
    """Decompressed binary stream of a text input. `raw_pos()` = bytes of the on-disk file consumed
    (for progress). Decompression errors (truncated gzip, corrupt bz2/zstd) surface as InputError."""

    def __init__(self, path: str | Path, compression: str | None) -> None:
        self.path = str(path)
        self.compression = compression
        # bytes: arrow encodes a str path as strict UTF-8, which a name like b'e\xff.csv' is not
        self._raw = pa.OSFile(os.fsencode(self.path), "rb")
        self.raw_size = self._raw.size()
        self._stream: pa.NativeFile | BinaryIO = (
            pa.CompressedInputStream(self._raw, compression) if compression else self._raw)
        # the first bytes are checked for a byte-order mark: a UTF-8 one is dropped here, so every
        # reader (sample, blocks, node tables, features) sees the same stream without it
        try:
            head = self._read_exactly(4)
            self._pending = strip_bom(self.path, head)
        except BaseException:
            self.close()
            raise

    def _read_exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            got = self._read_stream(n - len(out))
            if not got:
                break
            out += got
        return out

    def _read_stream(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except (OSError, pa.ArrowException) as e:
            raise self._read_error(e) from None

    def read(self, n: int) -> bytes:
        if self._pending:
            head, self._pending = self._pending[:n], self._pending[n:]
            return head + (self._read_stream(n - len(head)) if n > len(head) else b"")
        return self._read_stream(n)

    def readinto(self, view: memoryview) -> int:
        if self._pending:   # a short read: callers loop until the view is full
            k = min(len(view), len(self._pending))
            view[:k] = self._pending[:k]
            self._pending = self._pending[k:]
            return k
        try:
            return self._stream.readinto(view)
        except (OSError, pa.ArrowException) as e:
            raise self._read_error(e) from None

    def _read_error(self, e: Exception) -> InputError:
        what = f"{self.compression} stream" if self.compression else "file"
        return InputError(f"cannot read {what}: {e}", path=self.path,
                          hint="the file looks truncated or corrupt; re-download or re-compress it")

    def raw_pos(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._stream.close()
        if self._stream is not self._raw:
            self._raw.close()

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DATA_LINE = re.compile(rb"(?m)^[ \t]*[^#%\s]")


def read_sample(path: str | Path, compression: str | None, nbytes: int = SAMPLE_BYTES) -> bytes:
    """The first `nbytes` decompressed bytes, extended to the end of a line, and further (up to
    256x) while it holds no data line yet (long comment preambles)."""
    limit = 256 * nbytes
    with TextStream(path, compression) as s:
        data = s.read(nbytes)
        while len(data) < limit:
            has_line_end = b"\n" in data[-(nbytes // 4):]
            if has_line_end and len(data) >= nbytes and _DATA_LINE.search(data):
                break
            more = s.read(nbytes)
            if not more:
                break
            data += more
    return data


def split_fields(line: str, delimiter: str, collapse: bool) -> list[str]:
    """Fields of one text line (the Python reference for what the arrow parser sees)."""
    if collapse:
        return line.split()
    if '"' not in line:
        return line.split(delimiter)
    try:
        return next(csv.reader([line], delimiter=delimiter))
    except csv.Error:
        # a stray CR or NUL inside quotes: the line is bad anyway, count its fields plainly so the
        # caller reports it with its line number instead of csv's traceback
        return line.split(delimiter)


def _is_comment(line: str, comment: str | None) -> bool:
    return comment is not None and line.startswith(comment)


def _detect_comment(lines: list[str]) -> str | None:
    for line in lines:
        s = line.strip()
        if not s:
            continue
        if s[0] in "#%":
            return s[0]
    return None


def _mode_count(counts: list[int]) -> tuple[int, float]:
    """Most common field count (ties: the smallest count >= 2) and the fraction of lines with it."""
    freq = Counter(counts)
    value = max(freq, key=lambda c: (freq[c], c >= 2, -c))
    return value, freq[value] / len(counts)


def _detect_delimiter(lines: list[str]) -> tuple[str, bool, int] | None:
    """(delimiter, collapse_whitespace, num_columns): the first candidate that splits >= 90% of
    the sampled lines into the same number (>= 2) of fields; a few malformed lines are tolerated
    (they are reported later with their line numbers)."""
    scored = []
    for d in _DELIMITERS:
        if d == " ":
            continue
        n, agree = _mode_count([len(split_fields(ln, d, False)) for ln in lines])
        scored.append((d, False, n, agree))
    # blank-separated: plain single spaces if consistent, else collapse runs of blanks
    n, agree = _mode_count([len(split_fields(ln, " ", False)) for ln in lines])
    if not any(ln != ln.strip() or "\t" in ln for ln in lines):
        scored.append((" ", False, n, agree))
    n, agree = _mode_count([len(ln.split()) for ln in lines])
    scored.append((" ", True, n, agree))
    scored = [c for c in scored if c[2] >= 2]
    for d, collapse, n, agree in scored:
        if agree >= 0.9:
            return d, collapse, n
    if scored:   # small or messy sample: the best-agreeing candidate
        d, collapse, n, _ = max(scored, key=lambda c: c[3])
        return d, collapse, n
    return None


def detect_text_format(path: str | Path, sample: bytes, *, delimiter: str | None = None,
                       comment: str | None = None, header: bool | None = None,
                       header_required: bool = False, min_columns: int = 2) -> TextFormat:
    """Detect the layout of a delimited text file from its first bytes; explicit arguments win.

    `header_required`: callers naming columns by header name force a header when undetected.
    `min_columns`: 1 allows single-column files (node tables holding only ids).
    Raises InputError when no data line exists or no delimiter splits lines into >= 2 fields.
    """
    check_text_sample(path, sample)
    text = sample.decode("utf-8", errors="replace")
    complete = text if len(sample) < SAMPLE_BYTES else text[:text.rfind("\n") + 1] or text
    raw_lines = complete.split("\n")
    if complete.endswith("\n"):
        raw_lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in raw_lines]
    if delimiter is not None and len(delimiter) != 1:
        if delimiter in ("\\t", "tab"):
            delimiter = "\t"
        elif delimiter in ("space", "whitespace"):
            delimiter = " "
        else:
            raise OptionError(f"delimiter must be one character, got {delimiter!r}",
                              hint="use e.g. ',', '\\t' or ' '")
    matrix_market = bool(lines) and lines[0].startswith("%%MatrixMarket")
    if comment is None:
        comment = _detect_comment(lines[:200])
    elif comment == "":
        comment = None

    # positions of data lines (not blank, not comment) in the sample
    data_idx = [i for i, ln in enumerate(lines) if ln.strip() and not _is_comment(ln, comment)]
    if not data_idx:
        raise InputError("no data lines found (empty input)", path=path,
                         hint="the file is empty or holds only comments")
    sample_lines = [lines[i] for i in data_idx[:64]]
    first_idx = data_idx[0]
    if matrix_market:
        # the size line 'rows cols nnz' is not an edge: drop it like a header row
        header = True if header is None else header
        sample_lines = sample_lines[1:] or sample_lines
    body = sample_lines[1:] if len(sample_lines) > 1 else sample_lines
    if delimiter is None:
        detected = _detect_delimiter(body) or _detect_delimiter(sample_lines)
        if detected is None and min_columns <= 1:
            detected = (",", False, 1)
        if detected is None:
            raise InputError("cannot detect the column delimiter (need >= 2 fields per line)",
                             path=path, line=first_idx + 1,
                             hint="pass --delimiter, e.g. --delimiter ','")
        delimiter, collapse, _ = detected
    else:
        collapse = delimiter == " " and any(
            "  " in ln or "\t" in ln or ln != ln.strip() for ln in sample_lines)
    first_fields = split_fields(lines[first_idx], delimiter, collapse)
    rest = [split_fields(ln, delimiter, collapse) for ln in sample_lines[1:]]
    source, reason = "option", ""
    if matrix_market and header:
        source = "matrix market"
    elif header is None and header_required:
        header, source = True, "columns"
    elif header is None:
        guess = guess_header(first_fields, rest)
        header, source, reason = guess.is_header, "detected", guess.reason
    names = None
    if header and not matrix_market:
        names = [clean_token(f) for f in first_fields]
    # the usual field count of data rows (a malformed first row must not set it)
    data_rows = rest if (header and rest) else [first_fields] + rest
    num_columns, agree = _mode_count([len(r) for r in data_rows])
    if names is not None and agree < 0.9:
        num_columns = len(names)
    data_offset_idx = first_idx + 1 if header else first_idx
    data_offset = 0
    for _ in range(data_offset_idx):
        nl = sample.find(b"\n", data_offset)
        data_offset = len(sample) if nl < 0 else nl + 1
    return TextFormat(delimiter=delimiter, comment=comment, header=header, names=names,
                      num_columns=num_columns, collapse_whitespace=collapse,
                      data_offset=data_offset, data_line=data_offset_idx + 1, header_source=source,
                      first_row=lines[first_idx], header_reason=reason)


def resolve_column(spec: str | int, fmt: TextFormat | None, names: list[str] | None,
                   num_columns: int, path: str, what: str) -> int:
    """0-based index of a column given by name or position (digit strings count as positions
    only when the file has no header with that name). Raises InputError if it does not exist."""
    if isinstance(spec, str) and names is not None and spec in names:
        return names.index(spec)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        k = int(spec)
        if 0 <= k < num_columns:
            return k
        raise InputError(f"{what} column {k} does not exist (the file has {num_columns} columns)",
                         path=path, line=None if fmt is None else max(fmt.data_line, 1),
                         hint="columns are 0-based positions or header names")
    have = ", ".join(names) if names else "none (no header row)"
    raise InputError(f"{what} column {spec!r} not found; header columns: {have}", path=path,
                     line=None if fmt is None else max(fmt.data_line - 1, 1),
                     hint="fix --columns/--weight-col, or pass --header if the first row is a header")


ID_NAMES = ("id", "node", "node_id", "nodeid", "nid", "name", "node_name")


def find_id_column(names: list[str] | None, id_col: str | int | None) -> str | int:
    """The id column of a node/feature table: `id_col` if given, else the first header name in
    ID_NAMES (case-insensitive), else position 0."""
    if id_col is not None:
        return id_col
    if names:
        lowered = [n.lower() for n in names]
        for cand in ID_NAMES:
            if cand in lowered:
                return lowered.index(cand)
    return 0
