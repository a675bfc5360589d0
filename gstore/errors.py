"""The GStoreError hierarchy: every user-facing failure names the file, the line and a fix.

The CLI turns these into one-line click errors at a single boundary (gstore.cli); library code raises
them instead of asserting, so a bad input never surfaces as a traceback.
"""
from __future__ import annotations

from pathlib import Path


class GStoreError(Exception):
    """Base class. `str(err)` is the one-line message shown to users.

    Args:
        message: what is wrong.
        path: the file (or store) concerned, if any.
        line: 1-based line number in `path`, if known.
        hint: how to fix it.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class InputError(GStoreError):
    """A user input file (edges, nodes, features, labels) is malformed, missing or inconsistent."""


class OptionError(GStoreError):
    """Command-line or API options are invalid or contradict each other."""


class StoreError(GStoreError):
    """A store on disk is missing, incomplete, corrupt or of an unsupported format version."""


class StoreExistsError(StoreError):
    """The output store already exists and --force was not given."""


class FormatVersionError(StoreError):
    """The store was written with a format version this gstore cannot read."""


class BudgetError(GStoreError):
    """The memory budget is too small for the requested operation."""


class LoaderError(GStoreError):
    """A loader stage failed; the original exception is chained as __cause__."""
