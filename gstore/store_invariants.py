"""Structural invariants of a store: the facts kernels rely on to stay inside their arrays.

numba kernels walk `indices[indptr[v]:indptr[v+1]]` and index node arrays by the values they read,
without bounds checks. A store whose bytes were damaged after the build (or a bug) could make them read
far outside the memory map (a segfault) or return silently wrong batches. So before any kernel sees
the CSR (`GraphStore.csr()`), every rule below is checked once per process, by one sequential pass
over each array (4 MiB blocks, vectorised), and the result is cached by the files' identity, in the
process and, for passed checks, across processes in the store's `gstore-checked.json` (see below):

    indptr            int, shape (N+1,), indptr[0] == 0, non-decreasing, indptr[N] == num_edges
    indices           int, shape (E,), E == num_edges, 0 <= v < N
    weights           shape (E,)
    features          N rows;  node_ids (int ids) shape (N,)
    node_ids/offsets  int, shape (N+1,), starts at 0, non-decreasing, ends at len(node_ids/utf8)
    labels            int, shape (N,), -1 <= v < num_classes
    splits/<name>     int, 1-D, 0 <= v < N
    partition/k<K>/   parts int (N,) in [0, K); partptr int (K+1,) offsets ending at N;
                      perm and pos int (N,) in [0, N)

A violation names the array and its first bad position (`StoreError`), never a crash.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gstore.block_crc import read_blocks
from gstore.errors import StoreError
from gstore.shard_array import ArrayRecord, shard_path

log = logging.getLogger(__name__)

_MAX_VALUE = np.iinfo(np.int64).max
UNRECORDED = "is named by the manifest but has no array record"


@dataclass(frozen=True)
class Rule:
    """What one array must satisfy. kind "offsets": starts at 0, non-decreasing, ends at `last`;
    kind "range": every value v has lo <= v < hi; kind "shape": rows only."""

    array: str
    kind: str                      # "offsets" | "range" | "shape"
    rows: int | None = None        # required number of rows (None: any)
    lo: int = 0
    hi: int = _MAX_VALUE
    last: int = 0
    meaning: str = ""              # what the values are, for the error message


@dataclass(frozen=True)
class Violation:
    """The first broken rule of one array. position: first bad element (None for shape/dtype)."""

    array: str
    message: str
    position: int | None = None

    def to_json(self) -> dict:
        return {"array": self.array, "position": self.position, "message": self.message}

    def error(self, path: str | Path) -> StoreError:
        return StoreError(f"corrupt array {self.array}: {self.message}", path=path,
                          hint="the store is corrupt; run `gstore verify` on it, then rebuild it")


def structural_rules(manifest) -> list[Rule]:
    """Every rule that applies to the arrays recorded in `manifest` (a StoreManifest)."""
    n, e = int(manifest.num_nodes), int(manifest.num_edges)
    arrays = manifest.arrays
    rules = [Rule("indptr", "offsets", rows=n + 1, last=e, meaning="row offsets into indices"),
             Rule("indices", "range", rows=e, lo=0, hi=n, meaning="node ids")]
    if "weights" in arrays:
        rules.append(Rule("weights", "shape", rows=e))
    if "features" in arrays:
        rules.append(Rule("features", "shape", rows=n))
    if "node_ids" in arrays:
        rules.append(Rule("node_ids", "shape", rows=n))
    if "node_ids/offsets" in arrays and "node_ids/utf8" in arrays:
        rules.append(Rule("node_ids/offsets", "offsets", rows=n + 1,
                          last=int(arrays["node_ids/utf8"].shape[0]), meaning="string id offsets"))
    if "labels" in arrays:
        classes = manifest.num_classes if manifest.num_classes is not None else (
            len(manifest.label_names) if manifest.label_names else None)
        rules.append(Rule("labels", "range", rows=n, lo=-1,
                          hi=_MAX_VALUE if classes is None else int(classes), meaning="class indices"))
    for name in arrays:
        if name.startswith("splits/"):
            rules.append(Rule(name, "range", lo=0, hi=n, meaning="node ids"))
    for key, meta in manifest.partitions.items():
        if not isinstance(meta, dict) or "arrays" not in meta:
            continue
        k = int(meta.get("num_parts", key))
        names = meta["arrays"]
        if "parts" in names:
            rules.append(Rule(names["parts"], "range", rows=n, lo=0, hi=k, meaning="part ids"))
        if "partptr" in names:
            rules.append(Rule(names["partptr"], "offsets", rows=k + 1, last=n, meaning="part offsets"))
        for role in ("perm", "pos"):
            if role in names:
                rules.append(Rule(names[role], "range", rows=n, lo=0, hi=n, meaning="node positions"))
    return rules


class RuleChecker:
    """Checks one rule over an array's values fed in order, block by block (any block sizes)."""

    def __init__(self, rule: Rule, rec: ArrayRecord) -> None:
        self.rule = rule
        self.dtype = np.dtype(rec.dtype).newbyteorder("<")
        self.rows = int(rec.shape[0])
        self.violation: Violation | None = self._check_metadata(rec)
        self._seen = 0                 # elements fed so far
        self._prev: int | None = None  # last value of the previous block (offsets)
        self._less = np.empty(0, dtype=bool)

    def _check_metadata(self, rec: ArrayRecord) -> Violation | None:
        r = self.rule
        if r.rows is not None and self.rows != r.rows:
            return Violation(r.array, f"has {self.rows} rows, the manifest implies {r.rows}")
        if r.kind != "shape":
            if self.dtype.kind not in "iu":
                return Violation(r.array, f"has dtype {rec.dtype}, expected an integer type")
            if len(rec.shape) != 1:
                return Violation(r.array, f"has shape {rec.shape}, expected 1-D")
        if r.kind == "offsets" and self.rows == 0:
            return Violation(r.array, "is empty, expected at least one offset")
        return None

    @property
    def needs_data(self) -> bool:
        return self.violation is None and self.rule.kind != "shape"

    def feed(self, raw: np.ndarray) -> None:
        """Feed the next whole elements, as raw little-endian bytes (uint8)."""
        if not self.needs_data or len(raw) == 0:
            return
        v = raw.view(self.dtype)
        first = self._seen
        self._seen += len(v)
        r = self.rule
        if r.kind == "range":
            if r.lo == 0 and self.dtype.kind == "i":
                # one pass instead of min + max: seen as unsigned, negatives are huge too
                bad = int(v.view(self.dtype.str.replace("i", "u")).max()) >= r.hi
            else:
                bad = int(v.min()) < r.lo or int(v.max()) >= r.hi
            if bad:
                i = int(np.flatnonzero((v < r.lo) | (v >= r.hi))[0])
                self.violation = Violation(r.array, f"{r.array}[{first + i}] = {int(v[i])} is outside "
                                           f"[{r.lo}, {r.hi}) ({r.meaning})", first + i)
            return
        if first == 0 and int(v[0]) != 0:
            self.violation = Violation(r.array, f"{r.array}[0] = {int(v[0])}, expected 0 ({r.meaning})", 0)
            return
        if self._prev is not None and int(v[0]) < self._prev:
            self.violation = Violation(r.array, f"{r.array}[{first}] = {int(v[0])} < {r.array}[{first - 1}] = "
                                       f"{self._prev}: {r.meaning} must not decrease", first)
            return
        if len(self._less) < len(v) - 1:
            self._less = np.empty(len(v) - 1, dtype=bool)     # reused: fresh memory is slow
        less = np.less(v[1:], v[:-1], out=self._less[:len(v) - 1])
        if less.any():
            i = int(np.flatnonzero(less)[0]) + 1
            self.violation = Violation(r.array, f"{r.array}[{first + i}] = {int(v[i])} < {r.array}[{first + i - 1}] = "
                                       f"{int(v[i - 1])}: {r.meaning} must not decrease", first + i)
            return
        self._prev = int(v[-1])

    def result(self) -> Violation | None:
        r = self.rule
        if self.needs_data and self._seen != self.rows:
            return Violation(r.array, f"could read only {self._seen} of its {self.rows} rows")
        if self.needs_data and r.kind == "offsets" and self._prev != r.last:
            return Violation(r.array, f"{r.array}[{self.rows - 1}] = {self._prev}, expected {r.last} "
                             f"({r.meaning} must end at the total)", self.rows - 1)
        return self.violation


def check_rule(root: Path, rec: ArrayRecord, rule: Rule) -> Violation | None:
    """One sequential pass over the real rows of `rec` (padding excluded)."""
    checker = RuleChecker(rule, rec)
    if checker.needs_data and rec.logical_bytes:
        path = shard_path(Path(root) / rec.name, len(rec.shape))
        try:
            for _, view in read_blocks(path, rec.logical_bytes):
                checker.feed(view)
        except OSError as exc:
            return Violation(rec.name, f"unreadable: {exc.strerror or exc}")
    return checker.result()


def find_violations(root: Path, manifest, names: list[str] | tuple[str, ...] | None = None, *,
                    record: bool = False) -> list[Violation]:
    """Check the rules of `names` (every rule when None); the first violation of each broken array.
    `record`: write passed checks to the store's CHECKED_FILE (builders only: readers never write)."""
    out = []
    try:
        rules = structural_rules(manifest)
    except (KeyError, TypeError, ValueError) as exc:    # a hand-edited or damaged manifest
        return [Violation("manifest", f"malformed entry ({type(exc).__name__}: {exc})")]
    for rule in rules:
        if names is not None and rule.array not in names:
            continue
        rec = manifest.arrays.get(rule.array)
        if rec is None:
            # rules exist only for recorded arrays, the CSR and the arrays a partition entry names
            out.append(Violation(rule.array, "is missing from the manifest"
                                 if rule.array in ("indptr", "indices") else UNRECORDED))
            continue
        found = _cached(root, rec, rule, record)
        if found is not None:
            out.append(found)
    return out


def check_structure(root: Path, manifest, names: list[str] | tuple[str, ...] | None = None, *,
                    record: bool = False) -> None:
    """Raise StoreError for the first broken rule among `names` (all when None); cached per process,
    and across processes where a build recorded it (`record`)."""
    found = find_violations(root, manifest, names, record=record)
    if found:
        raise found[0].error(root)


# (real path of the array file, its stat identity, the rule) -> result. The stat identity changes when
# the file is rewritten or replaced, so a store rebuilt in place is checked again.
_CACHE: dict[tuple, Violation | None] = {}
_CACHE_LOCK = threading.Lock()

# Passed checks outlive the process in this file of the store's root, written by the build (ingest,
# reorder: StoreBuilder.commit) before the store is published; readers only read it. At 10^9 edges
# the pass reads 8 GiB, and every training process (every torchrun rank) would pay it before its
# first batch. An entry counts only while the array file keeps its identity (device, inode, size,
# mtime and ctime in ns: any write, truncation or replacement changes ctime, which no user call can
# set back) and the record and rule are the ones checked. A damaged or foreign file is ignored; a read-only store is
# checked again by each process. `gstore verify` never trusts it.
CHECKED_FILE = "gstore-checked.json"
CHECKED_VERSION = 1


def _identity(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _entry(rec: ArrayRecord, rule: Rule, ident: list[int]) -> dict:
    return {"identity": ident, "record": rec.to_json(), "rule": asdict(rule)}


def _load_checked(root: Path) -> dict:
    try:
        with open(Path(root) / CHECKED_FILE, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(d, dict) or d.get("version") != CHECKED_VERSION or not isinstance(d.get("arrays"), dict):
        return {}
    return d["arrays"]


def _save_checked(root: Path, name: str, entry: dict) -> None:
    """Add one passed check to the store's file (atomic replace; concurrent writers lose at most an
    entry, which costs a check, never a wrong answer)."""
    target = Path(root) / CHECKED_FILE
    arrays = _load_checked(root)
    arrays[name] = entry
    tmp = target.with_name(f".{CHECKED_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": CHECKED_VERSION, "arrays": arrays}, f)
        os.replace(tmp, target)
    except OSError as exc:      # a read-only or full store: the check is simply not remembered
        log.debug("could not record the structural check of %s in %s: %s", name, target, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _cached(root: Path, rec: ArrayRecord, rule: Rule, record: bool) -> Violation | None:
    path = shard_path(Path(root) / rec.name, len(rec.shape))
    ident = _identity(path)
    key = (os.path.realpath(path), None if ident is None else tuple(ident), rec, rule)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    needs_data = RuleChecker(rule, rec).needs_data and rec.logical_bytes > 0
    if needs_data and ident is not None and _load_checked(root).get(rec.name) == _entry(rec, rule, ident):
        found = None
    else:
        found = check_rule(root, rec, rule)
        # the identity is taken again after the pass: a write during it must not be recorded as checked
        if record and needs_data and found is None and ident is not None and _identity(path) == ident:
            _save_checked(root, rec.name, _entry(rec, rule, ident))
    with _CACHE_LOCK:
        _CACHE[key] = found
    return found


def clear_cache() -> None:
    """Forget every cached result (tests; or after changing files behind gstore's back)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# Arrays handed out by a GraphStore after its check (GraphStore.csr()): samplers given exactly these
# objects skip their own pass over raw arrays. Keyed by id(), verified by a weak reference, so an id
# reused by a later array is never mistaken for a checked one.
_CHECKED_ARRAYS: dict[int, weakref.ref] = {}


def mark_checked(*arrays: np.ndarray) -> None:
    """Record `arrays` (the exact objects) as structurally checked."""
    with _CACHE_LOCK:
        for a in arrays:
            key = id(a)
            _CHECKED_ARRAYS[key] = weakref.ref(a, lambda _r, key=key: _CHECKED_ARRAYS.pop(key, None))


def is_checked(array: np.ndarray) -> bool:
    """True when `array` is an object `mark_checked` recorded (and still alive)."""
    ref = _CHECKED_ARRAYS.get(id(array))
    return ref is not None and ref() is array
