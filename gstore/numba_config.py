"""The one place numba options come from (house rule 1).

Kernels use `@njit(**NJIT)` for serial code and `@njit(**NJIT_PARALLEL)` for `prange` loops. `nogil`
lets loader stages run kernels concurrently in threads; `cache` keeps compile time out of every run
after the first. Never fork a process after a parallel kernel ran (GNU OpenMP aborts the child): use
threads or spawned processes.

A parallel kernel must never be handed overlapping arrays (an in-place `f(x, out=x)`, or two views
of one buffer): numba declares the array arguments of a prange loop body `noalias` whenever the
kernel's own code creates no alias, and LLVM may then move a read of one argument past a write to
another. Found the hard way: `sorted_lookup(keys=col, out=col)` returned -1 for the key of the
peeled iteration of every odd-sized thread chunk (a lost edge), only in code JIT-compiled in the
process (a clean checkout's first run), never in the same kernel reloaded from numba's cache.
Callers copy first (see `IdTable.lookup`).
"""
from __future__ import annotations

NJIT: dict = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
NJIT_PARALLEL: dict = {**NJIT, "parallel": True}
