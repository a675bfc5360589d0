"""Crash-test hook: `fault_point(name)` SIGKILLs this process when env GSTORE_FAULT_AT equals `name`.

Tests use it to kill a command at an exact point (between two writes, inside an epoch) and check
that what a kill leaves behind is safe and resumable. Unset, it costs one environment lookup.
"""
from __future__ import annotations

import os
import signal

FAULT_ENV = "GSTORE_FAULT_AT"


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
