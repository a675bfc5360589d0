"""Id typing shared by every text reader: 'int', 'string', or 'auto' (integers until a block holds a
non-integer id, then strings; after integer chunks were emitted that is a `NonIntegerIds` restart)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from gstore.pipeline.ingest.arrow_columns import (int_ids_from_arrow, ints_to_string_column,
                                                  string_column_from_arrow)
from gstore.pipeline.ingest.chunks import IdColumn, IdType, NonIntegerIds, ReadStats
from gstore.pipeline.ingest.text_blocks import ColumnSpec, IntIdRejected, TextBlock, parse_block
from gstore.pipeline.ingest.text_format import TextFormat

log = logging.getLogger(__name__)


@dataclass
class IdMode:
    """strings: emit StringColumn; auto: id_type was 'auto' (ints are tentative); emitted_int: an
    int chunk with rows was already handed out (a later switch must restart the ingest)."""

    strings: bool
    auto: bool
    emitted_int: bool = False

    @staticmethod
    def for_type(id_type: IdType) -> "IdMode":
        return IdMode(strings=id_type == "string", auto=id_type == "auto")

    @property
    def id_kind(self) -> str:
        """The ColumnSpec kind of id columns now: "str" or "int"."""
        return "str" if self.strings else "int"

    def ids(self, col: pa.Array | pa.ChunkedArray) -> IdColumn:
        """An arrow id column as int64 (n,) or StringColumn; marks int output as emitted."""
        self.emitted_int = self.emitted_int or not self.strings
        return arrow_ids(col, self.strings)


def arrow_ids(col: pa.Array | pa.ChunkedArray, strings: bool) -> IdColumn:
    """Integer or string arrow ids as int64 (n,), or as StringColumn when `strings` (integers are
    then written in decimal)."""
    if not strings:
        return int_ids_from_arrow(col)
    if pa.types.is_integer(col.type):
        return ints_to_string_column(int_ids_from_arrow(col))
    return string_column_from_arrow(col)


def parse_id_block(block: TextBlock, fmt: TextFormat, specs: Callable[[], list[ColumnSpec]],
                   path: str, mode: IdMode, on_bad_line: str = "error",
                   stats: ReadStats | None = None) -> pa.Table:
    """parse_block with the 'auto' rule: a non-integer id switches `mode` to strings (re-parsing
    the block with `specs()` rebuilt), or raises NonIntegerIds once int chunks were emitted."""
    try:
        return parse_block(block, fmt, specs(), path, on_bad_line, stats,
                           int_ids_tentative=mode.auto and not mode.strings)
    except IntIdRejected as e:
        if mode.emitted_int:
            raise NonIntegerIds(path, e.line, e.token) from None
        mode.strings = True
        if e.line > fmt.data_line:
            # integer rows came first: "7" and "007" are now different nodes, so say it loudly
            msg = switch_message(e.token, restarted=False)
            log.warning("%s:%d: %s", path, e.line, msg)
            if stats is not None:
                stats.note(path, "ids", msg, e.line)
        else:
            log.info("%s:%d: non-integer node id, reading ids as strings", path, e.line)
        return parse_block(block, fmt, specs(), path, on_bad_line, stats)


def switch_message(token: str | None, restarted: bool) -> str:
    """The one-line note for an 'auto' id type that turned to strings after integer ids."""
    what = "a non-integer id" if token is None else f"non-integer id {token!r}"
    how = "the build restarted with string ids" if restarted else "all ids are read as strings"
    return (f"{what} after integer ids: {how} (so '7' and '007' are different nodes); pass "
            "--id-type int to make this an error, or --id-type string to say so up front")
