"""The one place numba options come from (house rule 1).

Kernels use `@njit(**NJIT)` for serial code and `@njit(**NJIT_PARALLEL)` for `prange` loops. `nogil`
lets loader stages run kernels concurrently in threads; `cache` keeps compile time out of every run
after the first. Never fork a process after a parallel kernel ran (GNU OpenMP aborts the child): use
threads or spawned processes.
"""
from __future__ import annotations

NJIT: dict = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
NJIT_PARALLEL: dict = {**NJIT, "parallel": True}
