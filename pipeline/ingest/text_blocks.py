"""Block-wise parsing of delimited text: the decompressed stream is cut into ~block_bytes pieces at
line ends (read ahead by a background thread), comment lines are stripped only from blocks that
hold any, and each block is parsed by pyarrow's multi-threaded CSV reader with explicit column
types. When pyarrow rejects a block, `find_bad_lines` (the Python reference) re-scans just that
block to name the exact 1-based line, and skip mode drops the bad lines and parses again.
"""
from __future__ import annotations

import re
from contextlib import closing
from dataclasses import dataclass
from typing import Iterator, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from gstore.errors import InputError
from gstore.pipeline.ingest.chunks import ReadStats
from gstore.pipeline.ingest.read_ahead import read_ahead
from gstore.pipeline.ingest.skip_rows import INT_PATTERN, has_hex_prefix, parse_block_skipping
from gstore.pipeline.ingest.text_format import TextFormat, TextStream, split_fields

MAX_SKIP_EXAMPLES = 5
PIECE_BYTES = 32 << 10  # slow path: arrow re-parses pieces down to this size before a Python scan
# [0-9], not \d: Python's \d matches any Unicode digit ('\u0663'), which arrow rightly refuses
_INT_RE = re.compile(r"[ \t]*-?[0-9]+[ \t]*")
_FLOAT_RE = re.compile(r"[ \t]*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|nan|inf|infinity)[ \t]*",
                       re.IGNORECASE)
_INT64_MAX = 2**63 - 1
_PA_TYPES = {"int": pa.int64(), "str": pa.string(), "float": pa.float32(), "text": pa.string()}

ColumnKind = Literal["int", "str", "float", "text"]


@dataclass
class ColumnSpec:
    """One column to parse: 0-based `index`, `kind` ('int': int64 node id, 'str': non-empty string
    node id, 'float': float32 value, 'text': any string) and `what` (name used in messages)."""

    index: int
    kind: ColumnKind
    what: str


@dataclass
class TextBlock:
    """Whole lines of decompressed text. data: bytes-like (a memoryview into a reused read buffer,
    valid until the next block is requested; a view always starts at offset 0 of its bytearray).
    first_line: 1-based line number of data's first line; bytes_done: on-disk bytes of the file
    consumed when the block was cut."""

    data: bytes | memoryview
    first_line: int
    bytes_done: int
    line_count: int | None = None   # set by parse_block when known for free (rows == lines)

    def count_lines(self) -> int:
        if isinstance(self.data, memoryview):   # views start at offset 0 of their bytearray
            return self.data.obj.count(b"\n", 0, self.data.nbytes)
        return self.data.count(b"\n")

    def as_bytes(self) -> bytes:
        return bytes(self.data)


@dataclass
class BadLine:
    """A rejected line: kind 'columns' | 'id' | 'value' | 'utf8'; token: the rejected field."""

    line: int
    kind: str
    reason: str
    hint: str
    token: str | None = None


class IntIdRejected(Exception):
    """Internal: an int-typed id column holds the non-integer `token` at `line` (auto mode
    decides)."""

    def __init__(self, line: int, token: str | None = None) -> None:
        super().__init__(line)
        self.line = line
        self.token = token


def _fill(stream: TextStream, view: memoryview) -> int:
    """Read into `view` until it is full or the stream ends; bytes read."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


FIRST_BLOCK_BYTES = 4 << 20
# Measured (bench/ingest_readers.py): 16 MiB blocks parse 20-40% faster than 64 MiB ones (less
# fresh memory to touch, warmer caches) and need a quarter of the memory, so larger
# EdgeReadOptions.block_bytes values are capped here.
MAX_BLOCK_BYTES = 16 << 20
RING = 3   # buffers: one parsed by the consumer, one queued, one being filled


def _cut_blocks(stream: TextStream, fmt: TextFormat, block_bytes: int) -> Iterator[TextBlock]:
    """Whole-line blocks read into a ring of reused buffers (fresh memory is slow to touch, and
    slicing a 64 MiB bytes object would copy it)."""
    skip = fmt.data_offset
    while skip > 0:
        got = stream.read(min(skip, 1 << 20))
        if not got:
            return
        skip -= len(got)
    # small files get small buffers (a bytearray is zero-filled: touching 3 x 64 MiB costs ~0.3 s)
    expect = stream.raw_size * (1 if stream.compression is None else 8)
    block_bytes = max(1, min(block_bytes, MAX_BLOCK_BYTES, max(expect, 1 << 16)))
    ring: list[bytearray] = [bytearray(0) for _ in range(RING)]
    carry = b""
    k = 0
    # ramp up: a small first block lets parsing start while the big ones are read
    size = min(block_bytes, FIRST_BLOCK_BYTES)
    while True:
        need = len(carry) + size
        if len(ring[k]) < need:
            ring[k] = bytearray(need)   # first use, or a line longer than a block
        buf = ring[k]
        buf[:len(carry)] = carry
        n = _fill(stream, memoryview(buf)[len(carry):need])
        end = len(carry) + n
        if n < size:                   # end of stream: the rest is the last block
            if end:
                yield TextBlock(memoryview(buf)[:end], 0, stream.raw_pos())
            return
        cut = buf.rfind(b"\n", 0, end)
        if cut < 0:
            carry = bytes(buf[:end])   # a line longer than a block: keep reading
            continue
        carry = bytes(buf[cut + 1:end])
        yield TextBlock(memoryview(buf)[:cut + 1], 0, stream.raw_pos())   # line set by consumer
        k = (k + 1) % RING
        size = min(block_bytes, size * 4)


def iter_text_blocks(path: str, compression: str | None, fmt: TextFormat,
                     block_bytes: int) -> Iterator[TextBlock]:
    """Yield whole-line blocks of the decompressed file from data_offset on; reading and
    decompression run one block ahead in a thread (pyarrow releases the GIL)."""
    def blocks() -> Iterator[TextBlock]:
        with TextStream(path, compression) as stream:
            yield from _cut_blocks(stream, fmt, block_bytes)

    line = fmt.data_line
    with closing(read_ahead(blocks(), 1, "gstore-read")) as ahead:
        for item in ahead:
            item.first_line = line
            _refuse_binary(item, path)
            yield item
            # the consumer is done with the block: its line count is known from the parse
            # (rows == lines, see parse_block) or counted here
            line += item.line_count if item.line_count is not None else item.count_lines()


def _refuse_binary(block: TextBlock, path: str) -> None:
    """A NUL byte past the checked sample (text_checks.py) means binary data, never an id: arrow
    would take it into a string id (one memchr per block)."""
    data = block.data.obj if isinstance(block.data, memoryview) else block.data
    at = data.find(b"\x00", 0, len(block.data))
    if at >= 0:
        line = block.first_line + data.count(b"\n", 0, at)
        raise InputError("binary data (a NUL byte) in this line; not a text file", path=path,
                         line=line, hint="the file is damaged or not text: check how it was made")


def _contains(data: bytes | memoryview, needle: bytes) -> bool:
    if isinstance(data, memoryview):   # views start at offset 0 of their bytearray (memchr)
        return data.obj.find(needle, 0, data.nbytes) >= 0
    return needle in data


def _strip_comments(data: bytes | memoryview, comment: str | None) -> bytes | memoryview:
    # a single-byte search (memchr) is ~10x faster than searching for b"\n#"
    if not comment or not _contains(data, comment.encode()):
        return data
    return re.sub(rb"(?m)^" + re.escape(comment.encode()) + rb"[^\n]*(?:\n|\Z)", b"", data)


_BLANK_RUN = re.compile(rb"[ \t]+")
_EDGE_BLANK = re.compile(rb"(?m)^ | (?=\r?$)")


def _collapse_whitespace(data: bytes | memoryview) -> bytes:
    return _EDGE_BLANK.sub(b"", _BLANK_RUN.sub(b" ", data))


def _is_skipped_line(raw: bytes, fmt: TextFormat, comment: bytes | None) -> bool:
    if comment and raw.startswith(comment):
        return True
    return not raw.strip() if fmt.collapse_whitespace else not raw


def find_bad_lines(block: TextBlock, fmt: TextFormat, specs: list[ColumnSpec],
                   stop_at_first: bool) -> list[BadLine]:
    """Python reference scan of a block: every line the fast parser would reject, in order."""
    comment = fmt.comment.encode() if fmt.comment else None
    bad: list[BadLine] = []
    for k, raw in enumerate(block.as_bytes().split(b"\n")):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if _is_skipped_line(raw, fmt, comment):
            continue
        found = _check_line(raw, block.first_line + k, fmt, specs)
        if found is not None:
            bad.append(found)
            if stop_at_first:
                break
    return bad


def _check_line(raw: bytes, line: int, fmt: TextFormat, specs: list[ColumnSpec]) -> BadLine | None:
    text = raw.decode("utf-8", errors="surrogateescape")
    fields = split_fields(text, fmt.delimiter, fmt.collapse_whitespace)
    if len(fields) != fmt.num_columns:
        shown = text if len(text) <= 80 else text[:77] + "..."
        return BadLine(line, "columns", f"expected {fmt.num_columns} columns, found {len(fields)}: "
                       f"{shown!r}", "fix or remove the line, pass --delimiter, or use "
                       "--on-bad-line skip")
    for spec in specs:
        v = fields[spec.index]
        if spec.kind == "int":
            if not _INT_RE.fullmatch(v) or not -_INT64_MAX - 1 <= int(v) <= _INT64_MAX:
                return BadLine(line, "id", f"{spec.what} {v!r} is not an integer node id",
                               "use --id-type string (or auto) for non-integer ids", v)
        elif spec.kind in ("str", "text"):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return BadLine(line, "utf8", f"{spec.what} is not valid UTF-8",
                               "re-encode the file as UTF-8")
            if spec.kind == "str" and v == "":
                return BadLine(line, "id", f"empty {spec.what}", "every edge needs both node ids")
        elif spec.kind == "float" and not _FLOAT_RE.fullmatch(v):
            return BadLine(line, "value", f"{spec.what} {v!r} is not a number",
                           "fix the value or choose another column")
    return None


def line_of_row(block: TextBlock, fmt: TextFormat, row: int) -> int:
    """1-based line number of the `row`-th (0-based) data row of a block."""
    comment = fmt.comment.encode() if fmt.comment else None
    seen = 0
    for k, raw in enumerate(block.as_bytes().split(b"\n")):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if _is_skipped_line(raw, fmt, comment):
            continue
        if seen == row:
            return block.first_line + k
        seen += 1
    return block.first_line


def _read_arrow(data: bytes | memoryview, fmt: TextFormat, specs: list[ColumnSpec],
                strict: bool = False) -> pa.Table:
    names = [f"f{i}" for i in range(fmt.num_columns)]
    include = [names[s.index] for s in specs]
    return pcsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=True, block_size=1 << 20),
        parse_options=pcsv.ParseOptions(delimiter=fmt.delimiter, quote_char='"',
                                        ignore_empty_lines=not strict),
        convert_options=pcsv.ConvertOptions(
            include_columns=include,
            column_types={names[s.index]: _PA_TYPES[s.kind] for s in specs},
            null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False,
            check_utf8=True))


def _prepare(data: bytes | memoryview, fmt: TextFormat) -> bytes | memoryview:
    data = _strip_comments(data, fmt.comment)
    return _collapse_whitespace(data) if fmt.collapse_whitespace else data


def _fast_parse(data: bytes | memoryview, fmt: TextFormat, specs: list[ColumnSpec],
                strict: bool = False) -> pa.Table | None:
    """Arrow parse of a block; None when arrow rejects it (or an id is empty). strict: blank
    lines are errors too, so a parsed block has exactly one row per line."""
    data = _prepare(data, fmt)
    if len(data) == 0 or (len(data) < 4096 and not bytes(data).strip()):
        return None if strict else _empty_table(specs)
    try:
        table = _read_arrow(data, fmt, specs, strict)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):
        return None
    if not _int_ids_are_decimal(data, fmt, specs, strict):
        return None
    for spec, col in zip(specs, table.columns):
        if spec.kind == "str" and len(col) and pc.min(pc.binary_length(col)).as_py() == 0:
            return None
    return table


def _int_ids_are_decimal(data: bytes | memoryview, fmt: TextFormat, specs: list[ColumnSpec],
                         strict: bool) -> bool:
    """False when an int column holds a hex literal: arrow reads '0x10' as 16, which would make node
    '0x10' and node '16' one node. Checked only in blocks holding '0x'/'0X' (a fast byte search),
    by re-reading the int columns as text; the reference scan then names the line."""
    ints = [s for s in specs if s.kind == "int"]
    if not ints or not has_hex_prefix(data):
        return True
    as_text = _read_arrow(data, fmt, [ColumnSpec(s.index, "text", s.what) for s in ints], strict)
    return all(pc.all(pc.match_substring_regex(col, INT_PATTERN)).as_py() is not False
               for col in as_text.columns)


def _empty_table(specs: list[ColumnSpec]) -> pa.Table:
    return pa.table({f"f{s.index}": pa.array([], type=_PA_TYPES[s.kind]) for s in specs})


def _split_block(block: TextBlock, piece_bytes: int) -> list[TextBlock]:
    """Cut a block into whole-line pieces of about piece_bytes, with their own first lines."""
    data = block.as_bytes()
    pieces, start, line = [], 0, block.first_line
    while start < len(data):
        nl = data.find(b"\n", min(start + piece_bytes, len(data)) - 1)
        end = len(data) if nl < 0 else nl + 1
        pieces.append(TextBlock(data[start:end], line, block.bytes_done))
        line += data.count(b"\n", start, end)
        start = end
    return pieces


def parse_block(block: TextBlock, fmt: TextFormat, specs: list[ColumnSpec], path: str,
                on_bad_line: str, stats: ReadStats | None, int_ids_tentative: bool = False
                ) -> pa.Table:
    """Parse one block into an arrow table whose columns follow `specs` (names f<index>).

    Errors: InputError naming path and exact line (on_bad_line='error'); with 'skip' bad lines
    are dropped and counted in `stats`. With int_ids_tentative, a non-integer id raises
    IntIdRejected(line) instead (the caller switches to string ids or restarts).
    """
    # rows == lines when no line can be a comment, blank (strict) or span lines (quotes): then the
    # block's line count comes for free instead of a count over the whole block
    strict = (fmt.num_columns >= 2 and not fmt.collapse_whitespace
              and not (fmt.comment and _contains(block.data, fmt.comment.encode()))
              and not _contains(block.data, b'"'))
    table = _fast_parse(block.data, fmt, specs, strict)
    if table is not None:
        if strict:
            block.line_count = table.num_rows
        return table
    if strict:
        table = _fast_parse(block.data, fmt, specs)
        if table is not None:
            return table
    if on_bad_line == "skip" and not int_ids_tentative and (
            stats is None or len(stats.skipped_examples) >= MAX_SKIP_EXAMPLES):
        table = parse_block_skipping(_prepare(block.data, fmt), fmt, specs, stats)
        if table is not None:
            return table
    if len(block.data) > 2 * PIECE_BYTES:
        # narrow down with arrow on 16 pieces (recursively); only failing pieces of at most
        # ~2 * PIECE_BYTES get the Python scan
        piece = max(len(block.data) // 16, PIECE_BYTES)
        tables = [parse_block(p, fmt, specs, path, on_bad_line, stats, int_ids_tentative)
                  for p in _split_block(block, piece)]
        return pa.concat_tables(tables)
    bad = find_bad_lines(block, fmt, specs, stop_at_first=on_bad_line == "error")
    if int_ids_tentative:
        for b in bad:
            if b.kind == "id" and any(s.kind == "int" for s in specs):
                raise IntIdRejected(b.line, b.token)
    if not bad:
        # arrow disagrees with the reference scan: report arrow's own message
        try:
            _read_arrow(_strip_comments(block.data, fmt.comment), fmt, specs)
            msg = "cannot parse block"
        except Exception as e:  # noqa: BLE001 - re-raised as InputError below
            msg = str(e).splitlines()[0]
        raise InputError(f"cannot parse text ({msg})", path=path, line=block.first_line,
                         hint="check quoting and the delimiter near this line")
    if on_bad_line == "error":
        b = bad[0]
        raise InputError(b.reason, path=path, line=b.line, hint=b.hint)
    if stats is not None:
        stats.skipped_bad_lines += len(bad)
        for b in bad[:max(0, MAX_SKIP_EXAMPLES - len(stats.skipped_examples))]:
            stats.skipped_examples.append(f"{path}:{b.line}: {b.reason}")
    drop = {b.line - block.first_line for b in bad}
    kept = b"\n".join(raw for k, raw in enumerate(block.as_bytes().split(b"\n"))
                       if k not in drop)
    table = _fast_parse(kept, fmt, specs)
    if table is None:
        raise InputError("cannot parse text even after skipping bad lines", path=path,
                         line=block.first_line, hint="check quoting and the delimiter")
    return table

