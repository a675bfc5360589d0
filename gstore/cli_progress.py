"""tqdm progress bars for the CLI (library code only sees the `Progress` interface)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import click

from gstore.progress import PhaseBar, Progress


class TqdmProgress(Progress):
    """Draws one tqdm bar per phase on stderr; `quiet` turns it into the silent sink."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    @contextmanager
    def phase(self, name: str, total: int | None = None, unit: str = "it",
              unit_scale: bool = False) -> Iterator[PhaseBar]:
        if self.quiet:
            with super().phase(name, total, unit, unit_scale) as bar:
                yield bar
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=name, unit=unit, unit_scale=unit_scale, file=sys.stderr,
                  leave=True, dynamic_ncols=True) as bar:
            yield _TqdmBar(bar)


class _TqdmBar:
    def __init__(self, bar) -> None:
        self.bar = bar

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
