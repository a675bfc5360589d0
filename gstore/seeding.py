"""The one seeding rule: every random stream of a run derives from (seed, *keys) the same way.

    rng(seed, epoch)                      # the epoch's shuffle (loader seed nodes, clusters, SAINT)
    derive_seed(seed, epoch, index)       # a batch's sampler seed
    derive_seed(seed, "torch", epoch, i)  # the trainer's torch seed per batch
    derive_seed(seed, "init")             # model initialisation

`rng(seed, *keys)` is `np.random.default_rng([seed, *keys])`: numpy's SeedSequence hashes the whole
list, so (5, 1) and (6, 0) are unrelated streams (the old `default_rng(seed + epoch)` made seed 5 /
epoch 1 equal seed 6 / epoch 0). Keys are non-negative ints or strings; a string becomes its
crc32 (stable across runs and platforms, unlike `hash`), and tagging a family with a string keeps
it apart from the integer-keyed ones. Negative ints are taken mod 2^64, as the kernels' hashes do.

The generators (pipeline/generate/seeding.py) keep their own blake2b `derive_key`: graphs they wrote
are pinned by tests and by users' stored files, so their streams must not move.
"""
from __future__ import annotations

import zlib

import numpy as np

from gstore.errors import OptionError

_U64 = (1 << 64) - 1
_SEED_BITS = 63


def key_int(key) -> int:
    """One entropy word of a seed list: an int as uint64, a str as its crc32."""
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8"))
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise OptionError(f"seed keys must be integers or strings, got {type(key).__name__} {key!r}")
    return int(key) & _U64


def seed_sequence(seed: int, *keys: int | str) -> np.random.SeedSequence:
    """The SeedSequence of (seed, *keys); `rng` and `derive_seed` are views of it."""
    return np.random.SeedSequence([key_int(seed), *(key_int(k) for k in keys)])


def rng(seed: int, *keys: int | str) -> np.random.Generator:
    """`np.random.default_rng([seed, *keys])` (strings as crc32): the random stream of one step."""
    return np.random.default_rng(seed_sequence(seed, *keys))


def derive_seed(seed: int, *keys: int | str) -> int:
    """An int in [0, 2^63) for (seed, *keys): a seed for another generator (a sampler kernel, torch)."""
    lo, hi = seed_sequence(seed, *keys).generate_state(2, dtype=np.uint32)
    return ((int(hi) << 32) | int(lo)) & ((1 << _SEED_BITS) - 1)
