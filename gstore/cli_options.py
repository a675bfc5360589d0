"""Options every `gstore` command shares, defined once so they mean the same thing everywhere.

The conventions (docs/cli.md, checked for every registered command by tests/test_cli_consistency.py):

* the store a command reads is its first positional argument, `STORE`;
* `-o/--output` is always the path the command writes (`output_option`);
* a short flag means one thing across commands;
* `--memory-budget` has one default, `gstore.memory.DEFAULT_MEMORY_BUDGET` (`memory_budget_option`);
* `--json` prints exactly one JSON object on stdout and nothing else there (`json_option`, `emit_json`);
  progress bars and logs go to stderr;
* `-v/--verbose` works before and after the subcommand, with the same meaning (`verbose_option`).
"""
from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import click
import numpy as np

from gstore.memory import DEFAULT_MEMORY_BUDGET

OUTPUT_HELP_PREFIX = "Path this command writes:"
_VERBOSITY_KEY = "gstore.verbosity"


class _CurrentStderrHandler(logging.StreamHandler):
    """A stream handler bound to whatever `sys.stderr` is when a record is emitted.

    click's test runner swaps sys.stderr per invocation; a handler that kept the stream of the first
    run would write into a closed buffer in the next one.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


_handler: logging.Handler | None = None


def set_verbosity(count: int) -> None:
    """-v count -> what gstore logs to stderr: 0 warnings, 1 info, 2+ debug.

    Only gstore's own loggers are raised (`-vv` must not turn on numba's compiler debug output). At
    0 the `gstore` logger goes back to inheriting its level, so a library caller's (or pytest's
    caplog's) logging setup is not overridden by an earlier CLI run in the same process.
    """
    global _handler
    level = logging.WARNING if count <= 0 else logging.INFO if count == 1 else logging.DEBUG
    logger = logging.getLogger("gstore")
    if _handler is None:
        _handler = _CurrentStderrHandler()
        _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(_handler)
    _handler.setLevel(level)
    logger.setLevel(level if count > 0 else logging.NOTSET)


def _verbose_callback(ctx: click.Context, param: click.Parameter, value: int) -> None:
    # ctx.meta is shared by the group's and the subcommand's contexts, so `gstore -v ingest -v` is -vv
    total = ctx.meta.get(_VERBOSITY_KEY, 0) + (value or 0)
    ctx.meta[_VERBOSITY_KEY] = total
    if value or ctx.parent is None:
        set_verbosity(total)


def verbose_option(f: Callable) -> Callable:
    """`-v/--verbose` (count): accepted by the group and after every subcommand; the counts add up."""
    return click.option("-v", "--verbose", count=True, expose_value=False, callback=_verbose_callback,
                        help="Log more to stderr (-v info, -vv debug); before or after the subcommand.")(f)


def quiet_option(f: Callable) -> Callable:
    """`-q/--quiet`: no progress output on stderr."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or phase lines on stderr.")(f)


def json_option(f: Callable) -> Callable:
    """`--json`: the command's result as exactly one JSON object on stdout (see `emit_json`)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as one JSON object on stdout (nothing else goes there).")(f)


def output_option(what: str, *aliases: str, **kwargs: Any) -> Callable:
    """`-o/--output PATH`: the path the command writes; `what` says what lands there.

    `aliases` keeps an older long name working (demo's --workdir); pass the parameter name last.
    """
    kwargs.setdefault("type", click.Path(path_type=Path))
    return click.option("-o", "--output", *aliases, help=f"{OUTPUT_HELP_PREFIX} {what}", **kwargs)


def memory_budget_option(what: str) -> Callable:
    """`--memory-budget SIZE` with the one default every command uses."""
    return click.option("--memory-budget", default=DEFAULT_MEMORY_BUDGET, show_default=True,
                        help=f"Peak memory target, e.g. 512MiB or 8GiB: {what}")


def examples(*lines: str) -> str:
    """A click epilog of example command lines, kept verbatim (`\\b` stops click's rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@runtime_checkable
class JsonReport(Protocol):
    """A typed result that knows its JSON form (IngestReport, PartitionResult, StoreSummary, ...)."""

    def to_json(self) -> dict: ...


def json_safe(value: Any) -> Any:
    """JSON-safe copy: reports and dataclasses as dicts, Paths as str, non-finite floats -> null
    (strict JSON: `jq` and most parsers reject NaN)."""
    if isinstance(value, JsonReport):
        value = value.to_json()
    elif is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def emit_json(result: Any) -> None:
    """Print `result` (a dict, or a dataclass with to_json) as one line of strict JSON on stdout."""
    click.echo(json.dumps(json_safe(result), allow_nan=False, default=str))
