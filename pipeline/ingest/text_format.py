"""Input-file sniffing: container kind (parquet / npy / text), compression (by magic bytes) and, for
text, the delimiter, comment character and header row, detected from the first few KB.

Detection rules (docs/ingest-inputs.md has the user-facing version):
- compression: gzip (1f 8b), bz2 ('BZh'), zstd (28 b5 2f fd) by magic bytes, whatever the extension.
- comment: lines starting with '#' (SNAP) or '%' (Matrix Market, KONECT) are comments. A
  '%%MatrixMarket' banner also marks the first non-comment line (the size line) as a header to drop.
- delimiter: the first of TAB , ; | SPACE that splits every sampled data line into the same number
  (>= 2) of fields; runs of blanks (or leading/trailing blanks) switch on whitespace collapsing.
- header: the first data line is a header when it has a non-numeric field where the following lines
  are numeric, or when all its fields look like column names (source, target, src, dst, id, ...).
Explicit options (delimiter, comment, header) always win over detection.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from gstore.errors import InputError, OptionError

SAMPLE_BYTES = 64 << 10
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x28\xb5\x2f\xfd": "zstd"}
_DELIMITERS = ["\t", ",", ";", "|", " "]
_INT_RE = re.compile(r"\s*-?\d+\s*")
_NUM_RE = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*|\s*[-+]?(nan|inf|infinity)\s*",
                     re.IGNORECASE)
_HEADER_WORDS = {"source", "target", "src", "dst", "dest", "destination", "from", "to", "u", "v",
                 "head", "tail", "id", "node", "nodes", "node_id", "nodeid", "weight", "w", "label",
                 "split", "sender", "receiver", "i", "j", "start", "end", "time", "timestamp"}
_HEADER_PARTS = ("node", "source", "target", "weight", "src", "dst", "_id", "label")


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
        self._raw = pa.OSFile(self.path, "rb")
        self.raw_size = self._raw.size()
        self._stream: pa.NativeFile | BinaryIO = (
            pa.CompressedInputStream(self._raw, compression) if compression else self._raw)

    def read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except (OSError, pa.ArrowException) as e:
            raise self._read_error(e) from None

    def readinto(self, view: memoryview) -> int:
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
    return next(csv.reader([line], delimiter=delimiter))


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


def _looks_like_header(first: list[str], rest: list[list[str]]) -> bool:
    tokens = [f.strip().strip('"').strip().lower() for f in first]
    if all(_NUM_RE.fullmatch(t) for t in tokens):
        return False
    # name-like: a known column name, or one containing a known part and no digit (so that
    # string ids such as 'node17' are not mistaken for a header)
    if all(t in _HEADER_WORDS or (any(p in t for p in _HEADER_PARTS)
                                  and not any(ch.isdigit() for ch in t)) for t in tokens):
        return True
    if not rest:
        return False
    # a non-numeric field where every later line is numeric (int ids under a name row)
    for k, t in enumerate(tokens):
        if not _NUM_RE.fullmatch(t) and all(k < len(r) and _NUM_RE.fullmatch(r[k]) for r in rest):
            return True
    return False


def detect_text_format(path: str | Path, sample: bytes, *, delimiter: str | None = None,
                       comment: str | None = None, header: bool | None = None,
                       header_required: bool = False, min_columns: int = 2) -> TextFormat:
    """Detect the layout of a delimited text file from its first bytes; explicit arguments win.

    `header_required`: callers naming columns by header name force a header when undetected.
    `min_columns`: 1 allows single-column files (node tables holding only ids).
    Raises InputError when no data line exists or no delimiter splits lines into >= 2 fields.
    """
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
    if header is None:
        header = header_required or _looks_like_header(first_fields, rest)
    names = None
    if header and not matrix_market:
        names = [f.strip().strip('"').strip() for f in first_fields]
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
                      data_offset=data_offset, data_line=data_offset_idx + 1)


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
