"""Loader state for resuming mid-epoch, with the configuration that decides which batches come out.

A state saved by one loader and loaded into another is only meaningful when both would produce the
same schedule and the same batches: same store, same seed nodes, same batch size / fanouts / clusters,
same shuffling, seed and sampler options. `LoaderConfig` records exactly those options (nothing that
only affects speed: prefetch, workers, device, cache, sort order), and `load_state_dict` refuses a
state whose config differs, naming every option that does and both values.

Arrays (seed ids, the cluster index) enter the config as a crc32 fingerprint with their length,
computed once per loader on first use (one pass over the array: ~1 s per GB, only when a state is
saved or loaded).
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from gstore.errors import OptionError

# 3: epoch shuffles and batch seeds follow gstore/seeding.py (rng(seed, epoch)); a version-2 state
# was saved under default_rng(seed + epoch), so resuming it here would hand out other batches
STATE_VERSION = 3


def array_fingerprint(a: np.ndarray | None) -> str:
    """'n=<len>:crc32=<hex>' of an array's bytes (C order), or 'none'; chunked so a memory-mapped
    array is streamed rather than copied."""
    if a is None:
        return "none"
    a = np.asarray(a)
    crc = 0
    flat = a.reshape(-1)
    step = max(1, (64 << 20) // max(1, a.itemsize))
    for i in range(0, len(flat), step):
        crc = zlib.crc32(np.ascontiguousarray(flat[i:i + step]).view(np.uint8), crc)
    return f"n={len(flat)}:{a.dtype.str}:crc32={crc:08x}"


def store_fingerprint(store) -> str:
    """Identity of a store's graph: sizes, build time and the recorded checksums of its CSR arrays
    (a rebuilt or reordered store differs; the same store opened twice does not)."""
    parts = [f"nodes={int(store.num_nodes)}", f"edges={int(store.num_edges)}"]
    manifest = getattr(store, "manifest", None)
    if manifest is not None:
        parts.append(f"created={getattr(manifest, 'created', '')}")
        arrays = getattr(manifest, "arrays", {}) or {}
        for name in ("indptr", "indices"):
            rec = arrays.get(name)
            if rec is not None:
                parts.append(f"{name}={getattr(rec, 'checksum', '')}")
    return ",".join(parts)


def sampler_name(sampler) -> str:
    """Class of the sampler and its seed when it has one (an injected sampler is otherwise opaque)."""
    name = f"{type(sampler).__module__}.{type(sampler).__qualname__}"
    seed = getattr(sampler, "seed", None)
    return name if seed is None else f"{name}(seed={seed})"


@dataclass(frozen=True)
class LoaderConfig:
    """Every loader option that changes which batches come out, or what is in them.

    kind: "neighbor", "cluster" or "rows". store: store_fingerprint. seeds: array_fingerprint of the seed
    node ids (neighbor) or of the loss-split ids (cluster, "none" without a split). sampler:
    sampler_name. Options of the other kind stay None.
    """

    kind: str
    store: str
    seed: int
    num_batches: int
    shuffle: bool
    drop_last: bool
    seeds: str
    sampler: str
    batch_size: int | None = None
    fanouts: tuple[int, ...] | None = None
    replace: bool | None = None
    num_parts: int | None = None
    clusters_per_batch: int | None = None
    clusters: str | None = None          # array_fingerprint of the cluster index (partptr, perm)
    normalize: bool | None = None
    self_loops: bool | None = None
    seeds_first: bool | None = None      # True: cluster batches put their loss nodes first (None: not)
    arrays: tuple[str, ...] | None = None   # row batches: the (N, F_i) arrays side by side, in order

    def to_json(self) -> dict:
        d = asdict(self)
        for name in ("fanouts", "arrays"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    @staticmethod
    def from_json(d: dict) -> "LoaderConfig":
        if not isinstance(d, dict):
            raise OptionError(f"loader state config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(LoaderConfig)}
        unknown = sorted(set(d) - known)
        missing = sorted(f.name for f in fields(LoaderConfig)
                         if f.default is not None and f.name not in d)  # required fields
        if unknown or missing:
            raise OptionError(f"loader state config has unknown keys {unknown} / lacks {missing}",
                              hint="save the state with this gstore version's loader.state_dict()")
        d = dict(d)
        if d.get("fanouts") is not None:
            d["fanouts"] = tuple(int(f) for f in d["fanouts"])
        if d.get("arrays") is not None:
            d["arrays"] = tuple(str(a) for a in d["arrays"])
        return LoaderConfig(**d)

    def differences(self, other: "LoaderConfig") -> list[str]:
        """'option: saved X, this loader Y' for every option where `other` (saved) differs."""
        out = []
        for f in fields(self):
            mine, saved = getattr(self, f.name), getattr(other, f.name)
            if mine != saved:
                out.append(f"{f.name}: saved {_show(saved)}, this loader {_show(mine)}")
        return out


def _show(v) -> str:
    return str(list(v)) if isinstance(v, tuple) else repr(v)


@dataclass
class LoaderState:
    """Where a loader stands: epoch, batches of it already handed out, and its config."""

    epoch: int
    batches_consumed: int
    config: LoaderConfig
    version: int = field(default=STATE_VERSION)

    def to_json(self) -> dict:
        # seed and num_batches stay at the top level, where states of earlier versions had them
        return {"version": self.version, "epoch": self.epoch,
                "batches_consumed": self.batches_consumed, "seed": self.config.seed,
                "num_batches": self.config.num_batches, "config": self.config.to_json()}

    @staticmethod
    def from_json(d: dict) -> "LoaderState":
        if not isinstance(d, dict) or "epoch" not in d or "batches_consumed" not in d:
            raise OptionError("not a loader state (needs 'epoch', 'batches_consumed' and 'config')",
                              hint="pass what loader.state_dict() returned")
        if "config" not in d:
            raise OptionError("loader state has no config (saved by an older gstore): it cannot be "
                              "checked against this loader's options",
                              hint="restart the epoch with loader.set_epoch(state['epoch'])")
        version = d.get("version")
        if version != STATE_VERSION:
            raise OptionError(f"loader state version {version!r} was saved by a gstore whose shuffling "
                              f"rule differs (this one reads version {STATE_VERSION}): resuming it "
                              "would give other batches",
                              hint="restart the epoch with loader.set_epoch(state['epoch'])")
        epoch, consumed = int(d["epoch"]), int(d["batches_consumed"])
        if epoch < 0 or consumed < 0:
            raise OptionError(f"loader state has a negative epoch or batch count ({epoch}, {consumed})")
        return LoaderState(epoch, consumed, LoaderConfig.from_json(d["config"]), version)
