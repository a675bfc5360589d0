"""Progress output for the CLI (library code only sees the `Progress` interface).

On a terminal each phase is a live tqdm bar on stderr. When stderr is not a terminal (a log file, a
pipe, CI) a redrawn bar would land in the log once per refresh (tqdm writes its start, its updates and
its close as separate `\\r` frames), so each phase prints exactly one line when it ends instead:

    read edges: 1.26M B in 0.4 s (3.15M B/s)

`--quiet` silences both.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator

import click

from gstore.cli_options import quiet_option  # noqa: F401  (re-exported: commands import it from here)
from gstore.progress import PhaseBar, Progress


class TqdmProgress(Progress):
    """One tqdm bar per phase on a terminal, one summary line per phase otherwise; `quiet`: silent."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    @contextmanager
    def phase(self, name: str, total: int | None = None, unit: str = "it",
              unit_scale: bool = False) -> Iterator[PhaseBar]:
        if self.quiet:
            with super().phase(name, total, unit, unit_scale) as bar:
                yield bar
            return
        if not _stderr_is_terminal():
            with _line_phase(name, total, unit, unit_scale) as bar:
                yield bar
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=name, unit=unit, unit_scale=unit_scale, file=sys.stderr,
                  leave=True, dynamic_ncols=True) as bar:
            yield _TqdmBar(bar)


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:          # closed stream
        return False


class _TqdmBar:
    def __init__(self, bar) -> None:
        self.bar = bar

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=False)


class _CountingBar:
    def __init__(self) -> None:
        self.n = 0
        self.postfix = ""

    def advance(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, text: str) -> None:
        self.postfix = text


def format_amount(n: float, unit: str, unit_scale: bool) -> str:
    """1.21M edges (unit_scale) or 1,210,000 edges."""
    if unit_scale:
        from tqdm import tqdm

        return f"{tqdm.format_sizeof(n)} {unit}"
    return f"{int(n):,} {unit}"


def phase_line(name: str, done: int, total: int | None, unit: str, unit_scale: bool,
               seconds: float) -> str:
    """The one line a finished phase prints when stderr is not a terminal."""
    if done == 0 and total is None:           # a phase that reports no counts, only its end
        return f"{name}: done in {seconds:.1f} s"
    amount = format_amount(done, unit, unit_scale)
    if total is not None and total != done:
        amount = f"{amount} of {format_amount(total, unit, unit_scale)}"
    rate = f" ({format_amount(done / seconds, unit, unit_scale)}/s)" if seconds > 0 and done else ""
    return f"{name}: {amount} in {seconds:.1f} s{rate}"


@contextmanager
def _line_phase(name: str, total: int | None, unit: str, unit_scale: bool) -> Iterator[PhaseBar]:
    bar = _CountingBar()
    t0 = time.perf_counter()
    yield bar
    # only a phase that completed reports; a failing one leaves the error message as the last word
    line = phase_line(name, bar.n, total, unit, unit_scale, time.perf_counter() - t0)
    click.echo(f"{line}; {bar.postfix}" if bar.postfix else line, err=True)
