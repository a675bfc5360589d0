"""Seed handling for the generators: named sub-keys of one --seed, and keyed permutation parameters.

Loaders, samplers and the trainer derive their streams by the one rule of gstore/seeding.py
(`rng(seed, *keys)` = `default_rng([seed, *keys])`). The generators keep this older blake2b
`derive_key(seed, purpose)`: the same idea (one stream family per named purpose of one seed), but
the graphs they write are pinned by tests and users' files, so their streams must not move.
"""
from __future__ import annotations

import hashlib

import numpy as np

from gstore.errors import OptionError
from gstore.pipeline.generate.generate_kernels import PERM_ROUNDS


def derive_key(seed: int, purpose: str) -> np.uint64:
    """A 64-bit key for one random stream family ("edges", "features", ...) of `seed`."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"seed must be a non-negative integer, got {seed!r}")
    digest = hashlib.blake2b(f"gstore:{int(seed)}:{purpose}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def permutation_params(n: int, key: np.uint64) -> np.ndarray:
    """uint64 parameters of a keyed random permutation of [0, n) for the kernels' `permute`.

    Layout: [n, bits, mask, shift, (odd multiplier, its inverse mod 2^bits, addend) per round].
    """
    if n < 1:
        raise OptionError(f"permutation range must be >= 1, got {n}")
    bits = (n - 1).bit_length()
    mask = (1 << bits) - 1
    shift = max(1, (bits + 1) // 2)
    out = [n, bits, mask, shift]
    state = int(key)
    for r in range(PERM_ROUNDS):
        h = int.from_bytes(hashlib.blake2b(f"{state}:{r}".encode(), digest_size=16).digest(), "little")
        mul = ((h & mask) | 1) if bits else 1
        inv = pow(mul, -1, 1 << bits) if bits else 0
        out += [mul, inv, (h >> 64) & mask]
    return np.array(out, dtype=np.uint64)
