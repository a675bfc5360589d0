"""Progress reporting hooks. Library code reports phases through a `Progress`; only the CLI draws bars.

Usage in library code::

    with progress.phase("sort buckets", total=n_buckets, unit="bucket") as bar:
        ...
        bar.advance(1)
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Protocol

log = logging.getLogger("gstore")


class PhaseBar(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def set_postfix(self, text: str) -> None:
        """A short status shown after the bar (e.g. 'loss 0.41, 12.3 batches/s')."""


class Progress:
    """Silent progress sink: logs each phase at INFO. Subclassed by the CLI's tqdm sink."""

    @contextmanager
    def phase(self, name: str, total: int | None = None, unit: str = "it",
              unit_scale: bool = False) -> Iterator[PhaseBar]:
        log.info("%s ...", name)
        yield _NullBar()
        log.info("%s done", name)


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass

    def set_postfix(self, text: str) -> None:
        pass


NULL_PROGRESS = Progress()
